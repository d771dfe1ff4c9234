"""Live feed benchmark: many dashboards on ``/ws/ops`` while the pipeline emits updates.

A real `hub api` (own database and topic prefix, removed after) follows ``incidents``; this
benchmark produces incident changes to it at ``--rate`` per second (``--keys`` incidents
updated round-robin, each change's ``last_seen`` = when it was produced) and holds
``--clients`` websocket clients, ``--slow`` of which read one frame every ``SLOW_READ_S``
seconds. ``--measure`` of the fast clients decode every frame and time each incident update
from its production to its arrival (lag); the other fast clients only receive. Sampled every
10 s: the API's resident memory and CPU. Goals: fast clients' p99 lag < 1 s; memory flat.

Run as ``python -m bench.ops_feed --help``; results in bench/results/ops-feed-….json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
import uuid
from array import array
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import websockets
from aiokafka import AIOKafkaProducer

from bench.common import (
    BenchError,
    Run,
    cpu_seconds,
    free_port,
    isolated_run,
    rss_bytes,
    spread_ms,
    start_hub,
    stop,
    wait_for_port,
)
from hub.auth import create_api_key
from hub.db import create_pool
from hub.settings import Settings
from schemas import topics
from schemas.codec import dumps
from schemas.event import Crs, EventV1, Location, Priority, Source, event_id_for
from schemas.incident import IncidentChangeV1

SLOW_READ_S = 5.0
SAMPLE_S = 10.0
TICK_S = 0.05  # the producer sends a small batch every 50 ms
DISTRICTS = [("330302", 120.655, 28.016), ("330303", 120.76, 27.93), ("330304", 120.64, 27.99)]
CATEGORIES = ["road-damage", "garbage", "street-lighting", "illegal-parking", "waterlogging"]
PRIORITIES = [Priority.LOW, Priority.NORMAL, Priority.HIGH, Priority.URGENT]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ops_feed",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--slow", type=int, default=10)
    parser.add_argument("--measure", type=int, default=20, help="fast clients that time updates")
    parser.add_argument("--rate", type=float, default=2000, help="incident changes per second")
    parser.add_argument("--keys", type=int, default=5000, help="incidents they update")
    parser.add_argument("--duration", type=float, default=600, help="seconds")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.slow + args.measure > args.clients:
        parser.error("--slow + --measure must not exceed --clients")
    return args


class Incidents:
    """Changes to ``keys`` incidents in turn, each a little further along."""

    def __init__(self, keys: int) -> None:
        self._rng = random.Random(7)  # noqa: S311 - test data
        self._ids = [uuid.uuid4() for _ in range(keys)]
        self._reports = [0] * keys
        self._next = 0

    def change(self) -> IncidentChangeV1:
        index = self._next
        self._next = (self._next + 1) % len(self._ids)
        self._reports[index] += 1
        code, lon, lat = DISTRICTS[index % len(DISTRICTS)]
        lon += (index % 97) / 2000
        lat += (index % 89) / 2000
        now = datetime.now(UTC)
        external_id = f"bench-{index}-{self._reports[index]}"
        category = CATEGORIES[index % len(CATEGORIES)]
        priority = PRIORITIES[index % len(PRIORITIES)]
        event = EventV1(
            event_id=event_id_for("hotline-12345", external_id), source=Source("hotline-12345"),
            external_id=external_id, occurred_at=now, received_at=now,
            location=Location(lon=lon, lat=lat, source_crs=Crs.WGS84, source_lon=lon,
                              source_lat=lat),
            text="基准测试", priority=priority, category=category, district_code=code, raw={},
        )  # fmt: skip
        return IncidentChangeV1(
            incident_id=self._ids[index], change="attached", category=category,
            priority=priority, reports=self._reports[index], sources=["hotline-12345"],
            lon=lon, lat=lat, district_code=code, opened_at=now, last_seen=now, event=event,
        )  # fmt: skip


async def produce(settings: Settings, rate: float, keys: int, until: float) -> int:
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap, acks=1, linger_ms=5)
    await producer.start()
    incidents = Incidents(keys)
    topic = settings.topic(topics.INCIDENTS)
    sent = 0
    started = time.monotonic()
    try:
        while time.monotonic() < until:
            due = int((time.monotonic() - started) * rate) - sent
            for _ in range(max(0, due)):
                change = incidents.change()
                await producer.send(topic, dumps(change), key=change.incident_id.bytes)
                sent += 1
            await asyncio.sleep(TICK_S)
        await producer.flush()
    finally:
        await producer.stop()
    return sent


class Client:
    def __init__(self, kind: str) -> None:
        self.kind = kind  # "measure", "fast" or "slow"
        self.frames = 0
        self.bytes = 0
        # An array, not a list: millions of floats in a list make every full garbage
        # collection of this process walk them, and the clients slow down as the run goes on.
        self.lags = array("d")
        self.closed: str | None = None

    async def run(self, url: str, key: str, until: float) -> None:
        try:
            async with websockets.connect(url, max_size=2**26, max_queue=4) as socket:
                await socket.send(orjson.dumps({"type": "hello", "key": key}).decode())
                while time.monotonic() < until:
                    if self.kind == "slow":
                        await asyncio.sleep(SLOW_READ_S)
                    try:
                        message = await asyncio.wait_for(socket.recv(), until - time.monotonic())
                    except TimeoutError:
                        break
                    self.frames += 1
                    self.bytes += len(message)
                    if self.kind == "measure":
                        self._time(message)
        except websockets.ConnectionClosed as exc:
            self.closed = f"{exc.rcvd.code if exc.rcvd else 'no close frame'}"

    def _time(self, message: str | bytes) -> None:
        frame = orjson.loads(message)
        if frame.get("type") != "delta":
            return
        arrived = time.time()
        for update in frame["updates"]:
            value = update["value"]
            if update["layer"] == "incidents" and value and value.get("last_seen"):
                produced = datetime.fromisoformat(value["last_seen"]).timestamp()
                self.lags.append(arrived - produced)


async def sample(pid: int, until: float, samples: list[dict[str, Any]]) -> None:
    """The API's memory and CPU, and this process's CPU: the clients share the machine, and
    a client that cannot keep up shows as lag too."""
    me = os.getpid()
    started, cpu0, own0 = time.monotonic(), cpu_seconds(pid), cpu_seconds(me)
    while time.monotonic() < until:
        await asyncio.sleep(SAMPLE_S)
        elapsed = time.monotonic() - started
        samples.append(
            {
                "t_s": round(elapsed),
                "rss_mb": round(rss_bytes(pid) / 2**20),
                "cpu_pct": round(100 * (cpu_seconds(pid) - cpu0) / elapsed),
                "bench_cpu_pct": round(100 * (cpu_seconds(me) - own0) / elapsed),
            }
        )


async def run(args: argparse.Namespace, run_id: str, log_dir: Path) -> dict[str, Any]:
    async with isolated_run("benchops", run_id) as settings:
        pool = await create_pool(settings.dsn, max_size=1)
        async with pool.acquire() as conn:
            key = await create_api_key(conn, role="ops")
        await pool.close()
        port = free_port()
        api = start_hub(["api", "--port", str(port)], log_dir / "api.log")
        try:
            wait_for_port(port, api)
            url = f"ws://127.0.0.1:{port}/ws/ops"
            kinds = (
                ["slow"] * args.slow
                + ["measure"] * args.measure
                + ["fast"] * (args.clients - args.slow - args.measure)
            )
            clients = [Client(kind) for kind in kinds]
            until = time.monotonic() + args.duration
            samples: list[dict[str, Any]] = []
            results = await asyncio.gather(
                produce(settings, args.rate, args.keys, until - 5),
                sample(api.pid, until, samples),
                *(client.run(url, key, until) for client in clients),
            )
        finally:
            stop(api)
    lags = [lag for client in clients for lag in client.lags]
    by_kind: dict[str, dict[str, Any]] = {}
    for kind in ("measure", "fast", "slow"):
        group = [c for c in clients if c.kind == kind]
        by_kind[kind] = {
            "clients": len(group), "frames": sum(c.frames for c in group),
            "mb_received": round(sum(c.bytes for c in group) / 2**20, 1),
            "closed_early": sum(c.closed is not None for c in group),
        }  # fmt: skip
    rss = [s["rss_mb"] for s in samples]
    return {
        "produced": results[0], "produced_per_s": round(results[0] / (args.duration - 5)),
        "fast_lag_ms": spread_ms(lags), "lag_samples": len(lags), "clients": by_kind,
        "api_rss_mb": {"first": rss[0] if rss else None, "last": rss[-1] if rss else None,
                       "max": max(rss, default=None)},
        "samples": samples,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    bench_run = Run.start("ops-feed", args.out)
    try:
        results = asyncio.run(run(args, bench_run.run_id, bench_run.log_dir))
    except BenchError as exc:
        print(f"bench: {exc} (logs: {bench_run.log_dir})", file=sys.stderr)
        return 1
    bench_run.write(args, results)
    out = bench_run.out
    lag = results["fast_lag_ms"]
    print(f"produced {results['produced_per_s']}/s; fast clients' lag ms p50 {lag.get('p50')} "
          f"p99 {lag.get('p99')} max {lag.get('max')} ({results['lag_samples']} updates); "
          f"clients {results['clients']}; API RSS MB {results['api_rss_mb']}")  # fmt: skip
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
