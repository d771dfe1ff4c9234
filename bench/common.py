"""What the benchmarks share: an isolated run (own database and topic prefix, removed after),
processes of the hub started and stopped, their memory and CPU read from /proc, percentiles,
the ceiling Kafka itself sets (a plain aiokafka producer and consumer), and the facts about the
machine a result came from."""

from __future__ import annotations

import asyncio
import json
import math
import os
import platform
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from hub.bus import delete_topics_with_prefix, topic_partitions
from hub.settings import LOCAL_DATABASE_URL, Settings

RESULTS_DIR = Path(__file__).resolve().parent / "results"
STOP_GRACE_S = 20.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
CEILING_TIMEOUT_S = 300.0


class BenchError(RuntimeError):
    """Something the person running the benchmark must fix; printed without a traceback."""


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile: always a value that was actually observed."""
    rank = max(math.ceil(pct / 100 * len(sorted_values)), 1)
    return sorted_values[rank - 1]


def spread_ms(seconds: Sequence[float]) -> dict[str, float]:
    """min, p50, p90, p99 and max of durations in seconds, as milliseconds."""
    ordered = sorted(seconds)
    if not ordered:
        return {}
    points = {
        "min": ordered[0],
        "p50": percentile(ordered, 50),
        "p90": percentile(ordered, 90),
        "p99": percentile(ordered, 99),
        "max": ordered[-1],
    }
    return {name: round(value * 1000, 1) for name, value in points.items()}


@asynccontextmanager
async def isolated_run(prefix: str, run_id: str) -> AsyncIterator[Settings]:
    """A migrated, seeded database and a topic prefix of this run's own (set in the
    environment, so the hub processes it starts use them too); both removed afterwards, and
    the environment as it was."""
    base_dsn = os.environ.get("HUB_DATABASE_URL") or LOCAL_DATABASE_URL
    database = f"hub_bench_{run_id}"
    saved = {name: os.environ.get(name) for name in ("HUB_TOPIC_PREFIX", "HUB_DATABASE_URL")}
    os.environ["HUB_TOPIC_PREFIX"] = f"{prefix}-{run_id}."
    os.environ["HUB_DATABASE_URL"] = urlunsplit(urlsplit(base_dsn)._replace(path=f"/{database}"))
    settings = Settings()
    try:
        async with _own_database(base_dsn, database, settings):
            yield settings
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@asynccontextmanager
async def _own_database(base_dsn: str, database: str, settings: Settings) -> AsyncIterator[None]:
    from hub.cli import migrate_all, seed_pack

    try:
        await _admin(base_dsn, f'CREATE DATABASE "{database}"')
    except Exception as exc:
        raise BenchError(f"cannot create the database ({exc!r}); has `hub infra up` run?") from exc
    try:
        await migrate_all(settings)
        await seed_pack(settings, settings.pack)
        yield
    finally:
        try:
            await _admin(base_dsn, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        except Exception as exc:
            print(f"bench: could not drop database {database}: {exc!r}", file=sys.stderr)
        try:
            await delete_topics_with_prefix(settings.bootstrap, settings.topic_prefix)
        except Exception as exc:
            print(
                f"bench: could not delete {settings.topic_prefix}* topics: {exc!r}", file=sys.stderr
            )


async def _admin(dsn: str, statement: str) -> None:
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute(statement)
    finally:
        await admin.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_hub(
    args: list[str], log_path: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """``hub ARGS`` as a child process logging to ``log_path``."""
    with open(log_path, "ab") as log:  # the child keeps its own descriptor
        return subprocess.Popen(  # noqa: S603 - our own CLI
            [sys.executable, "-m", "hub.cli", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env or dict(os.environ),
        )


def stop(process: subprocess.Popen[bytes]) -> int | None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def wait_for_port(port: int, process: subprocess.Popen[bytes], *, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if process.poll() is not None:
                raise BenchError(f"{process.args!r} exited with {process.returncode}") from None
            if time.monotonic() > deadline:
                raise BenchError(f"nothing listens on {port} after {timeout_s:.0f} s") from None
            time.sleep(0.2)


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


async def kafka_ceiling(
    bootstrap: str,
    topic: str,
    n: int,
    *,
    produce: Sequence[tuple[bytes | None, bytes]] = (),
    decode: Callable[[bytes], object] | None = None,
) -> dict[str, Any]:
    """What Kafka (and the codec) allow with none of the hub's work: a plain aiokafka consumer
    reads ``n`` records of ``topic`` from its start, passing each to ``decode``. With
    ``produce`` (key, value) records, the consumer starts first and they are sent meanwhile,
    with the API's producer settings (acks=all, idempotent, 5 ms linger, 1 MiB batches): the
    clock runs from the first send to the last record read (produce → consume)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    sending: asyncio.Task[float] | None = None
    try:
        # Before the clock starts: the partitions and where each begins (position() waits
        # while a topic created a moment ago still elects its partitions' leaders).
        partitions = await topic_partitions(consumer, topic)
        consumer.assign(partitions)
        for partition in partitions:
            await consumer.position(partition)
        started = time.perf_counter()
        if produce:
            sending = asyncio.create_task(_produce_all(bootstrap, topic, produce))
        read = 0
        while read < n:
            if time.perf_counter() - started > CEILING_TIMEOUT_S:
                raise BenchError(f"the ceiling consumer read only {read}/{n} records")
            if sending is not None and sending.done():
                sending.result()  # raises if producing failed
            batches = await consumer.getmany(timeout_ms=1000, max_records=1000)
            for records in batches.values():
                for record in records:
                    if decode is not None:
                        decode(record.value)
                    read += 1
        elapsed = time.perf_counter() - started
        produce_s = await sending if sending is not None else None
    finally:
        if sending is not None:
            sending.cancel()
        await consumer.stop()
    result = {"records": read, "elapsed_s": round(elapsed, 3),
              "records_per_s": round(read / elapsed)}  # fmt: skip
    if produce_s is not None:
        result["produce_s"] = round(produce_s, 3)
    return result


