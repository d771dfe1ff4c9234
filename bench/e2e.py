"""End to end, all at once: simulated devices and citizen reports through the whole hub (API
and MQTT gateway → Kafka → `hub worker` → PostgreSQL tickets and the /ws/ops feed) for a fixed
time, then the ceiling Kafka itself sets for the same records on this machine.

In an isolated run (its own database and topic prefix, removed after) it starts a real
`hub worker`, `hub api` and `hub gateway`, checks that one report reaches a ticket and the
dashboard, then for ``--duration`` seconds drives together:

* `hub simulate`: ``--devices`` devices each reporting every ``--interval`` s (10,000 every
  10 s = 1,000 readings/s) through MQTT gateway connections or the vendors' HTTP batch API
  (``--via``), in a ``--scenario`` that raises alarms (typhoon: the rivers rise);
* ``--reports-per-s`` 12345 orders (held-out corpus texts around the districts' centres, as
  `hub demo` posts them) to /api/v1/intake/hotline-12345.

Measured: readings and reports accepted per second, and processed (readings through the alarm
rules, reports onto a ticket) from the start of the load until the pipeline caught up with it;
latency from each report's POST to its ticket (PostgreSQL, same clock: greatest of
tickets.created_at and incident_members.attached_at, since a report that joins an incident
lands on a ticket opened earlier) and to its first appearance on the dashboard (a /ws/ops
client subscribed to the events layer); every 10 s, each process's RSS and CPU, the machine's
CPU and the rules' lag. Then, with the hub stopped: the ceiling, that is the same records (read
back from intake.raw and iot.telemetry) produced to a new topic with as many partitions and
consumed by plain aiokafka, and the hub's records/s as a share of it.

Run as ``hub bench e2e --help`` (or ``python -m bench.e2e``); results in
bench/results/e2e-<UTC time>.json, the processes' logs beside it (``….logs/``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import websockets
from aiokafka import AIOKafkaConsumer

from bench.common import (
    BenchError,
    Run,
    cpu_seconds,
    free_port,
    isolated_run,
    kafka_ceiling,
    machine,
    rss_bytes,
    spread_ms,
    start_hub,
    stop,
    wait_for_port,
)
from bench.iot import lag_reader, rules_lag
from hub.auth import create_api_key
from hub.bus import ensure_topics, topic_partitions
from hub.demo import report_material
from hub.pack import load_pack
from hub.settings import Settings
from iot_ingest.simulator import SCENARIOS
from schemas import topics

SAMPLE_S = 10.0
READY_TIMEOUT_S = 120.0
DRAIN_TIMEOUT_S = 180.0
JITTER_DEG = 0.03  # as `hub demo`: reports scatter around the districts' centres
CEILING_TOPIC = "bench.ceiling"
ON_TICKET = """
SELECT m.event_id, greatest(t.created_at, m.attached_at) AS on_ticket
FROM events e
JOIN incident_members m ON m.event_id = e.event_id
JOIN tickets t ON t.incident_id = m.incident_id
WHERE e.source = 'hotline-12345' AND e.external_id LIKE $1
"""
COUNTS = """
SELECT (SELECT count(*) FROM alarms) AS alarms,
       (SELECT count(*) FROM incidents) AS incidents,
       (SELECT count(*) FROM tickets) AS tickets,
       (SELECT count(*) FROM tickets t JOIN events e USING (event_id)
        WHERE e.source <> 'hotline-12345') AS tickets_not_from_reports,
       (SELECT count(*) FROM dead_letters) AS dead_letters
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="hub bench e2e",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--duration", type=float, default=120, help="seconds of load")
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument(
        "--interval", type=int, default=10, help="seconds between a device's readings"
    )
    parser.add_argument("--via", choices=["mqtt", "http"], default="mqtt", help="devices' path")
    parser.add_argument("--scenario", choices=SCENARIOS, default="typhoon")
    parser.add_argument("--reports-per-s", type=float, default=20)
    parser.add_argument("--out", type=Path, help="result JSON (default bench/results/e2e-….json)")
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.devices <= 0 or args.interval <= 0 or args.reports_per_s <= 0:
        parser.error("--duration, --devices, --interval and --reports-per-s must be positive")
    return args


# --- the load's two halves: citizen reports here, devices in `hub simulate` -----------------


