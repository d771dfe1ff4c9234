"""The vertical slice, every hop real: HTTP (uvicorn) → Kafka → `hub worker` → PostgreSQL →
the department's API, through the ticket's whole life, announced on `tickets.changes`. It fails
if any hop breaks."""

import json
import uuid
from datetime import UTC, datetime

import httpx

from schemas import topics
from schemas.ticket import TicketChangeV1
from tests.integration.helpers import eventually, read_until


async def test_a_12345_order_becomes_a_ticket_the_department_handles(
    worker, keys, api_url, prepared
):
    order_no = f"WZ-E2E-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=api_url, timeout=10) as client:
        accepted = await client.post(
            "/api/v1/intake/hotline-12345",
            headers={"X-API-Key": keys["hotline"]},
            json={
                "order_no": order_no,
                "call_time": datetime.now(UTC).isoformat(),
                "content": "鹿城区五马街窨井盖缺失，有人差点掉进去！联系13857712345",
                "request_type": "求助",
                "address": "温州市鹿城区五马街",
                "longitude": 120.6605,
                "latitude": 28.0166,
                "urgent": True,
            },
        )
        assert accepted.status_code == 202, accepted.text
        event_id = accepted.json()["event_id"]

        async def ticketed():
            status = await client.get(
                f"/api/v1/events/{event_id}", headers={"X-API-Key": keys["hotline"]}
            )
            return status.status_code == 200 and status.json()["ticket"] and status.json()

        status = await eventually(ticketed, seconds=90)
        assert status["external_id"] == order_no
        ticket_id = status["ticket"]["ticket_id"]

        lucheng = {"X-API-Key": keys["lucheng"]}
        ticket = await client.get(f"/api/v1/tickets/{ticket_id}", headers=lucheng)
        assert ticket.status_code == 200, ticket.text
        body = ticket.json()
        assert body["event_id"] == event_id
        # A missing manhole cover in 鹿城区 is 鹿城区综合行政执法局's, by a numbered rule.
        assert body["department_code"] == "urban-management-330302"
        assert body["routing_rule"] is not None and "manhole-cover" in body["routing_reason"]
        assert body["status"] == "dispatched"
        assert body["priority"] == "high"
        # manhole-cover, high: accept in 30 minutes, resolve in 12 hours, round the clock (pack)
        created = datetime.fromisoformat(body["created_at"])
        accept_due = datetime.fromisoformat(body["accept_due_at"])
        resolve_due = datetime.fromisoformat(body["resolve_due_at"])
        assert 29 * 60 < (accept_due - created).total_seconds() <= 30 * 60 + 1
        assert 12 * 3600 - 60 < (resolve_due - created).total_seconds() <= 12 * 3600 + 1
        assert "138****2345" in body["title"] and "13857712345" not in ticket.text
        assert [h["to_status"] for h in body["history"]] == ["dispatched"]

        # The department works it through its whole life; the centre verifies and closes.
        version = body["version"]
        for key, action, extra in [
            ("lucheng", "accept", {}),
            ("lucheng", "start", {}),
            ("lucheng", "resolve", {"evidence_urls": ["https://evidence.example.cn/1.jpg"]}),
            ("ops", "close", {"note": "回访满意"}),
        ]:
            done = await client.post(
                f"/api/v1/tickets/{ticket_id}/{action}",
                headers={"X-API-Key": keys[key]},
                json={"version": version, **extra},
            )
            assert done.status_code == 200, (action, done.text)
            version = done.json()["version"]
        closed = done.json()["ticket"]
        assert closed["status"] == "closed" and closed["resolved_at"] and closed["closed_at"]
        assert [h["action"] for h in closed["history"]] == [
            "dispatch", "accept", "start", "resolve", "close"
        ]  # fmt: skip
        assert closed["history"][3]["details"]["evidence_urls"] == [
            "https://evidence.example.cn/1.jpg"
        ]

        # Every change reached tickets.changes through the outbox, the last one included.
        record = await read_until(
            prepared,
            topics.TICKETS_CHANGES,
            lambda r: r.key == ticket_id.encode() and json.loads(r.value)["action"] == "close",
        )
        change = TicketChangeV1.model_validate_json(record.value)
        assert (change.to_status, change.ticket.department_code) == (
            "closed",
            "urban-management-330302",
        )

        # Another department, a source system and strangers do not see it.
        for key, expected in [("water", 403), ("triage", 403), ("hotline", 403), ("grid", 403)]:
            denied = await client.get(
                f"/api/v1/tickets/{ticket_id}", headers={"X-API-Key": keys[key]}
            )
            assert denied.status_code == expected, (key, denied.text)
        assert (await client.get(f"/api/v1/tickets/{ticket_id}")).status_code == 401
        other_source = await client.get(
            f"/api/v1/events/{event_id}", headers={"X-API-Key": keys["grid"]}
        )
        assert other_source.status_code == 404
