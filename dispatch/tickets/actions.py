"""Acting on a ticket: one transaction reads it locked, checks who may do what, computes its next
state (status, department, SLA clocks) and writes it with a history row. The history row's
trigger puts the change in the outbox, so `tickets.changes` hears of it exactly when it commits.

Optimistic concurrency: the caller names the version it saw; if someone acted since, 409.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from dispatch.rulebook import Rulebook, policy_label
from dispatch.sla import timers
from dispatch.tickets.lifecycle import MOVES, Action, Refused, Status, target_status
from hub.auth import Principal
from hub.sql import load_queries

Q = load_queries(Path(__file__).with_name("queries.sql"))


@dataclass(frozen=True)
class ActionInput:
    action: Action
    version: int
    note: str = ""
    to_department: str | None = None
    into_ticket: uuid.UUID | None = None
    evidence_urls: tuple[str, ...] = ()


@dataclass
class Outcome:
    """What an action writes: the ticket's mutable columns and its history row."""

    state: dict[str, Any]
    note: str
    details: dict[str, Any] = field(default_factory=dict)


def actor_of(principal: Principal) -> str:
    return principal.actor


async def act(
    conn: Any,
    book: Rulebook,
    *,
    ticket_id: uuid.UUID,
    principal: Principal,
    request: ActionInput,
    now: datetime,
) -> None:
    async with conn.transaction():
        row = await conn.fetchrow(Q["lock_ticket"], ticket_id)
        if row is None:
            raise Refused(404, f"no ticket {ticket_id}")
        if principal.role == "department" and row["department_code"] != principal.scope:
            raise Refused(403, f"ticket {ticket_id} belongs to another department")
        if principal.role not in MOVES[request.action].roles:
            raise Refused(403, f"a {principal.role} may not {request.action} tickets")
        if row["version"] != request.version:
            raise Refused(
                409,
                f"ticket changed since version {request.version}: it is at version "
                f"{row['version']}; read it again",
            )
        status = Status(row["status"])
        paused_from = Status(row["paused_from"]) if row["paused_from"] else None
        target = target_status(
            request.action, status=status, role=principal.role, paused_from=paused_from
        )
        if MOVES[request.action].needs_note and not request.note.strip():
            raise Refused(400, f"{request.action} needs a note saying why")
        outcome = await _outcome(conn, book, row, request, principal, now)
        state = outcome.state
        state["status"] = target.value
        state["next_timer_at"] = timers.next_timer_at(target, state, frozenset(state["sla_marks"]))
        await conn.execute(Q["write_ticket"], ticket_id, *[state[c] for c in STATE_COLUMNS])
        await conn.execute(
            Q["add_history"],
            ticket_id,
            request.action.value,
            actor_of(principal),
            status.value,
            target.value,
            state["department_code"],
            outcome.note,
            outcome.details,
        )


STATE_COLUMNS = (
    "status",
    "department_code",
    "routing_reason",
    "routing_version",
    "routing_rule",
    "rejected_by",
    "merged_into",
    "sla_policy",
    "sla_calendar",
    *timers.DEADLINE_COLUMNS,
    "accepted_at",
    "resolved_at",
    "closed_at",
    "paused_at",
    "paused_from",
    "sla_marks",
    "sla_state",
    "escalation_level",
    "reopen_count",
    "next_timer_at",
)


async def _outcome(
    conn: Any,
    book: Rulebook,
    row: Any,
    request: ActionInput,
    principal: Principal,
    now: datetime,
) -> Outcome:
    state = {column: row[column] for column in STATE_COLUMNS}
    outcome = Outcome(state, request.note.strip())
    action = request.action
    if action is Action.ACCEPT:
        state["accepted_at"] = now
    elif action is Action.REJECT:
        _reject(book, row, state, principal, outcome, now)
    elif action is Action.TRANSFER:
        await _transfer(conn, book, row, state, request, outcome, now)
    elif action is Action.REQUEST_INFO:
        state["paused_at"], state["paused_from"] = now, row["status"]
    elif action is Action.PROVIDE_INFO:
        _resume(book, state, now, outcome)
    elif action is Action.RESOLVE:
        state["resolved_at"] = now
        outcome.details["evidence_urls"] = list(request.evidence_urls)
    elif action is Action.CLOSE:
        state["closed_at"] = now
    elif action is Action.REOPEN:
        _reopen(book, row, state, now)
    elif action is Action.MERGE:
        await _merge(conn, row, state, request, outcome)
    return outcome