class Reports:
    """Unique 12345 orders as `hub demo` posts them, and when each one's POST began."""

    def __init__(self, settings: Settings, run_id: str) -> None:
        self.prefix = f"BENCHE2E-{run_id}-"
        self._contains = load_pack(settings.pack_dir).contains
        self._texts, self._centres = report_material(settings)
        self._rng = random.Random(1)  # noqa: S311 - test data, not secrets
        self.posted_at: dict[str, float] = {}  # event id → wall clock time its POST began
        self.accepted_at: dict[str, float] = {}  # … and when it was answered 2xx
        self.answers: Counter[str] = Counter()

    def order(self, tag: str) -> dict[str, Any]:
        while True:
            lon, lat = self._rng.choice(self._centres)
            lon, lat = lon + self._rng.gauss(0, JITTER_DEG), lat + self._rng.gauss(0, JITTER_DEG)
            if self._contains(lon, lat):
                break
        return {"order_no": f"{self.prefix}{tag}", "call_time": datetime.now(UTC).isoformat(),
                "content": self._rng.choice(self._texts), "request_type": "投诉",
                "longitude": round(lon, 6), "latitude": round(lat, 6)}  # fmt: skip

    async def post(self, client: httpx.AsyncClient, key: str, tag: str) -> None:
        order = self.order(tag)
        began = time.time()
        try:
            answer = await client.post("/api/v1/intake/hotline-12345", json=order,
                                       headers={"X-API-Key": key})  # fmt: skip
        except httpx.HTTPError as exc:
            self.answers[type(exc).__name__] += 1
            return
        self.answers[str(answer.status_code)] += 1
        if answer.status_code in (200, 202):
            event_id = answer.json()["event_id"]
            self.posted_at[event_id], self.accepted_at[event_id] = began, time.time()

    async def stream(
        self, client: httpx.AsyncClient, key: str, *, per_s: float, duration_s: float
    ) -> float:
        """``per_s`` posts a second on a fixed schedule (a slow answer holds up no other
        post); returns when the last was answered."""
        started = time.monotonic()
        posts = []
        for number in range(int(per_s * duration_s)):
            await asyncio.sleep(max(0.0, started + number / per_s - time.monotonic()))
            posts.append(asyncio.create_task(self.post(client, key, str(number))))
        await asyncio.gather(*posts)
        return time.time()


class Dashboard:
    """An operations-centre client on /ws/ops, subscribed to the events layer: when each
    report first appears there."""

    def __init__(self) -> None:
        self.seen: dict[str, float] = {}
        self.frames = 0

    async def follow(self, url: str, key: str) -> None:
        hello = {"type": "hello", "key": key, "subscribe": {"layers": ["events"]}}
        async with websockets.connect(url, max_size=2**26) as socket:
            await socket.send(orjson.dumps(hello).decode())  # the server reads a text hello
            async for message in socket:  # binary frames of UTF-8 JSON
                arrived = time.time()
                self.frames += 1
                for update in orjson.loads(message).get("updates", ()):
                    if update["layer"] == "events" and update["value"] is not None:
                        self.seen.setdefault(update["key"], arrived)


async def on_ticket(conn: Any, pattern: str) -> dict[str, float]:
    """Reports whose external id matches ``pattern``, by event id: when each was on a ticket."""
    rows = await conn.fetch(ON_TICKET, pattern)
    return {str(row["event_id"]): row["on_ticket"].timestamp() for row in rows}


# --- what each process costs -------------------------------------------------------------


def machine_busy_jiffies() -> tuple[int, int]:
    """(busy, total) CPU time of the whole machine so far, all cores (/proc/stat)."""
    with open("/proc/stat", encoding="ascii") as stat:
        fields = [int(f) for f in stat.readline().split()[1:9]]
    return sum(fields) - fields[3] - fields[4], sum(fields)  # idle and iowait are not busy


