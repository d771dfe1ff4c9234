"""IoT benchmark: 100,000 devices' readings through the MQTT gateway and the vendors' HTTP batch
API, into Kafka and through the rules; reading-to-alarm latency; memory; MQTT connections.

Everything real, on this machine together: Kafka, PostgreSQL, `hub gateway`, `hub api`,
`hub worker`, and `hub simulate` as the load (its devices report every ``--interval`` seconds
with three or four values each: 100,000 devices every 10 s is 10,000 readings/s). Each phase:

* readings/s accepted (the simulator's count of PUBACK 0 / accepted items) and how far the
  rules fall behind (lag of the rule engine's consumer group on ``iot.telemetry``, sampled);
* latency from a reading to its alarm: probe smoke detectors (not part of the load) report
  smoke through the same path, one a second; the clock stops when the alarm is on
  ``iot.alarms``;
* resident memory and CPU of each process.

``--connections N`` then opens N MQTT connections, one per device, from helper processes
(each process may hold ~20,000 descriptors here) and reports what the gateway held and its
memory per connection.

Run as ``python -m bench.iot --help``; results go to bench/results/iot-….json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import secrets
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
from aiokafka import AIOKafkaConsumer

from bench.common import (
    RESULTS_DIR,
    BenchError,
    cpu_seconds,
    free_port,
    isolated_run,
    machine,
    rss_bytes,
    spread_ms,
    start_hub,
    stop,
    wait_for_port,
)
from hub.auth import create_api_key
from hub.bus import topic_partitions
from hub.db import create_pool
from hub.settings import Settings
from iot_ingest.mqtt.client import MqttClient
from iot_ingest.registry import create_gateway, device_id_for, import_rows
from schemas import topics
from schemas.alarm import AlarmChangeV1
from streams.batchloop import group_for

VENDOR = "bench"
PROBE_LON, PROBE_LAT = 120.6555, 28.0167  # 鹿城区
SAMPLE_EVERY_S = 5.0
DRAIN_TIMEOUT_S = 300.0
CONNECTIONS_PER_PROCESS = 9_500  # under the 20,000 descriptors a process may open here
CONNECT_CONCURRENCY = 200


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.iot",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--interval", type=int, default=10, help="seconds between reports")
    parser.add_argument("--duration", type=float, default=300, help="seconds per phase")
    parser.add_argument("--via", default="mqtt,http", help="phases: mqtt, http or both")
    parser.add_argument("--probes-per-s", type=float, default=1.0)
    parser.add_argument("--gateways", type=int, default=4, help="MQTT gateway connections")
    parser.add_argument(
        "--connections",
        type=int,
        default=0,
        help="then hold this many MQTT device connections (0: skip)",
    )
    parser.add_argument("--out", type=Path)
    # internal: a helper process holding connections
    parser.add_argument(
        "--hold", nargs=3, metavar=("PORT", "TOKENS_FILE", "SECONDS"), help=argparse.SUPPRESS
    )
    return parser.parse_args(argv)


# --- probes: alarms with a known send time ------------------------------------------------


class Probes:
    """Smoke detectors of the bench's own vendor that report smoke once each."""

    def __init__(self, count: int, run_id: str) -> None:
        self.serials = [f"PROBE-{run_id}-{i:05d}" for i in range(count)]
        self.by_device = {device_id_for(VENDOR, s): s for s in self.serials}
        self._next = 0
        self.sent_at: dict[uuid.UUID, float] = {}
        self.alarmed_at: dict[uuid.UUID, float] = {}

    def rows(self) -> list[dict[str, str]]:
        return [
            {
                "serial": s,
                "vendor": VENDOR,
                "profile": "smoke",
                "lon": str(PROBE_LON),
                "lat": str(PROBE_LAT),
            }
            for s in self.serials
        ]

    def take(self) -> tuple[uuid.UUID, str, dict[str, Any]]:
        serial = self.serials[self._next]
        self._next += 1
        reading = {
            "ts": int(time.time() * 1000),
            "values": {"smoke_alarm": 1, "smoke_obscuration_pct_m": 14.0, "battery_pct": 90},
        }
        return device_id_for(VENDOR, serial), serial, reading

    def latencies(self, since: set[uuid.UUID]) -> list[float]:
        return [self.alarmed_at[d] - self.sent_at[d] for d in since if d in self.alarmed_at]


