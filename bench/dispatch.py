"""Dispatch and SLA benchmark: tickets opened from incidents, and SLA timers over a full table.

Runs on real PostgreSQL (and, for the worker phase, real Kafka and a real ``hub worker``), in a
database and under a topic prefix of its own, both removed at the end, and measures:

* tickets opened per second from new one-report incidents, in process: the dispatch service's
  ``store_incident_changes`` in batches of 500 (the worker's batch size), with the time split
  between routing + deadline planning (``plan_ticket``, timed where the service calls it, and
  alone over the same incidents), the database calls (each statement), and the rest;
* the same through the worker (``--through-worker``, on by default): the records go on
  ``incidents`` first, then a ``hub worker`` starts; tickets/s from the first to the last stored;
* SLA timers with ``--open-tickets`` (1,000,000) open tickets in the table, deadlines from the
  pack's own policies and routing: per cycle, with about ``--due-per-cycle`` tickets due, the
  real ``run_cycle`` (detect, fire, write history and outbox), the detection query alone (rolled
  back), the SLA board's ``due_soon`` counts; and EXPLAIN (ANALYZE, BUFFERS) of the detection.

Needs the Kafka and PostgreSQL that ``hub infra up`` starts (or the ones ``HUB_*`` names).
Run it as ``python -m bench.dispatch --help``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
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
import uuid
from collections.abc import Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from aiokafka import AIOKafkaProducer

from bench.common import RESULTS_DIR, BenchError, percentile, start_hub, stop
from dispatch.rulebook import Rulebook, load_rulebook, policy_label
from dispatch.sla.escalation import Q as SLA_QUERIES
from dispatch.sla.escalation import due_soon, run_cycle
from dispatch.tickets import service as ticket_service
from dispatch.tickets.service import plan_ticket, store_incident_changes
from geo.h3cells import cell_of
from hub.bus import delete_topics_with_prefix
from hub.db import create_pool
from hub.pack import Pack, load_pack
from hub.seed import seed
from hub.settings import LOCAL_DATABASE_URL, Settings
from schemas.codec import dumps
from schemas.event import Crs, EventV1, Location, Priority, Source, event_id_for
from schemas.incident import IncidentChangeV1
from schemas.topics import INCIDENTS

BATCH_SIZE = 500  # the worker's default batch (Settings.worker_batch_size)
# Shares of new incidents by priority, in percent: most reports are routine. Open tickets
# follow them weighted by how long each stays open (see ticket_templates).
PRIORITY_SHARES = {"urgent": 3, "high": 17, "normal": 65, "low": 15}
# Open tickets are aged up to their resolve limit × (1 + this): about 5% are overdue.
OVERDUE = 0.05
STORE_TIMEOUT_S = 180.0
POLL_S = 0.2
PRODUCE_CHUNK = 1000
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
FILL_TABLES = ("events", "incidents", "incident_members", "tickets", "sla_timers")
TICKET_TABLES = (
    "ticket_history",
    "outbox",
    "webhook_deliveries",
    "sla_timers",
    "tickets",
    "incident_members",
    "incidents",
    "event_revisions",
    "events",
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.dispatch",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--tickets", type=int, default=20_000, help="new incidents to open")
    parser.add_argument(
        "--through-worker",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also open them through a real `hub worker` (default: yes)",
    )
    parser.add_argument(
        "--open-tickets",
        type=int,
        default=1_000_000,
        help="open tickets in the table for the SLA phase (0: skip it)",
    )
    parser.add_argument("--due-per-cycle", type=int, default=1000, help="tickets due per cycle")
    parser.add_argument("--cycles", type=int, default=20, help="SLA timer cycles to measure")
    parser.add_argument("--seed", type=int, default=1, help="random seed for the test data")
    parser.add_argument(
        "--keep-db", action="store_true", help="keep this run's database and topics, to look at"
    )
    parser.add_argument("--out", type=Path, help="result JSON (default bench/results/dispatch-…)")
    args = parser.parse_args(argv)
    if args.tickets <= 0:
        parser.error("--tickets must be positive")
    if args.open_tickets < 0:
        parser.error("--open-tickets must not be negative")
    if args.due_per_cycle <= 0 or args.cycles <= 0:
        parser.error("--due-per-cycle and --cycles must be positive")
    if args.open_tickets and args.due_per_cycle * (args.cycles + 1) > args.open_tickets:
        parser.error("--open-tickets must exceed --due-per-cycle × (--cycles + 1)")
    return args


# --- measuring helpers --------------------------------------------------------------------


def spread_ms(seconds: Sequence[float]) -> dict[str, float]:
    values = sorted(seconds)
    return {
        name: round(percentile(values, pct) * 1000, 2)
        for name, pct in (("min", 0), ("p50", 50), ("p95", 95), ("max", 100))
    }


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds a live process has used so far (0 if it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) ": state is fields[0]
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


class CpuMeter:
    """CPU seconds used by this process and by the PostgreSQL backend serving ``backend_pid``
    (readable when PostgreSQL runs on this machine) between start() and stop()."""

    def __init__(self, backend_pid: int) -> None:
        self._backend_pid = backend_pid
        self._started = (0.0, 0.0)
        self.used: dict[str, float] = {}

    def start(self) -> None:
        self._started = (time.process_time(), process_cpu_s(self._backend_pid))

    def stop(self) -> dict[str, float]:
        client, backend = time.process_time(), process_cpu_s(self._backend_pid)
        self.used = {"client_cpu_s": round(client - self._started[0], 3),
                     "postgres_backend_cpu_s": round(backend - self._started[1], 3)}  # fmt: skip
        return self.used


class TimedConnection:
    """An asyncpg connection that logs the wall time of each query and of BEGIN and COMMIT:
    argument encoding, the round trip, PostgreSQL's work and decoding the answer. Queries are
    logged by their name in ``queries`` (a loaded .sql file), else by the method."""

    def __init__(self, conn: Any, queries: dict[str, str]) -> None:
        self._conn = conn
        self._names = {text: name for name, text in queries.items()}
        self.log: list[tuple[str, float]] = []

    @property
    def seconds(self) -> float:
        return sum(seconds for _, seconds in self.log)

    def by_name(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for name, seconds in self.log:
            totals[name] = totals.get(name, 0.0) + seconds
        return totals

    async def _timed(self, method: str, query: str, *args: Any) -> Any:
        started = time.perf_counter()
        try:
            return await getattr(self._conn, method)(query, *args)
        finally:
            self.log.append((self._names.get(query, method), time.perf_counter() - started))

    async def execute(self, *args: Any) -> Any:
        return await self._timed("execute", *args)

    async def fetch(self, *args: Any) -> Any:
        return await self._timed("fetch", *args)

    async def fetchrow(self, *args: Any) -> Any:
        return await self._timed("fetchrow", *args)

    async def fetchval(self, *args: Any) -> Any:
        return await self._timed("fetchval", *args)

    @asynccontextmanager
    async def transaction(self) -> Any:
        transaction = self._conn.transaction()
        started = time.perf_counter()
        await transaction.start()
        self.log.append(("begin", time.perf_counter() - started))
        try:
            yield transaction
        except BaseException:
            await transaction.rollback()
            raise
        started = time.perf_counter()
        await transaction.commit()
        self.log.append(("commit", time.perf_counter() - started))


# --- new incidents ------------------------------------------------------------------------


def district_points(pack_dir: Path) -> list[tuple[str, float, float]]:
    """(code, lon, lat) of each district, at its label point (inside it)."""
    collection = json.loads((pack_dir / "districts.geojson").read_text(encoding="utf-8"))
    return [
        (f["properties"]["code"], *f["properties"]["label_point"]) for f in collection["features"]
    ]


def new_incidents(
    count: int, pack: Pack, districts: list[tuple[str, float, float]], run_id: str, seed: int
) -> list[IncidentChangeV1]:
    """``count`` new one-report incidents as correlation puts them on ``incidents``: every
    category of the pack, every district, priorities in PRIORITY_SHARES."""
    rng = random.Random(seed)  # noqa: S311 - test data, not secrets
    cells = {code: cell_of(lon, lat) for code, lon, lat in districts}
    priorities = list(PRIORITY_SHARES)
    weights = list(PRIORITY_SHARES.values())
    at = datetime.now(UTC)
    changes = []
    for index in range(count):
        category = pack.categories[index % len(pack.categories)]
        district, lon, lat = rng.choice(districts)
        priority = Priority(rng.choices(priorities, weights)[0])
        external_id = f"BENCHDISP-{run_id}-{index}"
        text = f"{category.name}：{category.description}（基准测试 {index}）"
        event = EventV1(
            event_id=event_id_for(Source.HOTLINE_12345, external_id),
            source=Source.HOTLINE_12345,
            external_id=external_id,
            occurred_at=at,
            received_at=at,
            location=Location(
                lon=lon, lat=lat, source_crs=Crs.WGS84, source_lon=lon, source_lat=lat
            ),
            text=text,
            priority=priority,
            category=category.code,
            category_confidence=0.9,
            source_category="complaint",
            payload_hash=secrets.token_hex(16),
            category_method="model",
            h3_cell=cells[district],
            district_code=district,
            raw={"order_no": external_id, "content": text, "longitude": lon, "latitude": lat},
        )
        changes.append(
            IncidentChangeV1(
                incident_id=uuid.uuid4(),
                change="created",
                category=category.code,
                priority=priority,
                reports=1,
                sources=[Source.HOTLINE_12345.value],
                lon=lon,
                lat=lat,
                district_code=district,
                opened_at=at,
                last_seen=at,
                event=event,
            )
        )
    return changes


def batches(changes: Sequence[IncidentChangeV1]) -> list[Sequence[IncidentChangeV1]]:
    return [changes[first : first + BATCH_SIZE] for first in range(0, len(changes), BATCH_SIZE)]


def measure_planning(book: Rulebook, changes: Sequence[IncidentChangeV1]) -> dict[str, Any]:
    """plan_ticket alone (pure Python), and its parts: routing, policy, deadlines."""
    now = datetime.now(UTC)
    started = time.perf_counter()
    for change in changes:
        plan_ticket(book, change, now)
    plan_s = time.perf_counter() - started
    parts = {}
    started = time.perf_counter()
    for c in changes:
        book.route(
            category=c.category, district_code=c.district_code, priority=c.priority.value, at=now
        )
    parts["route_s"] = time.perf_counter() - started
    started = time.perf_counter()
    policies = [book.policy(c.category, c.priority.value) for c in changes]
    parts["policy_s"] = time.perf_counter() - started
    started = time.perf_counter()
    for policy in policies:
        book.deadlines(policy, now)
    parts["deadlines_s"] = time.perf_counter() - started
    # The dict of deadlines and next_timer_at (shared per policy within a batch).
    parts["rest_s"] = max(plan_s - sum(parts.values()), 0.0)
    return {
        "tickets": len(changes),
        "plan_s": round(plan_s, 3),
        "plans_per_s": round(len(changes) / plan_s),
        "us_per_ticket": round(plan_s / len(changes) * 1e6, 1),
        "parts_us_per_ticket": {
            name.removesuffix("_s"): round(s / len(changes) * 1e6, 1) for name, s in parts.items()
        },
    }


async def table_count(conn: Any, table: str) -> int:
    count: int = await conn.fetchval(f"SELECT count(*) FROM {table}")  # noqa: S608 - fixed names
    return count


async def truncate_tickets(conn: Any) -> None:
    await conn.execute(f"TRUNCATE {', '.join(TICKET_TABLES)} RESTART IDENTITY")


class PlanTimer:
    """Times plan_ticket where store_incident_changes calls it: the module's name is swapped
    for a timing wrapper while the benchmark stores, and put back after."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.calls = 0

    def __enter__(self) -> PlanTimer:
        def timed_plan(
            book: Rulebook, change: IncidentChangeV1, now: datetime, **options: Any
        ) -> Any:
            started = time.perf_counter()
            try:
                return plan_ticket(book, change, now, **options)
            finally:
                self.seconds += time.perf_counter() - started
                self.calls += 1

        ticket_service.plan_ticket = timed_plan
        return self

    def __exit__(self, *exc: object) -> None:
        ticket_service.plan_ticket = plan_ticket