class Sampler:
    """Every SAMPLE_S: each live process's RSS and CPU (% of one core since the last sample),
    the whole machine's CPU (% of all cores) and the rules' lag on iot.telemetry."""

    def __init__(self, processes: dict[str, subprocess.Popen[bytes]]) -> None:
        self.processes = processes
        self.samples: list[dict[str, Any]] = []
        self._t0 = time.monotonic()
        self._last = self._read()

    def _read(self) -> tuple[float, dict[str, float], tuple[int, int]]:
        pids = {name: p.pid for name, p in self.processes.items() if p.poll() is None}
        cpu = {name: cpu_seconds(pid) for name, pid in {**pids, "bench": os.getpid()}.items()}
        return time.monotonic(), cpu, machine_busy_jiffies()

    def sample(self, lag: int) -> None:
        (then, cpu0, (busy0, total0)), self._last = self._last, self._read()
        now, cpu, (busy, total) = self._last
        self.samples.append({
            "t_s": round(now - self._t0),
            "rss_mb": {name: round(rss_bytes(self._pid(name)) / 2**20) for name in cpu},
            "cpu_pct": {name: round(100 * (cpu[name] - cpu0.get(name, cpu[name])) / (now - then))
                        for name in cpu},
            "machine_busy_pct": round(100 * (busy - busy0) / max(total - total0, 1)),
            "rules_lag": lag,
        })  # fmt: skip

    def _pid(self, name: str) -> int:
        return os.getpid() if name == "bench" else self.processes[name].pid

    async def run(self, settings: Settings, lag_consumer: AIOKafkaConsumer) -> None:
        while True:
            await asyncio.sleep(SAMPLE_S)
            self.sample(await rules_lag(settings, lag_consumer))

    def summary(self) -> dict[str, Any]:
        names = {name for s in self.samples for name in s["cpu_pct"]}
        per_process = {
            name: {
                "cpu_pct_mean": round(sum(c) / len(c)),
                "rss_mb_max": max(s["rss_mb"][name] for s in self.samples if name in s["rss_mb"]),
            }
            for name in sorted(names)
            if (c := [s["cpu_pct"][name] for s in self.samples if name in s["cpu_pct"]])
        }
        busy = [s["machine_busy_pct"] for s in self.samples]
        return {
            "processes": per_process,
            "machine_busy_pct_mean": round(sum(busy) / len(busy)) if busy else None,
            "rules_lag_max": max((s["rules_lag"] for s in self.samples), default=None),
        }


# --- the run ------------------------------------------------------------------------------


async def wait_until(
    what: str, ready: Callable[[], Awaitable[bool]], timeout_s: float = READY_TIMEOUT_S
) -> None:
    deadline = time.monotonic() + timeout_s
    while not await ready():
        if time.monotonic() > deadline:
            raise BenchError(f"{what} after {timeout_s:.0f} s")
        await asyncio.sleep(0.1)  # the start of the load is timed by this


async def warm_up(
    client: httpx.AsyncClient, key: str, conn: Any, reports: Reports,
    dashboard: Dashboard, watching: asyncio.Task[None],
) -> None:  # fmt: skip
    """One report all the way through before the clock starts: the worker has joined its
    groups, the feed follows Kafka, the dashboard client (``watching``) is in."""
    await reports.post(client, key, "warm")
    warm = set(reports.posted_at)
    if not warm:
        raise BenchError(f"the API did not accept the warm-up report: {dict(reports.answers)}")

    async def through() -> bool:
        if watching.done():
            watching.result()  # raises what ended it
            raise BenchError("the API closed the dashboard's websocket")
        on = await on_ticket(conn, f"{reports.prefix}warm")
        return warm <= on.keys() and warm <= dashboard.seen.keys()

    await wait_until("the warm-up report is not on a ticket and the dashboard", through)
    reports.posted_at.clear()
    reports.accepted_at.clear()
    reports.answers.clear()


async def start_simulator(
    args: argparse.Namespace, ports: dict[str, int], log: Path
) -> subprocess.Popen[bytes]:
    """`hub simulate`, once it has registered its devices and starts sending."""
    simulator = start_hub(
        ["simulate", "--devices", str(args.devices), "--interval", str(args.interval),
         "--duration", str(args.duration), "--via", args.via, "--scenario", args.scenario,
         "--api", f"http://127.0.0.1:{ports['api']}", "--mqtt", f"127.0.0.1:{ports['mqtt']}"],
        log,
    )  # fmt: skip

    async def sending() -> bool:
        said = log.read_text()  # noqa: ASYNC240 - a few lines of log, nothing else waits
        if simulator.poll() is not None:
            raise BenchError(f"hub simulate exited early: {said[-500:]}")
        return "every" in said

    try:
        await wait_until("hub simulate has not started", sending, timeout_s=600)
    except BaseException:
        stop(simulator)
        raise
    return simulator


