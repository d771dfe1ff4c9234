"""iot rules: iot.telemetry → alarm changes on iot.alarms; severe alarms also become canonical
events on events.enriched (so correlation makes them incidents and dispatch tickets); alarm
changes → the alarms tables in PostgreSQL.

Both are batch loops (streams/batchloop.py): a Faust agent's per-record cost is what the IoT
issue measured as the limit, and a telemetry record already packs a request's readings. The
rules keep each device's alarm states in memory and in the compacted `iot.rules.state` topic
(state first, then alarms and events, then the commit: a replay finds the state ahead and
emits nothing twice). No-data detection is not here yet.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from datetime import UTC, datetime
from functools import partial
from typing import Any

import orjson
from aiokafka import ConsumerRebalanceListener

from hub.pack import Pack, load_pack
from iot_ingest.alarms import store_alarm_changes
from schemas import topics
from schemas.alarm import AlarmChangeV1, alarm_id_for
from schemas.codec import dumps, loads
from schemas.event import Crs, EventV1, Location, Priority, Source, event_id_for
from schemas.telemetry import TelemetryV1
from streams.app import app, settings, worker_bus, worker_pool
from streams.batchloop import run_batch_loop
from streams.changelog import read_partitions
from streams.correlate.engine import correlation_key
from streams.deadletter import describe, send_to_dead_letter
from streams.iot.rules import PROFILES, RANK, AlarmChange, AlarmState, evaluate
from streams.retry import retry_until_done

STAGE = "iot-rules"
# Alarms at least this severe become events on the civic pipeline.
EVENT_MIN_SEVERITY = "major"
PRIORITY_OF = {"warning": Priority.LOW, "minor": Priority.NORMAL, "major": Priority.HIGH,
               "critical": Priority.URGENT}  # fmt: skip
DeviceStates = dict[str, AlarmState]


class RulesState(ConsumerRebalanceListener):  # type: ignore[misc]
    """Each owned partition's devices and their alarm states; ``lock`` held by a batch."""

    def __init__(self, *, bootstrap: str, changelog: str) -> None:
        self._bootstrap = bootstrap
        self.changelog = changelog
        self._partitions: dict[int, dict[bytes, DeviceStates]] = {}
        self.lock = asyncio.Lock()

    def of(self, partition: int, device: bytes) -> DeviceStates:
        return self._partitions.setdefault(partition, {}).setdefault(device, {})

    async def on_partitions_revoked(self, revoked: Any) -> None:
        async with self.lock:
            for tp in revoked:
                self._partitions.pop(tp.partition, None)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        partitions = sorted(tp.partition for tp in assigned)
        if partitions:
            entries = await read_partitions(self._bootstrap, self.changelog, partitions)
            async with self.lock:
                for partition, rows in entries.items():
                    self._partitions[partition] = {
                        device: {t: AlarmState.from_dict(s) for t, s in orjson.loads(v).items()}
                        for device, v in rows.items()
                    }


class Devices:
    """Where each device is and what it is, for the events its alarms become (cached)."""

    def __init__(self) -> None:
        self._known: dict[uuid.UUID, dict[str, Any]] = {}

    async def get(self, pool: Any, device_id: uuid.UUID) -> dict[str, Any] | None:
        if device_id not in self._known:
            row = await pool.fetchrow(
                """SELECT d.serial, d.lon, d.lat, d.h3_cell, d.district_code, p.name AS profile
                   FROM devices d JOIN device_profiles p ON p.code = d.profile_code
                   WHERE d.device_id = $1""",
                device_id,
            )
            if row is None:
                return None
            self._known[device_id] = dict(row)
        return self._known[device_id]


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


def _alarm_record(telemetry: TelemetryV1, raised_at: int, change: AlarmChange) -> bytes:
    return dumps(
        AlarmChangeV1(
            alarm_id=alarm_id_for(telemetry.device_id, change.alarm_type, raised_at),
            device_id=telemetry.device_id,
            profile=telemetry.profile,
            alarm_type=change.alarm_type,
            kind=change.kind,
            severity=change.severity,
            previous=change.previous,
            raised_at=raised_at,
            at=change.at_ms,
            value=change.value,
            reason=change.reason,
        )
    )


