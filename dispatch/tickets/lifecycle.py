"""The ticket state machine (分拨流转): which action may move a ticket from which state, and who
may take it. Pure: the service applies the answer inside a database transaction.

    dispatched ─accept→ accepted ─start→ in_progress ─resolve→ resolved ─close→ closed
        │  ▲               │  request-info → returned ─provide-info→ (back where it was)
        │  └─reject / transfer (to another department; the accept clock starts again)
    resolved / closed ─reopen→ in_progress;   any open state ─merge→ merged (a duplicate)
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Status(StrEnum):
    DISPATCHED = "dispatched"
    ACCEPTED = "accepted"
    IN_PROGRESS = "in_progress"
    RETURNED = "returned"  # waiting for more information: the SLA clocks are paused
    RESOLVED = "resolved"
    CLOSED = "closed"
    MERGED = "merged"


class Action(StrEnum):
    ACCEPT = "accept"
    START = "start"
    REJECT = "reject"
    TRANSFER = "transfer"
    REQUEST_INFO = "request-info"
    PROVIDE_INFO = "provide-info"
    COMMENT = "comment"
    RESOLVE = "resolve"
    CLOSE = "close"
    REOPEN = "reopen"
    MERGE = "merge"


OPEN = frozenset({Status.DISPATCHED, Status.ACCEPTED, Status.IN_PROGRESS, Status.RETURNED})
WORKING = frozenset({Status.ACCEPTED, Status.IN_PROGRESS})
DEPARTMENT = "department"
OPS = "ops"
BOTH = frozenset({DEPARTMENT, OPS})


@dataclass(frozen=True)
class Move:
    sources: frozenset[Status]
    # None: the ticket keeps its status (comment) or returns to where it was (provide-info)
    target: Status | None
    roles: frozenset[str]
    # Reject, transfer, request-info and merge must say why; the history keeps the reason.
    needs_note: bool = False


MOVES: dict[Action, Move] = {
    Action.ACCEPT: Move(frozenset({Status.DISPATCHED}), Status.ACCEPTED, BOTH),
    Action.START: Move(frozenset({Status.ACCEPTED}), Status.IN_PROGRESS, BOTH),
    # Only the department it was sent to can refuse it; the city re-routes with transfer.
    Action.REJECT: Move(
        frozenset({Status.DISPATCHED, Status.ACCEPTED}),
        Status.DISPATCHED,
        frozenset({DEPARTMENT}),
        needs_note=True,
    ),
    Action.TRANSFER: Move(
        frozenset({Status.DISPATCHED, Status.ACCEPTED, Status.IN_PROGRESS}),
        Status.DISPATCHED,
        BOTH,
        needs_note=True,
    ),
    Action.REQUEST_INFO: Move(WORKING, Status.RETURNED, BOTH, needs_note=True),
    Action.PROVIDE_INFO: Move(frozenset({Status.RETURNED}), None, BOTH),
    Action.COMMENT: Move(frozenset(Status) - {Status.MERGED}, None, BOTH, needs_note=True),
    Action.RESOLVE: Move(WORKING, Status.RESOLVED, BOTH),
    # Verification and the citizen's word are the centre's, not the department's.
    Action.CLOSE: Move(frozenset({Status.RESOLVED}), Status.CLOSED, frozenset({OPS})),
    Action.REOPEN: Move(
        frozenset({Status.RESOLVED, Status.CLOSED}),
        Status.IN_PROGRESS,
        frozenset({OPS}),
        needs_note=True,
    ),
    Action.MERGE: Move(OPEN, Status.MERGED, frozenset({OPS}), needs_note=True),
}


class Refused(Exception):
    """The action cannot be taken; ``status`` is the HTTP status that says why."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def target_status(
    action: Action, *, status: Status, role: str, paused_from: Status | None = None
) -> Status:
    """The status ``action`` leads to from ``status``, or Refused (403 role, 409 state)."""
    move = MOVES[action]
    if role not in move.roles:
        raise Refused(403, f"a {role} may not {action} tickets")
    if status not in move.sources:
        raise Refused(409, f"cannot {action} a ticket that is {status}")
    if move.target is not None:
        return move.target
    if action is Action.PROVIDE_INFO:
        return paused_from or Status.IN_PROGRESS
    return status