async def drain(
    settings: Settings, conn: Any, lag_consumer: AIOKafkaConsumer, reports: Reports
) -> tuple[dict[str, float], float | None]:
    """Wait until the pipeline has caught up (every accepted report on a ticket, no readings
    left for the rules) or DRAIN_TIMEOUT_S; returns when each report was on a ticket and
    when the rules had caught up."""
    caught_up: float | None = None
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while True:
        stored = await on_ticket(conn, f"{reports.prefix}%")
        if caught_up is None and await rules_lag(settings, lag_consumer) == 0:
            caught_up = time.time()
        if caught_up is not None and reports.posted_at.keys() <= stored.keys():
            return stored, caught_up
        if time.monotonic() > deadline:
            return stored, caught_up
        await asyncio.sleep(0.5)


async def drive(
    args: argparse.Namespace,
    settings: Settings,
    hub: dict[str, subprocess.Popen[bytes]],
    ports: dict[str, int],
    log_dir: Path,
    run_id: str,
) -> dict[str, Any]:
    """The load, and what came of it."""
    conn = await asyncpg.connect(settings.dsn)
    source_key = await create_api_key(conn, role="source", scope="hotline-12345", label="e2e")
    ops_key = await create_api_key(conn, role="ops", label="bench e2e")
    reports, dashboard = Reports(settings, run_id), Dashboard()
    lag_consumer = await lag_reader(settings)
    url = f"ws://127.0.0.1:{ports['api']}/ws/ops"
    watching = asyncio.create_task(dashboard.follow(url, ops_key))
    log = log_dir / "simulate.log"
    try:
        api = f"http://127.0.0.1:{ports['api']}"
        async with httpx.AsyncClient(base_url=api, timeout=30) as client:
            await warm_up(client, source_key, conn, reports, dashboard, watching)
            simulator = await start_simulator(args, ports, log)
            load_started = time.time()
            sampler = Sampler({**hub, "simulate": simulator})
            sampling = asyncio.create_task(sampler.run(settings, lag_consumer))
            try:
                reports_sent, readings_sent = await asyncio.gather(
                    reports.stream(
                        client, source_key, per_s=args.reports_per_s, duration_s=args.duration
                    ),
                    exited(simulator, timeout_s=args.duration + 120),
                )
            finally:
                stop(simulator)
        load_ended = max(reports_sent, readings_sent)
        stored, readings_caught_up = await drain(settings, conn, lag_consumer, reports)
        drained = time.time()
        await asyncio.sleep(1)  # the last reports' frames (the feed sends ≤ 10 a second)
        sampling.cancel()
        lag_at_end = await rules_lag(settings, lag_consumer)
        counts = dict(await conn.fetchrow(COUNTS))
        postgres_version = await conn.fetchval("SHOW server_version")
    finally:
        watching.cancel()
        await lag_consumer.stop()
        await conn.close()

    simulated = re.search(r"done: (\d+) accepted, (\d+) rejected, (\d+) failed", log.read_text())
    if simulated is None:
        raise BenchError(f"hub simulate did not finish: {log.read_text()[-500:]}")
    accepted, rejected, failed = (int(g) for g in simulated.groups())
    posted, seen = reports.posted_at, dashboard.seen
    ticketed = [e for e in posted if e in stored]
    last_ticketed = max((stored[e] for e in ticketed), default=None)
    return {
        "readings": {
            "offered_per_s": round(args.devices / args.interval),
            "accepted": accepted,
            "rejected": rejected,
            "failed_requests": failed,
            "sending_s": round(readings_sent - load_started, 1),
            "accepted_per_s": round(accepted / (readings_sent - load_started)),
            "rules_caught_up_after_load_s": _after(readings_caught_up, load_ended),
            "rules_lag_at_end": lag_at_end,
        },
        "reports": {
            "offered_per_s": args.reports_per_s,
            "answers": dict(reports.answers),
            "accepted": len(posted),
            "sending_s": round(reports_sent - load_started, 1),
            "accepted_per_s": round(len(posted) / (reports_sent - load_started), 1),
            "on_ticket": len(ticketed),
            "on_ticket_per_s": (
                round(len(ticketed) / (last_ticketed - load_started), 1) if last_ticketed else 0
            ),
            "on_ticket_after_load_s": _after(last_ticketed, load_ended),
            "on_dashboard": sum(e in seen for e in posted),
        },
        "latency_ms": {
            "report_to_accepted": spread_ms([reports.accepted_at[e] - posted[e] for e in posted]),
            "report_to_ticket": spread_ms([stored[e] - posted[e] for e in ticketed]),
            "report_to_dashboard": spread_ms([seen[e] - t for e, t in posted.items() if e in seen]),
        },
        "counts": counts,
        "dashboard_frames": dashboard.frames,
        "postgresql": postgres_version,
        **sampler.summary(),
        "samples": sampler.samples,
        # moments, for processed(); removed from the result
        "load_started": load_started,
        "readings_caught_up": readings_caught_up or drained,
    }


