"""SLA marks: the moments a ticket's clocks warn, breach and escalate, and which are due.

Each mark fires once per clock. The ticket keeps the marks already fired and the time the timer
must next look at it (``next_timer_at``, indexed), so a timer cycle reads only due tickets.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime

from dispatch.tickets.lifecycle import Status

RUNNING = frozenset({Status.DISPATCHED, Status.ACCEPTED, Status.IN_PROGRESS})


@dataclass(frozen=True)
class Mark:
    name: str
    column: str  # the ticket's column holding when it is due
    applies_to: frozenset[Status]  # statuses in which this clock runs
    sla_state: str  # the ticket's SLA state once it fired
    escalation_level: int  # 1: the department's supervisor, 2: the city level


MARKS = (
    Mark("accept_warning", "accept_warn_at", frozenset({Status.DISPATCHED}), "warning", 0),
    Mark("accept_breach", "accept_due_at", frozenset({Status.DISPATCHED}), "breached", 1),
    Mark("resolve_warning", "resolve_warn_at", RUNNING, "warning", 0),
    Mark("resolve_breach", "resolve_due_at", RUNNING, "breached", 1),
    Mark("city_escalation", "city_escalation_at", RUNNING, "breached", 2),
)
ACCEPT_MARKS = frozenset({"accept_warning", "accept_breach"})
RESOLVE_MARKS = frozenset({"resolve_warning", "resolve_breach", "city_escalation"})
DEADLINE_COLUMNS = tuple(mark.column for mark in MARKS)
_STATE_RANK = {"on_time": 0, "warning": 1, "breached": 2}


def pending(
    status: Status, times: Mapping[str, datetime | None], fired: Collection[str]
) -> list[tuple[Mark, datetime]]:
    """Marks that can still fire in this status, with when."""
    return [
        (mark, at)
        for mark in MARKS
        if status in mark.applies_to
        and mark.name not in fired
        and (at := times.get(mark.column)) is not None
    ]


def next_timer_at(
    status: Status, times: Mapping[str, datetime | None], fired: Collection[str]
) -> datetime | None:
    """When the timer must next look at the ticket; None while no clock runs."""
    due = [at for _, at in pending(status, times, fired)]
    return min(due) if due else None


def due_now(
    status: Status, times: Mapping[str, datetime | None], fired: Collection[str], now: datetime
) -> list[Mark]:
    """Marks due at ``now``, in the order they fell due (a late cycle fires them all)."""
    due = [(at, mark) for mark, at in pending(status, times, fired) if at <= now]
    return [mark for _, mark in sorted(due, key=lambda pair: pair[0])]


def worse_state(current: str, candidate: str) -> str:
    return candidate if _STATE_RANK[candidate] > _STATE_RANK[current] else current
