"""The live feed behind ``/ws/ops``: Kafka → the city's state (dispatch/ops/state.py) → every
connected dashboard.

One log, many cursors. Each change gets a sequence number and goes into a ring of recent
changes; every client keeps its own cursor and, at most every ``FRAME_INTERVAL_S``, sends what
changed since it — each key once, at its latest value. A slow client therefore gets fewer,
bigger frames of the newest state, never a growing queue, and nobody waits for it. A client
whose cursor fell out of the ring (or that resumes from another stream) gets a snapshot. Each
change is encoded to JSON once, whatever the number of clients.

State starts from PostgreSQL (dispatch/ops/snapshot.py), then the feed replays ``incidents``,
``tickets.changes`` and ``iot.alarms`` from a few minutes back (``HUB_OPS_REPLAY_S``) and
follows them; device counts per district come from PostgreSQL every minute. Clients are served
once the replay has reached the offsets that were the end when the feed started. Closed
tickets and their incidents are forgotten after a while, so memory follows what is open.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import orjson
from aiokafka import AIOKafkaConsumer

from dispatch.ops.snapshot import load_state
from dispatch.ops.state import LAYERS, OpsState, Update
from hub.bus import topic_partitions
from hub.settings import Settings
from schemas import topics
from schemas.alarm import AlarmChangeV1
from schemas.codec import loads
from schemas.incident import IncidentChangeV1
from schemas.ticket import TicketChangeV1

log = logging.getLogger(__name__)
RING = 100_000  # changes kept for resuming and for slow clients
FRAME_INTERVAL_S = 0.1
SLA_EVERY_S = 5.0
DEVICES_EVERY_S = 60.0
POLL_RECORDS = 2000
RESTART_S = 5.0
FORGET_EVERY_S = 60.0
# Closed tickets are kept this long at least: a late duplicate of their incident's record
# (a producer's retry) must still find them closed.
FORGET_AFTER = timedelta(minutes=10)


@dataclass(frozen=True, slots=True)
class Filters:
    """What a client asked for; an empty set means all."""

    layers: frozenset[str] = frozenset(LAYERS)
    districts: frozenset[str] = frozenset()
    categories: frozenset[str] = frozenset()
    priorities: frozenset[str] = frozenset()

    def wants(self, update: Update) -> bool:
        if update.layer not in self.layers:
            return False
        for wanted, have in (
            (self.districts, update.district),
            (self.categories, update.category),
            (self.priorities, update.priority),
        ):
            if wanted and have is not None and have not in wanted:
                return False
        return True


@dataclass(slots=True)
class Entry:
    seq: int
    update: Update
    encoded: bytes  # {"layer":…,"key":…,"value":…}, once for every client


class Feed:
    def __init__(self) -> None:
        self.stream = secrets.token_hex(6)  # a new one per process start: seqs restart too
        self.seq = 0
        self.state = OpsState()
        self.ready = asyncio.Event()
        self._ring: deque[tuple[int, tuple[str, str]]] = deque(maxlen=RING)
        self._latest: dict[tuple[str, str], Entry] = {}
        self._changed = asyncio.get_running_loop().create_future()
        # Frames already built at this seq, by (cursor, filters): clients that are level and
        # ask the same get the same bytes, built and encoded once (most ask for everything).
        self._frames: dict[tuple[int, Filters], bytes] = {}

    @property
    def oldest(self) -> int:
        """The oldest seq still in the ring (a cursor before it cannot be served by deltas)."""
        return self._ring[0][0] if self._ring else self.seq + 1

    def replace_state(self, state: OpsState) -> None:
        """Start from ``state`` (at start, or after following failed): clients hear of what
        differs from the state they had, as ordinary changes."""
        old, self.state = self.state, state
        gone = [
            Update(layer, key, None)
            for layer in LAYERS
            for key in old.layers[layer]
            if key not in state.layers[layer]
        ]
        self.publish(gone + [u for u in state.snapshot() if old.layers[u.layer].get(u.key) != u])

    def publish(self, updates: Iterable[Update]) -> None:
        for update in updates:
            self.seq += 1
            key = (update.layer, update.key)
            encoded = orjson.dumps(
                {"layer": update.layer, "key": update.key, "value": update.value}
            )
            if len(self._ring) == self._ring.maxlen:
                self._forget(self._ring[0])
            self._ring.append((self.seq, key))
            self._latest[key] = Entry(self.seq, update, encoded)
        self._frames.clear()
        if not self._changed.done():
            self._changed.set_result(None)
            self._changed = asyncio.get_running_loop().create_future()

    def _forget(self, oldest: tuple[int, tuple[str, str]]) -> None:
        """A deletion leaving the ring is forgotten: no cursor can need it any more."""
        seq, key = oldest
        entry = self._latest.get(key)
        if entry is not None and entry.seq == seq and entry.update.value is None:
            del self._latest[key]

    async def wait_beyond(self, seq: int) -> None:
        while self.seq <= seq:
            await asyncio.shield(self._changed)

    def snapshot(self, filters: Filters) -> list[bytes]:
        return [
            entry.encoded
            for entry in self._latest.values()
            if entry.update.value is not None and filters.wants(entry.update)
        ]

    def since(self, cursor: int, filters: Filters) -> list[bytes] | None:
        """What changed after ``cursor``, each key once at its latest; None if the ring no
        longer reaches back that far (the client needs a snapshot)."""
        if cursor < self.oldest - 1:
            return None
        keys: dict[tuple[str, str], None] = {}
        for seq, key in reversed(self._ring):
            if seq <= cursor:
                break
            keys[key] = None
        parts = []
        for key in reversed(keys):  # oldest change first
            entry = self._latest.get(key)
            if entry is not None and filters.wants(entry.update):
                parts.append(entry.encoded)
        return parts

    def snapshot_frame(self, filters: Filters) -> bytes:
        return self._cached(-1, filters, lambda: frame("snapshot", self, self.snapshot(filters)))

    def delta_frame(self, cursor: int, filters: Filters) -> bytes | None:
        """The delta from ``cursor`` to now for these filters ("" when nothing they want
        changed); None when the ring no longer reaches back to ``cursor``."""
        if cursor < self.oldest - 1:
            return None

        def build() -> bytes:
            parts = self.since(cursor, filters) or []
            return frame("delta", self, parts, **{"from": cursor}) if parts else b""

        return self._cached(cursor, filters, build)

    def _cached(self, cursor: int, filters: Filters, build: Callable[[], bytes]) -> bytes:
        data = self._frames.get((cursor, filters))
        if data is None:
            data = self._frames[cursor, filters] = build()
        return data


def frame(kind: str, feed: Feed, parts: list[bytes], **extra: Any) -> bytes:
    head = orjson.dumps({"type": kind, "stream": feed.stream, "seq": feed.seq, **extra})
    return head[:-1] + b',"updates":[' + b",".join(parts) + b"]}"


# --- following Kafka ---------------------------------------------------------------------


async def follow_forever(feed: Feed, settings: Settings, pool: Any) -> None:
    """``follow``, started again after any failure (Kafka or PostgreSQL away), each time from
    a fresh load of the state."""
    while True:
        try:
            await follow(feed, settings, pool)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("ops feed stopped; starting again in %.0f s", RESTART_S)
            await asyncio.sleep(RESTART_S)


async def follow(feed: Feed, settings: Settings, pool: Any) -> None:
    """Load the state, replay the last few minutes, then follow; runs until cancelled."""
    names = {
        settings.topic(t): t for t in (topics.INCIDENTS, topics.TICKETS_CHANGES, topics.IOT_ALARMS)
    }
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=POLL_RECORDS,
    )
    await consumer.start()
    try:
        partitions = [tp for topic in names for tp in await topic_partitions(consumer, topic)]
        consumer.assign(partitions)
        replay = timedelta(seconds=settings.ops_replay_s)
        since = datetime.now(UTC) - replay
        # The offsets first, then the tables (the order dispatch/ops/snapshot.py relies on).
        ends = await consumer.end_offsets(partitions)
        starts = await consumer.offsets_for_times(
            {tp: int(since.timestamp() * 1000) for tp in partitions}
        )
        feed.replace_state(await load_state(pool, since))
        for tp in partitions:
            found = starts.get(tp)
            consumer.seek(tp, found.offset if found is not None else ends[tp])
        devices = Devices()
        next_sla = next_devices = next_forget = 0.0
        while True:
            batches = await consumer.getmany(timeout_ms=200, max_records=POLL_RECORDS)
            updates = await _apply(feed.state, names, batches, devices, pool)
            now = time.monotonic()
            if now >= next_devices:
                next_devices = now + DEVICES_EVERY_S
                updates += feed.state.set_devices(await devices.counts(pool))
            if now >= next_sla:
                next_sla = now + SLA_EVERY_S
                updates += feed.state.sla_board(datetime.now(UTC))
            if now >= next_forget:
                next_forget = now + FORGET_EVERY_S
                feed.state.forget_closed(datetime.now(UTC) - max(replay, FORGET_AFTER))
            feed.publish(updates)
            if not feed.ready.is_set() and await _caught_up(consumer, ends):
                log.info("ops feed ready at seq %d", feed.seq)
                feed.ready.set()
    finally:
        await consumer.stop()


async def _caught_up(consumer: AIOKafkaConsumer, ends: dict[Any, int]) -> bool:
    """Whether the replay has read up to where the topics ended when the feed started."""
    for partition, end in ends.items():
        if await consumer.position(partition) < end:
            return False
    return True


async def _apply(
    state: OpsState,
    names: dict[str, str],
    batches: dict[Any, list[Any]],
    devices: Devices,
    pool: Any,
) -> list[Update]:
    updates: list[Update] = []
    alarms: list[AlarmChangeV1] = []
    for tp, records in batches.items():
        kind = names[tp.topic]
        for record in records:
            try:
                if kind == topics.INCIDENTS:
                    updates += state.apply_incident(loads(IncidentChangeV1, record.value))
                elif kind == topics.TICKETS_CHANGES:
                    updates += state.apply_ticket(loads(TicketChangeV1, record.value))
                else:
                    alarms.append(loads(AlarmChangeV1, record.value))
            except ValueError as exc:  # a record the feed cannot read is skipped, not fatal
                log.warning("ops feed skips a %s record: %s", kind, exc)
    if alarms:
        where = await devices.places(pool, {alarm.device_id for alarm in alarms})
        for alarm in alarms:
            place = where.get(alarm.device_id, NOWHERE)
            updates += state.apply_alarm(alarm, district=place.district, lon=place.lon,
                                         lat=place.lat)  # fmt: skip
    return updates


class Place(NamedTuple):
    district: str | None
    lon: float | None
    lat: float | None


NOWHERE = Place(None, None, None)  # a device the registry does not know (any more)


class Devices:
    """Where each device is (cached: devices do not move often), and counts per district."""

    def __init__(self) -> None:
        self._known: dict[uuid.UUID, Place] = {}

    async def places(self, pool: Any, device_ids: set[uuid.UUID]) -> dict[uuid.UUID, Place]:
        missing = [d for d in device_ids if d not in self._known]
        if missing:
            rows = await pool.fetch(
                """SELECT device_id, district_code, lon, lat FROM devices
                   WHERE device_id = ANY($1::uuid[])""",
                missing,
            )
            for row in rows:
                self._known[uuid.UUID(bytes=row["device_id"].bytes)] = Place(
                    row["district_code"], row["lon"], row["lat"]
                )
        return {d: self._known[d] for d in device_ids if d in self._known}

    async def counts(self, pool: Any) -> dict[str, int]:
        rows = await pool.fetch(
            """SELECT district_code, count(*) AS devices FROM devices
               WHERE disabled_at IS NULL AND district_code IS NOT NULL GROUP BY district_code"""
        )
        return {row["district_code"]: row["devices"] for row in rows}
