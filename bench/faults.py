"""Faults under load, then reconciliation: does the hub lose or double anything?

A database and topic prefix of the run's own; a real ``hub worker``, ``hub api`` and ``hub
gateway``; citizen reports from the four civic sources posted the way source systems post
(an answer lost or refused with 5xx/429 is retried with the same body; 5 % are sent again
after acceptance, as a source that never heard the answer would), and simulated devices over
MQTT (fire scenario: alarms, some severe enough to become reports). While it runs, the faults
in ``--faults`` happen one after another, evenly spaced: ``worker`` (kill -9, started again at
once), ``kafka`` (the broker restarted), ``postgres`` (restarted, clients cut off), ``api`` and
``gateway`` (stopped and started again).

Then the run waits for the pipeline to drain and checks, from the outside, that every report
the API accepted is stored once, in exactly one incident with exactly one ticket; and runs
``hub reconcile`` (dispatch/reconcile.py) over the whole database. Any input lost or doubled
is printed by name; exit 1.

    python -m bench.faults                      # 20,000 reports, every fault, ~6 minutes
    python -m bench.faults --reports 2000 --faults worker,api,worker

Results in bench/results/faults-….json. Kafka and PostgreSQL restarts need the local services
`hub infra up` starts (the run refuses to restart anything it does not own).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx

from bench.common import (
    BenchError,
    Run,
    free_port,
    isolated_run,
    start_hub,
    stop,
    wait_for_port,
)
from dispatch.reconcile import reconcile
from hub.auth import create_api_key
from hub.infra import kafka, postgres
from hub.settings import Settings

FAULTS = ("worker", "kafka", "postgres", "api", "gateway")
DEFAULT_FAULTS = "worker,kafka,worker,postgres,api,worker,gateway"
RESEND_SHARE = 0.05
CONCURRENCY = 32
RETRY_FOR_S = 600.0  # a source keeps retrying a report this long before giving up
DRAIN_TIMEOUT_S = 600.0
JITTER_DEG = 0.02


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.faults",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--reports", type=int, default=20_000, help="citizen reports to send")
    parser.add_argument("--rate", type=float, default=60.0, help="reports per second")
    parser.add_argument("--faults", default=DEFAULT_FAULTS,
                        help=f"comma-separated, in order; any of {', '.join(FAULTS)}")  # fmt: skip
    parser.add_argument("--devices", type=int, default=2000, help="simulated MQTT devices")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    args.faults = [name for name in args.faults.split(",") if name]
    unknown = set(args.faults) - set(FAULTS)
    if unknown:
        parser.error(f"unknown faults {sorted(unknown)}; known: {', '.join(FAULTS)}")
    return args


# --- the hub's processes, and the faults ------------------------------------------------------


@dataclass
class Hub:
    settings: Settings
    env: dict[str, str]
    log_dir: Path
    api_port: int = field(default_factory=free_port)
    gateway_port: int = field(default_factory=free_port)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def start(self, name: str) -> None:
        args = {
            "worker": ["worker"],
            "api": ["api", "--port", str(self.api_port)],
            "gateway": ["gateway", "--port", str(self.gateway_port)],
        }[name]
        process = start_hub(args, self.log_dir / f"{name}.log", self.env)
        self.processes[name] = process
        if name != "worker":
            wait_for_port(self.api_port if name == "api" else self.gateway_port, process)

    def stop_all(self) -> None:
        for process in self.processes.values():
            stop(process)

    def inflict(self, fault: str) -> None:
        """One fault, and the hub's processes started again after it (as a supervisor would)."""
        if fault == "worker":
            worker = self.processes["worker"]
            worker.send_signal(signal.SIGKILL)
            worker.wait()
            self.start("worker")
        elif fault in ("api", "gateway"):
            stop(self.processes[fault])
            self.start(fault)
        elif fault == "kafka":
            paths = kafka.KafkaPaths(self.settings.state_dir / "kafka")
            kafka.down(paths)
            kafka.up(paths)
        elif fault == "postgres":
            postgres.restart()

    def check_faults_allowed(self, faults: list[str]) -> None:
        if "kafka" in faults and not self.settings.uses_local_kafka:
            raise BenchError("a kafka fault needs the local broker (`hub infra up`)")
        # The run's own database is on the local cluster `hub infra up` starts, or elsewhere.
        where = urlsplit(self.settings.dsn)
        local = (where.hostname, where.port or 5432) == (postgres.HOST, postgres.PORT)
        if "postgres" in faults and not local:
            raise BenchError("a postgres fault needs the local cluster (`hub infra up`)")


