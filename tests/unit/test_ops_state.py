import uuid
from datetime import UTC, datetime, timedelta

from dispatch.ops.state import LAYERS, RECENT_EVENTS, OpsState, Update
from geo.h3cells import cell_of, cell_to_str
from schemas.alarm import AlarmChangeV1, alarm_id_for
from schemas.event import Crs, EventV1, Location, Priority, Source, event_id_for
from schemas.incident import IncidentChangeV1
from schemas.ticket import TicketChangeV1, TicketSnapshot

T0 = datetime(2024, 6, 3, 2, 0, tzinfo=UTC)
CITY_GOVERNMENT = (120.6994, 27.9938)  # Lucheng, WGS-84 (lon, lat)
WENZHOU_SOUTH = (120.7050, 27.9000)  # about 10 km south: other res-7 and res-8 cells
LUCHENG = "330302"
DEVICE = uuid.UUID("6f1c2a3b-0000-4000-8000-000000000001")


def incident(
    incident_id: uuid.UUID | None = None,
    *,
    change: str = "created",
    category: str | None = "garbage",
    priority: str = "normal",
    reports: int = 1,
    where: tuple[float, float] | None = CITY_GOVERNMENT,
    text: str = "垃圾满溢",
    external_id: str | None = None,
) -> IncidentChangeV1:
    """An incident change as correlation puts it on `incidents`, carrying one report."""
    external_id = external_id or f"test-{uuid.uuid4()}"
    lon, lat = where if where else (None, None)
    location = (
        Location(
            lon=where[0],
            lat=where[1],
            source_crs=Crs.WGS84,
            source_lon=where[0],
            source_lat=where[1],
        )
        if where
        else None
    )
    event = EventV1(
        event_id=event_id_for("hotline-12345", external_id),
        source=Source.HOTLINE_12345,
        external_id=external_id,
        occurred_at=T0,
        received_at=T0,
        location=location,
        text=text,
        priority=Priority(priority),
        category=category,
        district_code=LUCHENG,
        raw={},
    )
    return IncidentChangeV1(
        incident_id=incident_id or uuid.uuid4(),
        change=change,
        category=category,
        priority=Priority(priority),
        reports=reports,
        sources=["hotline-12345"],
        lon=lon,
        lat=lat,
        district_code=LUCHENG,
        opened_at=T0,
        last_seen=T0,
        event=event,
    )


def ticket(
    ticket_id: uuid.UUID,
    change_id: int,
    *,
    status: str = "dispatched",
    action: str = "dispatch",
    incident_id: uuid.UUID | None = None,
    department: str = "sanitation",
    resolve_due_at: datetime | None = T0 + timedelta(hours=4),
    sla_state: str = "on_time",
) -> TicketChangeV1:
    """A ticket change as the outbox relay puts it on `tickets.changes`."""
    return TicketChangeV1(
        change_id=change_id,
        ticket_id=ticket_id,
        action=action,
        actor="ops:test",
        at=T0,
        from_status=None,
        to_status=status,
        note="",
        details={},
        ticket=TicketSnapshot(
            incident_id=incident_id,
            status=status,
            department_code=department,
            priority="normal",
            category="garbage",
            title="垃圾满溢",
            version=change_id,
            district_code=LUCHENG,
            lon=CITY_GOVERNMENT[0],
            lat=CITY_GOVERNMENT[1],
            sla_state=sla_state,
            escalation_level=0,
            accept_due_at=None,
            resolve_due_at=resolve_due_at,
            created_at=T0,
            updated_at=T0,
        ),
    )


