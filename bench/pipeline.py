"""End-to-end benchmark of the stream worker: intake.raw → normalise → correlate → PostgreSQL.

Runs a real ``hub worker`` on real Kafka and PostgreSQL, with a topic prefix and a database of
its own (both removed at the end), and measures:

* drain (default): N valid 12345 orders are put on ``intake.raw`` before the worker starts;
  reported are the worker's start-up time (until the first report is stored), the drain
  throughput (events/s from the first to the last stored report) and the total time;
* ``--rate R``: the worker is started and warmed up first, then N orders are produced at R/s;
  reported is the latency from produce to stored (``incident_members.attached_at``), p50 … max;
* ceiling: a plain aiokafka consumer reading and decoding the same N records, no processing.

Needs the Kafka and PostgreSQL that ``hub infra up`` starts (or the ones ``HUB_*`` names).
Run it as ``python -m bench.pipeline --help``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from aiokafka import AIOKafkaProducer

from bench.common import RESULTS_DIR, BenchError, kafka_ceiling, percentile, start_hub, stop
from hub.bus import delete_topics_with_prefix
from hub.settings import LOCAL_DATABASE_URL, Settings
from schemas.codec import dumps, loads
from schemas.event import Crs, Source, event_id_for
from schemas.intake import CHINA_TZ, Hotline12345Order, HotlineRequestType, IntakeEnvelope
from schemas.topics import INTAKE_RAW
from streams.classify import read_corpus

HELDOUT = Path(__file__).resolve().parents[1] / "packs" / "wenzhou" / "corpus" / "heldout"
STORE_TIMEOUT_S = 300.0
POLL_S = 0.2
PRODUCE_CHUNK = 1000
PACE_TICK_S = 0.01  # the rate phase sends a small batch every 10 ms


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.pipeline", description=__doc__)
    parser.add_argument("--events", type=int, default=5000, help="orders to push through")
    parser.add_argument("--rate", type=float, default=0.0, help="orders/s; 0 = pre-produce all")
    parser.add_argument("--out", type=Path, help="result JSON (default bench/results/pipeline-…)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (one group)")
    args = parser.parse_args(argv)
    if args.events <= 0:
        parser.error("--events must be positive")
    if args.rate < 0:
        parser.error("--rate must not be negative")
    return args


# --- records ------------------------------------------------------------------------------


class Orders:
    """Unique, valid 12345 orders with real texts at random points in Wenzhou's urban area."""

    def __init__(self, run_id: str) -> None:
        self._run_id = run_id
        self._texts = [text for text, _ in read_corpus(HELDOUT)]
        self._rng = random.Random()  # noqa: S311 - test data, not secrets

    def envelope(self, tag: str) -> IntakeEnvelope:
        order_no = f"BENCHPIPE-{self._run_id}-{tag}"
        order = Hotline12345Order(
            order_no=order_no,
            call_time=datetime.now(CHINA_TZ),
            content=self._rng.choice(self._texts),
            request_type=HotlineRequestType.COMPLAINT,
            longitude=round(self._rng.uniform(120.55, 120.75), 6),
            latitude=round(self._rng.uniform(27.95, 28.05), 6),
            coord_system=Crs.GCJ02,
        )
        return IntakeEnvelope(
            event_id=event_id_for(Source.HOTLINE_12345, order_no),
            source=Source.HOTLINE_12345,
            external_id=order_no,
            received_at=datetime.now(UTC),
            payload=order.model_dump(mode="json"),
        )