# --- citizen reports, posted as source systems post them ---------------------------------------


class Reports:
    """Reports from the four civic sources: held-out corpus texts at points around the
    districts' centres, each with an id of its own."""

    def __init__(self, settings: Settings, run_id: str, seed: int) -> None:
        from hub.demo import report_material
        from hub.pack import load_pack

        self._pack = load_pack(settings.pack_dir)
        self._texts, self._centres = report_material(settings)
        self._rng = random.Random(seed)  # noqa: S311 - test data
        self._run = run_id
        self._number = 0

    def next(self) -> tuple[str, str, dict[str, Any]]:
        """(source, external id, body)."""
        while True:
            lon, lat = self._rng.choice(self._centres)
            lon, lat = lon + self._rng.gauss(0, JITTER_DEG), lat + self._rng.gauss(0, JITTER_DEG)
            if self._pack.contains(lon, lat):
                break
        self._number += 1
        external_id = f"F{self._run}-{self._number}"
        text = self._rng.choice(self._texts)
        at = (datetime.now(UTC) - timedelta(seconds=30)).isoformat()
        where = {"longitude": round(lon, 6), "latitude": round(lat, 6), "coord_system": "WGS84"}
        source = self._rng.choices(
            ["hotline-12345", "urban-inspection", "grid-governance", "emergency-120"],
            weights=[70, 15, 10, 5],
        )[0]
        body: dict[str, Any]
        if source == "hotline-12345":
            body = {"order_no": external_id, "call_time": at, "content": text,
                    "request_type": "投诉", **where}  # fmt: skip
        elif source == "urban-inspection":
            body = {"case_no": external_id, "discovered_at": at, "kind": "event",
                    "code": "01001", "description": text, "inspector_id": "INS-0001",
                    **where}  # fmt: skip
        elif source == "grid-governance":
            body = {"event_no": external_id, "grid_id": "LC-01", "event_type": "安全隐患",
                    "description": text, "reported_at": at, "worker_id": "GW-0001",
                    **where}  # fmt: skip
        else:
            body = {"case_no": external_id, "call_time": at, "chief_complaint": text,
                    "dispatch_level": 3, **where}  # fmt: skip
        return source, external_id, body


@dataclass
class Sent:
    accepted: dict[tuple[str, str], str] = field(default_factory=dict)  # → event id
    refused: dict[tuple[str, str], str] = field(default_factory=dict)  # 4xx: → reason
    gave_up: list[tuple[str, str]] = field(default_factory=list)
    retries: int = 0
    # Answers to reports sent again: "duplicate", or "accepted" while PostgreSQL (where receipts
    # are checked) was away: the worker absorbs those repeats.
    resent: dict[str, int] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)


class Sources:
    def __init__(self, base_url: str, keys: dict[str, str], sent: Sent) -> None:
        self._client = httpx.AsyncClient(base_url=base_url, timeout=15)
        self._keys = keys
        self._sent = sent

    async def close(self) -> None:
        await self._client.aclose()

    async def post(self, source: str, external_id: str, body: dict[str, Any]) -> str | None:
        """Post until the hub answers 2xx (→ "accepted"/"duplicate"/…) or 4xx; None if it
        never did within RETRY_FOR_S."""
        deadline = time.monotonic() + RETRY_FOR_S
        pause = 0.2
        while time.monotonic() < deadline:
            try:
                answer = await self._client.post(
                    f"/api/v1/intake/{source}", json=body, headers={"X-API-Key": self._keys[source]}
                )
            except httpx.HTTPError:
                status = "unreachable"
            else:
                status = str(answer.status_code)
                if answer.status_code < 300:
                    self._count(status)
                    self._sent.accepted[source, external_id] = answer.json()["event_id"]
                    return str(answer.json().get("status", status))
                if 400 <= answer.status_code < 500 and answer.status_code != 429:
                    self._count(status)
                    self._sent.refused[source, external_id] = answer.text[:300]
                    return None
            self._count(status)
            self._sent.retries += 1
            await asyncio.sleep(pause)
            pause = min(pause * 2, 5.0)
        self._sent.gave_up.append((source, external_id))
        return None

    def _count(self, status: str) -> None:
        self._sent.statuses[status] = self._sent.statuses.get(status, 0) + 1


