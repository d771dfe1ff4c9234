"""The city's live state for the operations centre: Kafka records folded into per-layer maps.

Each ``apply_*`` takes one record (incident, ticket or alarm change) and returns the Updates it
caused, across every layer it touches, and only real changes: the feed sends each to the
dashboards that want it. A value of None means the key left the layer. Pure: no I/O, no clock
(``sla_board`` is told the time), so the feed decides when things happen.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any

from dispatch.tickets.lifecycle import OPEN, Status
from geo.h3cells import cell_of, cell_to_str
from schemas.alarm import AlarmChangeV1
from schemas.event import EventV1
from schemas.incident import IncidentChangeV1
from schemas.ticket import TicketChangeV1, TicketSnapshot

LAYERS = ("events", "incidents", "tickets", "alarms", "device-health", "h3", "sla")
H3_RESOLUTIONS = (7, 8)
RECENT_EVENTS = 500  # the events layer keeps the newest this many
DUE_SOON = timedelta(hours=1)
TEXT_CHARS = 200  # an event's text on the map is a preview, not the report

# A ticket in one of these has been dealt with, so its incident leaves the map (the state
# machine has no "cancelled": a merged ticket is the duplicate of another).
CLOSED_STATUSES = frozenset({Status.RESOLVED, Status.CLOSED, Status.MERGED})
# Resolved tickets stay on the ticket board until the centre closes them (verification).
TICKET_GONE = frozenset({Status.CLOSED, Status.MERGED})
BREACHED = "breached"  # tickets.sla_state once a breach mark fired (dispatch/sla/timers.py)
NO_DATA = "no-data"  # the alarm type of a silent device (streams/iot/rules.py NoDataRule)
UNCATEGORISED = "uncategorised"  # by_category's key for incidents without a category
SEVERITY_PRIORITY = {"critical": "urgent", "major": "high", "minor": "normal", "warning": "low"}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Update:
    layer: str
    key: str
    value: dict[str, Any] | None  # None: the key is gone (deleted) from the layer
    # What filters see (None = not applicable → passes every filter of that kind). Deletions
    # carry none, so every client that may hold the key hears that it is gone.
    district: str | None = None
    category: str | None = None
    priority: str | None = None


@dataclass(frozen=True, slots=True)
class Incident:
    """What the map shows of an incident: its record without the report that came with it."""

    incident_id: str
    category: str | None
    priority: str
    reports: int
    sources: tuple[str, ...]
    lon: float | None
    lat: float | None
    district_code: str | None
    opened_at: datetime
    last_seen: datetime

    @classmethod
    def from_change(cls, change: IncidentChangeV1) -> Incident:
        return cls(
            incident_id=str(change.incident_id),
            category=change.category,
            priority=change.priority.value,
            reports=change.reports,
            sources=tuple(change.sources),
            lon=change.lon,
            lat=change.lat,
            district_code=change.district_code,
            opened_at=change.opened_at,
            last_seen=change.last_seen,
        )


@dataclass(frozen=True, slots=True)
class Report:
    """One report on the recent-events layer (its text a preview, not the report)."""

    event_id: str
    source: str
    category: str | None
    priority: str
    text: str
    district_code: str | None
    lon: float | None
    lat: float | None
    occurred_at: datetime
    incident_id: str

    @classmethod
    def from_event(cls, event: EventV1, incident_id: uuid.UUID) -> Report:
        return cls(
            event_id=str(event.event_id),
            source=event.source.value,
            category=event.category,
            priority=event.priority.value,
            text=event.text,
            district_code=event.district_code,
            lon=event.location.lon if event.location else None,
            lat=event.location.lat if event.location else None,
            occurred_at=event.occurred_at,
            incident_id=str(incident_id),
        )

    def update(self) -> Update:
        value = {
            "event_id": self.event_id,
            "source": self.source,
            "category": self.category,
            "priority": self.priority,
            "text": self.text[:TEXT_CHARS],
            "district_code": self.district_code,
            "lon": self.lon,
            "lat": self.lat,
            "occurred_at": self.occurred_at.isoformat(),
            "incident_id": self.incident_id,
        }
        return Update("events", self.event_id, value, district=self.district_code,
                      category=self.category, priority=self.priority)  # fmt: skip


@dataclass(slots=True)
class _Cell:
    """Open incidents in one H3 cell, counted so a move only touches the two cells involved."""

    open: int = 0
    by_category: Counter[str] = field(default_factory=Counter)
    by_priority: Counter[str] = field(default_factory=Counter)


class OpsState:
    def __init__(self) -> None:
        # layer → key → its latest Update; never a None value: deleted keys are removed.
        self.layers: dict[str, dict[str, Update]] = {layer: {} for layer in LAYERS}
        # Every incident whose ticket is not closed (and closed ones until ``forget_closed``),
        # kept after a resolved ticket takes it off the map so that a reopen brings it back.
        self._incidents: dict[str, Incident] = {}
        # Each incident's ticket (one at most: tickets.incident_id is unique), by incident id,
        # since the ticket may arrive before its incident.
        self._ticket_of_incident: dict[str, TicketChangeV1] = {}
        # The last change applied per ticket, closed ones included: delivery is at least once.
        self._last_change: dict[str, int] = {}
        # Closed or merged tickets → when: forgotten (with their incident) by forget_closed.
        self._gone: dict[str, datetime] = {}
        # Snapshots of the tickets on the board, for the SLA counts (with real datetimes).
        self._open_tickets: dict[str, TicketSnapshot] = {}
        self._cells: dict[str, _Cell] = {}
        self._devices: dict[str, int] = {}
        # District → devices with an active no-data alarm, kept as alarms change: counting
        # them by scanning every alarm per change was quadratic in a city going dark.
        self._silent: dict[str, set[str]] = {}

    # ---- records ---------------------------------------------------------------------------

    def apply_incident(self, change: IncidentChangeV1) -> list[Update]:
        """An incident as it now stands, and (unless a replayed duplicate) its new report."""
        updates = self.put_incident(Incident.from_change(change))
        if change.change != "duplicate":
            updates += self.add_report(Report.from_event(change.event, change.incident_id))
        return updates

    def put_incident(self, incident: Incident) -> list[Update]:
        """An incident as it now stands (from a record, or from the database at start)."""
        held = self._incidents.get(incident.incident_id)
        # Reports only grow: an older record replayed after a newer one must not undo it (the
        # database keeps the same rule in upsert_incidents).
        if held is not None and incident.reports < held.reports:
            return []
        self._incidents[incident.incident_id] = incident
        return self._refresh_incident(incident.incident_id)

    def apply_ticket(self, change: TicketChangeV1) -> list[Update]:
        """A ticket's change: the ticket board, and its incident (which may leave or return)."""
        key = str(change.ticket_id)
        last = self._last_change.get(key)
        if last is not None and change.change_id <= last:
            return []  # a redelivery, or older than what we have
        self._last_change[key] = change.change_id
        if change.ticket.status in TICKET_GONE:
            self._open_tickets.pop(key, None)
            self._gone[key] = change.at
        else:
            self._open_tickets[key] = change.ticket
            self._gone.pop(key, None)
        updates = self._put_all([_ticket_update(change)])
        incident_id = change.ticket.incident_id
        if incident_id is not None:
            self._ticket_of_incident[str(incident_id)] = change
            updates += self._refresh_incident(str(incident_id))
        return updates

    def apply_alarm(
        self,
        change: AlarmChangeV1,
        *,
        district: str | None,
        lon: float | None = None,
        lat: float | None = None,
    ) -> list[Update]:
        """An alarm change: the active alarms, and the offline count if a device went silent.
        ``district``, ``lon`` and ``lat`` are its device's (the record does not carry them)."""
        key = str(change.alarm_id)
        held = self.layers["alarms"].get(key)
        updates = self._put_all([_alarm_update(change, district, lon, lat)])
        if updates and change.alarm_type == NO_DATA:
            device = str(change.device_id)
            if held is not None and held.district is not None:
                self._silent.get(held.district, set()).discard(device)
            if updates[0].value is not None and district is not None:
                self._silent.setdefault(district, set()).add(device)
            # The district it was counted in (a clear may name another) and the one it is now.
            places = {held.district if held else None, district}
            districts = sorted(place for place in places if place is not None)
            updates += self._put_all([self._device_health(place) for place in districts])
        return updates

    def set_devices(self, per_district: dict[str, int]) -> list[Update]:
        """Registered (not disabled) devices per district; a district left out has none."""
        districts = set(self._devices) | set(per_district)
        self._devices = dict(per_district)
        return self._put_all([self._device_health(place) for place in sorted(districts)])

    def sla_board(self, now: datetime) -> list[Update]:
        """Per-department SLA counts over the open tickets at ``now``: the departments whose
        counts changed, and deletions for those left with no open ticket."""
        board: dict[str, dict[str, Any]] = {}
        for ticket in self._open_tickets.values():
            if ticket.status not in OPEN:
                continue  # resolved: off the department's clock
            row = board.setdefault(ticket.department_code, _sla_row(ticket.department_code))
            row["open"] += 1
            if _is_breached(ticket, now):
                row["breached"] += 1
            elif ticket.resolve_due_at is not None and ticket.resolve_due_at <= now + DUE_SOON:
                row["due_within_1h"] += 1
        gone = [Update("sla", code, None) for code in self.layers["sla"] if code not in board]
        return self._put_all(gone + [Update("sla", code, row) for code, row in board.items()])

    def snapshot(self) -> list[Update]:
        """Every current Update, layer by layer."""
        return [update for layer in LAYERS for update in self.layers[layer].values()]

    def forget_closed(self, before: datetime) -> int:
        """Forget tickets closed or merged before ``before``, and their incidents: nothing on
        any layer, so memory stays bounded by what is open. Records older than that are not
        expected any more (the feed replays only the last few minutes). Returns how many."""
        old = [key for key, at in self._gone.items() if at < before]
        for key in old:
            del self._gone[key]
            self._last_change.pop(key, None)
        forgotten = set(old)
        for incident_id, change in list(self._ticket_of_incident.items()):
            if str(change.ticket_id) in forgotten:
                del self._ticket_of_incident[incident_id]
                self._incidents.pop(incident_id, None)
        return len(old)

    # ---- layers ----------------------------------------------------------------------------

    def _put(self, update: Update) -> Update | None:
        """Store ``update`` in its layer; return it if that changed anything, else None."""
        layer = self.layers[update.layer]
        current = layer.get(update.key)
        if update.value is None:
            if current is None:
                return None
            del layer[update.key]
            return update
        if current == update:
            return None
        layer[update.key] = update
        return update

    def _put_all(self, updates: list[Update]) -> list[Update]:
        return [done for update in updates if (done := self._put(update)) is not None]

    def add_report(self, report: Report) -> list[Update]:
        """A report into the recent-events window; the oldest falls out past its size."""
        updates = self._put_all([report.update()])
        window = self.layers["events"]
        # Dicts keep insertion order, so the first keys are the oldest reports.
        evicted = list(islice(window, max(0, len(window) - RECENT_EVENTS)))
        return updates + self._put_all([Update("events", key, None) for key in evicted])

    def _refresh_incident(self, key: str) -> list[Update]:
        """Rebuild the incident from its record and ticket; move its H3 counts if it changed."""
        before = self.layers["incidents"].get(key)
        done = self._put(self._incident_update(key))
        if done is None:
            return []
        old = before.value if before is not None else None
        return [done, *self._move_cells(old, done.value)]

    def _incident_update(self, key: str) -> Update:
        incident = self._incidents.get(key)
        ticket = self._ticket_of_incident.get(key)
        if incident is None or (ticket is not None and ticket.ticket.status in CLOSED_STATUSES):
            return Update("incidents", key, None)
        return Update(
            "incidents",
            key,
            _incident_value(incident, ticket),
            district=incident.district_code,
            category=incident.category,
            priority=incident.priority,
        )

    def _move_cells(self, old: dict[str, Any] | None, new: dict[str, Any] | None) -> list[Update]:
        """Take an incident's counts out of its old cells and into its new ones."""
        touched: dict[str, None] = {}  # an ordered set: each cell reported once
        for value, step in ((old, -1), (new, 1)):
            for key, category, priority in _cell_marks(value):
                self._count(key, category, priority, step)
                touched[key] = None
        return self._put_all([self._cell_update(key) for key in touched])

    def _count(self, key: str, category: str, priority: str, step: int) -> None:
        cell = self._cells.setdefault(key, _Cell())
        cell.open += step
        for counter, name in ((cell.by_category, category), (cell.by_priority, priority)):
            counter[name] += step
            if counter[name] == 0:
                del counter[name]  # a zero would linger in the dashboards' legends

    def _cell_update(self, key: str) -> Update:
        cell = self._cells.get(key)
        if cell is None or cell.open <= 0:
            self._cells.pop(key, None)
            return Update("h3", key, None)
        res, name = key.split(":", 1)
        value = {
            "res": int(res),
            "cell": name,
            "open": cell.open,
            "by_category": dict(sorted(cell.by_category.items())),
            "by_priority": dict(sorted(cell.by_priority.items())),
        }
        return Update("h3", key, value)

    def _device_health(self, district: str) -> Update:
        devices = self._devices.get(district, 0)
        offline = self._offline(district)
        if devices == 0 and offline == 0:
            return Update("device-health", district, None)  # nothing there to watch
        value = {"district_code": district, "devices": devices, "offline": offline}
        return Update("device-health", district, value)

    def _offline(self, district: str) -> int:
        """Devices (not alarms: one device counts once) with an active no-data alarm."""
        return len(self._silent.get(district, ()))