async def produce(
    producer: AIOKafkaProducer, topic: str, records: list[IntakeEnvelope], rate: float
) -> dict[str, float]:
    """Send every record (acks=all); at ``rate`` > 0 paced in small batches. Returns the wall
    clock time each record was handed to the producer, by external id."""
    sent_at: dict[str, float] = {}
    pending: list[asyncio.Future[Any]] = []
    per_tick = max(1, round(rate * PACE_TICK_S)) if rate > 0 else PRODUCE_CHUNK
    started = time.monotonic()
    for first in range(0, len(records), per_tick):
        if rate > 0:  # absolute schedule, so slow ticks do not add up to a lower rate
            delay = started + first / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        for record in records[first : first + per_tick]:
            sent_at[record.external_id] = time.time()
            pending.append(await producer.send(topic, dumps(record), key=record.event_id.bytes))
        if len(pending) >= PRODUCE_CHUNK:
            await asyncio.gather(*pending)
            pending.clear()
    await asyncio.gather(*pending)
    return sent_at


# --- database and worker ------------------------------------------------------------------


async def members(conn: Any) -> int:
    count: int = await conn.fetchval("SELECT count(*) FROM incident_members")
    return count


async def wait_for_members(conn: Any, target: int, worker: subprocess.Popen[bytes]) -> float:
    """Poll until ``target`` reports are stored; returns the wall clock time it was seen."""
    deadline = time.monotonic() + STORE_TIMEOUT_S
    while True:
        count = await members(conn)
        if count >= target:
            return time.time()
        if worker.poll() is not None:
            raise BenchError(
                f"the worker exited ({worker.returncode}) with {count}/{target} stored"
            )
        if time.monotonic() > deadline:
            raise BenchError(f"only {count}/{target} reports stored after {STORE_TIMEOUT_S:.0f} s")
        await asyncio.sleep(POLL_S)


