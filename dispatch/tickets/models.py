"""What the tickets API returns."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel


class TicketHistoryEntry(BaseModel):
    at: datetime
    action: str
    actor: str
    from_status: str | None
    to_status: str
    department_code: str
    note: str


class TicketRead(BaseModel):
    ticket_id: uuid.UUID
    event_id: uuid.UUID
    department_code: str
    status: str
    priority: str
    category: str | None
    title: str
    routing_reason: str
    version: int
    created_at: datetime
    updated_at: datetime
    history: list[TicketHistoryEntry]