async def exited(process: subprocess.Popen[bytes], *, timeout_s: float) -> float:
    """When ``process`` ended (wall clock)."""

    async def ended() -> bool:
        return process.poll() is not None

    await wait_until(f"{process.args!r} has not ended", ended, timeout_s)
    return time.time()


def _after(moment: float | None, load_ended: float) -> float | None:
    """Seconds after the load ended; 0 when it kept up, None when it never caught up."""
    return round(max(0.0, moment - load_ended), 1) if moment is not None else None


async def read_back(
    bootstrap: str, names: list[str]
) -> dict[str, list[tuple[bytes | None, bytes]]]:
    """Every record on these topics, as (key, value), by topic."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False)  # fmt: skip
    await consumer.start()
    try:
        partitions = [tp for name in names for tp in await topic_partitions(consumer, name)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        records: dict[str, list[tuple[bytes | None, bytes]]] = {name: [] for name in names}
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while any([await consumer.position(tp) < ends[tp] for tp in partitions]):
            if time.monotonic() > deadline:
                raise BenchError("could not read back the run's records for the ceiling")
            for tp, batch in (await consumer.getmany(timeout_ms=1000, max_records=5000)).items():
                records[tp.topic].extend((record.key, record.value) for record in batch)
        return records
    finally:
        await consumer.stop()


def processed(results: dict[str, Any], telemetry: list[tuple[bytes | None, bytes]]) -> float:
    """Readings processed (those the rules had read when the run ended, from the rules' lag
    in records) into ``results``; returns the hub's records processed per second."""
    readings, reports = results["readings"], results["reports"]
    readings_on_topic = sum(len(orjson.loads(value)["readings"]) for _, value in telemetry)
    done_records = len(telemetry) - readings["rules_lag_at_end"]
    done = round(readings_on_topic * done_records / len(telemetry)) if telemetry else 0
    span = results["readings_caught_up"] - results["load_started"]
    readings.update({"on_topic": readings_on_topic, "records_on_topic": len(telemetry),
                     "processed": done, "processed_per_s": round(done / span)})  # fmt: skip
    return float(done_records / span + (reports["on_ticket_per_s"] or 0))


async def ceiling(
    settings: Settings, messages: list[tuple[bytes | None, bytes]], hub_per_s: float
) -> dict[str, Any]:
    """The run's input records through a plain aiokafka producer and consumer, on a topic of
    their own with as many partitions; and the hub's throughput as a share of that."""
    topic = settings.topic(CEILING_TOPIC)
    raw = await kafka_ceiling(settings.bootstrap, topic, len(messages), produce=messages)
    return {
        **raw,
        "partitions": settings.topic_partitions,
        "record_bytes_mean": round(sum(len(v) for _, v in messages) / max(len(messages), 1)),
        "hub_records_per_s": round(hub_per_s),
        "hub_to_ceiling": round(hub_per_s / raw["records_per_s"], 4),
    }


async def run(args: argparse.Namespace, run_id: str, log_dir: Path) -> dict[str, Any]:
    async with isolated_run("benche2e", run_id) as settings:
        # Created now, so that its partitions have leaders when the ceiling needs it.
        await ensure_topics(settings.bootstrap, [settings.topic(CEILING_TOPIC)],
                            partitions=settings.topic_partitions,
                            replication=settings.topic_replication)  # fmt: skip
        ports = {"api": free_port(), "mqtt": free_port()}
        with tempfile.TemporaryDirectory(prefix="benche2e-") as state_dir:
            hub = {
                "worker": start_hub(["worker", "--loglevel", "warn"], log_dir / "worker.log",
                                    {**os.environ, "HUB_STATE_DIR": state_dir}),
                "api": start_hub(["api", "--port", str(ports["api"])], log_dir / "api.log"),
                "gateway": start_hub(["gateway", "--port", str(ports["mqtt"]),
                                      "--loglevel", "warning"], log_dir / "gateway.log"),
            }  # fmt: skip
            try:
                wait_for_port(ports["api"], hub["api"])
                wait_for_port(ports["mqtt"], hub["gateway"])
                results = await drive(args, settings, hub, ports, log_dir, run_id)
            finally:
                for process in hub.values():
                    stop(process)
        # After the hub stopped, so that nothing competes with it for the CPU.
        intake, telemetry = settings.topic(topics.INTAKE_RAW), settings.topic(topics.IOT_TELEMETRY)
        records = await read_back(settings.bootstrap, [intake, telemetry])
        hub_per_s = processed(results, records[telemetry])
        results["ceiling"] = await ceiling(
            settings, records[intake] + records[telemetry], hub_per_s
        )
        results["topic_prefix"] = settings.topic_prefix
    for moment in ("load_started", "readings_caught_up"):
        del results[moment]
    return results


