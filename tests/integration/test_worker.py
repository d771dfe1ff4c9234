"""The real `hub worker` process: intake.raw → events.enriched → incidents → tickets; bad
records → DLQ."""

import os
import signal
import uuid
from datetime import UTC, datetime

import orjson

from schemas import topics
from schemas.codec import dumps
from schemas.event import EventV1, Source, event_id_for
from schemas.intake import IntakeEnvelope
from streams.batchloop import group_for
from streams.correlate.engine import incident_id_for
from tests.integration.conftest import start_worker
from tests.integration.helpers import eventually, read_until, stable_members


def envelope(order_no: str, **payload_overrides) -> IntakeEnvelope:
    payload = {
        "order_no": order_no,
        "call_time": "2026-11-26T09:30:00+08:00",
        "content": "瓯海区娄桥街道河道有大量垃圾漂浮",
        "longitude": 120.61,
        "latitude": 27.96,
        "coord_system": "GCJ02",
        **payload_overrides,
    }
    return IntakeEnvelope(
        event_id=event_id_for(Source.HOTLINE_12345, order_no),
        source=Source.HOTLINE_12345,
        external_id=order_no,
        received_at=datetime.now(UTC),
        payload=payload,
    )


async def ticket_rows(pool, event_id):
    return await pool.fetch(
        """SELECT t.ticket_id, t.department_code, t.status, h.action, h.to_status
           FROM event_tickets t JOIN ticket_history h USING (ticket_id)
           WHERE t.event_id = $1""",
        event_id,
    )


async def test_replayed_record_opens_exactly_one_ticket(worker, producer, pool, prepared):
    record = envelope(f"WZ-{uuid.uuid4().hex[:10]}")
    for _ in range(3):  # a client retry and two replays
        await producer.send_and_wait(
            prepared.topic(topics.INTAKE_RAW), dumps(record), key=record.event_id.bytes
        )
    rows = await eventually(lambda: ticket_rows(pool, record.event_id), seconds=90)
    # Give the duplicates time to arrive too, then count again.
    await read_until(
        prepared, topics.EVENTS_ENRICHED, lambda r: str(record.event_id).encode() in r.value
    )
    rows = await ticket_rows(pool, record.event_id)
    assert len(rows) == 1
    assert rows[0]["department_code"] != "city-dispatch-centre"  # routed by the pack's rules
    assert (rows[0]["status"], rows[0]["action"], rows[0]["to_status"]) == (
        "dispatched",
        "dispatch",
        "dispatched",
    )
    stored = await pool.fetchrow(
        """SELECT lon, lat, record, category, category_method, district_code, h3_cell,
                  needs_triage FROM events WHERE event_id = $1""",
        record.event_id,
    )
    # Enriched on the way: classified from the text, placed in its district and H3 cell.
    assert stored["category"] in {"water-bodies", "garbage"}
    assert stored["category_method"] == "model" and not stored["needs_triage"]
    assert stored["district_code"] == "330304"  # 瓯海区
    assert stored["h3_cell"] is not None
    assert abs(stored["lon"] - 120.61) < 0.01 and stored["lon"] != 120.61  # GCJ-02 → WGS-84
    assert stored["record"]["raw"]["order_no"] == record.external_id
    assert (
        await pool.fetchval("SELECT count(*) FROM events WHERE event_id = $1", record.event_id) == 1
    )


async def test_bad_records_go_to_dead_letters_and_good_ones_still_flow(
    worker, producer, pool, prepared
):
    raw_topic = prepared.topic(topics.INTAKE_RAW)
    marker = uuid.uuid4().hex
    not_json = f"not json {marker}".encode()
    missing_content = envelope(f"WZ-{marker}", content=None)
    good = envelope(f"WZ-{uuid.uuid4().hex[:10]}")
    await producer.send_and_wait(raw_topic, not_json, key=b"garbage")
    await producer.send_and_wait(
        raw_topic, dumps(missing_content), key=missing_content.event_id.bytes
    )
    await producer.send_and_wait(raw_topic, dumps(good), key=good.event_id.bytes)

    garbage = await read_until(
        prepared, topics.DEAD_LETTER, lambda r: marker.encode() in r.value and r.key == b"garbage"
    )
    letter = orjson.loads(garbage.value)
    assert letter["stage"] == "normalize"
    assert "JSON" in letter["reason"] or "json" in letter["reason"]
    assert letter["topic"] == raw_topic and letter["value"] == not_json.decode()
    assert dict(garbage.headers)["reason"].decode() == letter["reason"]

    invalid = await read_until(
        prepared, topics.DEAD_LETTER, lambda r: r.key == missing_content.event_id.bytes
    )
    assert "content" in orjson.loads(invalid.value)["reason"]

    assert await eventually(lambda: ticket_rows(pool, good.event_id), seconds=90)
    assert not await ticket_rows(pool, missing_content.event_id)


