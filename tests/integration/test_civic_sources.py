"""The four civic sources (12345, 120, urban inspection, grid governance) against the real
broker, database and `hub worker`: intake, edge checks, batches, updates, dead letters, stats.

Every record uses a fresh external id, so the module can run again on the same database.
"""

from __future__ import annotations

import contextlib
import math
import os
import subprocess
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from dispatch.routing.rules import RoutingContext, route
from geo.crs import gcj02_to_bd09, to_wgs84, wgs84_to_gcj02
from hub.auth import create_api_key
from hub.bus import BULK_RECORDS
from hub.pack import load_pack
from hub.settings import Settings
from schemas import topics
from schemas.codec import dumps, loads
from schemas.event import EventV1, Source, event_id_for
from schemas.intake import CHINA_TZ, CIVIC_SOURCES, IntakeEnvelope
from streams.batchloop import group_for
from tests.integration.helpers import earliest_consumer, end_offsets, eventually, read_until

pytestmark = pytest.mark.integration

INTAKE = "/api/v1/intake"
DEAD_LETTERS = "/api/v1/admin/dead-letters"
STATS = "/api/v1/admin/intake-stats"
TRIAGE = "city-dispatch-centre"
WORKER_S = 90  # anything that needs the worker (it may still be starting)
SOURCES = [s.value for s in CIVIC_SOURCES]
ID_FIELD = {s.value: spec.external_id_field for s, spec in CIVIC_SOURCES.items()}
TIME_FIELD = {s.value: spec.time_field for s, spec in CIVIC_SOURCES.items()}
TEXT_FIELD = {
    "hotline-12345": "content",
    "emergency-120": "chief_complaint",
    "urban-inspection": "description",
    "grid-governance": "description",
}
# A place in Lucheng district, WGS-84, and the same place as Chinese maps (GCJ-02) show it.
WGS_POINT = (120.6994, 27.9938)
GCJ_POINT = wgs84_to_gcj02(*WGS_POINT)


# Hex digits as letters: a random id with a long run of digits can look like a phone number,
# and intake masks those even in ids (see test_ids_that_look_like_phone_numbers_are_kept).
_NO_DIGITS = str.maketrans("0123456789", "ghijklmnop")


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:16].translate(_NO_DIGITS)}"


def recent(minutes: float = 5) -> str:
    return (datetime.now(UTC) - timedelta(minutes=minutes)).isoformat()


def hotline(**overrides: Any) -> dict[str, Any]:
    return {
        "order_no": uid("WZ"),
        "call_time": recent(),
        "content": "鹿城区五马街路灯不亮，晚上很黑。联系电话13857712345",
        "request_type": "求助",
        "address": "温州市鹿城区五马街",
        "longitude": GCJ_POINT[0],
        "latitude": GCJ_POINT[1],  # the hotline's default system is GCJ-02
        "caller_phone": "13857712345",
        **overrides,
    }


def emergency(**overrides: Any) -> dict[str, Any]:
    return {
        "case_no": uid("120"),
        "call_time": recent(),
        "chief_complaint": "男性，约60岁，胸痛伴呼吸困难",
        "patients": 1,
        "dispatch_level": 2,
        "address": "温州市鹿城区人民路",
        "longitude": WGS_POINT[0],
        "latitude": WGS_POINT[1],  # the 120 line's default is WGS-84 (GPS)
        "caller_phone": "13957700001",
        **overrides,
    }


def urban(**overrides: Any) -> dict[str, Any]:
    return {
        "case_no": uid("CG"),
        "discovered_at": recent(),
        "kind": "event",
        "code": "01001",
        "description": "供水井盖破损，存在安全隐患",
        "photo_urls": ["https://img.example.org/cases/1.jpg"],
        "inspector_id": "INS-0427",
        "address": "温州市鹿城区信河街",
        "longitude": WGS_POINT[0],
        "latitude": WGS_POINT[1],
        **overrides,
    }


def grid(**overrides: Any) -> dict[str, Any]:
    return {
        "event_no": uid("GE"),
        "grid_id": "LC-WM-003",
        "event_type": "安全隐患",
        "description": "小区楼道堆放大量杂物，堵塞消防通道",
        "reported_at": recent(),
        "worker_id": "GW-1187",
        "address": "温州市鹿城区五马街道",
        "longitude": GCJ_POINT[0],
        "latitude": GCJ_POINT[1],  # the app's default system is GCJ-02
        **overrides,
    }


PAYLOAD: dict[str, Callable[..., dict[str, Any]]] = {
    "hotline-12345": hotline,
    "emergency-120": emergency,
    "urban-inspection": urban,
    "grid-governance": grid,
}


