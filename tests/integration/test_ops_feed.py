"""``/ws/ops`` over a real websocket to a real `hub api`, fed by the real worker through Kafka:
refusals, snapshot then deltas, filters, resuming, and a client that stops reading."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest
import websockets

from tests.integration.conftest import start_api

pytestmark = pytest.mark.integration


def ws_url(api_url: str) -> str:
    return api_url.replace("http://", "ws://") + "/ws/ops"


async def connect(api_url: str, key: str, **hello: Any) -> Any:
    socket = await websockets.connect(ws_url(api_url), max_size=2**24)
    await socket.send(orjson.dumps({"type": "hello", "key": key, **hello}).decode())
    return socket


async def next_frame(socket: Any, wait_s: float = 30) -> dict[str, Any]:
    frame: dict[str, Any] = orjson.loads(await asyncio.wait_for(socket.recv(), wait_s))
    return frame


async def frames_until(socket: Any, found: Any, wait_s: float = 90) -> list[dict[str, Any]]:
    """Frames until one has an update for which ``found(update)`` is true."""
    seen = []
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            frame = await next_frame(socket, deadline - time.monotonic())
        except TimeoutError:
            break
        seen.append(frame)
        if any(found(update) for update in frame.get("updates", [])):
            return seen
    layers = [sorted({u["layer"] for u in f.get("updates", [])}) for f in seen]
    raise AssertionError(f"not found in {len(seen)} frames: {[f['type'] for f in seen]} {layers}")


async def report(api_url: str, key: str, lon: float, lat: float, text: str) -> str:
    async with httpx.AsyncClient(base_url=api_url, timeout=10) as client:
        answer = await client.post(
            "/api/v1/intake/hotline-12345",
            headers={"X-API-Key": key},
            json={
                "order_no": f"WZ-WS-{uuid.uuid4().hex[:10]}",
                "call_time": datetime.now(UTC).isoformat(),
                "content": text,
                "request_type": "投诉",
                "longitude": lon,
                "latitude": lat,
            },
        )
    assert answer.status_code == 202, answer.text
    event_id: str = answer.json()["event_id"]
    return event_id


@pytest.mark.parametrize(
    ("who", "hello", "code"),
    [
        ("ops", {"type": "nonsense"}, 4400),
        (None, {"type": "hello", "key": "nope"}, 4401),
        ("water", None, 4403),
        ("ops", {"type": "hello", "subscribe": {"layers": ["x"]}}, 4400),
    ],
)
async def test_refusals_close_with_a_reason(
    api_url: str, keys: dict[str, str], who: str | None, hello: Any, code: int
) -> None:
    async with websockets.connect(ws_url(api_url)) as socket:
        message = hello or {"type": "hello"}
        if who is not None and "key" not in message:
            message = {**message, "key": keys[who]}
        await socket.send(orjson.dumps(message).decode())
        error = await next_frame(socket)
        assert error["type"] == "error"
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await next_frame(socket)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == code


async def test_snapshot_then_deltas_filtered_by_district(
    api_url: str, worker: Any, keys: dict[str, str]
) -> None:
    ops = keys["ops"]
    everything = await connect(api_url, ops)
    lucheng_only = await connect(
        api_url, ops, subscribe={"districts": ["330302"], "layers": ["events", "incidents"]}
    )
    for socket in (everything, lucheng_only):
        assert (await next_frame(socket))["type"] == "welcome"
        assert (await next_frame(socket))["type"] == "snapshot"
    # 鹿城区 and 龙湾区 (330303)
    in_lucheng = await report(
        api_url, keys["hotline"], 120.6605, 28.0166, "五马街路灯不亮，晚上很黑"
    )
    in_longwan = await report(api_url, keys["hotline"], 120.7600, 27.9300, "永中街道路灯坏了好几天")

    def event(event_id: str) -> Any:
        return lambda u: u["layer"] == "events" and u["key"] == event_id

    frames = await frames_until(everything, event(in_longwan))
    # The incident and its hexagons change with its first report, in the same frame or before.
    assert {"incidents", "h3"} <= {u["layer"] for f in frames for u in f.get("updates", [])}
    assert all(f["type"] in ("delta", "heartbeat") for f in frames)
    seqs = [f["seq"] for f in frames if f["type"] == "delta"]
    assert seqs == sorted(seqs) and all(f["from"] < f["seq"] for f in frames if "from" in f)

    mine = await frames_until(lucheng_only, event(in_lucheng))
    updates = [u for f in mine for u in f.get("updates", [])]
    assert {u["layer"] for u in updates} <= {"events", "incidents"}
    assert in_longwan not in {u["key"] for u in updates}
    for socket in (everything, lucheng_only):
        await socket.close()


async def test_a_client_resumes_from_its_last_seq_without_a_snapshot(
    api_url: str, worker: Any, keys: dict[str, str]
) -> None:
    first = await connect(api_url, keys["ops"], subscribe={"layers": ["events"]})
    welcome = await next_frame(first)
    snapshot = await next_frame(first)
    assert snapshot["type"] == "snapshot"
    await first.close()
    missed = await report(api_url, keys["hotline"], 120.6605, 28.0166, "松台街道垃圾堆积没人清理")
    await asyncio.sleep(3)  # the worker turns it into an incident meanwhile
    again = await connect(
        api_url,
        keys["ops"],
        subscribe={"layers": ["events"]},
        resume={"stream": welcome["stream"], "seq": snapshot["seq"]},
    )
    assert (await next_frame(again))["type"] == "welcome"
    frames = await frames_until(again, lambda u: u["key"] == missed)
    assert all(f["type"] != "snapshot" for f in frames)
    await again.close()
    # From another stream (a restarted server), the resume is a snapshot instead.
    other = await connect(api_url, keys["ops"], resume={"stream": "elsewhere", "seq": 1})
    assert (await next_frame(other))["type"] == "welcome"
    assert (await next_frame(other))["type"] == "snapshot"
    await other.close()


async def test_a_client_that_stops_reading_does_not_hold_up_the_others(
    api_url: str, worker: Any, keys: dict[str, str]
) -> None:
    slow = await connect(api_url, keys["ops"])
    fast = await connect(api_url, keys["ops"], subscribe={"layers": ["events"]})
    for socket in (fast,):
        assert (await next_frame(socket))["type"] == "welcome"
        assert (await next_frame(socket))["type"] == "snapshot"
    event_ids = [
        await report(api_url, keys["hotline"], 120.66 + i / 1000, 28.0166, f"第{i}号路灯不亮")
        for i in range(20)
    ]
    started = time.monotonic()
    missing = set(event_ids)
    while missing:  # the fast one hears of every report while the slow one reads nothing
        frames = await frames_until(fast, lambda u, m=missing: u["key"] in m, wait_s=60)
        missing -= {u["key"] for f in frames for u in f.get("updates", [])}
    assert time.monotonic() - started < 60
    # The slow one, read at last, has the newest state, not a backlog of every change.
    frames = []
    while True:
        try:
            frames.append(await next_frame(slow, wait_s=2))
        except TimeoutError:
            break
    keys_per_delta = [[u["key"] for u in f["updates"]] for f in frames if f["type"] == "delta"]
    assert all(len(k) == len(set(k)) for k in keys_per_delta)  # each key once in a frame
    assert frames[0]["type"] == "welcome"
    await slow.close()
    await fast.close()


async def test_a_new_server_starts_from_the_database_not_from_the_topics(
    api_url: str, worker: Any, keys: dict[str, str]
) -> None:
    socket = await connect(api_url, keys["ops"], subscribe={"layers": ["events", "incidents"]})
    event_id = await report(api_url, keys["hotline"], 120.6650, 28.0120, "县前头路面塌陷有深坑")
    frames = await frames_until(socket, lambda u: u["key"] == event_id)
    incident_id = next(u["value"]["incident_id"] for f in frames for u in f.get("updates", [])
                       if u["key"] == event_id)  # fmt: skip

    def ticketed(update: dict[str, Any]) -> bool:
        return update["key"] == incident_id and bool((update["value"] or {}).get("ticket_id"))

    if not any(ticketed(u) for f in frames for u in f.get("updates", [])):
        frames += await frames_until(socket, ticketed)
    live = [u["value"] for f in frames for u in f.get("updates", []) if u["key"] == incident_id][-1]
    await socket.close()
    # Replaying nothing of the topics: what it shows comes from PostgreSQL alone.
    proc, other_url = start_api({**os.environ, "HUB_OPS_REPLAY_S": "0"})
    try:
        fresh = await connect(other_url, keys["ops"])
        assert (await next_frame(fresh))["type"] == "welcome"
        snapshot = await next_frame(fresh)
        await fresh.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert snapshot["type"] == "snapshot"
    held = {(u["layer"], u["key"]): u["value"] for u in snapshot["updates"]}
    shown = held[("incidents", incident_id)]
    for field in ("category", "priority", "reports", "ticket_id", "department_code", "h3_8"):
        assert shown[field] == live[field], field
    assert ("tickets", shown["ticket_id"]) in held
    assert held[("events", event_id)]["incident_id"] == incident_id
    assert ("h3", f"8:{shown['h3_8']}") in held


async def test_an_oversized_message_closes_the_socket(api_url: str, keys: dict[str, str]) -> None:
    async with websockets.connect(ws_url(api_url)) as socket:
        await socket.send(orjson.dumps({"type": "hello", "key": keys["ops"],
                                        "pad": "x" * 100_000}).decode())  # fmt: skip
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await next_frame(socket)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009  # too big