# ---- values ----------------------------------------------------------------------------------


def _ticket_update(change: TicketChangeV1) -> Update:
    key = str(change.ticket_id)
    ticket = change.ticket
    if ticket.status in TICKET_GONE:
        return Update("tickets", key, None)
    value = {
        "ticket_id": key,
        "change_id": change.change_id,
        "action": change.action,
        **_json_ready(ticket.model_dump()),
    }
    return Update(
        "tickets",
        key,
        value,
        district=ticket.district_code,
        category=ticket.category,
        priority=ticket.priority,
    )


def _incident_value(incident: Incident, ticket: TicketChangeV1 | None) -> dict[str, Any]:
    cells = _cells_of(incident.lon, incident.lat)
    snapshot = ticket.ticket if ticket is not None else None
    return {
        "incident_id": incident.incident_id,
        "category": incident.category,
        "priority": incident.priority,
        "reports": incident.reports,
        "sources": list(incident.sources),
        "lon": incident.lon,
        "lat": incident.lat,
        "district_code": incident.district_code,
        **{f"h3_{res}": cells.get(res) for res in H3_RESOLUTIONS},
        "opened_at": incident.opened_at.isoformat(),
        "last_seen": incident.last_seen.isoformat(),
        # The ticket's side stays None until its first change arrives.
        "ticket_id": str(ticket.ticket_id) if ticket is not None else None,
        "status": snapshot.status if snapshot is not None else None,
        "department_code": snapshot.department_code if snapshot is not None else None,
        "sla_state": snapshot.sla_state if snapshot is not None else None,
        "resolve_due_at": _iso(snapshot.resolve_due_at) if snapshot is not None else None,
    }