async def test_a_record_the_database_refuses_is_dead_lettered_alone(
    worker, producer, pool, prepared
):
    """PostgreSQL cannot store U+0000 in jsonb: that event goes to the dead letters, and the
    good event beside it in the same batch still gets its ticket."""
    good = envelope(f"WZ-{uuid.uuid4().hex[:10]}")
    bad_id = f"WZ-{uuid.uuid4().hex[:10]}"
    bad_event = EventV1(
        event_id=event_id_for(Source.HOTLINE_12345, bad_id),
        source=Source.HOTLINE_12345,
        external_id=bad_id,
        occurred_at=datetime.now(UTC),
        received_at=datetime.now(UTC),
        location=None,
        text="井盖\x00缺失",
        raw={"content": "井盖\x00缺失"},
    )
    topic = prepared.topic(topics.EVENTS_ENRICHED)
    await producer.send_and_wait(topic, dumps(bad_event), key=b"alone:" + bad_event.event_id.bytes)
    await producer.send_and_wait(
        prepared.topic(topics.INTAKE_RAW), dumps(good), key=good.event_id.bytes
    )
    # It reaches the database inside its incident's record: found by the event id it carries.
    letter = await read_until(
        prepared,
        topics.DEAD_LETTER,
        lambda r: str(bad_event.event_id).encode() in r.value,
        seconds=90,
    )
    assert orjson.loads(letter.value)["stage"] == "open_tickets"
    assert "refused" in orjson.loads(letter.value)["reason"]
    assert await eventually(lambda: ticket_rows(pool, good.event_id), seconds=90)
    assert not await ticket_rows(pool, bad_event.event_id)


async def stored(pool, records) -> int:
    return await pool.fetchval(
        "SELECT count(*) FROM incident_members WHERE event_id = ANY($1::uuid[])",
        [r.event_id for r in records],
    )


async def test_a_worker_killed_mid_stream_loses_and_doubles_nothing(
    worker, producer, pool, prepared
):
    """kill -9 a second worker while 1,500 reports flow through both: the survivor (and a
    restarted one) finish them; every report is in exactly one incident, every incident has
    exactly one ticket with one dispatch, and no incident was opened twice for one report."""
    run = uuid.uuid4().hex[:8]
    records = [
        envelope(f"CRASH-{run}-{i}", longitude=120.55 + (i % 50) * 0.004,
                 latitude=27.95 + (i // 50) * 0.003)
        for i in range(1500)
    ]  # fmt: skip
    doomed = start_worker(prepared, f"doomed-{run}")
    try:
        for stage in ("normalize", "correlate", "tickets"):  # it has joined every stage
            group = group_for(prepared, stage)
            await eventually(lambda g=group: has_members(prepared, g, 2), seconds=60)
        for record in records:
            await producer.send(
                prepared.topic(topics.INTAKE_RAW), dumps(record), key=record.event_id.bytes
            )
        await producer.flush()
        # Mid-stream: killed as soon as the first reports are stored (a fixed pause was once
        # long enough for the workers to finish all 1,500).
        await eventually(lambda: stored(pool, records), every=0.01, seconds=60)
    finally:
        os.kill(doomed.pid, signal.SIGKILL)
        doomed.wait(timeout=10)
    stored_at_kill = await stored(pool, records)
    assert stored_at_kill < len(records)  # it really died with work in hand
    ids = [r.event_id for r in records]
    restarted = start_worker(prepared, f"restarted-{run}")
    try:

        async def all_stored() -> bool:
            return await stored(pool, records) == len(records)

        await eventually(all_stored, seconds=120)
    finally:
        restarted.terminate()
        restarted.wait(timeout=30)
    row = await pool.fetchrow(
        """SELECT count(DISTINCT m.incident_id) AS incidents,
                  count(DISTINCT t.ticket_id) AS tickets,
                  count(*) FILTER (WHERE t.ticket_id IS NULL) AS without_ticket
           FROM incident_members m LEFT JOIN tickets t USING (incident_id)
           WHERE m.event_id = ANY($1::uuid[])""",
        ids,
    )
    assert row["incidents"] == row["tickets"] and row["without_ticket"] == 0
    dispatches = await pool.fetchval(
        """SELECT count(*) FROM ticket_history
           WHERE action = 'dispatch' AND ticket_id IN (
               SELECT t.ticket_id FROM tickets t JOIN incident_members m USING (incident_id)
               WHERE m.event_id = ANY($1::uuid[]))""",
        ids,
    )
    assert dispatches == row["tickets"]
    # An incident opened by a replay for a report that already belonged to another would be
    # left without members (each report has one membership): there must be none.
    orphans = await pool.fetchval(
        """SELECT count(*) FROM incidents i
           WHERE i.incident_id = ANY($1::uuid[])
             AND NOT EXISTS (SELECT 1 FROM incident_members m
                             WHERE m.incident_id = i.incident_id)""",
        [incident_id_for(event_id) for event_id in ids],
    )
    assert orphans == 0


async def has_members(settings, group: str, count: int) -> bool:
    return await stable_members(settings, group) == count