def headers(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


def metres(a: tuple[float, float], b: tuple[float, float]) -> float:
    lon1, lat1, lon2, lat2 = map(math.radians, (*a, *b))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * 6_371_000 * math.asin(math.sqrt(h))


@pytest.fixture(scope="module")
async def source_keys(pool: Any, keys: dict[str, str]) -> dict[str, str]:
    """A key per civic source: the two the session has, and the 120 and urban ones made here."""
    async with pool.acquire() as conn:
        emergency_key = await create_api_key(conn, role="source", scope="emergency-120")
        urban_key = await create_api_key(conn, role="source", scope="urban-inspection")
    return {
        "hotline-12345": keys["hotline"],
        "emergency-120": emergency_key,
        "urban-inspection": urban_key,
        "grid-governance": keys["grid"],
    }


def another_source(source: str) -> str:
    return SOURCES[(SOURCES.index(source) + 1) % len(SOURCES)]


async def from_worker(
    worker: subprocess.Popen[bytes], check: Callable[[], Any], *, every: float = 0.3
) -> Any:
    """``eventually(check)`` for effects of the worker; fails at once if the worker died."""

    async def checked() -> Any:
        assert worker.poll() is None, (
            f"hub worker exited with {worker.returncode}: see .hub/test-worker-*.log"
        )
        return await check()

    return await eventually(checked, seconds=WORKER_S, every=every)


async def stored_with_ticket(pool: Any, event_id: uuid.UUID) -> Any:
    return await pool.fetchrow(
        """SELECT e.source, e.external_id, e.source_category, e.priority, e.lon, e.lat,
                  e.occurred_at, e.text, e.revision, t.ticket_id, t.department_code,
                  t.status AS ticket_status, t.priority AS ticket_priority, e.category,
                  e.district_code, tk.routing_reason
           FROM events e JOIN event_tickets t USING (event_id)
           JOIN tickets tk ON tk.ticket_id = t.ticket_id
           WHERE e.event_id = $1""",
        event_id,
    )


async def read_all(
    worker: subprocess.Popen[bytes],
    settings: Settings,
    topic: str,
    predicate: Callable[[Any], bool],
    *,
    count: int,
) -> list[Any]:
    """The first ``count`` records of ``topic`` (from the beginning) matching ``predicate``."""
    consumer = earliest_consumer(settings, topic)
    await consumer.start()
    found: list[Any] = []
    try:

        async def enough() -> bool:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                found.extend(r for r in records if predicate(r))
            return len(found) >= count

        await from_worker(worker, enough, every=0)
        return found[:count]
    finally:
        await consumer.stop()


async def worker_has_processed(
    worker: subprocess.Popen[bytes], settings: Settings, topic: str, partition: int, offset: int
) -> None:
    """Wait until the stage reading ``topic`` has committed past ``offset``: a batch loop
    commits a record only after its stage has finished with it."""
    group = {
        topics.INTAKE_RAW: group_for(settings, "normalize"),
        topics.EVENTS_ENRICHED: group_for(settings, "correlate"),
        topics.INCIDENTS: group_for(settings, "tickets"),
    }[topic]
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap)
    await admin.start()
    tp = TopicPartition(settings.topic(topic), partition)
    try:

        async def committed_past() -> bool:
            offsets = await admin.list_consumer_group_offsets(group, partitions=[tp])
            meta = offsets.get(tp)
            return meta is not None and meta.offset > offset

        await from_worker(worker, committed_past)
    finally:
        await admin.close()


# ---------------------------------------------------------------------------------------------
# One record of each source, all the way to a ticket, and read back.

SINGLE_CASES = [
    pytest.param(
        "hotline-12345",
        {"request_type": "求助", "urgent": True},
        {"source_category": "求助", "priority": "high", "crs": "GCJ02"},
        id="12345-urgent-help-gcj02",
    ),
    pytest.param(
        "hotline-12345",
        {
            "request_type": "投诉",
            "coord_system": "WGS84",
            "longitude": WGS_POINT[0],
            "latitude": WGS_POINT[1],
        },
        {"source_category": "投诉", "priority": "normal", "crs": "WGS84"},
        id="12345-complaint-wgs84",
    ),
    pytest.param(
        "emergency-120",
        {"dispatch_level": 1},
        {"source_category": "level-1", "priority": "urgent", "crs": "WGS84"},
        id="120-level-1",
    ),
    pytest.param(
        "emergency-120",
        {"dispatch_level": 4, "patients": 3},
        {"source_category": "level-4", "priority": "urgent", "crs": "WGS84"},
        id="120-level-4-three-patients",
    ),
    pytest.param(
        "emergency-120",
        {"dispatch_level": 3},
        {"source_category": "level-3", "priority": "high", "crs": "WGS84"},
        id="120-level-3",
    ),
    pytest.param(
        "emergency-120",
        {"dispatch_level": 4, "patients": 2},
        {"source_category": "level-4", "priority": "normal", "crs": "WGS84"},
        id="120-level-4-two-patients",
    ),
    pytest.param(
        "urban-inspection",
        {"kind": "event", "code": "01001"},
        # 01001 maps to manhole-cover, whose default priority is high (packs/wenzhou).
        {"source_category": "event:01001", "priority": "high", "crs": "WGS84"},
        id="urban-event",
    ),
    pytest.param(
        "urban-inspection",
        {
            "kind": "component",
            "code": "01013",
            "coord_system": "GCJ02",
            "longitude": GCJ_POINT[0],
            "latitude": GCJ_POINT[1],
        },
        # 01013 (消防设施) maps to fire-hazard: high by default.
        {"source_category": "component:01013", "priority": "high", "crs": "GCJ02"},
        id="urban-component-gcj02",
    ),
    pytest.param(
        "grid-governance",
        {"event_type": "安全隐患"},
        # 安全隐患 has no mapping: the text (a blocked fire lane) classifies as fire-hazard.
        {"source_category": "安全隐患", "priority": "high", "crs": "GCJ02"},
        id="grid-gcj02",
    ),
]