def alarm(
    kind: str = "raised",
    *,
    severity: str | None = "major",
    alarm_type: str = "high-water-level",
    device_id: uuid.UUID = DEVICE,
    raised_at: int = 1_717_380_000_123,
) -> AlarmChangeV1:
    """An alarm change as the IoT rules put it on `iot.alarms`."""
    return AlarmChangeV1(
        alarm_id=alarm_id_for(device_id, alarm_type, raised_at),
        device_id=device_id,
        profile="water-level",
        alarm_type=alarm_type,
        kind=kind,
        severity=severity,
        previous=None,
        raised_at=raised_at,
        at=raised_at + 5000,
        value=5.2,
        reason="water_level_m 5.2 >= 5",
    )


def by_layer(updates: list[Update], layer: str) -> dict[str, dict[str, object] | None]:
    return {u.key: u.value for u in updates if u.layer == layer}


def h3_key(res: int, where: tuple[float, float] = CITY_GOVERNMENT) -> str:
    return f"{res}:{cell_to_str(cell_of(*where, res))}"


# ---- incidents and tickets -----------------------------------------------------------------


def test_a_new_incident_reaches_events_incidents_and_h3():
    state = OpsState()
    record = incident(priority="high")
    updates = state.apply_incident(record)

    value = by_layer(updates, "incidents")[str(record.incident_id)]
    assert value is not None
    assert value["h3_7"] == cell_to_str(cell_of(*CITY_GOVERNMENT, 7))
    assert value["ticket_id"] is None and value["status"] is None  # no ticket yet
    assert value["opened_at"] == T0.isoformat()
    event = by_layer(updates, "events")[str(record.event.event_id)]
    assert event is not None and event["incident_id"] == str(record.incident_id)
    assert event["text"] == "垃圾满溢" and event["source"] == "hotline-12345"
    for res in (7, 8):
        assert by_layer(updates, "h3")[h3_key(res)] == {
            "res": res,
            "cell": h3_key(res).split(":")[1],
            "open": 1,
            "by_category": {"garbage": 1},
            "by_priority": {"high": 1},
        }
    incident_update = next(u for u in updates if u.layer == "incidents")
    assert (incident_update.district, incident_update.category, incident_update.priority) == (
        LUCHENG,
        "garbage",
        "high",
    )
    assert all(u.district is None for u in updates if u.layer == "h3")


def test_incident_then_ticket_join():
    state = OpsState()
    record, ticket_id = incident(), uuid.uuid4()
    state.apply_incident(record)
    updates = state.apply_ticket(ticket(ticket_id, 1, incident_id=record.incident_id))

    value = by_layer(updates, "incidents")[str(record.incident_id)]
    assert value is not None
    assert value["ticket_id"] == str(ticket_id) and value["status"] == "dispatched"
    assert value["department_code"] == "sanitation" and value["sla_state"] == "on_time"
    assert value["resolve_due_at"] == (T0 + timedelta(hours=4)).isoformat()
    assert value["reports"] == 1  # the incident's side is kept
    assert str(ticket_id) in by_layer(updates, "tickets")
    assert not by_layer(updates, "h3")  # same place, category and priority: counts unchanged


def test_ticket_then_incident_join():
    state = OpsState()
    record, ticket_id = incident(), uuid.uuid4()
    early = state.apply_ticket(ticket(ticket_id, 1, incident_id=record.incident_id))
    assert not by_layer(early, "incidents")  # nothing to show without the incident's record
    updates = state.apply_incident(record)

    value = by_layer(updates, "incidents")[str(record.incident_id)]
    assert value is not None and value["ticket_id"] == str(ticket_id)
    assert value["status"] == "dispatched" and value["category"] == "garbage"


