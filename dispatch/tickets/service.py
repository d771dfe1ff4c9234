"""Tickets in PostgreSQL: opened once per incident, read with their audit trail."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from dispatch.rulebook import Rulebook, policy_label
from dispatch.sla import timers
from dispatch.tickets.lifecycle import Status
from hub.sql import load_queries
from schemas.event import EventV1
from schemas.incident import IncidentChangeV1

Q = load_queries(Path(__file__).with_name("queries.sql"))
# Fixed, never changed: ticket ids derive from it, so a replay opens no second ticket.
TICKET_ID_NAMESPACE = uuid.UUID("0c6f3c52-94a4-4f8e-8b0a-7d1f7e3b9a22")


# In the order open_incident_tickets takes them (the routing version, one for all, comes 5th).
PLAN_COLUMNS = (
    "department_code",
    "routing_reason",
    "routing_rule",
    "sla_policy",
    "sla_calendar",
    *timers.DEADLINE_COLUMNS,
    "next_timer_at",
)


def ticket_id_for(incident_id: uuid.UUID) -> uuid.UUID:
    return uuid.uuid5(TICKET_ID_NAMESPACE, str(incident_id))


def title_for(event: EventV1) -> str:
    first_line = event.text.strip().splitlines()[0] if event.text.strip() else event.external_id
    return first_line[:80]


def in_rounds(events: Sequence[EventV1]) -> list[list[EventV1]]:
    """Split a batch so no round holds two records of one event: the first record of each event
    in round 1, the second in round 2, …, so every revision is stored, in order."""
    rounds: list[list[EventV1]] = []
    seen: dict[uuid.UUID, int] = {}
    for event in events:
        index = seen.get(event.event_id, 0)
        seen[event.event_id] = index + 1
        if index == len(rounds):
            rounds.append([])
        rounds[index].append(event)
    return rounds


def plan_ticket(
    book: Rulebook,
    change: IncidentChangeV1,
    now: datetime,
    *,
    clocks: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Where a new incident's ticket goes, why, and when its clocks fall due. ``clocks`` shares
    the due times of one policy among the tickets of a batch: they all start at ``now``."""
    priority = change.priority.value
    decision = book.route(
        category=change.category, district_code=change.district_code, priority=priority, at=now
    )
    policy = book.policy(change.category, priority)
    label = policy_label(policy)
    due = clocks.get(label) if clocks is not None else None
    if due is None:
        deadlines = book.deadlines(policy, now)
        due = {column: getattr(deadlines, column) for column in timers.DEADLINE_COLUMNS}
        due["next_timer_at"] = timers.next_timer_at(Status.DISPATCHED, due, ())
        if clocks is not None:
            clocks[label] = due
    return {
        "department_code": decision.department_code,
        "routing_reason": decision.reason,
        "routing_rule": decision.rule_position,
        "sla_policy": label,
        "sla_calendar": policy.calendar,
        **due,
    }


async def store_incident_changes(
    conn: Any, *, changes: Sequence[IncidentChangeV1], book: Rulebook, now: datetime
) -> list[uuid.UUID]:
    """In one transaction: store the reports (and their revisions, in order), the incidents as
    they now stand, each report's membership (once), one ticket per incident, routed and with
    its SLA clocks, and the history notes; a ticket follows its incident's priority. Returns
    tickets opened now."""
    async with conn.transaction():
        revised: list[tuple[uuid.UUID, int]] = []
        for batch in in_rounds([change.event for change in changes]):
            revised += await _upsert_events(conn, batch)
        kept = await _first_incident_wins(conn, changes)
        latest = {c.incident_id: c for c in sorted(kept, key=lambda c: c.reports)}
        incidents = list(latest.values())
        await conn.execute(
            Q["upsert_incidents"],
            [i.incident_id for i in incidents],
            [i.category for i in incidents],
            [i.priority.value for i in incidents],
            [i.reports for i in incidents],
            [",".join(i.sources) for i in incidents],
            [i.lon for i in incidents],
            [i.lat for i in incidents],
            [i.district_code for i in incidents],
            [i.opened_at for i in incidents],
            [i.last_seen for i in incidents],
        )
        members = {c.event.event_id: c.incident_id for c in kept}
        attached = {
            row["event_id"]
            for row in await conn.fetch(Q["attach_members"], list(members), list(members.values()))
        }
        # A ticket for every incident that has none yet, carried by its first report here.
        first = list({c.incident_id: c for c in reversed(kept)}.values())
        clocks: dict[str, dict[str, Any]] = {}
        plans = [plan_ticket(book, c, now, clocks=clocks) for c in first]
        opened = await conn.fetch(
            Q["open_incident_tickets"],
            [ticket_id_for(c.incident_id) for c in first],
            [c.event.event_id for c in first],
            [c.incident_id for c in first],
            [c.priority.value for c in first],
            [c.category for c in first],
            [title_for(c.event) for c in first],
            *[[p[column] for p in plans] for column in PLAN_COLUMNS[:4]],
            book.routing_version,
            *[[p[column] for p in plans] for column in PLAN_COLUMNS[4:]],
        )
        joined = [
            c.event.event_id
            for c in kept
            if c.change == "attached" and c.event.event_id in attached
        ]
        if joined:
            await conn.execute(Q["note_attached_reports"], joined)
            await _reopen_for_new_reports(conn, book, joined, now)
        if revised:
            await conn.execute(
                Q["note_event_updates"], [e for e, _ in revised], [r for _, r in revised]
            )
        await _follow_incident_priority(conn, book, list(latest))
    return [row["ticket_id"] for row in opened]


