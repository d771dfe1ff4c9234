"""correlate_events: events.enriched → incidents (one record per report, the incident as it
stands after it).

State: the incidents a new report could still join, one table entry per incident (key: the
correlation key, ``|``, the incident id), in a Faust table backed by its changelog topic, so a
restarted worker resumes where it was; entries are written from the event being processed, so
each lands in that event's partition. A report rewrites only the incident it changed (writing a
whole category's list per report made the cost grow with the number of open incidents), and an
in-memory view per correlation key spares decoding on every report; it is rebuilt from the table
after a rebalance.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hub.pack import Pack, load_pack
from schemas.codec import dumps, loads
from schemas.event import EventV1
from schemas.incident import IncidentChangeV1
from streams.app import app, events_enriched, incidents, settings
from streams.correlate.engine import (
    Incident,
    OpenSet,
    Rule,
    correlate,
    from_state,
    to_state,
)
from streams.deadletter import describe, send_to_dead_letter

open_incidents = app.Table("open-incidents", key_type=bytes, default=None)


class OpenIncidents:
    """The open incidents of each correlation key: a cache over the durable table."""

    def __init__(self, table: Any) -> None:
        self._table = table
        self._by_key: dict[bytes, OpenSet] = {}

    def clear(self) -> None:
        self._by_key.clear()

    def of(self, key: bytes) -> OpenSet:
        if key not in self._by_key:
            prefix = key + b"|"
            saved = [value for k, value in self._table.items() if k.startswith(prefix)]
            self._by_key[key] = OpenSet(from_state(saved))
        return self._by_key[key]

    def save(self, key: bytes, incident: Incident) -> None:
        self._table[key + b"|" + incident.incident_id.bytes] = to_state([incident])[0]

    def forget(self, key: bytes, incident: Incident) -> None:
        entry = key + b"|" + incident.incident_id.bytes
        if entry in self._table:
            del self._table[entry]


cache = OpenIncidents(open_incidents)


@app.on_partitions_revoked.connect  # type: ignore[arg-type]
async def _forget_cache(sender: Any, *args: Any, signal: Any = None, **kwargs: Any) -> None:
    # Partitions may move to another worker: what this one cached may go stale.
    cache.clear()


def change_record(incident: Incident, change: str, event: EventV1) -> IncidentChangeV1:
    lon, lat = incident.centre if event.location is not None else (None, None)
    return IncidentChangeV1(
        incident_id=incident.incident_id,
        change=change,  # type: ignore[arg-type]
        category=incident.category,
        priority=incident.priority,
        reports=incident.reports,
        sources=incident.sources,
        lon=lon,
        lat=lat,
        district_code=event.district_code,
        opened_at=incident.opened_at,
        last_seen=incident.last_seen,
        event=event,
    )


def rule_for(pack: Pack, category: str | None) -> Rule:
    """The pack's radius and window for the category (taxonomy.csv), or the defaults."""
    known = pack.category(category) if category else None
    if known is None:
        return Rule()
    return Rule(radius_m=known.radius_m, window=timedelta(minutes=known.window_min))


@app.agent(events_enriched)
async def correlate_events(stream: Any) -> None:
    pack = load_pack(settings.pack_dir)
    async for message in stream.events():
        try:
            event = loads(EventV1, message.value)
        except ValueError as exc:
            await send_to_dead_letter(message.message, stage="correlate", reason=describe(exc))
            continue
        key: bytes = message.key or b""
        rule = rule_for(pack, event.category)
        if key.startswith(b"category:") and rule.radius_m > 0:
            state = cache.of(key)
            for closed in state.expire(now=event.occurred_at, window=rule.window):
                cache.forget(key, closed)
            incident, change = correlate(state, event, rule)
            if change != "duplicate":
                cache.save(key, incident)
        else:
            incident, change = correlate(OpenSet(), event, rule)
        record = change_record(incident, change, event)
        await incidents.send(key=incident.incident_id.bytes, value=dumps(record))