def test_h3_counts_leave_when_the_ticket_resolves_and_return_on_reopen():
    state = OpsState()
    record, ticket_id = incident(), uuid.uuid4()
    state.apply_incident(record)
    state.apply_ticket(ticket(ticket_id, 1, incident_id=record.incident_id))

    resolved = state.apply_ticket(
        ticket(ticket_id, 2, status="resolved", action="resolve", incident_id=record.incident_id)
    )
    assert by_layer(resolved, "incidents") == {str(record.incident_id): None}
    assert by_layer(resolved, "h3") == {h3_key(7): None, h3_key(8): None}
    assert by_layer(resolved, "tickets")[str(ticket_id)] is not None  # resolved stays listed

    closed = state.apply_ticket(
        ticket(ticket_id, 3, status="closed", action="close", incident_id=record.incident_id)
    )
    assert by_layer(closed, "tickets") == {str(ticket_id): None}
    assert not by_layer(closed, "incidents") and not by_layer(closed, "h3")  # already gone

    reopened = state.apply_ticket(
        ticket(ticket_id, 4, status="in_progress", action="reopen", incident_id=record.incident_id)
    )
    value = by_layer(reopened, "incidents")[str(record.incident_id)]
    assert value is not None and value["status"] == "in_progress"
    assert {k: v and v["open"] for k, v in by_layer(reopened, "h3").items()} == {
        h3_key(7): 1,
        h3_key(8): 1,
    }
    assert by_layer(reopened, "tickets")[str(ticket_id)] is not None


def test_h3_counts_follow_an_incident_that_moves_and_changes_priority():
    state = OpsState()
    record = incident()
    neighbour = incident(priority="low")
    state.apply_incident(record)
    state.apply_incident(neighbour)
    assert state.layers["h3"][h3_key(8)].value["open"] == 2

    moved = incident(
        record.incident_id, change="attached", reports=2, priority="urgent", where=WENZHOU_SOUTH
    )
    updates = by_layer(state.apply_incident(moved), "h3")
    assert updates[h3_key(8)] == {
        "res": 8,
        "cell": h3_key(8).split(":")[1],
        "open": 1,
        "by_category": {"garbage": 1},
        "by_priority": {"low": 1},
    }
    south = updates[h3_key(8, WENZHOU_SOUTH)]
    assert south is not None and south["by_priority"] == {"urgent": 1}


def test_an_incident_without_location_or_category():
    state = OpsState()
    record = incident(where=None, category=None)
    updates = state.apply_incident(record)
    value = by_layer(updates, "incidents")[str(record.incident_id)]
    assert value is not None and value["h3_7"] is None and value["h3_8"] is None
    assert not by_layer(updates, "h3")

    placed = incident(record.incident_id, change="attached", reports=2, category=None)
    cells = by_layer(state.apply_incident(placed), "h3")
    assert cells[h3_key(7)]["by_category"] == {"uncategorised": 1}


def test_an_older_incident_record_does_not_undo_a_newer_one():
    state = OpsState()
    first = incident()
    second = incident(first.incident_id, change="attached", reports=2, priority="high")
    state.apply_incident(first)
    state.apply_incident(second)
    replayed = state.apply_incident(first)
    assert not by_layer(replayed, "incidents")
    assert state.layers["incidents"][str(first.incident_id)].value["reports"] == 2


def test_duplicate_and_out_of_order_ticket_changes_are_ignored():
    state = OpsState()
    ticket_id = uuid.uuid4()
    first = ticket(ticket_id, 10)
    accepted = ticket(ticket_id, 11, status="accepted", action="accept")
    assert state.apply_ticket(first)
    assert state.apply_ticket(accepted)

    assert state.apply_ticket(accepted) == []  # delivered twice
    assert state.apply_ticket(first) == []  # an older change arriving late
    value = state.layers["tickets"][str(ticket_id)].value
    assert value is not None and value["status"] == "accepted" and value["change_id"] == 11


def test_ticket_values_are_json_ready():
    state = OpsState()
    ticket_id, incident_id = uuid.uuid4(), uuid.uuid4()
    [update] = by_layer(
        state.apply_ticket(ticket(ticket_id, 1, incident_id=incident_id)), "tickets"
    ).values()
    assert update is not None
    assert update["ticket_id"] == str(ticket_id) and update["incident_id"] == str(incident_id)
    assert update["action"] == "dispatch" and update["change_id"] == 1
    assert update["created_at"] == T0.isoformat() and update["accept_due_at"] is None
    assert update["title"] == "垃圾满溢" and update["department_code"] == "sanitation"


