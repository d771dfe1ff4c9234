"""`hub demo`: start everything locally, post a sample 12345 work order, show its ticket."""

from __future__ import annotations

import asyncio
import contextlib
import json
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


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run_demo(settings: Settings, *, keep_running: bool) -> int:
    signal.signal(signal.SIGTERM, _stop_on_sigterm)  # `kill` stops it as cleanly as Ctrl-C
    for line in infra.up(settings):
        print(line)
    keys = asyncio.run(_prepare(settings))
    base = f"http://{settings.api_host}:{settings.api_port}"
    children = [_spawn(settings, "api", "api"), _spawn(settings, "worker", "worker")]
    try:
        ticket = asyncio.run(_show_sample_ticket(base, keys))
        print(json.dumps(ticket, ensure_ascii=False, indent=2))
        print(
            f"\nAPI: {base}  (OpenAPI: {base}/docs)   logs: {settings.state_dir / 'logs'}\n"
            f"ops key (demo only): {keys['ops']}\n"
            f"  curl -H 'X-API-Key: {keys['ops']}' {base}/api/v1/tickets/{ticket['ticket_id']}\n"
            f"12345 source key (demo only): {keys['source']}"
        )
        if keep_running:
            print("\nRunning. Ctrl-C stops the API and worker; `hub infra down` the rest.")
            with contextlib.suppress(KeyboardInterrupt):
                signal.pause()
        return 0
    finally:
        for child in children:
            child.send_signal(signal.SIGINT)
        for child in children:
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()