async def send_reports(hub: Hub, keys: dict[str, str], reports: Reports, *, count: int,
                       rate: float, seed: int) -> Sent:  # fmt: skip
    sent = Sent()
    sources = Sources(hub.api_url, keys, sent)
    rng = random.Random(seed + 1)  # noqa: S311 - test data
    gate = asyncio.Semaphore(CONCURRENCY)
    started = time.monotonic()

    async def one(source: str, external_id: str, body: dict[str, Any]) -> None:
        async with gate:
            answer = await sources.post(source, external_id, body)
        if answer is not None and rng.random() < RESEND_SHARE:
            await asyncio.sleep(rng.uniform(0.5, 5))  # the source never heard the answer
            async with gate:
                again = await sources.post(source, external_id, body)
            sent.resent[str(again)] = sent.resent.get(str(again), 0) + 1

    tasks = []
    try:
        for number in range(count):
            tasks.append(asyncio.create_task(one(*reports.next())))
            await asyncio.sleep(max(0.0, started + (number + 1) / rate - time.monotonic()))
        await asyncio.gather(*tasks)
    finally:
        await sources.close()
    return sent


# --- checks -------------------------------------------------------------------------------------

FATE = """
SELECT a.source, a.external_id, e.event_id,
       count(DISTINCT m.incident_id) AS incidents, count(DISTINCT t.ticket_id) AS tickets
FROM unnest($1::text[], $2::text[]) AS a(source, external_id)
LEFT JOIN events e ON e.source = a.source AND e.external_id = a.external_id
LEFT JOIN incident_members m ON m.event_id = e.event_id
LEFT JOIN tickets t ON t.incident_id = m.incident_id
GROUP BY a.source, a.external_id, e.event_id
"""


async def fates(conn: Any, accepted: list[tuple[str, str]]) -> dict[str, list[str]]:
    """What became of each accepted report: lost (no event, incident or ticket) or doubled."""
    rows = await conn.fetch(FATE, [s for s, _ in accepted], [x for _, x in accepted])
    lost, doubled = [], []
    for row in rows:
        name = f"{row['source']}/{row['external_id']}"
        if row["event_id"] is None:
            lost.append(f"{name}: never stored")
        elif row["incidents"] == 0 or row["tickets"] == 0:
            lost.append(f"{name}: {row['incidents']} incidents, {row['tickets']} tickets")
        elif row["incidents"] > 1 or row["tickets"] > 1:
            doubled.append(f"{name}: {row['incidents']} incidents, {row['tickets']} tickets")
    return {"lost": lost, "doubled": doubled}


async def drain(conn: Any, accepted: list[tuple[str, str]], hub: Hub) -> float:
    """Seconds until every accepted report has its ticket and the outbox is empty."""
    started = time.monotonic()
    while True:
        outcome = await fates(conn, accepted)
        waiting = await conn.fetchval("SELECT count(*) FROM outbox")
        if not outcome["lost"] and waiting == 0:
            return time.monotonic() - started
        if time.monotonic() - started > DRAIN_TIMEOUT_S:
            return -1.0  # the checks below say what is missing
        for name, process in hub.processes.items():
            if process.poll() is not None:
                raise BenchError(f"hub {name} exited with {process.returncode} while draining")
        await asyncio.sleep(2)


# --- the run ------------------------------------------------------------------------------------