async def measure_in_process(
    conn: Any, book: Rulebook, changes: Sequence[IncidentChangeV1]
) -> dict[str, Any]:
    """store_incident_changes in batches of BATCH_SIZE on one connection, as the worker does."""
    timed = TimedConnection(conn, ticket_service.Q)
    meter = CpuMeter(await conn.fetchval("SELECT pg_backend_pid()"))
    batch_s: list[float] = []
    opened = 0
    with PlanTimer() as planning:
        meter.start()
        for batch in batches(changes):
            started = time.perf_counter()
            tickets = await store_incident_changes(
                timed, changes=batch, book=book, now=datetime.now(UTC)
            )
            batch_s.append(time.perf_counter() - started)
            opened += len(tickets)
        cpu = meter.stop()
    total_s = sum(batch_s)
    stored = await table_count(conn, "tickets")
    per_ticket = 1e6 / len(changes)
    return {
        "tickets": len(changes),
        "batch_size": BATCH_SIZE,
        "opened": opened,
        "tickets_in_table": stored,
        "check": "OK" if stored == opened == len(changes) else "MISMATCH",
        "elapsed_s": round(total_s, 3),
        "tickets_per_s": round(len(changes) / total_s),
        "batch_ms": spread_ms(batch_s),
        "planning_s": round(planning.seconds, 3),
        "database_s": round(timed.seconds, 3),
        "database_us_per_ticket": {
            name: round(seconds * per_ticket, 1) for name, seconds in timed.by_name().items()
        },
        **cpu,
    }


