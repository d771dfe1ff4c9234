"""What the intake API answers."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel


class IntakeAccepted(BaseModel):
    event_id: uuid.UUID
    status: Literal["accepted"] = "accepted"


class EventTicketRead(BaseModel):
    ticket_id: uuid.UUID
    status: str
    department_code: str
    updated_at: datetime


class EventStatusRead(BaseModel):
    event_id: uuid.UUID
    source: str
    external_id: str
    occurred_at: datetime
    received_at: datetime
    ticket: EventTicketRead | None