async def _reopen_for_new_reports(
    conn: Any, book: Rulebook, joined: list[uuid.UUID], now: datetime
) -> None:
    """The stated rule: a report that joins an incident (still within its category's window)
    whose ticket was resolved or closed reopens that ticket, at the same department, with a
    fresh resolve clock; after the window a report starts a new incident (correlation)."""
    rows = await conn.fetch(Q["resolved_tickets_of"], joined)
    for row in rows:
        policy = book.policy(row["category"], row["priority"])
        due = book.deadlines(policy, now)
        marks = [m for m in row["sla_marks"] if m not in timers.RESOLVE_MARKS]
        times = {column: getattr(due, column) for column in timers.DEADLINE_COLUMNS}
        await conn.execute(
            Q["reopen_for_report"],
            row["ticket_id"],
            due.resolve_warn_at,
            due.resolve_due_at,
            due.city_escalation_at,
            marks,
            timers.next_timer_at(Status.IN_PROGRESS, times, marks),
            row["status"],
        )


async def _follow_incident_priority(conn: Any, book: Rulebook, incidents: list[uuid.UUID]) -> None:
    """A ticket takes its incident's new priority, and the SLA policy of that priority from its
    creation: a clock may tighten (an incident that became urgent), never loosen."""
    changed = await conn.fetch(Q["follow_incident_priority"], incidents)
    if not changed:
        return
    tightened = [_tightened(book, dict(row)) for row in changed]
    await conn.execute(
        Q["tighten_clocks"],
        [row["ticket_id"] for row in changed],
        *[[t[column] for t in tightened] for column in TIGHTENED_COLUMNS],
    )
    await conn.execute(
        Q["note_priority_changes"],
        [row["ticket_id"] for row in changed],
        [row["was"] for row in changed],
    )


TIGHTENED_COLUMNS = ("sla_policy", "sla_calendar", *timers.DEADLINE_COLUMNS, "next_timer_at")


def _tightened(book: Rulebook, ticket: dict[str, Any]) -> dict[str, Any]:
    policy = book.policy(ticket["category"], ticket["priority"])
    fresh = asdict(book.deadlines(policy, ticket["created_at"]))
    state = dict(ticket)
    if ticket["resolve_due_at"] is None or fresh["resolve_due_at"] < ticket["resolve_due_at"]:
        state["sla_policy"], state["sla_calendar"] = policy_label(policy), policy.calendar
    for column, due in fresh.items():
        if ticket[column] is None or due < ticket[column]:
            state[column] = due
    state["next_timer_at"] = timers.next_timer_at(
        Status(ticket["status"]), state, frozenset(ticket["sla_marks"])
    )
    return state


async def _first_incident_wins(
    conn: Any, changes: Sequence[IncidentChangeV1]
) -> list[IncidentChangeV1]:
    """Each event belongs to the first incident it joined. A later change placing it elsewhere
    (a revision whose new text changed its category, so it met other incidents) is dropped:
    its revision is stored all the same, but no second incident or ticket comes of it."""
    rows = await conn.fetch(Q["memberships"], list({c.event.event_id for c in changes}))
    owner = {row["event_id"]: row["incident_id"] for row in rows}
    return [
        c for c in changes if owner.setdefault(c.event.event_id, c.incident_id) == c.incident_id
    ]


async def _upsert_events(conn: Any, unique: list[EventV1]) -> list[tuple[uuid.UUID, int]]:
    """Store new events and newer revisions; return (event, revision) of the revised ones."""
    written = await conn.fetch(
        Q["upsert_events"],
        [e.event_id for e in unique],
        [e.source.value for e in unique],
        [e.external_id for e in unique],
        [e.schema_version for e in unique],
        [e.occurred_at for e in unique],
        [e.received_at for e in unique],
        [e.location.lon if e.location else None for e in unique],
        [e.location.lat if e.location else None for e in unique],
        [e.address for e in unique],
        [e.text for e in unique],
        [e.priority.value for e in unique],
        [e.category for e in unique],
        [e.source_category for e in unique],
        [e.payload_hash for e in unique],
        [orjson.dumps(e.model_dump(mode="python")).decode() for e in unique],
        [e.category_confidence for e in unique],
        [e.category_method for e in unique],
        [e.needs_triage for e in unique],
        [",".join(e.signals) for e in unique],
        [e.h3_cell for e in unique],
        [e.district_code for e in unique],
        [e.location_flag for e in unique],
    )
    return [(row["event_id"], row["revision"]) for row in written if row["revision"] > 1]


async def list_tickets(
    conn: Any,
    *,
    department: str | None,
    statuses: Sequence[str] | None,
    priorities: Sequence[str] | None,
    categories: Sequence[str] | None,
    sla_states: Sequence[str] | None,
    districts: Sequence[str] | None,
    page: int,
    per_page: int,
) -> tuple[list[dict[str, Any]], int]:
    rows = await conn.fetch(
        Q["list_tickets"],
        department,
        statuses,
        priorities,
        categories,
        sla_states,
        districts,
        per_page,
        (page - 1) * per_page,
    )
    total = rows[0]["total"] if rows else 0
    return [dict(row) for row in rows], total


async def get_ticket(conn: Any, *, ticket_id: uuid.UUID) -> dict[str, Any] | None:
    row = await conn.fetchrow(Q["get_ticket"], ticket_id)
    if row is None:
        return None
    history = await conn.fetch(Q["ticket_history"], ticket_id)
    return {**dict(row), "history": [dict(h) for h in history]}


async def get_event_status(conn: Any, *, event_id: uuid.UUID) -> dict[str, Any] | None:
    row = await conn.fetchrow(Q["event_status"], event_id)
    return dict(row) if row else None