def start_worker(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    log_path.unlink(missing_ok=True)
    return start_hub(["worker", "--loglevel", "warn"], log_path, env)


def start_more_workers(
    env: dict[str, str], log_path: Path, count: int
) -> list[subprocess.Popen[bytes]]:
    """Further workers in the same consumer group, each with its own state folder."""
    return [
        start_worker(
            {**env, "HUB_STATE_DIR": f"{env['HUB_STATE_DIR']}-{index}"},
            log_path.with_suffix(f".{index}.log"),
        )
        for index in range(1, count + 1)
    ]


stop_worker = stop


async def counts(conn: Any) -> dict[str, int]:
    return {
        name: await conn.fetchval(f"SELECT count(*) FROM {name}")  # noqa: S608 - fixed names
        for name in ("incident_members", "incidents", "tickets", "events", "dead_letters")
    }


# --- measuring ----------------------------------------------------------------------------


async def ceiling(settings: Settings, n: int) -> dict[str, Any]:
    """Plain consume + decode of ``n`` records from intake.raw: what Kafka and the codec allow."""
    result = await kafka_ceiling(
        settings.bootstrap,
        settings.topic(INTAKE_RAW),
        n,
        decode=lambda value: loads(IntakeEnvelope, value),
    )
    return {"records": result["records"], "elapsed_s": result["elapsed_s"],
            "events_per_s": result["records_per_s"]}  # fmt: skip


async def measure(
    settings: Settings, args: argparse.Namespace, env: dict[str, str], run_id: str, log: Path
) -> dict[str, Any]:
    orders = Orders(run_id)
    topic = settings.topic(INTAKE_RAW)
    records = [orders.envelope(str(i)) for i in range(args.events)]
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap, acks="all")
    conn = await asyncpg.connect(settings.dsn)
    await producer.start()
    worker: subprocess.Popen[bytes] | None = None
    helpers: list[subprocess.Popen[bytes]] = []
    result: dict[str, Any] = {"workers": args.workers}
    try:
        if args.rate <= 0:
            produce_started = time.perf_counter()
            sent_at = await produce(producer, topic, records, 0)
            produce_s = time.perf_counter() - produce_started
            result["produce"] = {"elapsed_s": round(produce_s, 3),
                                 "events_per_s": round(args.events / produce_s)}  # fmt: skip
            worker_started = time.time()
            worker = start_worker(env, log)
            helpers = start_more_workers(env, log, args.workers - 1)
            await wait_for_members(conn, 1, worker)
            await wait_for_members(conn, args.events, worker)
            base = 0
        else:
            worker_started = time.time()
            worker = start_worker(env, log)
            await produce(producer, topic, [orders.envelope("warm")], 0)
            ready = await wait_for_members(conn, 1, worker)
            result["worker_ready_s"] = round(ready - worker_started, 3)
            sent_at = await produce(producer, topic, records, args.rate)
            first_sent, last_sent = min(sent_at.values()), max(sent_at.values())
            result["produce"] = {
                "elapsed_s": round(last_sent - first_sent, 3),
                "events_per_s": round((args.events - 1) / max(last_sent - first_sent, 1e-9)),
            }
            await wait_for_members(conn, args.events + 1, worker)
            base = 1
        rows = await conn.fetch(
            "SELECT e.external_id, m.attached_at FROM incident_members m JOIN events e "
            "USING (event_id) WHERE e.external_id LIKE $1",
            f"BENCHPIPE-{run_id}-%",
        )
        stored = {row["external_id"]: row["attached_at"].timestamp() for row in rows}
        stored.pop(f"BENCHPIPE-{run_id}-warm", None)
        times = sorted(stored.values())
        first, last = times[0], times[-1]
        in_first = sum(1 for t in times if t == first)  # stored by the first transaction
        span = last - first
        result["pipeline"] = {
            "startup_s": round(first - worker_started, 3) if base == 0 else None,
            "drain_s": round(span, 3),
            "events_per_s": round((len(times) - in_first) / span) if span > 0 else None,
            "total_s": round(last - worker_started, 3),
        }
        latencies = sorted(stored[eid] - sent_at[eid] for eid in stored if eid in sent_at)
        if args.rate > 0 and latencies:
            result["latency_ms"] = {
                name: round(percentile(latencies, pct) * 1000, 1)
                for name, pct in (("min", 0), ("p50", 50), ("p90", 90), ("p99", 99), ("max", 100))
            }
        table_counts = await counts(conn)
        ok = (table_counts["tickets"] == table_counts["incidents"]
              and table_counts["incident_members"] == args.events + base)  # fmt: skip
        result["counts"] = {**table_counts, "check": "OK" if ok else "MISMATCH"}
    finally:
        await producer.stop()
        await conn.close()
        if worker is not None:
            result["worker_exit"] = stop_worker(worker)
        for helper in helpers:
            stop_worker(helper)
    # After the worker stopped, so it does not compete for the CPU.
    result["ceiling"] = await ceiling(settings, args.events)
    pipeline_rate = result["pipeline"]["events_per_s"]
    if pipeline_rate:
        result["pipeline_to_ceiling"] = round(pipeline_rate / result["ceiling"]["events_per_s"], 3)
    return result


# --- setting up and cleaning up -----------------------------------------------------------