async def connect_retrying(dsn: str, seconds: float = 60) -> Any:
    """A connection, waiting out a PostgreSQL restart."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return await asyncpg.connect(dsn)
        except (OSError, asyncpg.PostgresError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(1)


async def run_faults(
    settings: Settings, env: dict[str, str], log_dir: Path, *, reports: int, rate: float,
    faults: list[str], devices: int, seed: int, run_id: str,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:  # fmt: skip
    """The whole run against an isolated database and topic prefix; the results."""
    hub = Hub(settings, env, log_dir)
    hub.check_faults_allowed(faults)
    conn = await asyncpg.connect(settings.dsn)
    keys = {source: await create_api_key(conn, role="source", scope=source)
            for source in ("hotline-12345", "emergency-120", "urban-inspection",
                           "grid-governance")}  # fmt: skip
    await conn.close()
    timeline: list[dict[str, Any]] = []
    simulator: subprocess.Popen[bytes] | None = None
    try:
        for name in ("worker", "api", "gateway"):
            hub.start(name)
        duration = reports / rate
        if devices:
            simulator = start_hub(
                ["simulate", "--via", "mqtt", "--mqtt", f"127.0.0.1:{hub.gateway_port}",
                 "--devices", str(devices), "--interval", "5", "--scenario", "fire",
                 "--duration", str(duration), "--gateways", "2"],
                log_dir / "simulate.log", env,
            )  # fmt: skip
        began = time.monotonic()

        async def faults_in_turn() -> None:
            spacing = duration / (len(faults) + 1)
            for number, fault in enumerate(faults, start=1):
                await asyncio.sleep(max(0.0, began + number * spacing - time.monotonic()))
                at = time.monotonic() - began
                say(f"faults: {fault} at {at:.0f} s")
                await asyncio.to_thread(hub.inflict, fault)
                back = time.monotonic() - began - at
                timeline.append(
                    {"fault": fault, "at_s": round(at, 1), "back_after_s": round(back, 1)}
                )

        sent, _ = await asyncio.gather(
            send_reports(hub, keys, Reports(settings, run_id, seed), count=reports, rate=rate,
                         seed=seed),
            faults_in_turn(),
        )  # fmt: skip
        load_s = time.monotonic() - began
        say(f"faults: {len(sent.accepted)} reports accepted in {load_s:.0f} s; draining")
        conn = await connect_retrying(settings.dsn)
        try:
            accepted = list(sent.accepted)
            drain_s = await drain(conn, accepted, hub)
            outcome = await fates(conn, accepted)
            reconciled = await reconcile(conn, settings.pack_dir, now=datetime.now(UTC),
                                         settle=timedelta(0))  # fmt: skip
        finally:
            await conn.close()
    finally:
        if simulator is not None:
            stop(simulator)
        hub.stop_all()
    return {
        "reports": {"sent": reports, "accepted": len(sent.accepted), "refused": sent.refused,
                    "gave_up": len(sent.gave_up), "retries": sent.retries,
                    "resent": sent.resent,
                    "answers": sent.statuses},
        "faults": timeline, "load_s": round(load_s, 1), "drain_s": round(drain_s, 1),
        "lost": outcome["lost"], "doubled": outcome["doubled"],
        "reconcile": reconciled.as_dict(),
        "ok": not outcome["lost"] and not outcome["doubled"] and reconciled.ok
              and not sent.refused and not sent.gave_up,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    run = Run.start("faults", args.out)

    async def go() -> dict[str, Any]:
        async with isolated_run("faults", run.run_id) as settings:
            env = dict(os.environ)  # isolated_run put the run's database and prefix there
            return await run_faults(settings, env, run.log_dir, reports=args.reports,
                                    rate=args.rate, faults=args.faults, devices=args.devices,
                                    seed=args.seed, run_id=run.run_id)  # fmt: skip

    try:
        results = asyncio.run(go())
    except BenchError as exc:
        print(f"bench: {exc} (logs: {run.log_dir})", file=sys.stderr)
        return 1
    run.write(args, results)
    out = run.out
    print(f"faults: {results['reports']['accepted']} accepted, {len(results['lost'])} lost, "
          f"{len(results['doubled'])} doubled; reconcile "
          f"{'ok' if results['reconcile']['ok'] else 'FAILED'}; drained in "
          f"{results['drain_s']} s; {out}")  # fmt: skip
    for line in results["lost"][:20] + results["doubled"][:20]:
        print(f"  {line}")
    return 0 if results["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