@pytest.mark.parametrize(("source", "overrides", "expect"), SINGLE_CASES)
async def test_a_record_becomes_a_ticket_the_source_can_read_back(
    api, worker, pool, prepared, keys, source_keys, source, overrides, expect
):
    body = PAYLOAD[source](**overrides)
    external_id = body[ID_FIELD[source]]
    own = headers(source_keys[source])
    url = f"{INTAKE}/{source}"

    response = await api.post(url, json=body, headers=own)
    assert (response.status_code, response.json()["status"]) == (202, "accepted"), response.text
    event_id = uuid.UUID(response.json()["event_id"])
    assert event_id == event_id_for(source, external_id)
    again = await api.post(url, json=body, headers=own)
    assert (again.status_code, again.json()) == (
        200,
        {"event_id": str(event_id), "status": "duplicate"},
    )

    row = await from_worker(worker, lambda: stored_with_ticket(pool, event_id))
    assert (row["source"], row["external_id"]) == (source, external_id)
    assert row["source_category"] == expect["source_category"]
    assert row["priority"] == expect["priority"]
    # The ticket carries the whole incident: never less pressing than any of its reports.
    ranks = ["low", "normal", "high", "urgent"]
    assert ranks.index(row["ticket_priority"]) >= ranks.index(row["priority"])
    # Routed by the pack's rules: the department they name for this category, district and
    # priority (the rules themselves are tested in tests/unit/test_routing.py).
    pack = load_pack(prepared.pack_dir)
    routed = route(
        pack.routing_rules,
        RoutingContext(
            row["category"], row["district_code"], row["ticket_priority"], datetime.now(UTC)
        ),
        triage=TRIAGE,
    )
    assert (row["department_code"], row["ticket_status"]) == (routed.department_code, "dispatched")
    assert routed.department_code != TRIAGE and row["routing_reason"].startswith("rule ")
    assert row["revision"] == 1
    assert row["occurred_at"] == datetime.fromisoformat(body[TIME_FIELD[source]])
    assert row["text"] == body[TEXT_FIELD[source]].replace("13857712345", "138****2345")
    sent = (body["longitude"], body["latitude"])
    stored = (row["lon"], row["lat"])
    if expect["crs"] == "WGS84":
        assert stored == sent
    else:
        assert 100 < metres(sent, stored) < 1000, metres(sent, stored)
        assert metres(stored, WGS_POINT) < 0.01  # the GCJ-02 point came from WGS_POINT
        assert stored == pytest.approx(to_wgs84(*sent, expect["crs"]), abs=1e-9)

    read = await api.get(f"{url}/{external_id}", headers=own)
    assert read.status_code == 200, read.text
    data = read.json()
    department_names = {d.code: d.name for d in load_pack(prepared.pack_dir).departments}
    assert data["state"] == "ticketed"
    assert (data["source"], data["external_id"], data["event_id"]) == (
        source,
        external_id,
        str(event_id),
    )
    assert data["ticket"]["ticket_id"] == str(row["ticket_id"])
    assert data["ticket"]["department_code"] == routed.department_code
    assert data["ticket"]["department_name"] == department_names[routed.department_code]
    assert data["ticket"]["status"] == "dispatched"
    assert (data["priority"], data["source_category"]) == (
        expect["priority"],
        expect["source_category"],
    )
    assert (data["lon"], data["lat"]) == stored
    assert (data["revision"], data["deliveries"]) == (1, 1)  # the duplicate was not sent again

    other = await api.get(
        f"{url}/{external_id}", headers=headers(source_keys[another_source(source)])
    )
    assert other.status_code == 403, other.text
    department = await api.get(f"{url}/{external_id}", headers=headers(keys["triage"]))
    assert department.status_code == 403, department.text
    ops = await api.get(f"{url}/{external_id}", headers=headers(keys["ops"]))
    assert ops.status_code == 200, ops.text
    assert ops.json()["ticket"]["ticket_id"] == data["ticket"]["ticket_id"]
    unknown = await api.get(f"{url}/{uid('NOPE')}", headers=own)
    assert unknown.status_code == 404, unknown.text


# ---------------------------------------------------------------------------------------------
# Edge checks: refused with 422 naming the field, and nothing reaches intake.raw.

AN_HOUR = timedelta(hours=1)
TWO_YEARS = timedelta(days=730)


