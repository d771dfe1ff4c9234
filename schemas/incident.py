"""What correlation puts on ``incidents``: an incident as it stands after one report changed it."""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict

from schemas.event import EventV1, Priority


class IncidentChangeV1(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = 1
    incident_id: uuid.UUID
    # created: the report opened it; attached: the report joined it; duplicate: a replayed report
    # that was a member already (harmless downstream).
    change: Literal["created", "attached", "duplicate"]
    category: str | None
    priority: Priority
    reports: int
    sources: list[str]
    lon: float | None
    lat: float | None
    district_code: str | None
    opened_at: AwareDatetime
    last_seen: AwareDatetime
    event: EventV1