def test_a_merged_ticket_leaves_both_layers():
    state = OpsState()
    record, ticket_id = incident(), uuid.uuid4()
    state.apply_incident(record)
    state.apply_ticket(ticket(ticket_id, 1, incident_id=record.incident_id))
    merged = state.apply_ticket(
        ticket(ticket_id, 2, status="merged", action="merge", incident_id=record.incident_id)
    )
    assert by_layer(merged, "tickets") == {str(ticket_id): None}
    assert by_layer(merged, "incidents") == {str(record.incident_id): None}


# ---- events --------------------------------------------------------------------------------


def test_the_events_window_keeps_the_newest_and_evicts_the_oldest():
    state = OpsState()
    records = [incident() for _ in range(RECENT_EVENTS + 2)]
    for record in records[:RECENT_EVENTS]:
        state.apply_incident(record)
    assert len(state.layers["events"]) == RECENT_EVENTS

    newest, oldest = records[RECENT_EVENTS].event.event_id, records[0].event.event_id
    events = by_layer(state.apply_incident(records[RECENT_EVENTS]), "events")
    assert list(events) == [str(newest), str(oldest)]
    assert events[str(newest)] is not None and events[str(oldest)] is None
    state.apply_incident(records[RECENT_EVENTS + 1])
    assert len(state.layers["events"]) == RECENT_EVENTS
    assert str(records[1].event.event_id) not in state.layers["events"]
    assert str(records[2].event.event_id) in state.layers["events"]


def test_duplicate_reports_add_no_event_and_long_text_is_trimmed():
    state = OpsState()
    record = incident(text="满" * 300)
    event = by_layer(state.apply_incident(record), "events")[str(record.event.event_id)]
    assert event is not None and len(event["text"]) == 200

    other = incident(record.incident_id, change="duplicate", external_id="again")
    assert state.apply_incident(other) == []
    assert str(other.event.event_id) not in state.layers["events"]


# ---- alarms and device health --------------------------------------------------------------


def test_alarms_raise_escalate_and_clear():
    state = OpsState()
    raised = alarm(severity="major")
    key = str(raised.alarm_id)
    [update] = state.apply_alarm(raised, district=LUCHENG)
    assert update.layer == "alarms" and update.key == key
    assert (update.district, update.priority, update.category) == (LUCHENG, "high", None)
    assert update.value is not None
    assert update.value["raised_at"] == "2024-06-03T02:00:00.123000+00:00"
    assert update.value["at"] == "2024-06-03T02:00:05.123000+00:00"
    assert update.value["district"] == LUCHENG and update.value["severity"] == "major"

    assert state.apply_alarm(raised, district=LUCHENG) == []  # a replay changes nothing
    escalated = state.apply_alarm(alarm("escalated", severity="critical"), district=LUCHENG)
    assert [(u.key, u.priority) for u in escalated] == [(key, "urgent")]

    cleared = state.apply_alarm(alarm("cleared", severity=None), district=LUCHENG)
    assert [(u.layer, u.key, u.value) for u in cleared] == [("alarms", key, None)]
    assert state.layers["alarms"] == {}
    assert state.apply_alarm(alarm("cleared", severity=None), district=LUCHENG) == []


