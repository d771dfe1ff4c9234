"""What the outbox relay puts on ``tickets.changes``: one record per ticket history row.

The record is built in SQL (migration 0007, ``announce_ticket_changes``) so that no code path can
change a ticket without announcing it; this model is its contract for consumers (dashboards,
departments' systems). Delivery is at least once: deduplicate on ``change_id``.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict


class TicketSnapshot(BaseModel):
    """The ticket as it stood right after the change."""

    model_config = ConfigDict(frozen=True)

    incident_id: uuid.UUID | None
    status: str
    department_code: str
    priority: str
    category: str | None
    title: str
    version: int
    district_code: str | None
    lon: float | None
    lat: float | None
    sla_state: str
    escalation_level: int
    accept_due_at: datetime | None
    resolve_due_at: datetime | None
    created_at: datetime
    updated_at: datetime


class TicketChangeV1(BaseModel):
    model_config = ConfigDict(frozen=True)

    schema_version: Literal[1] = 1
    change_id: int  # the history row's id: increasing per ticket, unique overall
    ticket_id: uuid.UUID
    # dispatch, accept, start, reject, transfer, request-info, provide-info, comment, resolve,
    # close, reopen, merge, report_attached, event_updated, priority_changed, sla_warning,
    # sla_breach, escalate
    action: str
    actor: str
    at: datetime
    from_status: str | None
    to_status: str
    note: str
    details: dict[str, Any]
    ticket: TicketSnapshot
