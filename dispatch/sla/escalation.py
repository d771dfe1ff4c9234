"""One SLA timer cycle: warn, mark breaches and escalate the tickets whose next mark is due.

Reads only due tickets through the index of ``sla_timers``, locks them with SKIP LOCKED (several
workers may run cycles; a ticket being acted on is simply taken next cycle) and writes the batch
back with two statements. Timer changes do not bump the ticket's version: a department acting on
the version it read is not refused because a clock ticked.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from dispatch.rulebook import Rulebook
from dispatch.sla import timers
from dispatch.tickets.lifecycle import Status
from hub.sql import load_queries

Q = load_queries(Path(__file__).with_name("queries.sql"))
CLOCK_NAMES = {"accept": "受理时限 (accept)", "resolve": "办结时限 (resolve)"}


@dataclass(frozen=True)
class HistoryRow:
    ticket_id: Any
    action: str
    status: str
    department_code: str
    note: str
    details: dict[str, Any]


def _notes(mark: timers.Mark, row: Any, book: Rulebook, level: int) -> list[tuple[str, str]]:
    due = row[mark.column].isoformat()
    department = book.departments.get(row["department_code"])
    if mark.name == "city_escalation":
        city = book.departments[book.triage].name
        return [("escalate", f"still not resolved after breach: escalated to {city} (level 2)")]
    clock = CLOCK_NAMES[mark.name.split("_")[0]]
    if mark.name.endswith("warning"):
        return [("sla_warning", f"{clock} due at {due}")]
    if mark.name.endswith("breach"):
        notes = [("sla_breach", f"{clock} breached: it was due at {due}")]
        if level > row["escalation_level"] and department is not None:
            whom = department.supervisor or "supervisor"
            notes.append(("escalate", f"escalated to {department.name} {whom} (level 1)"))
        return notes
    raise ValueError(f"unknown SLA mark {mark.name}")


def advance(row: Any, book: Rulebook, now: datetime) -> tuple[dict[str, Any], list[HistoryRow]]:
    """The ticket's SLA columns after every mark due at ``now`` fired, and the history rows."""
    status = Status(row["status"])
    marks = list(row["sla_marks"])
    state, level = row["sla_state"], row["escalation_level"]
    history = []
    for mark in timers.due_now(status, row, marks, now):
        for action, note in _notes(mark, row, book, mark.escalation_level):
            details = {"mark": mark.name, "due_at": row[mark.column].isoformat()}
            history.append(
                HistoryRow(row["ticket_id"], action, status, row["department_code"], note, details)
            )
        marks.append(mark.name)
        state = timers.worse_state(state, mark.sla_state)
        level = max(level, mark.escalation_level)
        row = {**row, "escalation_level": level}
    times = {column: row[column] for column in timers.DEADLINE_COLUMNS}
    columns = {
        "sla_marks": marks,
        "sla_state": state,
        "escalation_level": level,
        "next_timer_at": timers.next_timer_at(status, times, marks),
    }
    return columns, history


async def run_cycle(conn: Any, book: Rulebook, *, now: datetime, limit: int = 1000) -> int:
    """Fire what is due at ``now`` for up to ``limit`` tickets; return how many were handled."""
    async with conn.transaction():
        rows = await conn.fetch(Q["lock_due_tickets"], now, limit)
        if not rows:
            return 0
        updates, history = [], []
        for row in rows:
            columns, notes = advance(dict(row), book, now)
            updates.append((row["ticket_id"], columns))
            history += notes
        await conn.execute(
            Q["write_sla_columns"],
            [ticket_id for ticket_id, _ in updates],
            [",".join(c["sla_marks"]) for _, c in updates],
            [c["sla_state"] for _, c in updates],
            [c["escalation_level"] for _, c in updates],
            [c["next_timer_at"] for _, c in updates],
        )
        if history:
            await conn.execute(
                Q["add_sla_history"],
                [h.ticket_id for h in history],
                [h.action for h in history],
                [h.status for h in history],
                [h.department_code for h in history],
                [h.note for h in history],
                [h.details for h in history],
            )
    return len(rows)


async def due_soon(conn: Any, *, now: datetime, within_s: float) -> dict[str, int]:
    """The SLA board's counts: open tickets due within ``within_s`` and already breached."""
    row = await conn.fetchrow(Q["sla_board_counts"], now, within_s)
    return {"due_soon": row["due_soon"], "breached": row["breached"]}
