"""The live feed's starting state, read from PostgreSQL: what is open now, without replaying
the topics from their beginning (start-up would grow with their retention, and records past
it would be missing).

The feed takes the topics' offsets at ``since`` (a few minutes ago) *before* reading the
tables, then replays from there. Anything published before ``since`` is in the tables by then:
ticket changes are published from an outbox after their commit, incidents and alarms are
stored by the worker seconds after it publishes them. Records replayed on top of the tables are
harmless: reports only grow, ticket changes apply in change_id order, an alarm's changes come
in order. Tickets closed since ``since`` are loaded too, so that a replayed record of their
incident does not put it back on the map.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from dispatch.ops.state import RECENT_EVENTS, Incident, OpsState, Report
from schemas.alarm import AlarmChangeV1
from schemas.ticket import TicketChangeV1, TicketSnapshot

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
GONE = ("closed", "merged")  # dispatch.ops.state.TICKET_GONE, as SQL text

TICKETS = """
SELECT t.ticket_id, h.id AS change_id, h.action, h.actor, h.at, h.from_status, h.to_status,
       h.note, h.details, t.incident_id, t.status, t.department_code, t.priority, t.category,
       t.title, t.version, i.district_code, i.lon, i.lat, t.sla_state, t.escalation_level,
       t.accept_due_at, t.resolve_due_at, t.created_at, t.updated_at
FROM tickets t
LEFT JOIN incidents i ON i.incident_id = t.incident_id
JOIN LATERAL (SELECT * FROM ticket_history WHERE ticket_id = t.ticket_id
              ORDER BY id DESC LIMIT 1) h ON true
WHERE t.status <> ALL($2::text[]) OR t.updated_at >= $1
"""

INCIDENTS = """
SELECT i.incident_id, i.category, i.priority, i.reports, i.sources, i.lon, i.lat,
       i.district_code, i.opened_at, i.last_seen
FROM incidents i
LEFT JOIN tickets t ON t.incident_id = i.incident_id
WHERE t.ticket_id IS NULL OR t.status <> ALL($2::text[]) OR t.updated_at >= $1
"""

REPORTS = """
SELECT e.event_id, e.source, e.category, e.priority, e.text, e.district_code, e.lon, e.lat,
       e.occurred_at, m.incident_id
FROM events e
JOIN incident_members m ON m.event_id = e.event_id
ORDER BY e.occurred_at DESC
LIMIT $1
"""

ALARMS = """
SELECT a.alarm_id, a.device_id, d.profile_code, a.alarm_type, a.severity, a.raised_at,
       a.changed_at, a.value, a.reason, d.district_code, d.lon, d.lat
FROM alarms a
JOIN devices d ON d.device_id = a.device_id
WHERE a.cleared_at IS NULL
"""


async def load_state(pool: Any, since: datetime) -> OpsState:
    """The state as the tables hold it, plus tickets closed since ``since``."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read",
                                                        readonly=True):  # fmt: skip
        # One snapshot of the database, so the tables agree with each other.
        tickets = await conn.fetch(TICKETS, since, list(GONE))
        incidents = await conn.fetch(INCIDENTS, since, list(GONE))
        reports = await conn.fetch(REPORTS, RECENT_EVENTS)
        alarms = await conn.fetch(ALARMS)
    state = OpsState()
    for row in tickets:
        state.apply_ticket(_ticket_change(row))
    for row in incidents:
        state.put_incident(_incident(row))
    for row in reversed(reports):  # oldest first, as they would have arrived
        state.add_report(_report(row))
    for row in alarms:
        state.apply_alarm(_alarm(row), district=row["district_code"], lon=row["lon"],
                          lat=row["lat"])  # fmt: skip
    return state


def _ticket_change(row: Any) -> TicketChangeV1:
    fields = dict(row)
    change = {name: fields.pop(name) for name in
              ("change_id", "ticket_id", "action", "actor", "at", "from_status", "to_status",
               "note", "details")}  # fmt: skip
    return TicketChangeV1(**change, ticket=TicketSnapshot(**fields))


def _incident(row: Any) -> Incident:
    fields = dict(row)
    return Incident(**{**fields, "incident_id": str(row["incident_id"]),
                       "sources": tuple(row["sources"])})  # fmt: skip


def _report(row: Any) -> Report:
    fields = dict(row)
    return Report(**{**fields, "event_id": str(row["event_id"]),
                     "incident_id": str(row["incident_id"])})  # fmt: skip


def _alarm(row: Any) -> AlarmChangeV1:
    return AlarmChangeV1(
        alarm_id=row["alarm_id"],
        device_id=row["device_id"],
        profile=row["profile_code"],
        alarm_type=row["alarm_type"],
        kind="raised",
        severity=row["severity"],
        previous=None,
        raised_at=_epoch_ms(row["raised_at"]),
        at=_epoch_ms(row["changed_at"]),
        value=row["value"],
        reason=row["reason"],
    )


def _epoch_ms(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(milliseconds=1)  # exact: no float on the way
