"""What source systems send, and what the intake API puts on ``intake.raw``.

Each source keeps its own payload shape (documented field by field below and in OpenAPI); the
stream's normaliser turns each into an EventV1. Rules that depend on the clock or the
jurisdiction (plausible times, coordinates inside the city) are checked at the edge, not here,
so a replayed record always validates the same way.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import IntEnum, StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    ValidationInfo,
    field_validator,
    model_validator,
)

from schemas.event import Crs, Source

# China Standard Time has had no daylight saving since 1991: a fixed offset is exact.
CHINA_TZ = timezone(timedelta(hours=8), "Asia/Shanghai")
ExternalId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
Text = Annotated[str, Field(min_length=1, max_length=4000)]
Address = Annotated[str, Field(max_length=500)]


def as_china_time_if_naive(value: datetime) -> datetime:
    """Source systems in China often send local times without an offset."""
    return value.replace(tzinfo=CHINA_TZ) if value.tzinfo is None else value


def looks_swapped(lon: object, lat: object) -> bool:
    """A latitude past ±90 with a longitude that would be a fine latitude: axes swapped.

    Checked before the range checks, so the caller hears the likely cause, not just the range."""
    try:
        lon_f, lat_f = float(lon), float(lat)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return False
    return 90 < abs(lat_f) <= 180 and abs(lon_f) <= 90


def refuse_nul(value: object) -> object:
    """PostgreSQL cannot store U+0000 in text or jsonb: such input is refused at the edge."""
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("must not contain the NUL character (U+0000)")
    if isinstance(value, list | dict):
        for item in value.values() if isinstance(value, dict) else value:
            refuse_nul(item)
    return value


class SourcePayload(BaseModel):
    """Fields and checks every source payload shares: a point in a declared system."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    longitude: float | None = Field(default=None, ge=-180, le=180)
    latitude: float | None = Field(default=None, ge=-90, le=90)
    coord_system: Crs = Crs.WGS84
    address: Address | None = None

    _no_nul = field_validator("*")(refuse_nul)

    @field_validator("latitude", mode="before")
    @classmethod
    def _axes_in_order(cls, latitude: Any, info: ValidationInfo) -> Any:
        if looks_swapped(info.data.get("longitude"), latitude):
            raise ValueError("longitude and latitude look swapped")
        return latitude

    @model_validator(mode="after")
    def _coordinates_come_in_pairs(self) -> SourcePayload:
        if (self.latitude is None) != (self.longitude is None):
            raise ValueError("longitude and latitude must be given together")
        return self


class HotlineRequestType(StrEnum):
    """The 12345 hotline's own classification of a call."""

    COMPLAINT = "投诉"
    REPORT = "举报"
    HELP = "求助"
    CONSULTATION = "咨询"
    SUGGESTION = "建议"
    PRAISE = "表扬"
    OTHER = "其他"


class Hotline12345Order(SourcePayload):
    """A 12345 citizen-hotline work order (工单), as the hotline system forwards it."""

    order_no: ExternalId = Field(description="工单编号")
    call_time: datetime = Field(description="来电时间; without an offset it is China time")
    content: Text = Field(description="诉求内容")
    request_type: HotlineRequestType = HotlineRequestType.OTHER
    coord_system: Crs = Field(default=Crs.GCJ02, description="the hotline's maps are GCJ-02")
    caller_phone: str | None = Field(default=None, max_length=32, description="masked on intake")
    urgent: bool = Field(default=False, description="加急: the operator marked it urgent")

    _call_time_tz = field_validator("call_time")(as_china_time_if_naive)


class DispatchLevel(IntEnum):
    """120 dispatch level (分级调度): 1 is the most critical."""

    CRITICAL = 1
    SEVERE = 2
    URGENT = 3
    NON_URGENT = 4


class Emergency120Record(SourcePayload):
    """A 120 emergency-centre dispatch record (调度记录)."""

    case_no: ExternalId = Field(description="病例/受理编号")
    call_time: datetime = Field(description="受理时间; without an offset it is China time")
    chief_complaint: Text = Field(description="主诉")
    patients: int = Field(default=1, ge=0, le=500, description="患者人数")
    dispatch_level: DispatchLevel = Field(description="调度级别 1 (critical) … 4")
    coord_system: Crs = Field(default=Crs.WGS84, description="caller location (AML) is GPS")
    caller_phone: str | None = Field(default=None, max_length=32, description="masked on intake")

    _call_time_tz = field_validator("call_time")(as_china_time_if_naive)


class UrbanInspectionCase(SourcePayload):
    """A digital urban-management (数字城管) case reported by an inspector (信息采集员)."""

    case_no: ExternalId = Field(description="案卷编号")
    discovered_at: datetime = Field(description="发现时间; without an offset it is China time")
    kind: Literal["component", "event"] = Field(description="部件 (component) or 事件 (event)")
    code: str = Field(pattern=r"^[0-9]{5}$", description="GB/T 47678.5 5-digit code")
    description: Text = Field(description="问题描述")
    photo_urls: list[HttpUrl] = Field(default_factory=list, max_length=9)
    inspector_id: ExternalId = Field(description="采集员编号")

    _discovered_at_tz = field_validator("discovered_at")(as_china_time_if_naive)


