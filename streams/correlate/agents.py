"""correlate_events: events.enriched → incidents (one record per report, the incident as it
stands after it).

State: per correlation key (a category; see ``correlation_key``), the incidents a new report
could still join, in a Faust table backed by its changelog topic, so a restarted worker resumes
where it was. The table is keyed like the stream, so each partition's state stays with it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hub.pack import Pack, load_pack
from schemas.codec import dumps, loads
from schemas.event import EventV1
from schemas.incident import IncidentChangeV1
from streams.app import app, events_enriched, incidents, settings
from streams.correlate.engine import Incident, Rule, correlate, expire, from_state, to_state
from streams.deadletter import describe, send_to_dead_letter

# key: the correlation key (bytes); value: that key's open incidents as JSON-ready lists.
open_incidents = app.Table("open-incidents", key_type=bytes, default=None)


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
            saved = open_incidents.get(key)
            state = expire(from_state(saved or []), now=event.occurred_at, rule=rule)
            incident, change = correlate(state, event, rule)
            open_incidents[key] = to_state(state)
        else:
            incident, change = correlate([], event, rule)
        record = change_record(incident, change, event)
        await incidents.send(key=incident.incident_id.bytes, value=dumps(record))