def _edge_cases() -> list[Any]:
    cases = []
    for source in SOURCES:
        when, text = TIME_FIELD[source], TEXT_FIELD[source]
        cases += [
            pytest.param(source, {when: AN_HOUR}, when, "future", id=f"{source}-future"),
            pytest.param(source, {when: -TWO_YEARS}, when, "365 days", id=f"{source}-too-old"),
            pytest.param(
                source,
                {"longitude": 0, "latitude": 0},
                "longitude",
                "(0, 0)",
                id=f"{source}-null-island",
            ),
            pytest.param(
                source,
                {"longitude": 28.0, "latitude": 120.6},
                ("longitude", "latitude"),
                "swapped",
                id=f"{source}-swapped",
            ),
            pytest.param(
                source,
                {"longitude": 116.4, "latitude": 39.9, "coord_system": "WGS84"},
                "longitude",
                "outside",
                id=f"{source}-beijing",
            ),
            pytest.param(source, {text: "长" * 4001}, text, "4000", id=f"{source}-text-4001"),
            # PostgreSQL cannot store U+0000 in text or jsonb.
            pytest.param(source, {text: "井盖\x00缺失"}, text, "NUL", id=f"{source}-nul-in-text"),
        ]
    # A naive time is China time: 1 hour ahead of China's clock is in the future too.
    cases.append(
        pytest.param(
            "hotline-12345",
            {"call_time": "naive+1h"},
            "call_time",
            "future",
            id="hotline-12345-future-naive-china-time",
        )
    )
    cases += [
        pytest.param(
            "grid-governance", {"address": "五马街\x00"}, "address", "NUL", id="grid-nul-in-address"
        ),
        pytest.param(
            "urban-inspection", {"code": "99999"}, "code", "GB/T 47678.5", id="urban-unknown-code"
        ),
        pytest.param(
            "urban-inspection",
            {"kind": "component", "code": "01016"},
            "code",
            "GB/T 47678.5",
            id="urban-code-not-in-table",
        ),
        pytest.param(
            "urban-inspection",
            {"photo_urls": ["not a url"]},
            "photo_urls",
            "URL",
            id="urban-photo-not-a-url",
        ),
    ]
    return cases


def _resolve(overrides: dict[str, Any]) -> dict[str, Any]:
    now = datetime.now(UTC)
    resolved: dict[str, Any] = {}
    for key, value in overrides.items():
        if isinstance(value, timedelta):
            value = (now + value).isoformat()
        elif value == "naive+1h":
            value = (now + AN_HOUR).astimezone(CHINA_TZ).replace(tzinfo=None).isoformat()
        resolved[key] = value
    return resolved


@pytest.mark.parametrize(("source", "overrides", "field", "message"), _edge_cases())
async def test_edge_refuses_implausible_records_naming_the_field(
    api, prepared, source_keys, source, overrides, field, message
):
    fields = field if isinstance(field, tuple) else (field,)
    before = await end_offsets(prepared, topics.INTAKE_RAW)
    body = PAYLOAD[source](**_resolve(overrides))
    response = await api.post(f"{INTAKE}/{source}", json=body, headers=headers(source_keys[source]))
    assert response.status_code == 422, response.text[:500]
    naming = [e for e in response.json()["detail"] if set(e["loc"]) & set(fields)]
    assert naming, response.text[:500]
    assert any(message in e["msg"] for e in naming), naming
    assert await end_offsets(prepared, topics.INTAKE_RAW) == before


async def test_swapped_axes_are_reported_as_swapped(api, source_keys):
    body = hotline(longitude=28.0166, latitude=120.6605, coord_system="WGS84")
    response = await api.post(
        f"{INTAKE}/hotline-12345", json=body, headers=headers(source_keys["hotline-12345"])
    )
    assert response.status_code == 422
    assert any("swapped" in e["msg"] for e in response.json()["detail"]), response.text


@pytest.mark.parametrize("inside", [True, False], ids=["inside", "outside"])
async def test_the_city_box_is_checked_in_wgs84(api, prepared, source_keys, inside):
    """The box is WGS-84: a BD-09 point is converted before it is checked. Near the edges
    Baidu's offset (~1 km east) decides: just inside the east edge in WGS-84 is past it as
    BD-09; just outside the west edge in WGS-84 is inside it as BD-09."""
    west, _, east, _ = load_pack(prepared.pack_dir).bbox
    wgs = (east - 0.004, 28.0) if inside else (west - 0.004, 28.0)
    bd09 = gcj02_to_bd09(*wgs84_to_gcj02(*wgs))
    # As Baidu maps report it, the point is on the other side of the edge.
    assert (west <= bd09[0] <= east) is not inside
    before = await end_offsets(prepared, topics.INTAKE_RAW)
    body = hotline(longitude=bd09[0], latitude=bd09[1], coord_system="BD09")
    response = await api.post(
        f"{INTAKE}/hotline-12345", json=body, headers=headers(source_keys["hotline-12345"])
    )
    if inside:
        assert response.status_code == 202, response.text
        assert await end_offsets(prepared, topics.INTAKE_RAW) == before + 1
    else:
        assert response.status_code == 422, response.text
        assert response.json()["detail"][0]["loc"] == ["body", "longitude"]
        assert "outside" in response.json()["detail"][0]["msg"]
        assert await end_offsets(prepared, topics.INTAKE_RAW) == before


@pytest.mark.parametrize("suffix", ["", ":batch"], ids=["single", "batch"])
async def test_a_coordinate_too_large_for_a_float_is_a_422(api, prepared, source_keys, suffix):
    body = hotline(longitude=10**400, latitude=28.0)
    before = await end_offsets(prepared, topics.INTAKE_RAW)
    response = await api.post(
        f"{INTAKE}/hotline-12345{suffix}",
        json=[body] if suffix else body,
        headers=headers(source_keys["hotline-12345"]),
    )
    if suffix:
        assert response.status_code == 200, response.text
        [result] = response.json()["results"]
        assert result["status"] == "rejected"
        assert any("longitude" in e["loc"] for e in result["errors"]), result
    else:
        assert response.status_code == 422, response.text
        assert any("longitude" in e["loc"] for e in response.json()["detail"])
    assert await end_offsets(prepared, topics.INTAKE_RAW) == before


# ---------------------------------------------------------------------------------------------
# Batches: one result per item, in order.


