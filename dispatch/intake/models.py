"""What the intake API answers."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field


class IntakeAccepted(BaseModel):
    event_id: uuid.UUID
    status: Literal["accepted", "updated", "duplicate"] = Field(
        description="accepted (202): new; updated (202): a changed payload under the same id, "
        "stored as a new revision; duplicate (200): already held, nothing sent again"
    )


class BatchItemResult(BaseModel):
    index: int
    status: Literal["accepted", "updated", "duplicate", "rejected"]
    event_id: uuid.UUID | None = None
    errors: list[dict[str, Any]] | None = None


class BatchResult(BaseModel):
    accepted: int
    updated: int
    duplicate: int
    rejected: int
    results: list[BatchItemResult]


class TicketSummary(BaseModel):
    ticket_id: uuid.UUID
    status: str
    department_code: str
    department_name: str
    updated_at: datetime


class EventStatusRead(BaseModel):
    event_id: uuid.UUID
    source: str
    external_id: str
    occurred_at: datetime
    received_at: datetime
    ticket: TicketSummary | None


class ReadBack(BaseModel):
    """What a source system's operator needs to answer a caller."""

    source: str
    external_id: str
    event_id: uuid.UUID
    state: Literal["queued", "ticketed", "stored"] = Field(
        description="queued: accepted, not yet processed; stored: processed, no ticket yet; "
        "ticketed: a department holds it"
    )
    first_received_at: datetime
    last_received_at: datetime
    deliveries: int
    revision: int | None
    occurred_at: datetime | None
    text: str | None
    address: str | None
    lon: float | None
    lat: float | None
    priority: str | None
    category: str | None
    source_category: str | None
    incident_id: uuid.UUID | None = Field(default=None, description="filled once correlation runs")
    ticket: TicketSummary | None