def test_device_health_counts_silent_devices_once():
    state = OpsState()
    assert by_layer(state.set_devices({LUCHENG: 10}), "device-health") == {
        LUCHENG: {"district_code": LUCHENG, "devices": 10, "offline": 0}
    }
    silent = alarm(alarm_type="no-data", severity="warning")
    updates = state.apply_alarm(silent, district=LUCHENG)
    assert by_layer(updates, "device-health")[LUCHENG] == {
        "district_code": LUCHENG,
        "devices": 10,
        "offline": 1,
    }

    assert state.apply_alarm(silent, district=LUCHENG) == []  # raised again: still one
    worse = state.apply_alarm(
        alarm("escalated", alarm_type="no-data", severity="minor"), district=LUCHENG
    )
    assert not by_layer(worse, "device-health")  # same device, same count
    other = alarm(alarm_type="high-water-level")
    assert not by_layer(state.apply_alarm(other, district=LUCHENG), "device-health")

    cleared = state.apply_alarm(
        alarm("cleared", alarm_type="no-data", severity=None), district=LUCHENG
    )
    assert by_layer(cleared, "device-health")[LUCHENG]["offline"] == 0
    assert state.set_devices({LUCHENG: 10}) == []  # the same count again
    assert by_layer(state.set_devices({LUCHENG: 9}), "device-health")[LUCHENG] == {
        "district_code": LUCHENG,
        "devices": 9,
        "offline": 0,
    }
    assert by_layer(state.set_devices({}), "device-health") == {LUCHENG: None}


def test_two_silent_devices_in_a_district_count_twice():
    state = OpsState()
    for device in (uuid.uuid4(), uuid.uuid4()):
        state.apply_alarm(
            alarm(alarm_type="no-data", severity="warning", device_id=device), district=LUCHENG
        )
    assert state.layers["device-health"][LUCHENG].value == {
        "district_code": LUCHENG,
        "devices": 0,
        "offline": 2,
    }


# ---- SLA board -----------------------------------------------------------------------------


def test_sla_board_moves_from_due_soon_to_breached_and_returns_only_changes():
    state = OpsState()
    soon, later, water = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    state.apply_ticket(ticket(soon, 1, resolve_due_at=T0 + timedelta(minutes=30)))
    state.apply_ticket(ticket(later, 2, resolve_due_at=T0 + timedelta(hours=5)))
    state.apply_ticket(ticket(water, 3, department="water", resolve_due_at=T0 + timedelta(days=1)))

    first = by_layer(state.sla_board(T0), "sla")
    assert first == {
        "sanitation": {
            "department_code": "sanitation",
            "open": 2,
            "due_within_1h": 1,
            "breached": 0,
        },
        "water": {"department_code": "water", "open": 1, "due_within_1h": 0, "breached": 0},
    }
    assert state.sla_board(T0) == []  # nothing changed

    second = state.sla_board(T0 + timedelta(minutes=45))
    assert [(u.key, u.value) for u in second] == [
        (
            "sanitation",
            {"department_code": "sanitation", "open": 2, "due_within_1h": 0, "breached": 1},
        ),
    ]
    assert all(u.district is None and u.priority is None for u in second)


def test_sla_board_counts_a_marked_breach_and_drops_departments_without_open_tickets():
    state = OpsState()
    marked, resolved = uuid.uuid4(), uuid.uuid4()
    state.apply_ticket(ticket(marked, 1, department="water", sla_state="breached"))
    state.apply_ticket(ticket(resolved, 2, status="resolved", action="resolve"))
    assert by_layer(state.sla_board(T0), "sla") == {
        "water": {"department_code": "water", "open": 1, "due_within_1h": 0, "breached": 1},
    }

    updates = state.apply_ticket(
        ticket(marked, 3, department="water", status="merged", action="merge")
    )
    assert not by_layer(updates, "sla")  # only sla_board speaks for the board
    assert by_layer(state.sla_board(T0), "sla") == {"water": None}


# ---- the whole state -----------------------------------------------------------------------