def split_time(in_process: dict[str, Any]) -> dict[str, Any]:
    """Where the in-process time went: routing + deadline planning, the database calls (with
    asyncpg's encoding), and the rest of the Python (building the arrays, encoding records)."""
    total = in_process["elapsed_s"]
    plan, database = in_process["planning_s"], in_process["database_s"]
    rest = max(total - plan - database, 0.0)
    return {
        name: {"s": round(seconds, 3), "share": round(seconds / total, 3),
               "us_per_ticket": round(seconds / in_process["tickets"] * 1e6, 1)}
        for name, seconds in (("planning", plan), ("database", database), ("other_python", rest))
    }  # fmt: skip


# --- through the worker -------------------------------------------------------------------


async def produce_incidents(settings: Settings, changes: Sequence[IncidentChangeV1]) -> float:
    """Every change on ``incidents`` (acks=all), keyed by incident id; returns seconds taken."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap, acks="all")
    await producer.start()
    try:
        started = time.perf_counter()
        pending: list[asyncio.Future[Any]] = []
        for change in changes:
            pending.append(
                await producer.send(
                    settings.topic(INCIDENTS), dumps(change), key=change.incident_id.bytes
                )
            )
            if len(pending) >= PRODUCE_CHUNK:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
        return time.perf_counter() - started
    finally:
        await producer.stop()


def start_worker(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    log_path.unlink(missing_ok=True)
    return start_hub(["worker", "--loglevel", "warn"], log_path, env)


stop_worker = stop


async def wait_for_tickets(conn: Any, target: int, worker: subprocess.Popen[bytes]) -> float:
    """Poll until ``target`` tickets are stored; returns the wall clock time it was seen."""
    deadline = time.monotonic() + STORE_TIMEOUT_S
    while True:
        count = await table_count(conn, "tickets")
        if count >= target:
            return time.time()
        if worker.poll() is not None:
            raise BenchError(f"the worker exited ({worker.returncode}) with {count}/{target}")
        if time.monotonic() > deadline:
            raise BenchError(f"only {count}/{target} tickets after {STORE_TIMEOUT_S:.0f} s")
        await asyncio.sleep(POLL_S)


async def measure_worker(
    settings: Settings,
    conn: Any,
    changes: Sequence[IncidentChangeV1],
    env: dict[str, str],
    log: Path,
) -> dict[str, Any]:
    produce_s = await produce_incidents(settings, changes)
    worker_started = time.time()
    worker = start_worker(env, log)
    try:
        await wait_for_tickets(conn, 1, worker)
        done = await wait_for_tickets(conn, len(changes), worker)
        worker_cpu_s = process_cpu_s(worker.pid)
    finally:
        exit_code = stop_worker(worker)
    times = sorted(
        row["t"].timestamp() for row in await conn.fetch("SELECT created_at AS t FROM tickets")
    )
    # created_at is its transaction's start: the first batch's span is not seen, so its tickets
    # are left out of the rate.
    first, last = times[0], times[-1]
    in_first = sum(1 for t in times if t == first)
    span = last - first
    dead = await table_count(conn, "dead_letters")
    return {
        "tickets": len(changes),
        "produce_s": round(produce_s, 3),
        "startup_s": round(first - worker_started, 3),
        "drain_s": round(span, 3),
        "tickets_per_s": round((len(times) - in_first) / span) if span > 0 else None,
        "total_s": round(done - worker_started, 3),
        "worker_cpu_s": round(worker_cpu_s, 3),
        "tickets_in_table": len(times),
        "dead_letters": dead,
        "check": "OK" if len(times) == len(changes) and dead == 0 else "MISMATCH",
        "worker_exit": exit_code,
    }


# --- one million open tickets -------------------------------------------------------------


def ticket_templates(
    book: Rulebook, pack: Pack, districts: list[tuple[str, float, float]], now: datetime
) -> tuple[list[tuple[Any, ...]], list[float]]:
    """One row per category × district × priority: the routed department and the policy's
    deadlines as offsets from the start, as the real rulebook gives them at ``now``; and each
    row's share of the open tickets. By Little's law that is its share of new incidents
    (PRIORITY_SHARES; categories and districts alike) times how long it stays open (its resolve
    limit): a 1-hour ticket is rarely still open, a 15-day one often."""
    rows: list[tuple[Any, ...]] = []
    weights: list[float] = []
    for category in pack.categories:
        for priority, share in PRIORITY_SHARES.items():
            policy = book.policy(category.code, priority)
            due = book.deadlines(policy, now)
            offsets = [
                (moment - now).total_seconds()
                for moment in (due.accept_warn_at, due.accept_due_at, due.resolve_warn_at,
                               due.resolve_due_at, due.city_escalation_at)
            ]  # fmt: skip
            for district, lon, lat in districts:
                decision = book.route(
                    category=category.code, district_code=district, priority=priority, at=now
                )
                rows.append((len(rows) + 1, category.code, district, lon, lat, priority,
                             decision.department_code, decision.reason, decision.rule_position,
                             policy_label(policy), policy.calendar, *offsets))  # fmt: skip
                weights.append(share * offsets[3])
    return rows, weights


TEMPLATES_TABLE = """
CREATE TEMP TABLE sla_templates (
    id integer PRIMARY KEY, category text, district_code text, lon float8, lat float8,
    priority text, department_code text, routing_reason text, routing_rule integer,
    sla_policy text, sla_calendar text,
    aw_s float8, ad_s float8, rw_s float8, rd_s float8, ce_s float8)
