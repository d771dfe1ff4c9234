"""Departments' webhooks, end to end: a change of a department's ticket is POSTed by the real
worker to the department's own endpoint (a small HTTP server here), signed, and retried after
a failure."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from dispatch.rulebook import load_rulebook
from hub.settings import Settings
from tests.integration.helpers import eventually, incident_change, open_ticket

pytestmark = pytest.mark.integration


class Receiver:
    """A department's system: refuses its first request (503), then accepts."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.port = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        pairs = (line.partition(":") for line in lines[1:] if line)
        headers = {name.lower(): value.strip() for name, _, value in pairs}
        body = await reader.readexactly(int(headers.get("content-length", 0)))
        self.requests.append((headers, body))
        status = "503 Service Unavailable" if len(self.requests) == 1 else "200 OK"
        writer.write(
            f"HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode()
        )
        await writer.drain()
        writer.close()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    server = await asyncio.start_server(receiver.handle, "127.0.0.1", 0)
    receiver.port = server.sockets[0].getsockname()[1]
    yield receiver
    server.close()


async def test_a_departments_ticket_changes_reach_its_webhook_signed_and_retried(
    api: httpx.AsyncClient,
    worker: Any,
    pool: Any,
    keys: dict[str, str],
    prepared: Settings,
    receiver: Receiver,
) -> None:
    ops = {"X-API-Key": keys["ops"]}
    url = f"http://127.0.0.1:{receiver.port}/hub-events"
    set_up = await api.put(
        "/api/v1/admin/departments/housing-330304/webhook", headers=ops, json={"url": url}
    )
    assert set_up.status_code == 200, set_up.text
    secret = set_up.json()["secret"]
    assert secret and secret.startswith("whsec_")
    again = await api.put(
        "/api/v1/admin/departments/housing-330304/webhook", headers=ops, json={"url": url}
    )
    assert again.json()["secret"] is None  # shown once; kept unless rotated
    try:
        async with pool.acquire() as conn:
            book = await load_rulebook(conn, prepared.pack_dir)
        # An unsafe building in 瓯海区 is 瓯海区住房和城乡建设局's (the pack's rules).
        change = incident_change(category="building-safety", priority="high",
                                 district_code="330304", lon=120.6375, lat=27.9995)  # fmt: skip
        ticket_id = await open_ticket(pool, book, change, now=datetime.now(UTC))

        async def delivered() -> Any:
            rows = await pool.fetch(
                "SELECT attempts, delivered_at, last_status FROM webhook_deliveries"
                " WHERE department_code = 'housing-330304'"
            )
            return rows if rows and all(r["delivered_at"] for r in rows) else None

        [row] = await eventually(delivered, seconds=30)
        assert row["attempts"] == 2 and row["last_status"] == 200  # 503 first, then accepted
        assert len(receiver.requests) == 2
        headers, body = receiver.requests[-1]
        assert receiver.requests[0][1] == body  # the retry sends the same bytes
        expected = hmac.new(
            secret.encode(), headers["x-hub-timestamp"].encode() + b"." + body, hashlib.sha256
        ).hexdigest()
        assert headers["x-hub-signature-256"] == f"sha256={expected}"
        change_record = json.loads(body)
        assert change_record["ticket_id"] == str(ticket_id)
        assert change_record["action"] == "dispatch"
        assert headers["x-hub-delivery"] == str(change_record["change_id"])
        assert change_record["ticket"]["department_code"] == "housing-330304"

        listed = await api.get(
            "/api/v1/admin/departments/housing-330304/webhook/deliveries", headers=ops
        )
        assert [d["last_status"] for d in listed.json()] == [200]
        denied = await api.get(
            "/api/v1/admin/departments/housing-330304/webhook/deliveries",
            headers={"X-API-Key": keys["lucheng"]},
        )
        assert denied.status_code == 403
    finally:
        gone = await api.delete("/api/v1/admin/departments/housing-330304/webhook", headers=ops)
        assert gone.status_code == 204