async def _produce_all(
    bootstrap: str, topic: str, records: Sequence[tuple[bytes | None, bytes]]
) -> float:
    """Send every record as fast as acks allow; returns the seconds it took."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        max_batch_size=1024 * 1024,
    )
    await producer.start()
    try:
        started = time.perf_counter()
        # send() waits when the producer's buffer is full: no other pacing needed.
        pending = [await producer.send(topic, value, key=key) for key, value in records]
        await asyncio.gather(*pending)
        return time.perf_counter() - started
    finally:
        await producer.stop()


def machine() -> dict[str, Any]:
    """Enough to tell whether two result files are comparable."""
    with open("/proc/meminfo", encoding="ascii") as meminfo:
        total = next(
            (int(line.split()[1]) * 1024 for line in meminfo if line.startswith("MemTotal:")), None
        )
    return {
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "memory_total_bytes": total,
        "python": platform.python_version(),
    }


@dataclass(frozen=True)
class Run:
    """One benchmark run: when it started, its id, its result file and its log folder."""

    name: str
    started_at: datetime
    run_id: str
    out: Path
    log_dir: Path

    @classmethod
    def start(cls, name: str, out: Path | None) -> Run:
        started_at = datetime.now(UTC)
        path = out or RESULTS_DIR / f"{name}-{started_at:%Y%m%dT%H%M%SZ}.json"
        log_dir = path.with_suffix(".logs")
        log_dir.mkdir(parents=True, exist_ok=True)
        return cls(name, started_at, secrets.token_hex(4), path, log_dir)

    def write(self, args: Any, results: dict[str, Any], *, facts: dict[str, Any] | None = None
              ) -> dict[str, Any]:  # fmt: skip
        """The JSON result: machine facts, parameters (``args`` without ``out``), results."""
        report = {"benchmark": self.name, "run_id": self.run_id,
                  "started_at": self.started_at.isoformat(), "machine": facts or machine(),
                  "parameters": {k: v for k, v in vars(args).items() if k != "out"},
                  "results": results}  # fmt: skip
        self.out.write_text(json.dumps(report, ensure_ascii=False, indent=2, default=str) + "\n")
        return report
