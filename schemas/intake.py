"""What the intake API puts on ``intake.raw``: one source payload in an envelope.

Each source keeps its own payload shape; the stream's normaliser turns it into an EventV1.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from enum import StrEnum
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from schemas.event import Crs, Source

# China Standard Time has had no daylight saving since 1991: a fixed offset is exact.
CHINA_TZ = timezone(timedelta(hours=8), "Asia/Shanghai")


def as_china_time_if_naive(value: datetime) -> datetime:
    """Source systems in China often send local times without an offset."""
    return value.replace(tzinfo=CHINA_TZ) if value.tzinfo is None else value


class HotlineRequestType(StrEnum):
    """The 12345 hotline's own classification of a call."""

    COMPLAINT = "投诉"
    REPORT = "举报"
    HELP = "求助"
    CONSULTATION = "咨询"
    SUGGESTION = "建议"
    PRAISE = "表扬"
    OTHER = "其他"


class Hotline12345Order(BaseModel):
    """A 12345 citizen-hotline work order (工单), as the hotline system forwards it."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    order_no: str = Field(
        min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$", description="工单编号"
    )
    call_time: datetime = Field(description="来电时间; without an offset it is China time")
    content: str = Field(min_length=1, max_length=4000, description="诉求内容")
    request_type: HotlineRequestType = HotlineRequestType.OTHER
    address: str | None = Field(default=None, max_length=500)
    longitude: float | None = Field(default=None, ge=-180, le=180)
    latitude: float | None = Field(default=None, ge=-90, le=90)
    coord_system: Crs = Field(default=Crs.GCJ02, description="the hotline's maps are GCJ-02")
    caller_phone: str | None = Field(default=None, max_length=32, description="masked on intake")
    urgent: bool = False

    _normalise_call_time = field_validator("call_time")(as_china_time_if_naive)

    @model_validator(mode="after")
    def _coordinates_come_in_pairs(self) -> Hotline12345Order:
        if (self.latitude is None) != (self.longitude is None):
            raise ValueError("longitude and latitude must be given together")
        return self


class IntakeEnvelope(BaseModel):
    """One accepted source record, as durable in Kafka before the caller hears 202."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    envelope: Literal["intake.raw/v1"] = "intake.raw/v1"
    event_id: uuid.UUID
    source: Source
    external_id: str
    received_at: AwareDatetime
    payload: dict[str, Any]