@pytest.mark.parametrize("source", SOURCES)
async def test_a_batch_answers_each_item_in_order(api, prepared, source_keys, source):
    own = headers(source_keys[source])
    url = f"{INTAKE}/{source}:batch"
    make, id_field, text_field = PAYLOAD[source], ID_FIELD[source], TEXT_FIELD[source]
    earlier = make()
    first = await api.post(f"{INTAKE}/{source}", json=earlier, headers=own)
    assert first.status_code == 202, first.text

    # A naive time is China time: one hour ago in China is accepted, not "in the future".
    china_hour_ago = (datetime.now(UTC) - AN_HOUR).astimezone(CHINA_TZ).replace(tzinfo=None)
    new = make(**{TIME_FIELD[source]: china_hour_ago.isoformat()})
    missing_text = {k: v for k, v in make().items() if k != text_field}
    future = make(**{TIME_FIELD[source]: (datetime.now(UTC) + AN_HOUR).isoformat()})
    other_new = make()
    items = [new, missing_text, earlier, future, other_new, new]
    before = await end_offsets(prepared, topics.INTAKE_RAW)

    response = await api.post(url, json=items, headers=own)
    assert response.status_code == 200, response.text[:500]
    data = response.json()
    results = data["results"]
    assert [r["index"] for r in results] == list(range(len(items)))
    assert [r["status"] for r in results] == [
        "accepted",
        "rejected",
        "duplicate",
        "rejected",
        "accepted",
        "duplicate",  # the same record again later in the batch
    ]
    assert {k: data[k] for k in ("accepted", "updated", "duplicate", "rejected")} == {
        "accepted": 2,
        "updated": 0,
        "duplicate": 2,
        "rejected": 2,
    }
    for index in (0, 2, 4, 5):
        assert results[index]["event_id"] == str(event_id_for(source, items[index][id_field]))
        assert not results[index].get("errors")
    assert any(text_field in e["loc"] for e in results[1]["errors"]), results[1]
    assert any(TIME_FIELD[source] in e["loc"] for e in results[3]["errors"]), results[3]
    assert results[1].get("event_id") is None and results[3].get("event_id") is None
    assert await end_offsets(prepared, topics.INTAKE_RAW) == before + 2  # only the new ones

    changed = {**earlier, text_field: earlier[text_field] + "（补充：情况更新）"}
    update = await api.post(url, json=[changed], headers=own)
    assert update.status_code == 200, update.text
    assert update.json()["updated"] == 1
    [result] = update.json()["results"]
    assert (result["index"], result["status"], result["event_id"]) == (
        0,
        "updated",
        str(event_id_for(source, earlier[id_field])),
    )
    assert not result.get("errors")
    assert await end_offsets(prepared, topics.INTAKE_RAW) == before + 3


@pytest.mark.parametrize("size", ["empty", "one-too-many"])
async def test_a_batch_must_have_between_one_and_the_maximum_items(
    api, prepared, source_keys, size
):
    count = 0 if size == "empty" else prepared.max_batch_items + 1
    items = [grid() for _ in range(count)]
    before = await end_offsets(prepared, topics.INTAKE_RAW)
    response = await api.post(
        f"{INTAKE}/grid-governance:batch",
        json=items,
        headers=headers(source_keys["grid-governance"]),
    )
    assert response.status_code == 422, response.text[:500]
    assert [e["loc"] for e in response.json()["detail"]] == [["body"]]
    assert await end_offsets(prepared, topics.INTAKE_RAW) == before


async def test_a_large_batch_keeps_each_record_on_its_key_partition_and_becomes_tickets(
    api, worker, pool, prepared, source_keys
):
    """From BULK_RECORDS items on, hub/bus.py groups records into per-partition batches by
    hand: an update sent that way must land on the partition its original went to (else the
    worker could apply them out of order), and every record must still become a ticket."""
    own = headers(source_keys["emergency-120"])
    originals = [emergency() for _ in range(3)]
    for body in originals:
        response = await api.post(f"{INTAKE}/emergency-120", json=body, headers=own)
        assert response.status_code == 202, response.text
    # Stored first: an original and its update in one worker batch are stored as one revision.
    for body in originals:
        event_id = event_id_for("emergency-120", body["case_no"])
        await from_worker(worker, lambda e=event_id: stored_with_ticket(pool, e))
    changed = [
        {**body, "chief_complaint": body["chief_complaint"] + "，意识模糊"} for body in originals
    ]
    items = changed + [emergency() for _ in range(BULK_RECORDS + 2)]
    before = await end_offsets(prepared, topics.INTAKE_RAW)

    response = await api.post(f"{INTAKE}/emergency-120:batch", json=items, headers=own)
    assert response.status_code == 200, response.text[:500]
    data = response.json()
    assert [r["status"] for r in data["results"]] == ["updated"] * 3 + ["accepted"] * (
        len(items) - 3
    )
    assert (data["updated"], data["accepted"], data["rejected"]) == (3, len(items) - 3, 0)
    assert await end_offsets(prepared, topics.INTAKE_RAW) == before + len(items)

    event_ids = [event_id_for("emergency-120", item["case_no"]) for item in items]
    for event_id in event_ids[:3]:
        original, update = await read_all(
            worker, prepared, topics.INTAKE_RAW, lambda r, k=event_id.bytes: r.key == k, count=2
        )
        assert update.partition == original.partition
        assert update.offset > original.offset

    seen: dict[uuid.UUID, Any] = {}

    async def all_stored() -> list[Any] | None:
        rows = await pool.fetch(
            "SELECT e.event_id, e.revision, e.text FROM events e"
            " JOIN event_tickets t USING (event_id) WHERE e.event_id = ANY($1::uuid[])",
            event_ids,
        )
        seen.update({row["event_id"]: row for row in rows})
        done = len(seen) == len(items) and all(seen[e]["revision"] == 2 for e in event_ids[:3])
        return [seen[e] for e in event_ids] if done else None

    try:
        rows = await from_worker(worker, all_stored)
    except AssertionError as exc:
        letters = await pool.fetch(
            "SELECT stage, reason FROM dead_letters WHERE key = ANY($1::bytea[])",
            [e.bytes for e in event_ids],
        )
        missing = [str(e) for e in event_ids if e not in seen]
        revisions = [seen[e]["revision"] if e in seen else None for e in event_ids[:3]]
        raise AssertionError(
            f"{exc}: {len(seen)}/{len(items)} ticketed, missing {missing}, revisions of the "
            f"updated {revisions}, dead letters {[tuple(x) for x in letters]}"
        ) from exc
    assert [row["text"] for row in rows[:3]] == [body["chief_complaint"] for body in changed]