"""

# Each open ticket: a template, an age up to its resolve limit × (1 + overdue), and when it was
# (or will be) accepted: 0.1–1.1 × its accept limit after it opened.
BASE_TABLE = """
CREATE TEMP TABLE sla_base (g integer PRIMARY KEY, template integer, created_at timestamptz,
                            accepted_at timestamptz)
"""
FILL_BASE = """
INSERT INTO sla_base
SELECT d.g, d.template, d.created_at,
       d.created_at + make_interval(secs => (0.1 + random()) * t.ad_s)
FROM (SELECT u.g, u.template,
             $2::timestamptz - make_interval(secs => random() * t.rd_s * (1 + $3::float8))
                 AS created_at
      FROM unnest($1::int[]) WITH ORDINALITY AS u(template, g)
      JOIN sla_templates t ON t.id = u.template) d
JOIN sla_templates t ON t.id = d.template
"""
# Deterministic ids per row number: the database is this run's own.
FILL_EVENTS = """
INSERT INTO events (event_id, source, external_id, schema_version, occurred_at, received_at,
                    lon, lat, text, priority, category, record, payload_hash, category_method,
                    category_confidence, district_code, stored_at, updated_at)
SELECT md5('event-' || b.g)::uuid, 'hotline-12345', 'BENCHSLA-' || b.g, 1, b.created_at,
       b.created_at, t.lon, t.lat, t.category || ' 基准测试工单 ' || b.g, t.priority, t.category,
       jsonb_build_object('raw', jsonb_build_object('order_no', 'BENCHSLA-' || b.g)),
       md5('hash-' || b.g), 'model', 0.9, t.district_code, b.created_at, b.created_at
FROM sla_base b JOIN sla_templates t ON t.id = b.template
"""
FILL_INCIDENTS = """
INSERT INTO incidents (incident_id, category, priority, reports, sources, lon, lat,
                       district_code, opened_at, last_seen, updated_at)
SELECT md5('incident-' || b.g)::uuid, t.category, t.priority, 1, ARRAY['hotline-12345'], t.lon,
       t.lat, t.district_code, b.created_at, b.created_at, b.created_at
FROM sla_base b JOIN sla_templates t ON t.id = b.template
"""
FILL_MEMBERS = """
INSERT INTO incident_members (event_id, incident_id, attached_at)
SELECT md5('event-' || b.g)::uuid, md5('incident-' || b.g)::uuid, b.created_at FROM sla_base b
"""
# Marks due before $1 (the real now) have fired, as a timer running every second leaves them:
# accept marks only while the ticket waited for acceptance; next_timer_at is the earliest
# unfired mark of the clocks that still run (none once the city escalation fired).
FILL_TICKETS = """
INSERT INTO tickets (ticket_id, event_id, incident_id, department_code, status, priority,
                     category, title, routing_reason, routing_version, routing_rule, sla_policy,
                     sla_calendar, accept_warn_at, accept_due_at, resolve_warn_at,
                     resolve_due_at, city_escalation_at, accepted_at, sla_marks, sla_state,
                     escalation_level, next_timer_at, created_at, updated_at)