def versions(postgresql: str) -> dict[str, str | None]:
    """The broker's (from the jars `hub infra up` runs), PostgreSQL's and the libraries'."""
    libs = Path(__file__).resolve().parents[1] / ".hub" / "kafka" / "libs"
    jars = [m[1] for p in libs.glob("kafka-server-*.jar")
            if (m := re.fullmatch(r"kafka-server-(\d[\d.]*)\.jar", p.name))]  # fmt: skip
    return {
        "kafka": jars[0] if jars else None,
        "postgresql": postgresql,
        **{name: version(name) for name in ("aiokafka", "faust-streaming", "fastapi", "uvicorn",
                                            "websockets", "asyncpg")},
    }  # fmt: skip


def print_summary(report: dict[str, Any], out: Path) -> None:
    p, r = report["parameters"], report["results"]
    readings, reports, lat, ceil = r["readings"], r["reports"], r["latency_ms"], r["ceiling"]
    print(f"e2e: {p['duration']:.0f} s; {p['devices']} devices every {p['interval']} s over "
          f"{p['via']} ({p['scenario']}) + {p['reports_per_s']} reports/s")  # fmt: skip
    print(f"  readings/s  offered {readings['offered_per_s']}, accepted "
          f"{readings['accepted_per_s']} ({readings['rejected']} rejected, "
          f"{readings['failed_requests']} failed requests), processed "
          f"{readings['processed_per_s']} (rules caught up "
          f"{readings['rules_caught_up_after_load_s']} s after the load)")  # fmt: skip
    print(f"  reports/s   offered {reports['offered_per_s']}, accepted "
          f"{reports['accepted_per_s']} {reports['answers']}, on a ticket "
          f"{reports['on_ticket_per_s']} ({reports['on_ticket']}/{reports['accepted']}; caught "
          f"up {reports['on_ticket_after_load_s']} s after)")  # fmt: skip
    for label in ("accepted", "ticket", "dashboard"):
        s = lat[f"report_to_{label}"]
        print(f"  report → {label:<9} ms p50 {s.get('p50')}  p99 {s.get('p99')}  "
              f"max {s.get('max')}")  # fmt: skip
    print(f"  on the dashboard {reports['on_dashboard']}/{reports['accepted']}; {r['counts']}")
    costs = ", ".join(f"{name} {v['cpu_pct_mean']} % / {v['rss_mb_max']} MB"
                      for name, v in r["processes"].items())  # fmt: skip
    print(f"  CPU (mean, % of a core) / RSS (max): {costs}; machine busy "
          f"{r['machine_busy_pct_mean']} % of all cores")  # fmt: skip
    print(
        f"  ceiling: {ceil['records_per_s']} records/s produce → consume ({ceil['records']} "
        f"records of {ceil['record_bytes_mean']} B mean, {ceil['partitions']} partitions); "
        f"the hub {ceil['hub_records_per_s']} records/s = {ceil['hub_to_ceiling']:.2%} of it"
    )
    print(f"written to {out}")


def sigterm_as_sigint(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    bench_run = Run.start("e2e", args.out)
    signal.signal(signal.SIGTERM, sigterm_as_sigint)  # stops the hub and cleans up, as Ctrl-C
    try:
        results = asyncio.run(run(args, bench_run.run_id, bench_run.log_dir))
    except BenchError as exc:
        print(f"bench: {exc} (logs: {bench_run.log_dir})", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted; the hub was stopped and the run cleaned up", file=sys.stderr)
        return 130
    facts = {**machine(), "versions": versions(results.pop("postgresql"))}
    report = bench_run.write(args, results, facts=facts)
    out = bench_run.out
    print_summary(report, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