async def watch_alarms(settings: Settings, probes: Probes, stop_event: asyncio.Event) -> None:
    consumer = AIOKafkaConsumer(
        settings.topic(topics.IOT_ALARMS),
        bootstrap_servers=settings.bootstrap,
        auto_offset_reset="latest",
        enable_auto_commit=False,
        fetch_max_wait_ms=20,
    )
    await consumer.start()
    try:
        while not stop_event.is_set():
            batches = await consumer.getmany(timeout_ms=200)
            now = time.time()
            for records in batches.values():
                for record in records:
                    change = AlarmChangeV1.model_validate_json(record.value)
                    if change.kind == "raised" and change.device_id in probes.by_device:
                        probes.alarmed_at.setdefault(change.device_id, now)
    finally:
        await consumer.stop()


async def send_probes(
    via: str,
    probes: Probes,
    *,
    per_s: float,
    duration_s: float,
    gateway: MqttClient | None,
    api: httpx.AsyncClient | None,
    key: str,
) -> set[uuid.UUID]:
    sent: set[uuid.UUID] = set()
    started = time.monotonic()
    count = 0
    while time.monotonic() - started < duration_s:
        device_id, serial, reading = probes.take()
        probes.sent_at[device_id] = time.time()
        if via == "mqtt":
            assert gateway is not None
            body = orjson.dumps({serial: [reading]})
            code = await gateway.publish("v1/gateway/telemetry", body)
            ok = code == 0
        else:
            assert api is not None
            answer = await api.post(
                "/api/v1/vendor/telemetry",
                headers={"X-API-Key": key},
                json={"items": [{"serial": serial, "telemetry": reading}]},
            )
            ok = answer.status_code == 200 and answer.json()["accepted"] == 1
        if ok:
            sent.add(device_id)
        count += 1
        await asyncio.sleep(max(0.0, started + count / per_s - time.monotonic()))
    return sent


# --- sampling lag, memory and CPU -----------------------------------------------------------


async def rules_lag(settings: Settings, consumer: AIOKafkaConsumer) -> int:
    """Records on iot.telemetry the rule engine has not committed yet."""
    topic = settings.topic(topics.IOT_TELEMETRY)
    partitions = await topic_partitions(consumer, topic)
    if not partitions:
        raise BenchError(f"no partitions of {topic}: the lag cannot be measured")
    ends = await consumer.end_offsets(partitions)
    lag = 0
    for partition in partitions:
        committed = await consumer.committed(partition)
        lag += ends[partition] - (committed or 0)
    return lag