# ---------------------------------------------------------------------------------------------
# A changed record is a new revision; a replay of the old one changes nothing.


async def test_an_update_is_a_new_revision_and_a_replayed_old_version_changes_nothing(
    api, worker, pool, producer, prepared, source_keys
):
    own = headers(source_keys["hotline-12345"])
    url = f"{INTAKE}/hotline-12345"
    body = hotline(content="瓯海区娄桥街道河道有大量垃圾漂浮")
    first = await api.post(url, json=body, headers=own)
    assert (first.status_code, first.json()["status"]) == (202, "accepted"), first.text
    event_id = uuid.UUID(first.json()["event_id"])
    await from_worker(worker, lambda: stored_with_ticket(pool, event_id))

    new_text = "瓯海区娄桥街道河道垃圾已蔓延到下游，气味很大"
    second = await api.post(url, json={**body, "content": new_text}, headers=own)
    assert (second.status_code, second.json()) == (
        202,
        {"event_id": str(event_id), "status": "updated"},
    )

    async def revision_2() -> Any:
        row = await stored_with_ticket(pool, event_id)
        return row if row["revision"] == 2 else None

    row = await from_worker(worker, revision_2)
    assert row["text"] == new_text

    async def history() -> tuple[list[Any], list[Any]]:
        revisions = await pool.fetch(
            "SELECT revision, record->>'text' AS text FROM event_revisions"
            " WHERE event_id = $1 ORDER BY revision",
            event_id,
        )
        updates = await pool.fetch(
            "SELECT h.note, h.actor FROM ticket_history h JOIN event_tickets t USING (ticket_id)"
            " WHERE t.event_id = $1 AND h.action = 'event_updated'",
            event_id,
        )
        return [tuple(r) for r in revisions], [tuple(u) for u in updates]

    revisions, updates = await history()
    assert revisions == [(1, body["content"]), (2, new_text)]
    assert updates == [("the source sent revision 2", "source:hotline-12345")]

    # Replay the first version, byte for byte, with its original (older) received_at.
    original = await read_until(prepared, topics.INTAKE_RAW, lambda r: r.key == event_id.bytes)
    old = loads(IntakeEnvelope, original.value)
    assert old.payload["content"] == body["content"]
    sent = await producer.send_and_wait(
        prepared.topic(topics.INTAKE_RAW), original.value, key=original.key
    )
    await worker_has_processed(worker, prepared, topics.INTAKE_RAW, sent.partition, sent.offset)

    # events.enriched is keyed by category for correlation, incidents by incident: find this
    # event's records by content, and wait until the worker is past the replay on both.
    def of_this_event(r: Any) -> bool:
        return str(event_id).encode() in r.value

    enriched = await read_all(worker, prepared, topics.EVENTS_ENRICHED, of_this_event, count=3)
    # The original and its replay share content, so key and partition: the replay is the later.
    # (The update may sit in another partition when its text changed the category.)
    same = [r for r in enriched if loads(EventV1, r.value).received_at == old.received_at]
    assert len(same) == 2 and same[0].partition == same[1].partition
    replayed = max(same, key=lambda r: r.offset)
    await worker_has_processed(
        worker, prepared, topics.EVENTS_ENRICHED, replayed.partition, replayed.offset
    )
    changes = await read_all(worker, prepared, topics.INCIDENTS, of_this_event, count=3)
    for change in changes:
        await worker_has_processed(
            worker, prepared, topics.INCIDENTS, change.partition, change.offset
        )

    after = await stored_with_ticket(pool, event_id)
    assert (after["revision"], after["text"]) == (2, new_text)
    assert await history() == (revisions, updates)
    read = await api.get(f"{url}/{body['order_no']}", headers=own)
    assert (read.json()["revision"], read.json()["text"]) == (2, new_text)


# ---------------------------------------------------------------------------------------------
# Dead letters: kept, listed for the operations centre, replayed.


