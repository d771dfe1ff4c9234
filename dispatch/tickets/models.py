"""What the tickets API takes and returns."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field


class TicketHistoryEntry(BaseModel):
    at: datetime
    action: str
    actor: str
    from_status: str | None
    to_status: str
    department_code: str
    note: str
    details: dict[str, Any]


class TicketSummary(BaseModel):
    """A row of a queue: enough to sort, colour and open it."""

    ticket_id: uuid.UUID
    incident_id: uuid.UUID | None
    department_code: str
    status: str
    priority: str
    category: str | None
    title: str
    district_code: str | None
    version: int
    sla_state: str
    escalation_level: int
    accept_due_at: datetime | None
    resolve_due_at: datetime | None
    created_at: datetime
    updated_at: datetime


class TicketRead(TicketSummary):
    event_id: uuid.UUID
    lon: float | None
    lat: float | None
    reports: int | None
    routing_reason: str
    routing_rule: int | None
    routing_version: int | None
    rejected_by: list[str]
    merged_into: uuid.UUID | None
    sla_policy: str | None
    sla_calendar: str | None
    accept_warn_at: datetime | None
    resolve_warn_at: datetime | None
    city_escalation_at: datetime | None
    accepted_at: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None
    paused_at: datetime | None
    reopen_count: int
    history: list[TicketHistoryEntry]


class TicketPage(BaseModel):
    items: list[TicketSummary]
    page: int
    per_page: int
    total: int


class ActionBody(BaseModel):
    """Every action names the version the caller saw: if the ticket changed since, 409."""

    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1, description="the ticket's version as last read")
    note: str = Field(default="", max_length=2000, description="why; required for some actions")


class TransferBody(ActionBody):
    to_department: str = Field(max_length=64, description="the department code to send it to")


class ResolveBody(ActionBody):
    evidence_urls: list[AnyHttpUrl] = Field(default_factory=list, max_length=20)


class MergeBody(ActionBody):
    into_ticket: uuid.UUID = Field(description="the ticket this one duplicates")


class ActionResult(BaseModel):
    """After an action: where the ticket now stands, and the whole ticket if the caller may
    still read it (after a reject or transfer, a department may not: ``ticket`` is null)."""

    ticket_id: uuid.UUID
    status: str
    department_code: str
    version: int
    ticket: TicketRead | None
