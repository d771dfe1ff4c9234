"""Helpers for integration tests: read real topics, wait for real effects."""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from dispatch.tickets.service import store_incident_changes, ticket_id_for
from hub.bus import topic_partitions
from hub.settings import Settings
from iot_ingest.registry import Profile, device_id_for, import_devices, prepare_rows
from schemas.event import Crs, EventV1, Location, Priority, Source, event_id_for
from schemas.incident import IncidentChangeV1


@dataclass(frozen=True)
class GatewayProcess:
    """A running `hub gateway` (the `gateway` fixture)."""

    port: int
    proc: subprocess.Popen[bytes]
    log: Path  # its output, warnings and above


async def end_offsets(settings: Settings, topic: str) -> int:
    """How many records a topic holds in all (sum of its partitions' end offsets)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap)
    await consumer.start()
    try:
        tps = await topic_partitions(consumer, settings.topic(topic))
        return sum((await consumer.end_offsets(tps)).values())
    finally:
        await consumer.stop()


def earliest_consumer(settings: Settings, topic: str) -> AIOKafkaConsumer:
    """A consumer of ``topic`` from its beginning, in no group (it commits nothing)."""
    return AIOKafkaConsumer(
        settings.topic(topic),
        bootstrap_servers=settings.bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )


async def read_until(
    settings: Settings, topic: str, predicate: Callable[[Any], bool], *, seconds: float = 30
) -> Any:
    """The first record of ``topic`` (from the beginning) that satisfies ``predicate``."""
    consumer = earliest_consumer(settings, topic)
    await consumer.start()
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    if predicate(record):
                        return record
        raise AssertionError(f"no matching record on {topic} within {seconds}s")
    finally:
        await consumer.stop()


async def eventually(check: Callable[[], Any], *, seconds: float = 60, every: float = 0.3) -> Any:
    """Await ``check()`` until it returns something truthy; fail after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {seconds}s")
        await asyncio.sleep(every)


def incident_change(
    *,
    category: str | None,
    priority: str = "normal",
    district_code: str | None = "330302",
    lon: float = 120.6555,
    lat: float = 28.0167,
    at: datetime | None = None,
    text: str = "测试工单",
) -> IncidentChangeV1:
    """A new one-report incident, as correlation would put it on `incidents`."""
    at = at or datetime.now(UTC)
    external_id = f"test-{uuid.uuid4()}"
    event = EventV1(
        event_id=event_id_for("hotline-12345", external_id),
        source=Source("hotline-12345"),
        external_id=external_id,
        occurred_at=at,
        received_at=at,
        location=Location(lon=lon, lat=lat, source_crs=Crs.WGS84, source_lon=lon, source_lat=lat),
        text=text,
        priority=Priority(priority),
        category=category,
        district_code=district_code,
        raw={},
    )
    return IncidentChangeV1(
        incident_id=uuid.uuid4(),
        change="created",
        category=category,
        priority=Priority(priority),
        reports=1,
        sources=["hotline-12345"],
        lon=lon,
        lat=lat,
        district_code=district_code,
        opened_at=at,
        last_seen=at,
        event=event,
    )


async def open_ticket(pool: Any, book: Any, change: IncidentChangeV1, *, now: datetime) -> Any:
    """Store an incident change as the worker's open_tickets agent does; return its ticket id."""
    async with pool.acquire() as conn:
        await store_incident_changes(conn, changes=[change], book=book, now=now)
    return ticket_id_for(change.incident_id)


async def stable_members(settings: Settings, group: str) -> int:
    """How many members a consumer group has once it is stable (-1 while it rebalances)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap)
    await admin.start()
    try:
        [response] = await admin.describe_consumer_groups([group])
        _, _, state, _, _, members, *_ = response.groups[0]
        return len(members) if state == "Stable" else -1
    finally:
        await admin.close()


async def register_device(
    pool: Any,
    token: str,
    *,
    profile: str = "water-level",
    department: str = "water",
    lon: float = 120.66,
    lat: float = 28.01,
    inactivity_timeout_s: int = 600,
) -> uuid.UUID:
    """One device of vendor `test-vendor` in 鹿城区 by default, with the given token."""
    serial = f"TEST-{uuid.uuid4().hex[:8]}"
    async with pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO vendors (code, name) VALUES ('test-vendor', 'x') ON CONFLICT DO NOTHING"
        )
        records, _ = prepare_rows(
            [{"serial": serial, "vendor": "test-vendor", "profile": profile,
              "lon": str(lon), "lat": str(lat), "token": token,
              "inactivity_timeout_s": str(inactivity_timeout_s)}],
            profiles={profile: Profile(profile, department, 60, 600)},
            departments={department}, vendors={"test-vendor"},
            district_of=lambda lon, lat: "330302", contains=lambda lon, lat: True,
        )  # fmt: skip
        await import_devices(conn, records)
    return device_id_for("test-vendor", serial)


async def cleared_alarm(pool: Any, device_id: uuid.UUID, alarm_type: str) -> Any:
    """The device's alarm of this type once it has been cleared (waits up to a minute)."""

    async def cleared() -> Any:
        row = await pool.fetchrow(
            "SELECT alarm_id, raised_at, cleared_at FROM alarms"
            " WHERE device_id = $1 AND alarm_type = $2",
            device_id,
            alarm_type,
        )
        return row if row is not None and row["cleared_at"] is not None else None

    return await eventually(cleared, seconds=60)
