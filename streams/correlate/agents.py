"""correlate: events.enriched → incidents (one record per report, the incident as it stands
after it), as a batch loop (streams/batchloop.py) with its state in streams/correlate/state.py.

Per batch: every report is correlated against its partition's open incidents (in memory,
indexed); then the incidents it changed are written to the changelog, then the change records
to ``incidents``, and only then is the batch committed. State first: a crash after it replays
the batch as duplicates of what the state already holds (harmless downstream), never as new
incidents.
"""

from __future__ import annotations

from datetime import timedelta
from functools import partial
from typing import Any

from hub.pack import Pack, load_pack
from schemas import topics
from schemas.codec import dumps
from schemas.event import EventV1
from schemas.incident import IncidentChangeV1
from streams.app import app, settings, worker_bus
from streams.batchloop import run_batch_loop
from streams.correlate.engine import Incident, OpenSet, Rule, correlate
from streams.correlate.state import CorrelationState, entry_key, entry_value
from streams.deadletter import decode_or_dead_letter
from streams.retry import retry_until_done


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


STAGE = "correlate"


async def correlate_batch(pack: Pack, state: CorrelationState, records: list[Any]) -> None:
    async with state.lock:
        await _correlate_and_write(pack, state, records)


async def _correlate_and_write(pack: Pack, state: CorrelationState, records: list[Any]) -> None:
    changed: dict[int, dict[bytes, bytes | None]] = {}
    outputs: list[tuple[bytes, bytes]] = []
    decoded = await decode_or_dead_letter(records, EventV1, stage=STAGE)
    for record, event in decoded:
        key: bytes = record.key or b""
        rule = rule_for(pack, event.category)
        if key.startswith(b"category:") and rule.radius_m > 0:
            open_set = state.of(record.partition, key)
            entries = changed.setdefault(record.partition, {})
            for closed in open_set.expire(now=event.occurred_at, window=rule.window):
                entries[entry_key(key, closed)] = None
            incident, change = correlate(open_set, event, rule)
            if change != "duplicate":
                entries[entry_key(key, incident)] = entry_value(incident)
        else:
            incident, change = correlate(OpenSet(), event, rule)
        record_out = change_record(incident, change, event)
        outputs.append((incident.incident_id.bytes, dumps(record_out)))
    bus = await worker_bus.get()
    for partition, entries in changed.items():
        if entries:
            send_state = partial(
                bus.send_to_partition, state.changelog, partition, list(entries.items())
            )
            await retry_until_done(send_state, what=f"{len(entries)} correlation state entries")
    if outputs:
        send = partial(bus.send_many, settings.topic(topics.INCIDENTS), outputs)
        await retry_until_done(send, what=f"{len(outputs)} incident changes")
    if len(decoded) < len(records):
        await app.producer.flush()  # the dead letters are out before the batch is committed


@app.task  # type: ignore[untyped-decorator]
async def correlate_events() -> None:
    pack = load_pack(settings.pack_dir)
    state = CorrelationState(
        bootstrap=settings.bootstrap, changelog=settings.topic(topics.CORRELATION_STATE)
    )
    await run_batch_loop(
        settings,
        stage=STAGE,
        topic=topics.EVENTS_ENRICHED,
        handle=partial(correlate_batch, pack, state),
        max_records=settings.worker_batch_size,
        listener=state,
    )