def _cells_of(lon: float | None, lat: float | None) -> dict[int, str]:
    if lon is None or lat is None:
        return {}
    return {res: cell_to_str(cell_of(lon, lat, res)) for res in H3_RESOLUTIONS}


def _cell_marks(incident: dict[str, Any] | None) -> list[tuple[str, str, str]]:
    """The (h3 key, category, priority) an incident on the map counts towards."""
    if incident is None:
        return []
    category = incident["category"] or UNCATEGORISED
    return [
        (f"{res}:{cell}", category, incident["priority"])
        for res in H3_RESOLUTIONS
        if (cell := incident[f"h3_{res}"]) is not None
    ]


def _alarm_update(
    change: AlarmChangeV1, district: str | None, lon: float | None, lat: float | None
) -> Update:
    key = str(change.alarm_id)
    if change.kind == "cleared" or change.severity is None:
        return Update("alarms", key, None)
    value = {
        "alarm_id": key,
        "device_id": str(change.device_id),
        "profile": change.profile,
        "alarm_type": change.alarm_type,
        "severity": change.severity,
        "raised_at": _iso_ms(change.raised_at),
        "at": _iso_ms(change.at),
        "value": change.value,
        "reason": change.reason,
        "district": district,
        "lon": lon,
        "lat": lat,
    }
    priority = SEVERITY_PRIORITY[change.severity]
    return Update("alarms", key, value, district=district, priority=priority)


def _sla_row(department: str) -> dict[str, Any]:
    return {"department_code": department, "open": 0, "due_within_1h": 0, "breached": 0}


def _is_breached(ticket: TicketSnapshot, now: datetime) -> bool:
    # The timer marks breaches only every cycle, so the due time decides in between.
    late = ticket.resolve_due_at is not None and ticket.resolve_due_at < now
    return late or ticket.sla_state == BREACHED


def _json_ready(fields: dict[str, Any]) -> dict[str, Any]:
    """Datetimes as ISO text and UUIDs as text, the way the other layers carry them."""
    return {name: _plain(item) for name, item in fields.items()}


def _plain(item: Any) -> Any:
    if isinstance(item, datetime):
        return item.isoformat()
    if isinstance(item, uuid.UUID):
        return str(item)
    return item


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _iso_ms(epoch_ms: int) -> str:
    # Exact: a timedelta of whole milliseconds, no float rounding.
    return (_EPOCH + timedelta(milliseconds=epoch_ms)).isoformat()