def _event(
    pack: Pack, telemetry: TelemetryV1, device: dict[str, Any], change: AlarmChange
) -> EventV1:
    """A severe alarm as a report on the civic pipeline: classified by its profile (the pack's
    iot source categories), placed at the device, as pressing as its severity."""
    at = datetime.fromtimestamp(change.at_ms / 1000, UTC)
    external_id = f"{telemetry.device_id}:{change.alarm_type}:{change.at_ms}:{change.severity}"
    lon, lat = device["lon"], device["lat"]
    return EventV1(
        event_id=event_id_for(Source.IOT, external_id),
        source=Source.IOT,
        external_id=external_id,
        occurred_at=at,
        received_at=datetime.now(UTC),
        location=Location(lon=lon, lat=lat, source_crs=Crs.WGS84, source_lon=lon, source_lat=lat),
        text=f"{device['profile']}告警（{change.severity}）：{change.reason}",
        priority=PRIORITY_OF[change.severity or "major"],
        category=pack.category_of_source("iot", telemetry.profile),
        category_method="code",
        h3_cell=device["h3_cell"],
        district_code=device["district_code"],
        raw={"device": device["serial"], "alarm_type": change.alarm_type, "value": change.value},
    )


async def evaluate_batch(
    pack: Pack, devices: Devices, state: RulesState, records: list[Any]
) -> None:
    pool = await worker_pool.get()
    async with state.lock:
        changed: dict[int, dict[bytes, bytes | None]] = {}
        alarms: list[tuple[bytes, bytes]] = []
        events: list[tuple[bytes, bytes]] = []
        refused = 0
        for record in records:
            try:
                telemetry = loads(TelemetryV1, record.value)
            except ValueError as exc:
                await send_to_dead_letter(record, stage=STAGE, reason=describe(exc))
                refused += 1
                continue
            rules = PROFILES.get(telemetry.profile, ([], None))[0]
            key = telemetry.device_id.bytes
            states = state.of(record.partition, key)
            for reading in sorted(telemetry.readings, key=lambda r: r.ts):
                for rule in rules:
                    value = _number(reading.values.get(rule.key))
                    if value is None:
                        continue
                    old = states.get(rule.alarm_type)
                    new, alarm_changes = evaluate(rule, old, reading.ts, value)
                    states[rule.alarm_type] = new
                    for change in alarm_changes:
                        # The alarm's identity is its raise time: after a clear only the old
                        # state still knows it.
                        raised_at = new.raised_at_ms or (old.raised_at_ms if old else None)
                        record_out = _alarm_record(telemetry, raised_at or change.at_ms, change)
                        alarms.append((key, record_out))
                        severe = (
                            change.severity and RANK[change.severity] >= RANK[EVENT_MIN_SEVERITY]
                        )
                        if change.kind in ("raised", "escalated") and severe:
                            device = await devices.get(pool, telemetry.device_id)
                            if device is not None:
                                event = _event(pack, telemetry, device, change)
                                events.append((correlation_key(event), dumps(event)))
            if rules:
                entries = changed.setdefault(record.partition, {})
                entries[key] = orjson.dumps({t: s.to_dict() for t, s in states.items()})
        await _publish(state, changed, alarms, events)
        if refused:
            await app.producer.flush()


async def _publish(
    state: RulesState,
    changed: dict[int, dict[bytes, bytes | None]],
    alarms: list[tuple[bytes, bytes]],
    events: list[tuple[bytes, bytes]],
) -> None:
    """State first, then what it caused: a crash in between replays into a state that is
    ahead, which emits nothing twice."""
    bus = await worker_bus.get()
    for partition, entries in changed.items():
        send = partial(bus.send_to_partition, state.changelog, partition, list(entries.items()))
        await retry_until_done(send, what=f"{len(entries)} device alarm states")
    for topic, records in ((topics.IOT_ALARMS, alarms), (topics.EVENTS_ENRICHED, events)):
        if records:
            send_out = partial(bus.send_many, settings.topic(topic), records)
            await retry_until_done(send_out, what=f"{len(records)} records to {topic}")


@app.task  # type: ignore[untyped-decorator]
async def iot_rules() -> None:
    state = RulesState(
        bootstrap=settings.bootstrap, changelog=settings.topic(topics.IOT_RULES_STATE)
    )
    await run_batch_loop(
        settings,
        stage=STAGE,
        topic=topics.IOT_TELEMETRY,
        handle=partial(evaluate_batch, load_pack(settings.pack_dir), Devices(), state),
        max_records=settings.worker_batch_size,
        listener=state,
    )


async def _store_batch(records: list[Any]) -> None:
    pool = await worker_pool.get()
    changes = []
    for record in records:
        try:
            changes.append(loads(AlarmChangeV1, record.value))
        except ValueError as exc:
            await send_to_dead_letter(record, stage="store-alarms", reason=describe(exc))
    if changes:
        await retry_until_done(partial(store_alarm_changes, pool, changes),
                               what=f"{len(changes)} alarm changes")  # fmt: skip
    await app.producer.flush()


@app.task  # type: ignore[untyped-decorator]
async def store_alarms() -> None:
    await run_batch_loop(
        settings,
        stage="alarms",
        topic=topics.IOT_ALARMS,
        handle=_store_batch,
        max_records=settings.worker_batch_size,
    )