def test_snapshot_is_the_union_of_current_state():
    state = OpsState()
    seen: dict[tuple[str, str], Update] = {}
    record, ticket_id = incident(), uuid.uuid4()
    batches = [
        state.apply_incident(record),
        state.apply_incident(incident(where=WENZHOU_SOUTH)),
        state.apply_ticket(ticket(ticket_id, 1, incident_id=record.incident_id)),
        state.apply_alarm(alarm(alarm_type="no-data"), district=LUCHENG),
        state.set_devices({LUCHENG: 3}),
        state.sla_board(T0),
        state.apply_ticket(
            ticket(
                ticket_id, 2, status="resolved", action="resolve", incident_id=record.incident_id
            )
        ),
    ]
    for updates in batches:
        for update in updates:
            seen[(update.layer, update.key)] = update
    expected = {key: update for key, update in seen.items() if update.value is not None}

    snapshot = state.snapshot()
    assert {(u.layer, u.key): u for u in snapshot} == expected
    assert len(snapshot) == len(expected)
    assert {u.layer for u in snapshot} == set(LAYERS)
    assert all(u.value is not None for u in snapshot)


def test_nothing_changed_returns_nothing():
    state = OpsState()
    record, ticket_id = incident(), uuid.uuid4()
    state.apply_incident(record)
    change = ticket(ticket_id, 1, incident_id=record.incident_id)
    state.apply_ticket(change)

    assert state.apply_incident(record) == []  # the same record again
    assert state.apply_incident(incident(record.incident_id, change="duplicate")) == []
    # A comment changes the ticket (action, change id) but not its incident on the map.
    comment = ticket(ticket_id, 2, action="comment", incident_id=record.incident_id)
    assert [u.layer for u in state.apply_ticket(comment)] == ["tickets"]
    assert state.set_devices({}) == []  # no district had anything to lose
    assert state.sla_board(T0)  # the board's first look: sanitation has one open ticket
    assert state.sla_board(T0) == []


def test_closed_tickets_and_their_incidents_are_forgotten_after_a_while():
    state = OpsState()
    record, ticket_id = incident(), uuid.uuid4()
    other, open_id = incident(where=WENZHOU_SOUTH), uuid.uuid4()
    for rec, tid in ((record, ticket_id), (other, open_id)):
        state.apply_incident(rec)
        state.apply_ticket(ticket(tid, 1, incident_id=rec.incident_id))
    state.apply_ticket(ticket(ticket_id, 2, status="closed", action="close",
                              incident_id=record.incident_id))  # fmt: skip

    assert state.forget_closed(T0) == 0  # closed at T0: not before T0
    late_duplicate = incident(record.incident_id, change="duplicate", external_id="late")
    assert not by_layer(state.apply_incident(late_duplicate), "incidents")  # still known closed

    assert state.forget_closed(T0 + timedelta(minutes=1)) == 1
    assert str(record.incident_id) not in state._incidents
    assert str(ticket_id) not in state._last_change
    assert str(other.incident_id) in state._incidents  # the open one stays
    assert set(state.layers["incidents"]) == {str(other.incident_id)}
    # Forgotten means unknown: a record of it now is a new incident on the map.
    again = incident(record.incident_id, reports=2)
    assert by_layer(state.apply_incident(again), "incidents")[str(record.incident_id)] is not None


def test_a_reopened_ticket_is_no_longer_forgotten():
    state = OpsState()
    record, ticket_id = incident(), uuid.uuid4()
    state.apply_incident(record)
    state.apply_ticket(ticket(ticket_id, 1, status="closed", incident_id=record.incident_id))
    state.apply_ticket(ticket(ticket_id, 2, status="in_progress", action="reopen",
                              incident_id=record.incident_id))  # fmt: skip
    assert state.forget_closed(T0 + timedelta(days=1)) == 0
    assert str(record.incident_id) in state.layers["incidents"]


def test_an_alarm_is_placed_where_its_device_is():
    state = OpsState()
    [update] = state.apply_alarm(alarm(severity="minor"), district=LUCHENG, lon=120.7, lat=28.0)
    assert update.value is not None and (update.value["lon"], update.value["lat"]) == (120.7, 28.0)
