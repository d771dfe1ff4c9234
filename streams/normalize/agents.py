"""normalize: intake.raw → normalised, classified, located events on events.enriched, keyed by
category for correlation; records that cannot be normalised → dead letters.

A batch loop (streams/batchloop.py), not a Faust agent: it is stateless and the hottest stage.
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

from schemas import topics
from schemas.codec import dumps, loads
from schemas.intake import IntakeEnvelope
from streams.app import app, settings, worker_bus
from streams.batchloop import run_batch_loop
from streams.correlate.engine import correlation_key
from streams.deadletter import describe, send_to_dead_letter
from streams.enrich.enricher import Enricher, load_enricher
from streams.normalize.adapters import normalize
from streams.retry import retry_until_done

STAGE = "normalize"


async def normalize_batch(enricher: Enricher, records: list[Any]) -> None:
    enriched: list[tuple[bytes, bytes]] = []
    refused = 0
    for record in records:
        try:
            event = enricher.enrich(normalize(loads(IntakeEnvelope, record.value)))
        except ValueError as exc:  # JSON and validation errors are ValueErrors
            await send_to_dead_letter(record, stage=STAGE, reason=describe(exc))
            refused += 1
            continue
        # Keyed for correlation: reports that may join one incident meet in one partition.
        enriched.append((correlation_key(event), dumps(event)))
    bus = await worker_bus.get()
    if enriched:
        send = partial(bus.send_many, settings.topic(topics.EVENTS_ENRICHED), enriched)
        await retry_until_done(send, what=f"{len(enriched)} enriched events")
    if refused:
        await app.producer.flush()  # the dead letters are out before the batch is committed


@app.task  # type: ignore[untyped-decorator]
async def normalize_intake() -> None:
    # Trains the text model and indexes the districts: off the event loop, once per worker.
    enricher = await asyncio.to_thread(load_enricher, settings.pack_dir)
    await run_batch_loop(
        settings,
        stage=STAGE,
        topic=topics.INTAKE_RAW,
        handle=partial(normalize_batch, enricher),
        max_records=settings.worker_batch_size,
    )
