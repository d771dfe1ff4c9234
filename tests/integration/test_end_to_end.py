"""The first vertical slice, every hop real: HTTP (uvicorn) → Kafka → `hub worker` →
PostgreSQL → HTTP read-back. It fails if any hop breaks."""

import uuid
from datetime import UTC, datetime

import httpx

from tests.integration.helpers import eventually


async def test_a_12345_order_becomes_a_ticket_the_department_can_read(worker, keys, api_url):
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

        ticket = await client.get(
            f"/api/v1/tickets/{ticket_id}", headers={"X-API-Key": keys["triage"]}
        )
        assert ticket.status_code == 200, ticket.text
        body = ticket.json()
        assert body["event_id"] == event_id
        assert body["department_code"] == "city-dispatch-centre"
        assert body["status"] == "dispatched"
        assert body["priority"] == "high"
        assert "138****2345" in body["title"] and "13857712345" not in ticket.text
        assert [h["to_status"] for h in body["history"]] == ["dispatched"]

        # Another department, a source system and strangers do not see it.
        for key, expected in [("water", 404), ("hotline", 403), ("grid", 403)]:
            denied = await client.get(
                f"/api/v1/tickets/{ticket_id}", headers={"X-API-Key": keys[key]}
            )
            assert denied.status_code == expected, (key, denied.text)
        assert (await client.get(f"/api/v1/tickets/{ticket_id}")).status_code == 401
        other_source = await client.get(
            f"/api/v1/events/{event_id}", headers={"X-API-Key": keys["grid"]}
        )
        assert other_source.status_code == 404