async def lag_reader(settings: Settings) -> AIOKafkaConsumer:
    """A consumer in the rule engine's group that never joins it: it only reads offsets."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap,
        group_id=group_for(settings, "iot-rules"),
        enable_auto_commit=False,
    )
    await consumer.start()
    return consumer


class Sampler:
    def __init__(self, processes: dict[str, subprocess.Popen[bytes]]) -> None:
        self.processes = processes
        self.samples: list[dict[str, Any]] = []
        self._t0 = time.monotonic()
        self._cpu0 = {name: cpu_seconds(p.pid) for name, p in processes.items()}
        self._cpu = {name: (cpu, self._t0) for name, cpu in self._cpu0.items()}

    def sample(self, lag: int) -> None:
        alive = {name: p for name, p in self.processes.items() if p.poll() is None}
        rss = {name: rss_bytes(p.pid) for name, p in alive.items()}
        for name, p in alive.items():  # the last reading of each, for processes that end first
            self._cpu[name] = (cpu_seconds(p.pid), time.monotonic())
        self.samples.append(
            {
                "t_s": round(time.monotonic() - self._t0, 1),
                "rules_lag": lag,
                "rss_mb": {n: round(b / 2**20) for n, b in rss.items()},
            }
        )

    def summary(self) -> dict[str, Any]:
        cpu = {
            name: round(100 * (used - self._cpu0[name]) / max(at - self._t0, 1e-9))
            for name, (used, at) in self._cpu.items()
        }
        peak = {
            name: max(s["rss_mb"].get(name, 0) for s in self.samples) for name in self.processes
        }
        lags = [s["rules_lag"] for s in self.samples]
        return {
            "cpu_pct_of_one_core": cpu,
            "rss_peak_mb": peak,
            "rules_lag_max": max(lags, default=0),
            "samples": self.samples,
        }


# --- one phase ----------------------------------------------------------------------------


async def phase(
    via: str, args: argparse.Namespace, settings: Settings, hub: dict[str, Any], probes: Probes
) -> dict[str, Any]:
    simulate_args = [
        "simulate",
        "--devices",
        str(args.devices),
        "--interval",
        str(args.interval),
        "--duration",
        str(args.duration),
        "--via",
        via,
        "--gateways",
        str(args.gateways),
        "--api",
        hub["api_url"],
        "--mqtt",
        f"127.0.0.1:{hub['mqtt_port']}",
    ]
    log = hub["log_dir"] / f"simulate-{via}.log"
    simulator = start_hub(simulate_args, log)
    # Registering 100,000 devices takes a few seconds; the phase starts when the load does.
    while "simulate: " not in log.read_text() or "every" not in log.read_text():
        if simulator.poll() is not None:
            raise BenchError(f"hub simulate exited early: {log.read_text()[-500:]}")
        await asyncio.sleep(0.2)
    sampler = Sampler({**hub["processes"], "simulate": simulator})
    lag_consumer = await lag_reader(settings)
    stop_watching = asyncio.Event()
    watcher = asyncio.create_task(watch_alarms(settings, probes, stop_watching))
    await asyncio.sleep(1)  # the watcher is at the end of iot.alarms
    gateway = None
    if via == "mqtt":
        gateway = await MqttClient.connect(
            "127.0.0.1", hub["mqtt_port"], keepalive=300, username=hub["probe_gateway_token"]
        )
    async with httpx.AsyncClient(base_url=hub["api_url"], timeout=30) as api:
        probing = asyncio.create_task(
            send_probes(
                via,
                probes,
                per_s=args.probes_per_s,
                duration_s=args.duration - 5,
                gateway=gateway,
                api=api,
                key=hub["vendor_key"],
            )
        )
        while simulator.poll() is None:
            sampler.sample(await rules_lag(settings, lag_consumer))
            await asyncio.sleep(SAMPLE_EVERY_S)
        sent = await probing
    if gateway is not None:
        await gateway.close()
    drain_started = time.monotonic()
    while (lag := await rules_lag(settings, lag_consumer)) > 0:
        if time.monotonic() - drain_started > DRAIN_TIMEOUT_S:
            break
        await asyncio.sleep(0.5)
    drained_s = time.monotonic() - drain_started
    await asyncio.sleep(2)  # the last probes' alarms
    stop_watching.set()
    await watcher
    await lag_consumer.stop()
    output = log.read_text()
    done = re.search(r"done: (\d+) accepted, (\d+) rejected, (\d+) failed", output)
    if done is None:
        raise BenchError(f"hub simulate did not finish: {output[-500:]}")
    accepted, rejected, failed = (int(g) for g in done.groups())
    latencies = probes.latencies(sent)
    return {
        "readings_accepted": accepted,
        "readings_rejected": rejected,
        "failed_sends": failed,
        "readings_per_s": round(accepted / args.duration),
        "offered_per_s": round(args.devices / args.interval),
        "rules_drained_after_load_s": round(drained_s, 1),
        "rules_lag_at_end": lag,
        "probes": {"sent": len(sent), "alarmed": len(latencies)},
        "reading_to_alarm_ms": spread_ms(latencies),
        **sampler.summary(),
    }


# --- connections --------------------------------------------------------------------------


async def hold(port: int, tokens_file: str, seconds: float) -> None:
    """Helper process: connect every token, publish once, hold, then report as JSON."""
    tokens = Path(tokens_file).read_text().split()  # noqa: ASYNC240 - once, before any I/O
    limit = asyncio.Semaphore(CONNECT_CONCURRENCY)
    clients: list[MqttClient] = []
    errors: dict[str, int] = {}

    async def one(token: str) -> None:
        async with limit:
            try:
                client = await MqttClient.connect(
                    "127.0.0.1", port, username=token, keepalive=600, timeout_s=60
                )
                code = await client.publish("v1/devices/me/telemetry", b'{"smoke_alarm": 0}')
            except Exception as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                return
            if code != 0:
                errors[f"puback 0x{code:02x}"] = errors.get(f"puback 0x{code:02x}", 0) + 1
            clients.append(client)

    started = time.monotonic()
    await asyncio.gather(*(one(t) for t in tokens))
    connect_s = time.monotonic() - started
    print(
        json.dumps({"connected": len(clients), "connect_s": round(connect_s, 1), "errors": errors}),
        flush=True,
    )
    await asyncio.sleep(seconds)
    alive = sum(not c.closed for c in clients)
    print(json.dumps({"alive_after_hold": alive}), flush=True)
    for client in clients:
        await client.close()


async def connections(
    args: argparse.Namespace, pool: Any, hub: dict[str, Any], run_id: str
) -> dict[str, Any]:
    serials = [f"CONN-{run_id}-{i:06d}" for i in range(args.connections)]
    tokens = [f"conn-{run_id}-{i:06d}-{secrets.token_hex(4)}" for i in range(args.connections)]
    rows = [
        {
            "serial": s,
            "vendor": VENDOR,
            "profile": "smoke",
            "lon": str(PROBE_LON),
            "lat": str(PROBE_LAT),
            "token": t,
            "inactivity_timeout_s": "86400",
        }
        for s, t in zip(serials, tokens, strict=True)
    ]
    async with pool.acquire() as conn:
        await import_rows(conn, rows, district_of=hub["district_of"], contains=lambda x, y: True)
    gateway = hub["processes"]["gateway"]
    rss_before = rss_bytes(gateway.pid)
    helpers = []
    hold_s = 30
    for start in range(0, len(tokens), CONNECTIONS_PER_PROCESS):
        path = hub["log_dir"] / f"tokens-{start}.txt"
        path.write_text("\n".join(tokens[start : start + CONNECTIONS_PER_PROCESS]))
        helpers.append(
            subprocess.Popen(  # noqa: ASYNC220, S603 - our own module, at setup
                [
                    sys.executable,
                    "-m",
                    "bench.iot",
                    "--hold",
                    str(hub["mqtt_port"]),
                    str(path),
                    str(hold_s),
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
        )
    first_lines = [json.loads(await asyncio.to_thread(h.stdout.readline)) for h in helpers]  # type: ignore[union-attr]
    await asyncio.sleep(hold_s / 2)
    rss_held = rss_bytes(gateway.pid)
    last_lines = [json.loads(await asyncio.to_thread(h.stdout.readline)) for h in helpers]  # type: ignore[union-attr]
    for helper in helpers:
        helper.wait(timeout=120)
    connected = sum(line["connected"] for line in first_lines)
    errors: dict[str, int] = {}
    for line in first_lines:
        for name, count in line["errors"].items():
            errors[name] = errors.get(name, 0) + count
    return {
        "asked": args.connections,
        "connected_and_published": connected,
        "alive_after_hold": sum(line["alive_after_hold"] for line in last_lines),
        "connect_s": max(line["connect_s"] for line in first_lines),
        "errors": errors,
        "gateway_rss_mb": {"before": round(rss_before / 2**20), "held": round(rss_held / 2**20)},
        "gateway_kb_per_connection": round((rss_held - rss_before) / 1024 / max(connected, 1), 1),
    }


# --- the run ------------------------------------------------------------------------------


async def run(args: argparse.Namespace, run_id: str, log_dir: Path) -> dict[str, Any]:
    from hub.cli import _district_of

    async with isolated_run("benchiot", run_id) as settings:
        district_of = _district_of(settings)
        probes = Probes(math.ceil(args.probes_per_s * args.duration) * 2 + 10, run_id)
        pool = await create_pool(settings.dsn, max_size=2)
        async with pool.acquire() as conn:
            await conn.execute("INSERT INTO vendors (code, name) VALUES ($1, 'bench')", VENDOR)
            await import_rows(
                conn, probes.rows(), district_of=district_of, contains=lambda x, y: True
            )
            probe_gateway_token = await create_gateway(conn, VENDOR, "bench-probes")
            vendor_key = await create_api_key(conn, role="vendor", scope=VENDOR)
        api_port, mqtt_port = free_port(), free_port()
        processes = {
            "worker": start_hub(
                ["worker", "--loglevel", "warn"],
                log_dir / "worker.log",
                {**os.environ, "HUB_STATE_DIR": str(log_dir / "worker-state")},
            ),
            "api": start_hub(["api", "--port", str(api_port)], log_dir / "api.log"),
            "gateway": start_hub(
                ["gateway", "--port", str(mqtt_port), "--loglevel", "warning"],
                log_dir / "gateway.log",
            ),
        }
        hub = {
            "processes": processes,
            "api_url": f"http://127.0.0.1:{api_port}",
            "mqtt_port": mqtt_port,
            "probe_gateway_token": probe_gateway_token,
            "vendor_key": vendor_key,
            "log_dir": log_dir,
            "district_of": district_of,
        }
        try:
            wait_for_port(api_port, processes["api"])
            wait_for_port(mqtt_port, processes["gateway"])
            await asyncio.sleep(10)  # the worker joins its groups
            results: dict[str, Any] = {}
            for via in [v.strip() for v in args.via.split(",") if v.strip()]:
                print(f"bench: {via} phase, {args.duration:.0f} s", file=sys.stderr)
                results[via] = await phase(via, args, settings, hub, probes)
            if args.connections:
                print(f"bench: {args.connections} MQTT connections", file=sys.stderr)
                results["connections"] = await connections(args, pool, hub, run_id)
        finally:
            for process in processes.values():
                stop(process)
            await pool.close()
    return results


def print_summary(report: dict[str, Any], out: Path) -> None:
    for via in ("mqtt", "http"):
        r = report["results"].get(via)
        if r is None:
            continue
        lat = r["reading_to_alarm_ms"]
        print(
            f"{via}: {r['readings_per_s']} readings/s accepted of {r['offered_per_s']} offered "
            f"({r['readings_rejected']} rejected, {r['failed_sends']} failed sends); rules lag "
            f"max {r['rules_lag_max']}, drained {r['rules_drained_after_load_s']} s after"
        )
        print(
            f"  reading→alarm ms p50 {lat.get('p50')} p99 {lat.get('p99')} max {lat.get('max')}"
            f" ({r['probes']['alarmed']}/{r['probes']['sent']} probes)"
        )
        print(f"  CPU % of a core {r['cpu_pct_of_one_core']}; RSS peak MB {r['rss_peak_mb']}")
    c = report["results"].get("connections")
    if c:
        print(
            f"connections: {c['connected_and_published']}/{c['asked']} connected and published,"
            f" {c['alive_after_hold']} alive after the hold; gateway RSS {c['gateway_rss_mb']}"
            f" MB, {c['gateway_kb_per_connection']} KB per connection; errors {c['errors']}"
        )
    print(f"written to {out}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.hold:
        port, tokens_file, seconds = args.hold
        asyncio.run(hold(int(port), tokens_file, float(seconds)))
        return 0
    started_at = datetime.now(UTC)
    run_id = secrets.token_hex(4)
    out: Path = args.out or RESULTS_DIR / f"iot-{started_at:%Y%m%dT%H%M%SZ}.json"
    log_dir = out.with_suffix(".logs")
    log_dir.mkdir(parents=True, exist_ok=True)
    try:
        results = asyncio.run(run(args, run_id, log_dir))
    except BenchError as exc:
        print(f"bench: {exc} (logs: {log_dir})", file=sys.stderr)
        return 1
    report = {
        "benchmark": "iot",
        "run_id": run_id,
        "started_at": started_at.isoformat(),
        "machine": machine(),
        "parameters": {k: v for k, v in vars(args).items() if k not in ("out", "hold")},
        "results": results,
    }
    out.write_text(json.dumps(report, ensure_ascii=False, indent=2, default=str) + "\n")
    print_summary(report, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