def _restart_accept_clock(book: Rulebook, row: Any, state: dict[str, Any], now: datetime) -> None:
    """A new department gets its own time to accept; the citizen's resolve clock runs on."""
    policy = book.policy(row["category"], row["priority"])
    due = book.deadlines(policy, now)
    state["accept_warn_at"], state["accept_due_at"] = due.accept_warn_at, due.accept_due_at
    state["sla_marks"] = [m for m in state["sla_marks"] if m not in timers.ACCEPT_MARKS]
    state["accepted_at"] = None


def _reject(
    book: Rulebook,
    row: Any,
    state: dict[str, Any],
    principal: Principal,
    outcome: Outcome,
    now: datetime,
) -> None:
    if row["department_code"] == book.triage:
        raise Refused(409, "the triage queue cannot reject a ticket: transfer it instead")
    rejected = [*state["rejected_by"], row["department_code"]]  # in the order they rejected
    decision = book.route(
        category=row["category"],
        district_code=row["district_code"],
        priority=row["priority"],
        at=now,
        exclude=frozenset(rejected),
    )
    state["rejected_by"] = rejected
    state["department_code"] = decision.department_code
    state["routing_rule"] = decision.rule_position
    state["routing_version"] = book.routing_version
    state["routing_reason"] = (
        f"rejected by {row['department_code']} ({outcome.note}); re-routed: {decision.reason}"
    )
    outcome.details.update(rejected_by=row["department_code"], rerouted_to=decision.department_code)
    _restart_accept_clock(book, row, state, now)


async def _transfer(
    conn: Any,
    book: Rulebook,
    row: Any,
    state: dict[str, Any],
    request: ActionInput,
    outcome: Outcome,
    now: datetime,
) -> None:
    to = request.to_department
    if not to or to not in book.departments:
        raise Refused(400, f"transfer needs to_department, a known department (got {to!r})")
    if to == row["department_code"]:
        raise Refused(400, f"the ticket is already at {to}")
    state["department_code"] = to
    state["routing_rule"] = None
    state["routing_reason"] = f"transferred from {row['department_code']}: {outcome.note}"
    outcome.details.update(transferred_from=row["department_code"], transferred_to=to)
    _restart_accept_clock(book, row, state, now)


def _resume(book: Rulebook, state: dict[str, Any], now: datetime, outcome: Outcome) -> None:
    """The information arrived: every clock moves on by the working time spent waiting."""
    calendar = book.calendar(state["sla_calendar"])
    paused = calendar.working_time_between(state["paused_at"], now)
    for column in timers.DEADLINE_COLUMNS:
        if state[column] is not None:
            state[column] = calendar.extend(state[column], paused)
    state["paused_at"] = state["paused_from"] = None
    outcome.details["paused_working_seconds"] = int(paused.total_seconds())


def _reopen(book: Rulebook, row: Any, state: dict[str, Any], now: datetime) -> None:
    """A fresh resolve clock from now; the old breaches stay in the history."""
    policy = book.policy(row["category"], row["priority"])
    due = book.deadlines(policy, now)
    state["sla_policy"], state["sla_calendar"] = policy_label(policy), policy.calendar
    state["resolve_warn_at"], state["resolve_due_at"] = due.resolve_warn_at, due.resolve_due_at
    state["city_escalation_at"] = due.city_escalation_at
    state["sla_marks"] = [m for m in state["sla_marks"] if m not in timers.RESOLVE_MARKS]
    state["sla_state"], state["escalation_level"] = "on_time", 0
    state["resolved_at"] = state["closed_at"] = None
    state["reopen_count"] = row["reopen_count"] + 1


async def _merge(
    conn: Any, row: Any, state: dict[str, Any], request: ActionInput, outcome: Outcome
) -> None:
    into = request.into_ticket
    if into is None or into == row["ticket_id"]:
        raise Refused(400, "merge needs into_ticket, another ticket's id")
    target = await conn.fetchrow("SELECT status FROM tickets WHERE ticket_id = $1", into)
    if target is None or target["status"] == Status.MERGED:
        raise Refused(400, f"cannot merge into {into}: no such ticket, or it was merged itself")
    state["merged_into"] = into
    outcome.details["merged_into"] = str(into)