async def create_database(base_dsn: str, name: str) -> None:
    admin = await asyncpg.connect(base_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()


async def drop_database(base_dsn: str, name: str) -> None:
    admin = await asyncpg.connect(base_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def delete_own_topics(settings: Settings) -> list[str]:
    """Delete the topics under this run's own prefix (the worker's included), nothing else."""
    assert settings.topic_prefix.startswith("benchpipe-"), settings.topic_prefix
    return await delete_topics_with_prefix(settings.bootstrap, settings.topic_prefix)


async def clean_up(settings: Settings, base_dsn: str, database: str) -> dict[str, Any]:
    cleaned: dict[str, Any] = {"database": database, "prefix": settings.topic_prefix}
    try:
        await drop_database(base_dsn, database)
        cleaned["database_dropped"] = True
    except Exception as exc:
        print(f"bench: could not drop database {database}: {exc!r}", file=sys.stderr)
        cleaned["database_dropped"] = repr(exc)
    try:
        cleaned["topics_deleted"] = await delete_own_topics(settings)
    except Exception as exc:
        print(f"bench: could not delete {settings.topic_prefix}* topics: {exc!r}", file=sys.stderr)
        cleaned["topics_deleted"] = repr(exc)
    return cleaned


async def run(args: argparse.Namespace, run_id: str, log: Path) -> dict[str, Any]:
    from hub.cli import migrate_all, seed_pack

    base_dsn = os.environ.get("HUB_DATABASE_URL") or LOCAL_DATABASE_URL
    database = f"hub_bench_{run_id}"
    # Set before Settings() and inherited by the worker: this run's topics and data are its own.
    os.environ["HUB_TOPIC_PREFIX"] = f"benchpipe-{run_id}."
    os.environ["HUB_DATABASE_URL"] = urlunsplit(urlsplit(base_dsn)._replace(path=f"/{database}"))
    settings = Settings()
    try:
        await create_database(base_dsn, database)
    except Exception as exc:
        raise BenchError(f"cannot create the database ({exc!r}); has `hub infra up` run?") from exc
    try:
        with tempfile.TemporaryDirectory(prefix="benchpipe-") as state_dir:
            await migrate_all(settings)
            await seed_pack(settings, "wenzhou")
            # Its own Faust data directory, so a developer's running worker is never disturbed.
            env = {**os.environ, "HUB_STATE_DIR": state_dir}
            result = await measure(settings, args, env, run_id, log)
    finally:
        cleaned = await clean_up(settings, base_dsn, database)
    return {"topic_prefix": settings.topic_prefix, "bootstrap": settings.bootstrap,
            "results": result, "cleanup": cleaned}  # fmt: skip


def sigterm_as_sigint(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def print_summary(report: dict[str, Any], out: Path) -> None:
    r = report["results"]
    p, c, k = r["pipeline"], r["ceiling"], r["counts"]
    mode = f"rate {report['parameters']['rate']}/s" if report["parameters"]["rate"] else "drain"
    print(f"pipeline ({mode}, {report['parameters']['events']} events)")
    print(f"  produced   {r['produce']['events_per_s']} events/s")
    if p["startup_s"] is not None:
        print(f"  start-up   {p['startup_s']} s (worker start → first report stored)")
    else:
        print(f"  ready      {r['worker_ready_s']} s (worker start → warm-up report stored)")
    print(
        f"  stored     {p['events_per_s']} events/s over {p['drain_s']} s; total {p['total_s']} s"
    )
    if "latency_ms" in r:
        lat = r["latency_ms"]
        print(
            f"  latency ms min {lat['min']}  p50 {lat['p50']}  p90 {lat['p90']}  "
            f"p99 {lat['p99']}  max {lat['max']}"
        )
    print(f"  ceiling    {c['events_per_s']} events/s (consume + decode only); "
          f"pipeline/ceiling {r.get('pipeline_to_ceiling')}")  # fmt: skip
    print(f"  members {k['incident_members']}, incidents {k['incidents']}, "
          f"tickets {k['tickets']}, dead letters {k['dead_letters']}: {k['check']}")  # fmt: skip
    print(f"written to {out}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started_at = datetime.now(CHINA_TZ)
    run_id = secrets.token_hex(4)
    out: Path = args.out or RESULTS_DIR / f"pipeline-{started_at:%Y%m%d-%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    log = out.with_suffix(".worker.log")
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, sigterm_as_sigint)
    try:
        outcome = asyncio.run(run(args, run_id, log))
    except BenchError as exc:
        print(f"bench: {exc} (worker log: {log})", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted; the worker was stopped and cleaned up", file=sys.stderr)
        return 130
    report = {
        "benchmark": "pipeline",
        "run_id": run_id,
        "started_at": started_at.isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "kafka_bootstrap": outcome["bootstrap"],
        },
        "parameters": {"events": args.events, "rate": args.rate,
                       "topic_prefix": outcome["topic_prefix"], "worker_log": str(log)},
        "results": outcome["results"],
        "cleanup": outcome["cleanup"],
    }  # fmt: skip
    out.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print_summary(report, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