def bad_urban_record() -> tuple[str, IntakeEnvelope]:
    """Valid JSON and a valid envelope, but the urban-inspection payload lacks its description."""
    case_no = uid("CG-DL")
    payload = {k: v for k, v in urban(case_no=case_no).items() if k != "description"}
    return case_no, IntakeEnvelope(
        event_id=event_id_for(Source.URBAN_INSPECTION, case_no),
        source=Source.URBAN_INSPECTION,
        external_id=case_no,
        received_at=datetime.now(UTC),
        payload=payload,
    )


async def test_a_record_that_fails_normalisation_is_listed_and_can_be_replayed(
    api, worker, producer, prepared, keys, source_keys
):
    ops = headers(keys["ops"])
    case_no, envelope = bad_urban_record()
    value = dumps(envelope)
    await producer.send_and_wait(
        prepared.topic(topics.INTAKE_RAW), value, key=envelope.event_id.bytes
    )

    async def letters(**params: Any) -> list[dict[str, Any]]:
        response = await api.get(
            DEAD_LETTERS, params={"source": "urban-inspection", **params}, headers=ops
        )
        assert response.status_code == 200, response.text[:500]
        return [letter for letter in response.json() if case_no in letter["value_text"]]

    [letter] = await from_worker(worker, letters)
    assert (letter["stage"], letter["source"]) == ("normalize", "urban-inspection")
    assert "description" in letter["reason"], letter["reason"]
    assert letter["topic"] == prepared.topic(topics.INTAKE_RAW)
    assert letter["value_text"] == value.decode()
    assert (letter["replay_count"], letter["replayed_at"]) == (0, None)

    for key in (keys["triage"], keys["water"], source_keys["urban-inspection"]):
        refused = await api.get(DEAD_LETTERS, headers=headers(key))
        assert refused.status_code == 403, refused.text
        refused = await api.post(f"{DEAD_LETTERS}/{letter['id']}/replay", headers=headers(key))
        assert refused.status_code == 403, refused.text

    replay = await api.post(f"{DEAD_LETTERS}/{letter['id']}/replay", headers=ops)
    assert replay.status_code == 200, replay.text
    assert (replay.json()["id"], replay.json()["replay_count"]) == (letter["id"], 1)
    assert replay.json()["replayed_at"]

    # Still bad, so the worker dead-letters it again: the replay really re-sent it.
    async def two() -> list[dict[str, Any]]:
        found = await letters(include_replayed="true")
        return found if len(found) >= 2 else []

    found = {x["id"]: x for x in await from_worker(worker, two)}
    assert len(found) == 2
    [again] = [x for x in found.values() if x["id"] != letter["id"]]
    assert again["value_text"] == letter["value_text"]
    assert (again["topic"], again["partition"]) == (letter["topic"], letter["partition"])
    assert again["offset"] > letter["offset"]
    assert (again["stage"], again["reason"]) == (letter["stage"], letter["reason"])
    assert again["replay_count"] == 0
    assert found[letter["id"]]["replay_count"] == 1
    assert found[letter["id"]]["replayed_at"] is not None
    # By default the list shows what still needs attention: not the replayed one.
    assert [x["id"] for x in await letters()] == [again["id"]]

    missing = await api.post(f"{DEAD_LETTERS}/999999999/replay", headers=ops)
    assert missing.status_code == 404, missing.text


# ---------------------------------------------------------------------------------------------
# Intake statistics per source.


async def stats_by_source(api: httpx.AsyncClient, ops_key: str) -> dict[str, dict[str, int]]:
    response = await api.get(STATS, headers=headers(ops_key))
    assert response.status_code == 200, response.text[:500]
    return {row["source"]: row for row in response.json()}


async def test_intake_stats_count_each_outcome_per_source(
    api, worker, producer, prepared, keys, source_keys
):
    ops_key = keys["ops"]
    baseline = await stats_by_source(api, ops_key)
    for source in SOURCES:
        own = headers(source_keys[source])
        body = PAYLOAD[source]()
        for expected in (202, 200):  # accepted, then duplicate
            response = await api.post(f"{INTAKE}/{source}", json=body, headers=own)
            assert response.status_code == expected, response.text
        too_long = PAYLOAD[source](**{TEXT_FIELD[source]: "长" * 4001})
        response = await api.post(f"{INTAKE}/{source}", json=too_long, headers=own)
        assert response.status_code == 422
    _, envelope = bad_urban_record()
    await producer.send_and_wait(
        prepared.topic(topics.INTAKE_RAW), dumps(envelope), key=envelope.event_id.bytes
    )

    def grown(rows: dict[str, dict[str, int]], source: str, column: str) -> int:
        return rows.get(source, {}).get(column, 0) - baseline.get(source, {}).get(column, 0)

    async def counted() -> dict[str, dict[str, int]] | None:
        rows = await stats_by_source(api, ops_key)
        done = all(
            grown(rows, source, column) >= 1
            for source in SOURCES
            for column in ("accepted", "duplicate", "rejected")
        )
        return rows if done and grown(rows, "urban-inspection", "dead_lettered") >= 1 else None

    rows = await from_worker(worker, counted)  # counters are flushed every 5 s
    for source in SOURCES:
        assert rows[source]["accepted"] >= 1 and rows[source]["rejected"] >= 1
    assert rows["urban-inspection"]["dead_lettered"] >= 1
    refused = await api.get(STATS, headers=headers(keys["triage"]))
    assert refused.status_code == 403, refused.text