class GridGovernanceEvent(SourcePayload):
    """An event reported by a grid worker (网格员) in the grid-governance (基层智治) app."""

    event_no: ExternalId = Field(description="事件编号")
    grid_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    event_type: str = Field(min_length=1, max_length=64, description="事件类型, e.g. 安全隐患")
    description: Text = Field(description="事件描述")
    reported_at: datetime = Field(description="上报时间; without an offset it is China time")
    coord_system: Crs = Field(default=Crs.GCJ02, description="the app's maps are GCJ-02")
    worker_id: ExternalId = Field(description="网格员编号")

    _reported_at_tz = field_validator("reported_at")(as_china_time_if_naive)


@dataclass(frozen=True)
class SourceSpec:
    """How the edge handles one source: its payload, its id field, its clock, its contacts."""

    model: type[SourcePayload]
    external_id_field: str
    time_field: str
    # Free text, where people write phone and ID numbers: masked inside. Ids, codes and URLs
    # are never touched (a case number may look like a phone number and must survive).
    text_fields: frozenset[str]
    contact_fields: frozenset[str] = frozenset()

    def external_id(self, payload: SourcePayload) -> str:
        value: str = getattr(payload, self.external_id_field)
        return value

    def occurred_at(self, payload: SourcePayload) -> datetime:
        value: datetime = getattr(payload, self.time_field)
        return value


CIVIC_SOURCES: dict[Source, SourceSpec] = {
    Source.HOTLINE_12345: SourceSpec(
        Hotline12345Order, "order_no", "call_time",
        text_fields=frozenset({"content", "address"}),
        contact_fields=frozenset({"caller_phone"}),
    ),
    Source.EMERGENCY_120: SourceSpec(
        Emergency120Record, "case_no", "call_time",
        text_fields=frozenset({"chief_complaint", "address"}),
        contact_fields=frozenset({"caller_phone"}),
    ),
    Source.URBAN_INSPECTION: SourceSpec(
        UrbanInspectionCase, "case_no", "discovered_at",
        text_fields=frozenset({"description", "address"}),
    ),
    Source.GRID_GOVERNANCE: SourceSpec(
        GridGovernanceEvent, "event_no", "reported_at",
        text_fields=frozenset({"description", "address", "event_type"}),
    ),
}  # fmt: skip
# Open311 posts are not a SourcePayload (form fields), but are masked the same way.
OPEN311_TEXT_FIELDS = frozenset({"description", "address_string"})
OPEN311_CONTACT_FIELDS = frozenset({"email", "phone"})


class IntakeEnvelope(BaseModel):
    """One accepted source record, as durable in Kafka before the caller hears 2xx."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    envelope: Literal["intake.raw/v1"] = "intake.raw/v1"
    event_id: uuid.UUID
    source: Source
    external_id: str
    received_at: AwareDatetime
    # SHA-256 of the masked payload: the worker stores a changed one as a new revision.
    payload_hash: str = ""
    payload: dict[str, object]


class Open311Request(BaseModel):
    """An Open311 GeoReport v2 service request, as the API stores it after masking."""

    model_config = ConfigDict(extra="forbid")

    service_code: str = Field(min_length=1, max_length=64)
    description: str = Field(default="", max_length=4000)
    # long before lat: lat's check for swapped axes reads the validated long.
    long: float | None = Field(default=None, ge=-180, le=180)
    lat: float | None = Field(default=None, ge=-90, le=90)
    address_string: str | None = Field(default=None, max_length=500)
    address_id: str | None = Field(default=None, max_length=64)
    requested_at: AwareDatetime
    client: str = Field(description="the Open311 client (API key label) that posted it")
    email: str | None = None
    device_id: str | None = Field(default=None, max_length=128)
    account_id: str | None = Field(default=None, max_length=128)
    first_name: str | None = Field(default=None, max_length=64)
    last_name: str | None = Field(default=None, max_length=64)
    phone: str | None = None
    media_url: HttpUrl | None = None
    attributes: dict[str, str | list[str]] = Field(default_factory=dict)

    _no_nul = field_validator("*")(refuse_nul)

    @field_validator("lat", mode="before")
    @classmethod
    def _axes_in_order(cls, lat: Any, info: ValidationInfo) -> Any:
        if looks_swapped(info.data.get("long"), lat):
            raise ValueError("lat and long look swapped")
        return lat

    @model_validator(mode="after")
    def _located(self) -> Open311Request:
        if (self.lat is None) != (self.long is None):
            raise ValueError("lat and long must be given together")
        if self.lat is None and not self.address_string and not self.address_id:
            raise ValueError("a location is required: lat and long, or address_string")
        return self