SELECT md5('ticket-' || m.g)::uuid, md5('event-' || m.g)::uuid, md5('incident-' || m.g)::uuid,
       m.department_code, m.status, m.priority, m.category, m.category || ' 基准测试工单 ' || m.g,
       m.routing_reason, $2, m.routing_rule, m.sla_policy, m.sla_calendar, m.aw, m.ad, m.rw,
       m.rd, m.ce, CASE WHEN m.running THEN m.accepted_at END,
       array_remove(ARRAY[CASE WHEN m.aw <= m.accept_cut THEN 'accept_warning' END,
                          CASE WHEN m.ad <= m.accept_cut THEN 'accept_breach' END,
                          CASE WHEN m.rw <= $1 THEN 'resolve_warning' END,
                          CASE WHEN m.rd <= $1 THEN 'resolve_breach' END,
                          CASE WHEN m.ce <= $1 THEN 'city_escalation' END], NULL),
       CASE WHEN m.ad <= m.accept_cut OR m.rd <= $1 THEN 'breached'
            WHEN m.aw <= m.accept_cut OR m.rw <= $1 THEN 'warning' ELSE 'on_time' END,
       CASE WHEN m.ce <= $1 THEN 2 WHEN m.ad <= m.accept_cut OR m.rd <= $1 THEN 1 ELSE 0 END,
       LEAST(CASE WHEN NOT m.running AND m.aw > $1 THEN m.aw END,
             CASE WHEN NOT m.running AND m.ad > $1 THEN m.ad END,
             CASE WHEN m.rw > $1 THEN m.rw END, CASE WHEN m.rd > $1 THEN m.rd END,
             CASE WHEN m.ce > $1 THEN m.ce END),
       m.created_at, LEAST(m.accepted_at, $1)
FROM (SELECT b.g, b.created_at, b.accepted_at, t.*,
             b.accepted_at <= $1 AS running,
             LEAST(b.accepted_at, $1) AS accept_cut,
             CASE WHEN b.accepted_at > $1 THEN 'dispatched'
                  WHEN b.g % 2 = 0 THEN 'accepted' ELSE 'in_progress' END AS status,
             b.created_at + make_interval(secs => t.aw_s) AS aw,
             b.created_at + make_interval(secs => t.ad_s) AS ad,
             b.created_at + make_interval(secs => t.rw_s) AS rw,
             b.created_at + make_interval(secs => t.rd_s) AS rd,
             b.created_at + make_interval(secs => t.ce_s) AS ce
      FROM sla_base b JOIN sla_templates t ON t.id = b.template) m
"""
TEMPLATE_COLUMNS = ["id", "category", "district_code", "lon", "lat", "priority",
                    "department_code", "routing_reason", "routing_rule", "sla_policy",
                    "sla_calendar", "aw_s", "ad_s", "rw_s", "rd_s", "ce_s"]  # fmt: skip
# The K-th next mark after a moment: where the next cycle's "now" goes (through the index).
KTH_NEXT_TIMER = """
SELECT due_at FROM sla_timers
WHERE due_at > $1
ORDER BY due_at OFFSET $2 - 1 LIMIT 1
"""
OPEN_TICKET_STATS = """
SELECT count(*) AS open_tickets,
       count(*) FILTER (WHERE next_timer_at IS NOT NULL) AS with_timer,
       count(*) FILTER (WHERE status = 'dispatched') AS dispatched,
       count(*) FILTER (WHERE sla_state = 'warning') AS warning,
       count(*) FILTER (WHERE sla_state = 'breached') AS breached,
       count(*) FILTER (WHERE resolve_due_at > $1 AND resolve_due_at <= $1 + interval '10 days')
           AS resolve_due_next_10_days