@pytest.mark.parametrize(
    ("source", "external_id"),
    [
        ("emergency-120", "0577-20261126-{}"),
        ("hotline-12345", "WZ13857712345-{}"),
    ],
    ids=["120-area-code-case-no", "12345-mobile-like-order-no"],
)
async def test_ids_that_look_like_phone_numbers_are_kept(
    api, worker, pool, prepared, source_keys, source, external_id
):
    external_id = external_id.format(uuid.uuid4().hex[:8].translate(_NO_DIGITS))
    body = PAYLOAD[source](**{ID_FIELD[source]: external_id})
    own = headers(source_keys[source])
    response = await api.post(f"{INTAKE}/{source}", json=body, headers=own)
    assert (response.status_code, response.json()["status"]) == (202, "accepted"), response.text
    event_id = event_id_for(source, external_id)

    record = await read_until(prepared, topics.INTAKE_RAW, lambda r: r.key == event_id.bytes)
    envelope = loads(IntakeEnvelope, record.value)
    assert envelope.external_id == external_id
    assert envelope.payload[ID_FIELD[source]] == external_id

    async def settled() -> Any:
        ticket = await stored_with_ticket(pool, event_id)
        letter = await pool.fetchval(
            "SELECT reason FROM dead_letters WHERE key = $1", event_id.bytes
        )
        return ticket or letter

    outcome = await from_worker(worker, settled)
    assert not isinstance(outcome, str), f"dead-lettered: {outcome}"
    read = await api.get(f"{INTAKE}/{source}/{external_id}", headers=own)
    assert read.json()["state"] == "ticketed"


# ---------------------------------------------------------------------------------------------
# Found by this module and fixed since (c43b45b): kept as regression tests.


async def test_a_dead_letter_that_is_not_utf8_is_listed_too(
    api, worker, producer, pool, prepared, keys
):
    """Dead letters are often not UTF-8: the list shows them with replacement characters."""
    key = f"not-utf8-{uuid.uuid4().hex}".encode()
    await producer.send_and_wait(
        prepared.topic(topics.INTAKE_RAW), b"\xff\xfe{\xc3(garbage", key=key
    )
    letter_id = await from_worker(
        worker, lambda: pool.fetchval("SELECT id FROM dead_letters WHERE key = $1", key)
    )
    response = await api.get(
        DEAD_LETTERS, params={"stage": "normalize"}, headers=headers(keys["ops"])
    )
    assert response.status_code == 200, response.text[:500]
    [letter] = [x for x in response.json() if x["id"] == letter_id]
    assert letter["source"] is None
    assert letter["value_text"] == b"\xff\xfe{\xc3(garbage".decode("utf-8", errors="replace")


async def test_intake_stats_list_only_real_sources(api, keys, source_keys):
    """Only refused posts to an intake path count as rejected: a read-back GET naming a made-up
    source is a 422 too, but must not become a 'source' in the statistics."""
    ops = keys["ops"]
    baseline = await stats_by_source(api, ops)
    bogus = f"no-such-source-{uuid.uuid4().hex[:8]}"
    response = await api.get(f"{INTAKE}/{bogus}/WZ-1", headers=headers(ops))
    assert response.status_code == 422, response.text
    # Then a real rejection: once it is counted, everything before it has been flushed too.
    too_long = hotline(content="长" * 4001)
    response = await api.post(
        f"{INTAKE}/hotline-12345", json=too_long, headers=headers(source_keys["hotline-12345"])
    )
    assert response.status_code == 422

    async def counted() -> dict[str, dict[str, int]] | None:
        rows = await stats_by_source(api, ops)
        before = baseline.get("hotline-12345", {}).get("rejected", 0)
        return rows if rows.get("hotline-12345", {}).get("rejected", 0) > before else None

    rows = await eventually(counted, seconds=20)  # counters are flushed every 5 s
    assert bogus not in rows
    assert set(rows) <= {s.value for s in Source}


@pytest.mark.parametrize("suffix", ["", ":batch"], ids=["single", "batch"])
@pytest.mark.parametrize("caller", ["grid", "triage", "ops"])
async def test_a_caller_that_may_not_post_as_the_source_gets_403_even_with_a_bad_body(
    api, keys, prepared, suffix, caller
):
    body: Any = {"order_no": "WZ-1"} if not suffix else {"not": "a list"}
    before = await end_offsets(prepared, topics.INTAKE_RAW)
    response = await api.post(
        f"{INTAKE}/hotline-12345{suffix}", json=body, headers=headers(keys[caller])
    )
    assert response.status_code == 403, response.text
    assert "may not post hotline-12345" in response.json()["detail"]
    assert await end_offsets(prepared, topics.INTAKE_RAW) == before


def listening_ports(pid: int) -> set[int]:
    """TCP ports process ``pid`` listens on (Linux: its socket inodes in /proc/net/tcp*)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc")
async def test_the_worker_listens_on_no_port(api, worker, pool, source_keys):
    """Faust's web UI is off (--without-web): a second worker on the host must not collide."""
    body = grid()
    response = await api.post(
        f"{INTAKE}/grid-governance", json=body, headers=headers(source_keys["grid-governance"])
    )
    assert response.status_code == 202, response.text
    event_id = event_id_for("grid-governance", body["event_no"])
    await from_worker(worker, lambda: stored_with_ticket(pool, event_id))  # fully started
    assert listening_ports(worker.pid) == set()
