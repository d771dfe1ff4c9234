"""Throughput of the stream's per-event work, in process: decode + normalise + classify +
locate + encode, the CPU a worker spends on each report (Kafka excluded).

    .venv/bin/python -m bench.enrich [--events 20000]

Writes bench/results/enrich-<timestamp>.json. For the decode-only ceiling it also times decode +
encode alone, so the ratio says what enrichment costs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from hub.settings import Settings
from schemas.codec import dumps, loads
from schemas.event import Source, event_id_for
from schemas.intake import IntakeEnvelope
from streams.classify import read_corpus
from streams.enrich.enricher import load_enricher
from streams.normalize.adapters import normalize


def envelopes(count: int, texts: list[str]) -> list[bytes]:
    rng = random.Random(7)  # noqa: S311 (test data, not secrets)
    records = []
    for _ in range(count):
        order_no = uuid.uuid4().hex
        payload = {
            "order_no": order_no,
            "call_time": "2026-11-26T09:30:00+08:00",
            "content": rng.choice(texts),
            "request_type": "投诉",
            "longitude": 120.55 + rng.random() * 0.2,
            "latitude": 27.95 + rng.random() * 0.1,
            "coord_system": "GCJ02",
            "urgent": False,
        }
        envelope = IntakeEnvelope(
            event_id=event_id_for(Source.HOTLINE_12345, order_no),
            source=Source.HOTLINE_12345,
            external_id=order_no,
            received_at=datetime.now(UTC),
            payload=payload,
        )
        records.append(dumps(envelope))
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=20_000)
    args = parser.parse_args()
    settings = Settings()
    texts = [text for text, _ in read_corpus(settings.pack_dir / "corpus" / "heldout")]
    records = envelopes(args.events, texts)
    started = time.perf_counter()
    enricher = load_enricher(settings.pack_dir)
    load_s = time.perf_counter() - started

    started = time.perf_counter()
    for value in records:
        dumps(normalize(loads(IntakeEnvelope, value)))
    normalise_s = time.perf_counter() - started

    started = time.perf_counter()
    for value in records:
        dumps(enricher.enrich(normalize(loads(IntakeEnvelope, value))))
    full_s = time.perf_counter() - started

    result = {
        "benchmark": "enrich",
        "at": datetime.now(UTC).isoformat(),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "events": args.events,
        "enricher_load_s": round(load_s, 3),
        "normalise_only_events_per_s": round(args.events / normalise_s),
        "normalise_and_enrich_events_per_s": round(args.events / full_s),
        "enrich_share_of_time": round(1 - normalise_s / full_s, 3),
    }
    print(json.dumps(result, indent=2))
    out = Path("bench/results") / f"enrich-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