FROM tickets
"""


async def fill_open_tickets(
    conn: Any,
    book: Rulebook,
    pack: Pack,
    districts: list[tuple[str, float, float]],
    count: int,
    now: datetime,
    seed: int,
) -> dict[str, Any]:
    """``count`` open tickets with their events, incidents and memberships: one transaction,
    one INSERT … SELECT per table from ``count`` drawn rows; then VACUUM ANALYZE, as autovacuum
    would leave the table."""
    templates, weights = ticket_templates(book, pack, districts, now)
    rng = random.Random(seed)  # noqa: S311 - test data, not secrets
    picks = rng.choices(range(1, len(templates) + 1), weights, k=count)
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    async with conn.transaction():
        await conn.execute(TEMPLATES_TABLE)
        await conn.copy_records_to_table(
            "sla_templates", records=templates, columns=TEMPLATE_COLUMNS
        )
        await conn.execute("ANALYZE sla_templates")
        await conn.execute(BASE_TABLE)
        await conn.fetchval("SELECT setseed($1)", (seed % 1000) / 1000)
        await conn.execute(FILL_BASE, picks, now, OVERDUE)
        await conn.execute("ANALYZE sla_base")
        seconds["base"] = time.perf_counter() - started
        for table, query, args in (
            ("events", FILL_EVENTS, ()),
            ("incidents", FILL_INCIDENTS, ()),
            ("incident_members", FILL_MEMBERS, ()),
            ("tickets", FILL_TICKETS, (now, book.routing_version)),
        ):
            step = time.perf_counter()
            await conn.execute(query, *args)
            seconds[table] = time.perf_counter() - step
            print(f"  {table}: {seconds[table]:.1f} s", file=sys.stderr)
        await conn.execute("DROP TABLE sla_base, sla_templates")
    step = time.perf_counter()
    for table in FILL_TABLES:
        await conn.execute(f"VACUUM (ANALYZE) {table}")
    seconds["vacuum_analyze"] = time.perf_counter() - step
    stats = dict(await conn.fetchrow(OPEN_TICKET_STATS, now))
    sizes = await conn.fetchrow(
        "SELECT pg_total_relation_size('tickets') AS tickets_bytes, "
        "pg_relation_size('sla_timers_due') AS next_timer_index_bytes"
    )
    return {
        "open_tickets": count,
        "fill_s": round(time.perf_counter() - started, 1),
        "steps_s": {name: round(s, 1) for name, s in seconds.items()},
        "real_now": now.isoformat(),
        "tickets": stats,
        **dict(sizes),
    }


async def kth_next_timer(conn: Any, after: datetime, k: int) -> datetime:
    at: datetime | None = await conn.fetchval(KTH_NEXT_TIMER, after, k)
    if at is None:
        raise BenchError(f"fewer than {k} timers left after {after}: use more --open-tickets")
    return at


async def detect_alone(conn: Any, now: datetime, limit: int) -> tuple[float, int]:
    """The detection query of run_cycle (it locks), in a transaction that is rolled back."""
    transaction = conn.transaction()
    await transaction.start()
    try:
        started = time.perf_counter()
        rows = await conn.fetch(SLA_QUERIES["lock_due_tickets"], now, limit)
        return time.perf_counter() - started, len(rows)
    finally:
        await transaction.rollback()


def sql_literal(value: datetime | float) -> str:
    if isinstance(value, datetime):
        return f"'{value.isoformat()}'::timestamptz"
    return repr(value)


async def explain(conn: Any, query: str, *args: Any, generic: bool = False) -> list[str]:
    """EXPLAIN (ANALYZE, BUFFERS) in a rolled-back transaction. ``generic``: the plan without
    the parameters' values, which a prepared statement (asyncpg prepares every query) may
    switch to after five runs."""
    transaction = conn.transaction()
    await transaction.start()
    try:
        if not generic:
            rows = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {query}", *args)
            return [row[0] for row in rows]
        await conn.execute(f"PREPARE bench_generic AS {query}")
        try:
            await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
            values = ", ".join(sql_literal(arg) for arg in args)  # EXECUTE takes no $n
            rows = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) EXECUTE bench_generic({values})")
            return [row[0] for row in rows]
        finally:
            await conn.execute("DEALLOCATE bench_generic")
    finally:
        await transaction.rollback()


def cycle_parts(timed: TimedConnection, cycle_s: float) -> dict[str, float]:
    """run_cycle's statements (BEGIN, lock_due_tickets, write_sla_columns, add_sla_history,
    COMMIT) and the Python between them (advance: the marks and notes), in ms."""
    parts = timed.by_name()
    parts["python"] = max(cycle_s - timed.seconds, 0.0)
    return {name: round(seconds * 1000, 2) for name, seconds in parts.items()}


async def measure_sla(
    conn: Any, dsn: str, book: Rulebook, pack: Pack, districts: list[tuple[str, float, float]],
    args: argparse.Namespace,
) -> dict[str, Any]:  # fmt: skip
    real_now = datetime.now(UTC)
    # Its own connection: the pool's 30 s command timeout is for serving, not for bulk loads.
    filler = await asyncpg.connect(dsn)
    try:
        fill = await fill_open_tickets(
            filler, book, pack, districts, args.open_tickets, real_now, args.seed
        )
    finally:
        await filler.close()
    due, limit = args.due_per_cycle, max(1000, args.due_per_cycle)
    history_before = await table_count(conn, "ticket_history")
    outbox_before = await table_count(conn, "outbox")
    now = await kth_next_timer(conn, real_now, due)
    plans = {
        "detection": await explain(conn, SLA_QUERIES["lock_due_tickets"], now, limit),
        "detection_generic": await explain(
            conn, SLA_QUERIES["lock_due_tickets"], now, limit, generic=True
        ),
        "due_soon": await explain(conn, SLA_QUERIES["sla_board_counts"], now, 3600.0),
        "due_soon_generic": await explain(
            conn, SLA_QUERIES["sla_board_counts"], now, 3600.0, generic=True
        ),
    }
    meter = CpuMeter(await conn.fetchval("SELECT pg_backend_pid()"))
    cycles: list[dict[str, Any]] = []
    for _ in range(args.cycles):
        detect_s, detected = await detect_alone(conn, now, limit)
        timed = TimedConnection(conn, SLA_QUERIES)
        meter.start()
        started = time.perf_counter()
        handled = await run_cycle(timed, book, now=now, limit=limit)
        cycle_s = time.perf_counter() - started
        cpu = meter.stop()
        inside = cycle_parts(timed, cycle_s)
        started = time.perf_counter()
        board = await due_soon(conn, now=now, within_s=3600)
        board_s = time.perf_counter() - started
        cycles.append({"now": now.isoformat(), "due": detected, "handled": handled,
                       "cycle_s": cycle_s, "detect_s": detect_s, "due_soon_s": board_s,
                       **cpu, "inside_ms": inside, "board": board})  # fmt: skip
        now = await kth_next_timer(conn, now, due)
    # The cycles' updates leave pages that are no longer all-visible: the board's index-only
    # scan must visit the heap for them until VACUUM runs again.
    plans["due_soon_after_cycles"] = await explain(
        conn, SLA_QUERIES["sla_board_counts"], now, 3600.0
    )
    history = await table_count(conn, "ticket_history") - history_before
    outbox = await table_count(conn, "outbox") - outbox_before
    simulated = datetime.fromisoformat(cycles[-1]["now"]) - real_now
    return {
        "fill": fill,
        "due_per_cycle": due,
        "limit": limit,
        "cycles": len(cycles),
        "simulated_time_h": round(simulated / timedelta(hours=1), 2),
        "run_cycle_ms": spread_ms([c["cycle_s"] for c in cycles]),
        "detection_ms": spread_ms([c["detect_s"] for c in cycles]),
        "due_soon_ms": spread_ms([c["due_soon_s"] for c in cycles]),
        "run_cycle_parts_p50_ms": {
            part: round(percentile(sorted(c["inside_ms"][part] for c in cycles), 50), 2)
            for part in cycles[0]["inside_ms"]
        },
        "tickets_handled": sum(c["handled"] for c in cycles),
        "history_rows_written": history,
        "outbox_rows_written": outbox,
        "run_cycle_cpu_s": {
            "client": round(sum(c["client_cpu_s"] for c in cycles), 3),
            "postgres_backend": round(sum(c["postgres_backend_cpu_s"] for c in cycles), 3),
            "wall": round(sum(c["cycle_s"] for c in cycles), 3),
        },
        "detection_uses_index": any("sla_timers_due" in line for line in plans["detection"])
        and not any("Seq Scan on tickets" in line for line in plans["detection"]),
        "explain": plans,
        "per_cycle": [
            {**c, **{k: round(c[k] * 1000, 2) for k in ("cycle_s", "detect_s", "due_soon_s")}}
            for c in cycles
        ],
    }


# --- setting up and cleaning up -----------------------------------------------------------


async def admin_execute(base_dsn: str, statement: str) -> None:
    admin = await asyncpg.connect(base_dsn)
    try:
        await admin.execute(statement)
    finally:
        await admin.close()


async def clean_up(settings: Settings, base_dsn: str, database: str, keep: bool) -> dict[str, Any]:
    cleaned: dict[str, Any] = {"database": database, "prefix": settings.topic_prefix}
    if keep:
        cleaned["kept"] = True
        return cleaned
    try:
        await admin_execute(base_dsn, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        cleaned["database_dropped"] = True
    except Exception as exc:
        print(f"bench: could not drop database {database}: {exc!r}", file=sys.stderr)
        cleaned["database_dropped"] = repr(exc)
    assert settings.topic_prefix.startswith("benchdisp-"), settings.topic_prefix
    try:
        cleaned["topics_deleted"] = await delete_topics_with_prefix(
            settings.bootstrap, settings.topic_prefix
        )
    except Exception as exc:
        print(f"bench: could not delete {settings.topic_prefix}* topics: {exc!r}", file=sys.stderr)
        cleaned["topics_deleted"] = repr(exc)
    return cleaned


def total_memory_bytes() -> int | None:
    with open("/proc/meminfo", encoding="ascii") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return None


async def machine_facts(conn: Any, settings: Settings) -> dict[str, Any]:
    """Enough to tell whether two result files are comparable."""
    server = await conn.fetchrow(
        "SELECT current_setting('server_version') AS version, "
        "current_setting('shared_buffers') AS shared_buffers, "
        "current_setting('synchronous_commit') AS synchronous_commit, "
        "inet_server_addr()::text AS address"
    )
    return {
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "memory_total_bytes": total_memory_bytes(),
        "python": platform.python_version(),
        "postgresql": dict(server),
        "kafka_bootstrap": settings.bootstrap,
    }


async def run(args: argparse.Namespace, run_id: str, log: Path) -> dict[str, Any]:
    from hub.cli import migrate_all

    base_dsn = os.environ.get("HUB_DATABASE_URL") or LOCAL_DATABASE_URL
    database = f"hub_bench_{run_id}"
    # Set before Settings() and inherited by the worker: this run's topics and data are its own.
    os.environ["HUB_TOPIC_PREFIX"] = f"benchdisp-{run_id}."
    os.environ["HUB_DATABASE_URL"] = urlunsplit(urlsplit(base_dsn)._replace(path=f"/{database}"))
    settings = Settings()
    try:
        await admin_execute(base_dsn, f'CREATE DATABASE "{database}"')
    except Exception as exc:
        raise BenchError(f"cannot create the database ({exc!r}); has `hub infra up` run?") from exc
    result: dict[str, Any] = {}
    machine: dict[str, Any] = {}
    try:
        await migrate_all(settings)
        pack = load_pack(settings.pack_dir)
        districts = district_points(settings.pack_dir)
        pool = await create_pool(settings.dsn, min_size=1, max_size=1)
        try:
            async with pool.acquire() as conn:
                await seed(conn, pack)
                book = await load_rulebook(conn, settings.pack_dir)
                machine = await machine_facts(conn, settings)
                changes = new_incidents(args.tickets, pack, districts, run_id, args.seed)
                print(f"opening {args.tickets} tickets in process …", file=sys.stderr)
                result["planning"] = measure_planning(book, changes)
                result["in_process"] = await measure_in_process(conn, book, changes)
                result["split"] = split_time(result["in_process"])
                await truncate_tickets(conn)
                if args.through_worker:
                    print("… and through a hub worker …", file=sys.stderr)
                    with tempfile.TemporaryDirectory(prefix="benchdisp-") as state_dir:
                        env = {**os.environ, "HUB_STATE_DIR": state_dir}
                        result["worker"] = await measure_worker(settings, conn, changes, env, log)
                    await truncate_tickets(conn)
                # The incidents' objects would make the cycles' full garbage collections slow.
                del changes
                gc.collect()
                if args.open_tickets:
                    print(f"filling {args.open_tickets} open tickets …", file=sys.stderr)
                    result["sla"] = await measure_sla(
                        conn, settings.dsn, book, pack, districts, args
                    )
        finally:
            await pool.close()
    finally:
        cleanup = await clean_up(settings, base_dsn, database, args.keep_db)
    return {"machine": machine, "topic_prefix": settings.topic_prefix, "results": result,
            "cleanup": cleanup}  # fmt: skip


def sigterm_as_sigint(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def goal(met: bool) -> str:
    return "goal met" if met else "GOAL MISSED"


def print_summary(report: dict[str, Any], out: Path) -> None:
    r = report["results"]
    ip, plan, split = r["in_process"], r["planning"], r["split"]
    print(f"dispatch ({report['machine']['cpu_count']} cores, "
          f"PostgreSQL {report['machine']['postgresql']['version']})")  # fmt: skip
    print(f"  in process   {ip['tickets_per_s']:,} tickets/s ({ip['tickets']:,} in batches of "
          f"{ip['batch_size']}, p50 {ip['batch_ms']['p50']} ms/batch; "
          f"{goal(ip['tickets_per_s'] >= 1000)} ≥ 1,000/s): {ip['check']}")  # fmt: skip
    print("  time split   " + ", ".join(
        f"{name} {part['share']:.0%} ({part['us_per_ticket']} µs/ticket)"
        for name, part in split.items()))  # fmt: skip
    print("  database     µs/ticket " + ", ".join(
        f"{name} {us}" for name, us in ip["database_us_per_ticket"].items()))  # fmt: skip
    print(
        f"  planning     {plan['plans_per_s']:,} plans/s alone; µs/ticket "
        + ", ".join(f"{k} {v}" for k, v in plan["parts_us_per_ticket"].items())
    )
    print(f"  CPU          client {ip['client_cpu_s']} s, PostgreSQL backend "
          f"{ip['postgres_backend_cpu_s']} s of {ip['elapsed_s']} s")  # fmt: skip
    if "worker" in r:
        w = r["worker"]
        print(f"  via worker   {w['tickets_per_s']:,} tickets/s over {w['drain_s']} s "
              f"(start-up {w['startup_s']} s, total {w['total_s']} s, "
              f"dead letters {w['dead_letters']}): {w['check']}")  # fmt: skip
    if "sla" in r:
        s, fill = r["sla"], r["sla"]["fill"]
        print(f"  SLA table    {fill['tickets']['open_tickets']:,} open tickets filled in "
              f"{fill['fill_s']} s; {s['due_per_cycle']} due per cycle, "
              f"{s['cycles']} cycles")  # fmt: skip
        for label, key in (("run_cycle", "run_cycle_ms"), ("detection", "detection_ms"),
                           ("due_soon", "due_soon_ms")):  # fmt: skip
            ms = s[key]
            print(f"  {label:<12} p50 {ms['p50']} ms, p95 {ms['p95']} ms, max {ms['max']} ms "
                  f"({goal(ms['max'] < 100)}: every cycle < 100 ms)")  # fmt: skip
        print(f"  index        detection uses sla_timers_due: {s['detection_uses_index']}")
    if report["cleanup"].get("kept"):
        print(f"  kept         database {report['cleanup']['database']}, "
              f"topics {report['cleanup']['prefix']}*")  # fmt: skip
    print(f"  runtime      {report['runtime_s']} s; written to {out}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started_at = datetime.now(UTC)
    run_id = secrets.token_hex(4)
    out: Path = args.out or RESULTS_DIR / f"dispatch-{started_at:%Y%m%dT%H%M%SZ}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    log = out.with_suffix(".worker.log")
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, sigterm_as_sigint)
    started = time.perf_counter()
    try:
        outcome = asyncio.run(run(args, run_id, log))
    except BenchError as exc:
        print(f"bench: {exc} (worker log: {log})", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted; the worker was stopped and cleaned up", file=sys.stderr)
        return 130
    report = {
        "benchmark": "dispatch",
        "run_id": run_id,
        "started_at": started_at.isoformat(timespec="seconds"),
        "runtime_s": round(time.perf_counter() - started, 1),
        "machine": outcome["machine"],
        "parameters": {
            "tickets": args.tickets,
            "batch_size": BATCH_SIZE,
            "through_worker": args.through_worker,
            "open_tickets": args.open_tickets,
            "due_per_cycle": args.due_per_cycle,
            "cycles": args.cycles,
            "seed": args.seed,
            "priority_shares_pct": PRIORITY_SHARES,
            "overdue_fraction": OVERDUE,
            "topic_prefix": outcome["topic_prefix"],
            "worker_log": str(log) if args.through_worker else None,
        },
        "results": outcome["results"],
        "cleanup": outcome["cleanup"],
    }
    out.write_text(json.dumps(report, ensure_ascii=False, indent=2, default=str) + "\n",
                   encoding="utf-8")  # fmt: skip
    print_summary(report, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
