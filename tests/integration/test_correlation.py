"""Correlation on the real broker, worker and database: reports about one spot from any source
become one incident with one ticket; reports 2 km apart stay two."""

import random
import uuid
from datetime import UTC, datetime

from geo.h3cells import cell_of
from hub.auth import create_api_key
from schemas import topics
from schemas.codec import dumps
from schemas.event import Crs, EventV1, Location, Priority, Source
from streams.batchloop import group_for
from streams.correlate.engine import correlation_key
from tests.integration.conftest import start_worker
from tests.integration.helpers import eventually, stable_members

CALLS = ["南塘街地下通道积水很深，车辆无法通行", "下了一夜暴雨，桥洞下面积水快到膝盖了",
         "隧道口积水严重，有车熄火了"]  # fmt: skip


def a_spot() -> tuple[float, float]:
    """A fresh spot inside 鹿城/瓯海 per run, so other tests' reports never join in."""
    rng = random.Random()
    return 120.60 + rng.random() * 0.08, 27.98 + rng.random() * 0.03


def moved(spot, east_m=0.0):
    return spot[0] + east_m / (111_320 * 0.883), spot[1]


def alarm_at(spot) -> EventV1:
    """What the IoT rules will emit for a water-level alarm (the IoT issue builds them)."""
    lon, lat = spot
    return EventV1(
        event_id=uuid.uuid4(),
        source=Source.IOT,
        external_id=f"WL-{uuid.uuid4().hex[:8]}",
        occurred_at=datetime.now(UTC),
        received_at=datetime.now(UTC),
        location=Location(lon=lon, lat=lat, source_crs=Crs.WGS84, source_lon=lon, source_lat=lat),
        text="水位超过警戒线",
        category="waterlogging",
        category_method="code",
        priority=Priority.HIGH,
        h3_cell=cell_of(lon, lat),
        district_code="330302",
        raw={"alarm": "water-level"},
    )


async def incident_of(pool, source: str, external_id: str):
    return await pool.fetchrow(
        """SELECT m.incident_id, i.reports, i.sources, i.priority, t.ticket_id, t.priority AS tp
           FROM intake_receipts r JOIN incident_members m USING (event_id)
           JOIN incidents i USING (incident_id) JOIN tickets t USING (incident_id)
           WHERE r.source = $1 AND r.external_id = $2""",
        source,
        external_id,
    )


async def test_one_spot_many_sources_one_incident_and_2_km_away_another(
    api, keys, pool, producer, prepared, worker
):
    spot = a_spot()
    async with pool.acquire() as conn:
        inspector_key = await create_api_key(conn, role="source", scope="urban-inspection")
    now = datetime.now(UTC).isoformat()
    orders = []
    for i, text in enumerate(CALLS):
        order_no = f"WZ-C-{uuid.uuid4().hex[:10]}"
        lon, lat = moved(spot, 40 * i)
        response = await api.post(
            "/api/v1/intake/hotline-12345",
            headers={"X-API-Key": keys["hotline"]},
            json={"order_no": order_no, "call_time": now, "content": text,
                  "longitude": lon, "latitude": lat, "coord_system": "WGS84"},
        )  # fmt: skip
        assert response.status_code == 202, response.text
        orders.append(order_no)
    case_no = f"CG-C-{uuid.uuid4().hex[:10]}"
    lon, lat = moved(spot, 150)
    response = await api.post(
        "/api/v1/intake/urban-inspection",
        headers={"X-API-Key": inspector_key},
        json={"case_no": case_no, "discovered_at": now, "kind": "event", "code": "01072",
              "description": "排水泵站故障，路面积水", "longitude": lon, "latitude": lat,
              "inspector_id": "INS-1"},
    )  # fmt: skip
    assert response.status_code == 202, response.text
    alarm = alarm_at(moved(spot, 80))
    await producer.send_and_wait(
        prepared.topic(topics.EVENTS_ENRICHED), dumps(alarm), key=correlation_key(alarm)
    )
    far_no = f"WZ-C-{uuid.uuid4().hex[:10]}"
    far_lon, far_lat = moved(spot, 2000)
    response = await api.post(
        "/api/v1/intake/hotline-12345",
        headers={"X-API-Key": keys["hotline"]},
        json={"order_no": far_no, "call_time": now, "content": CALLS[0],
              "longitude": far_lon, "latitude": far_lat, "coord_system": "WGS84"},
    )  # fmt: skip
    assert response.status_code == 202

    async def all_in() -> bool:
        first = await incident_of(pool, "hotline-12345", orders[0])
        return first is not None and first["reports"] == 5 and first

    first = await eventually(all_in, seconds=90)
    assert sorted(first["sources"]) == ["hotline-12345", "iot", "urban-inspection"]
    for order_no in orders[1:]:
        assert (await incident_of(pool, "hotline-12345", order_no))["incident_id"] == first[
            "incident_id"
        ]
    assert (await incident_of(pool, "urban-inspection", case_no))["incident_id"] == first[
        "incident_id"
    ]
    alarm_incident = await pool.fetchval(
        "SELECT incident_id FROM incident_members WHERE event_id = $1", alarm.event_id
    )
    assert alarm_incident == first["incident_id"]
    # Five reports, one of them an alarm: one level above the category's high → urgent.
    assert first["priority"] == first["tp"] == "urgent"
    tickets = await pool.fetchval(
        "SELECT count(*) FROM tickets WHERE incident_id = $1", first["incident_id"]
    )
    assert tickets == 1
    attached = await pool.fetchval(
        """SELECT count(*) FROM ticket_history
           WHERE ticket_id = $1 AND action = 'report_attached'""",
        first["ticket_id"],
    )
    assert attached == 4

    far = await eventually(lambda: incident_of(pool, "hotline-12345", far_no), seconds=90)
    assert far["incident_id"] != first["incident_id"] and far["reports"] == 1


async def test_open_incidents_survive_workers_joining_and_leaving(worker, producer, pool, prepared):
    """The correlation state moves with its partitions: with a second worker joining the group
    and then leaving, reports about the same spot still join the first report's incident, so
    whichever worker took the partition restored the open incident from the changelog."""
    spot = a_spot()

    async def send_and_wait(alarm):
        await producer.send_and_wait(
            prepared.topic(topics.EVENTS_ENRICHED), dumps(alarm), key=correlation_key(alarm)
        )
        return await eventually(
            lambda: pool.fetchval(
                "SELECT incident_id FROM incident_members WHERE event_id = $1", alarm.event_id
            ),
            seconds=60,
        )

    first = await send_and_wait(alarm_at(spot))
    group = group_for(prepared, "correlate")
    second = start_worker(prepared, "second")
    try:
        await eventually(lambda: has_members(prepared, group, 2), seconds=60)
        assert await send_and_wait(alarm_at(moved(spot, 40))) == first
    finally:
        second.terminate()
        second.wait(timeout=30)
    await eventually(lambda: has_members(prepared, group, 1), seconds=60)
    assert await send_and_wait(alarm_at(moved(spot, 80))) == first
    reports = await pool.fetchval("SELECT reports FROM incidents WHERE incident_id = $1", first)
    assert reports == 3


async def has_members(settings, group: str, count: int) -> bool:
    return await stable_members(settings, group) == count
