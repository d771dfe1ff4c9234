"""`hub demo`: start everything locally (Kafka, PostgreSQL, API, worker, MQTT gateway), post a
sample 12345 work order and show its ticket, print the dashboard's address; then, until Ctrl-C,
simulated devices (a typhoon, through MQTT gateways) and a stream of citizen reports."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import Any

import httpx

from hub import infra
from hub.settings import Settings

SAMPLE_ORDER = {
    "content": "鹿城区五马街附近窨井盖缺失，行人容易踩空，请尽快处理。来电人电话13857712345。",
    "request_type": "求助",
    "address": "温州市鹿城区五马街与解放街交叉口",
    "longitude": 120.6605,
    "latitude": 28.0166,
    "coord_system": "GCJ02",
    "caller_phone": "13857712345",
    "urgent": True,
}


def _spawn(settings: Settings, name: str, *args: str) -> subprocess.Popen[bytes]:
    logs = settings.state_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / f"{name}.log", "ab") as out:
        return subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "hub.cli", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )


async def _prepare(settings: Settings) -> dict[str, str]:
    from hub.cli import create_key, migrate_all, seed_pack

    for line in await migrate_all(settings):
        print(line)
    print(f"pack wenzhou: {await seed_pack(settings, 'wenzhou')} departments")
    return {
        "source": await create_key(settings, "source", "hotline-12345", "demo"),
        "ops": await create_key(settings, "ops", "", "demo"),
    }


async def _ready(client: httpx.AsyncClient) -> bool:
    try:
        return (await client.get("/readyz")).status_code == 200
    except httpx.TransportError:
        return False  # not listening yet


async def _show_sample_ticket(base: str, keys: dict[str, str]) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        deadline = time.monotonic() + 60
        while not await _ready(client):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the API at {base} did not become ready; see .hub/logs/")
            await asyncio.sleep(0.5)
        now = datetime.now(UTC)
        # A new order each run: a second run's report joins the first one's incident.
        order = {**SAMPLE_ORDER, "order_no": f"WZ12345-DEMO-{now:%Y%m%d%H%M%S}",
                 "call_time": now.isoformat()}  # fmt: skip
        accepted = await client.post(
            "/api/v1/intake/hotline-12345", json=order, headers={"X-API-Key": keys["source"]}
        )
        accepted.raise_for_status()
        event_id = accepted.json()["event_id"]
        print(f"posted sample 12345 order → 202, event {event_id}")
        ops = {"X-API-Key": keys["ops"]}
        while time.monotonic() < deadline + 60:
            status = await client.get(f"/api/v1/events/{event_id}", headers=ops)
            if status.status_code == 200 and status.json()["ticket"]:
                ticket_id = status.json()["ticket"]["ticket_id"]
                ticket = await client.get(f"/api/v1/tickets/{ticket_id}", headers=ops)
                ticket.raise_for_status()
                result: dict[str, Any] = ticket.json()
                return result
            await asyncio.sleep(0.5)
        raise RuntimeError("the worker did not open a ticket within 120 s; see .hub/logs/")


REPORT_EVERY_S = 3.0
JITTER_DEG = 0.03  # reports scatter around the districts' centres, where people are


def report_material(settings: Settings) -> tuple[list[str], list[list[float]]]:
    """Texts (the classifier's held-out corpus) and the districts' centres."""
    from streams.classify import read_corpus

    texts = [text for text, _ in read_corpus(settings.pack_dir / "corpus" / "heldout")]
    with open(settings.pack_dir / "districts.geojson", encoding="utf-8") as handle:
        centres = [f["properties"]["label_point"] for f in json.load(handle)["features"]]
    return texts, centres


async def _report_stream(base: str, key: str, settings: Settings) -> None:
    """Citizen reports until cancelled, at points in the city around its districts' centres."""
    from hub.pack import load_pack

    pack = load_pack(settings.pack_dir)
    texts, centres = report_material(settings)
    rng = random.Random()  # noqa: S311 - demo data, not secrets
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        for number in range(1, 10**9):
            lon, lat = rng.choice(centres)
            lon, lat = lon + rng.gauss(0, JITTER_DEG), lat + rng.gauss(0, JITTER_DEG)
            if pack.contains(lon, lat):
                order = {"order_no": f"WZ12345-DEMO-{datetime.now(UTC):%Y%m%d%H%M%S}-{number}",
                         "call_time": datetime.now(UTC).isoformat(), "content": rng.choice(texts),
                         "request_type": "投诉", "longitude": round(lon, 6),
                         "latitude": round(lat, 6)}  # fmt: skip
                with contextlib.suppress(httpx.HTTPError):
                    await client.post("/api/v1/intake/hotline-12345", json=order,
                                      headers={"X-API-Key": key})  # fmt: skip
            await asyncio.sleep(REPORT_EVERY_S)


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run_demo(settings: Settings, *, keep_running: bool, devices: int = 100_000) -> int:
    signal.signal(signal.SIGTERM, _stop_on_sigterm)  # `kill` stops it as cleanly as Ctrl-C
    for line in infra.up(settings):
        print(line)
    keys = asyncio.run(_prepare(settings))
    base = f"http://{settings.api_host}:{settings.api_port}"
    children = [_spawn(settings, "api", "api"), _spawn(settings, "worker", "worker"),
                _spawn(settings, "gateway", "gateway")]  # fmt: skip
    try:
        ticket = asyncio.run(_show_sample_ticket(base, keys))
        print(json.dumps(ticket, ensure_ascii=False, indent=2))
        print(
            f"\nAPI: {base}  (OpenAPI: {base}/docs)   logs: {settings.state_dir / 'logs'}\n"
            f"ops key (demo only): {keys['ops']}\n"
            f"  curl -H 'X-API-Key: {keys['ops']}' {base}/api/v1/tickets/{ticket['ticket_id']}\n"
            f"12345 source key (demo only): {keys['source']}"
        )
        print(f"\nDashboard: {base}/?key={keys['ops']}")
        if keep_running:
            mqtt = f"{settings.mqtt_host}:{settings.mqtt_port}"
            simulate = ["--devices", str(devices), "--scenario", "typhoon", "--via", "mqtt",
                        "--mqtt", mqtt]  # fmt: skip
            children.append(_spawn(settings, "simulate", "simulate", *simulate))
            print(f"Running: {devices} simulated devices (a typhoon, over MQTT) and a citizen "
                  "report every 3 s. Ctrl-C stops it all but Kafka and PostgreSQL "
                  "(`hub infra down`).")  # fmt: skip
            with contextlib.suppress(KeyboardInterrupt):
                asyncio.run(_report_stream(base, keys["source"], settings))
        return 0
    finally:
        for child in children:
            child.send_signal(signal.SIGINT)
        for child in children:
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()
