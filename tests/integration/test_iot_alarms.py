"""Telemetry to alarm to incident, every hop real: readings posted to the ThingsBoard HTTP API
→ iot.telemetry → the worker's rules → iot.alarms → the alarms tables; the severe alarm → an
event → correlation → a ticket at the water department."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
import orjson
import pytest

from iot_ingest.alarms import store_alarm_changes
from schemas.alarm import AlarmChangeV1, alarm_id_for
from tests.integration.helpers import cleared_alarm, eventually, register_device

pytestmark = pytest.mark.integration


async def test_a_rising_river_raises_escalates_and_clears_an_alarm_and_opens_a_ticket(
    api: httpx.AsyncClient, worker: Any, pool: Any
) -> None:
    token = f"tok-{uuid.uuid4().hex}"
    device_id = await register_device(pool, token, lon=120.6555, lat=28.0167)
    t0 = int(time.time() * 1000) - 60 * 60_000  # an hour ago, in data time
    # Rises (warning after 120 s above 4.0, major on the rate, critical after 60 s above 5.0),
    # falls fast (the rate alarm holds), then stays below 3.8 for over 600 s: cleared.
    levels = [(0, 4.2), (130, 4.3), (200, 4.35), (330, 5.2), (400, 5.3), (470, 5.3),
              (600, 3.0), (1300, 3.1), (2000, 3.0)]  # fmt: skip
    body = [{"ts": t0 + s * 1000, "values": {"water_level_m": v}} for s, v in levels]
    answer = await api.post(f"/api/v1/{token}/telemetry", content=orjson.dumps(body))
    assert answer.status_code == 200, answer.text

    alarm = await cleared_alarm(pool, device_id, "high-water-level")
    history = await pool.fetch(
        "SELECT kind, severity, at FROM alarm_history WHERE alarm_id = $1 ORDER BY at, kind",
        alarm["alarm_id"],
    )
    kinds = [h["kind"] for h in history]
    assert kinds[0] == "raised" and kinds[-1] == "cleared" and "escalated" in kinds
    # The alarm times are the data's, not the worker's.
    assert int(history[0]["at"].timestamp() * 1000) == t0 + 130_000
    assert "critical" in {h["severity"] for h in history}
    # Its last reading is 27 minutes old, past the 10-minute inactivity timeout: the device is
    # now silent, so the only alarm left active is no-data.
    active = await pool.fetch(
        "SELECT alarm_type FROM alarms WHERE device_id = $1 AND cleared_at IS NULL", device_id
    )
    assert [a["alarm_type"] for a in active] in ([], ["no-data"])

    async def ticketed() -> Any:
        return await pool.fetchrow(
            """SELECT e.category, e.priority, t.department_code, t.ticket_id
               FROM events e JOIN event_tickets t USING (event_id)
               WHERE e.source = 'iot' AND e.external_id LIKE $1
               ORDER BY e.occurred_at LIMIT 1""",
            f"{device_id}:%",
        )

    ticket = await eventually(ticketed, seconds=60)
    assert ticket["category"] == "waterlogging" and ticket["department_code"] == "water"
    # The major and the critical alarm are reports about one spot: one incident, one ticket.
    tickets = await pool.fetchval(
        """SELECT count(DISTINCT t.ticket_id) FROM events e JOIN event_tickets t USING (event_id)
           WHERE e.source = 'iot' AND e.external_id LIKE $1""",
        f"{device_id}:%",
    )
    assert tickets == 1


async def test_a_silent_device_raises_no_data_and_its_next_reading_clears_it(
    api: httpx.AsyncClient, worker: Any, pool: Any
) -> None:
    """A device whose inactivity timeout is 2 s: its reading arms a deadline; the worker's
    tick raises `no-data` once it passes; the next reading clears it. No ticket comes of it."""
    token = f"tok-{uuid.uuid4().hex}"
    device_id = await register_device(pool, token, inactivity_timeout_s=2)
    assert (await api.post(f"/api/v1/{token}/telemetry", json={"water_level_m": 1.0})).is_success

    async def alarm(cleared: bool) -> Any:
        row = await pool.fetchrow(
            "SELECT alarm_id, raised_at, cleared_at FROM alarms"
            " WHERE device_id = $1 AND alarm_type = 'no-data'",
            device_id,
        )
        return row if row is not None and (row["cleared_at"] is not None) == cleared else None

    raised = await eventually(lambda: alarm(cleared=False), seconds=30)
    assert (await api.post(f"/api/v1/{token}/telemetry", json={"water_level_m": 1.0})).is_success
    cleared = await eventually(lambda: alarm(cleared=True), seconds=30)
    assert cleared["alarm_id"] == raised["alarm_id"] and cleared["cleared_at"] > raised["raised_at"]
    events = await pool.fetchval(
        "SELECT count(*) FROM events WHERE source = 'iot' AND external_id LIKE $1",
        f"{device_id}:%",
    )
    assert events == 0


async def test_a_department_lists_and_acknowledges_its_devices_alarms_only(
    api: httpx.AsyncClient, pool: Any, keys: dict[str, str]
) -> None:
    device_id = await register_device(pool, f"tok-{uuid.uuid4().hex}")  # the water department's
    at = int(time.time() * 1000)
    raised = AlarmChangeV1(
        alarm_id=alarm_id_for(device_id, "high-water-level", at), device_id=device_id,
        profile="water-level", alarm_type="high-water-level", kind="raised", severity="critical",
        previous=None, raised_at=at, at=at, value=5.2, reason="water_level_m 5.2 >= 5",
    )  # fmt: skip
    await store_alarm_changes(pool, [raised, raised])  # a replay changes nothing
    water, lucheng, ops = ({"X-API-Key": keys[k]} for k in ("water", "lucheng", "ops"))

    mine = await api.get("/api/v1/alarms", headers=water)
    assert mine.status_code == 200 and str(raised.alarm_id) in {a["alarm_id"] for a in mine.json()}
    theirs = await api.get("/api/v1/alarms", headers=lucheng)
    assert str(raised.alarm_id) not in {a["alarm_id"] for a in theirs.json()}
    everything = await api.get("/api/v1/alarms", headers=ops, params={"severity": "critical"})
    assert str(raised.alarm_id) in {a["alarm_id"] for a in everything.json()}

    url = f"/api/v1/alarms/{raised.alarm_id}/ack"
    assert (await api.post(url, headers=lucheng)).status_code == 403
    acked = await api.post(url, headers=water)
    assert acked.status_code == 200 and acked.json()["acknowledged_by"].startswith(
        "department:water"
    )
    again = await api.post(url, headers=ops)
    assert again.json()["acknowledged_at"] == acked.json()["acknowledged_at"]
    assert (await api.post(f"/api/v1/alarms/{uuid.uuid4()}/ack", headers=ops)).status_code == 404
    kinds = await pool.fetch(
        "SELECT kind FROM alarm_history WHERE alarm_id = $1 ORDER BY at", raised.alarm_id
    )
    assert [k["kind"] for k in kinds] == ["raised", "acknowledged"]


async def test_an_alarm_whose_rule_an_admin_removes_clears_at_the_next_reading(
    api: httpx.AsyncClient, worker: Any, pool: Any, keys: dict[str, str]
) -> None:
    token = f"tok-{uuid.uuid4().hex}"
    device_id = await register_device(pool, token, profile="smoke", department="fire-rescue")
    ops = {"X-API-Key": keys["ops"]}
    assert (await api.post(f"/api/v1/{token}/telemetry", json={"smoke_alarm": 1})).is_success

    async def smoke_alarm() -> Any:
        return await pool.fetchrow(
            "SELECT alarm_id, cleared_at, reason FROM alarms"
            " WHERE device_id = $1 AND alarm_type = 'smoke-alarm'",
            device_id,
        )

    raised = await eventually(smoke_alarm, seconds=30)
    assert raised["cleared_at"] is None
    profiles = (await api.get("/api/v1/admin/device-profiles", headers=ops)).json()
    original = next(p["rules"] for p in profiles if p["code"] == "smoke")
    fewer = [rule for rule in original if rule["alarm_type"] != "smoke-alarm"]
    url = "/api/v1/admin/device-profiles/smoke/rules"
    assert (await api.put(url, headers=ops, json=fewer)).status_code == 200
    try:
        await asyncio.sleep(2)  # the worker rereads rules every second in tests
        assert (await api.post(f"/api/v1/{token}/telemetry", json={"smoke_alarm": 1})).is_success

        async def cleared() -> Any:
            row = await smoke_alarm()
            return row if row["cleared_at"] is not None else None

        row = await eventually(cleared, seconds=30)
        why = await pool.fetchval(
            "SELECT reason FROM alarm_history WHERE alarm_id = $1 AND kind = 'cleared'",
            raised["alarm_id"],
        )
        assert row["alarm_id"] == raised["alarm_id"] and "rule was removed" in why
    finally:
        await api.put(url, headers=ops, json=original)


async def test_an_alarm_the_database_refuses_is_dead_lettered_and_the_rest_stored(
    worker: Any, pool: Any, producer: Any, prepared: Any
) -> None:
    good_device = await register_device(pool, f"tok-{uuid.uuid4().hex}", lon=120.66, lat=28.01)
    at = int(time.time() * 1000)

    def raised(device_id: uuid.UUID) -> AlarmChangeV1:
        return AlarmChangeV1(
            alarm_id=alarm_id_for(device_id, "high-water-level", at), device_id=device_id,
            profile="water-level", alarm_type="high-water-level", kind="raised",
            severity="major", previous=None, raised_at=at, at=at, value=5.1, reason="test",
        )  # fmt: skip

    unknown = raised(uuid.uuid4())  # no such device: the alarms table's foreign key refuses it
    good = raised(good_device)
    topic = prepared.topic("iot.alarms")
    # Same partition (same key), bad first: a stage that retried the bad one forever would
    # never reach the good one.
    for change in (unknown, good):
        await producer.send_and_wait(topic, orjson.dumps(change.model_dump(mode="json")),
                                     key=b"same-partition")  # fmt: skip

    stored = await eventually(
        lambda: pool.fetchval("SELECT alarm_id FROM alarms WHERE alarm_id = $1", good.alarm_id)
    )
    assert stored == good.alarm_id
    reason = await eventually(
        lambda: pool.fetchval(
            "SELECT reason FROM dead_letters WHERE stage = 'alarms' AND position($1 in value) > 0",
            str(unknown.alarm_id).encode(),
        )
    )
    assert "refused" in reason and "ForeignKey" in reason
