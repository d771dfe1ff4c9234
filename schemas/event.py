"""The canonical Event, version 1: what every source's report becomes once normalised."""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

# Fixed, never changed: event ids derive from it, so replays map to the same ids.
EVENT_ID_NAMESPACE = uuid.UUID("5b0e2f7c-6a57-4c1e-9d7e-2f4c8f7a1e01")


class Source(StrEnum):
    HOTLINE_12345 = "hotline-12345"
    EMERGENCY_120 = "emergency-120"
    URBAN_INSPECTION = "urban-inspection"
    GRID_GOVERNANCE = "grid-governance"
    OPEN311 = "open311"
    IOT = "iot"


class Priority(StrEnum):
    URGENT = "urgent"
    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"


class Crs(StrEnum):
    """Coordinate systems sources use: WGS-84 (GPS), GCJ-02 (Chinese maps), BD-09 (Baidu)."""

    WGS84 = "WGS84"
    GCJ02 = "GCJ02"
    BD09 = "BD09"


class Location(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    lon: float = Field(ge=-180, le=180, description="WGS-84 longitude")
    lat: float = Field(ge=-90, le=90, description="WGS-84 latitude")
    source_crs: Crs = Field(description="the system the source reported in")
    source_lon: float
    source_lat: float


class EventV1(BaseModel):
    """One report from one source. Category fields are filled by classification later."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = 1
    event_id: uuid.UUID
    source: Source
    external_id: str = Field(min_length=1, max_length=128)
    occurred_at: AwareDatetime
    received_at: AwareDatetime
    location: Location | None
    address: str | None = Field(default=None, max_length=500)
    text: str = Field(max_length=4000)
    priority: Priority = Priority.NORMAL
    category: str | None = Field(default=None, description="taxonomy code, when known")
    category_confidence: float | None = Field(default=None, ge=0, le=1)
    # The source's own classification, kept verbatim: a 12345 request type, an urban-management
    # "kind:code", a grid event type, an Open311 service code.
    source_category: str | None = None
    payload_hash: str = ""
    # Filled by enrichment (streams/enrich): how the category was found, and whether a person
    # must decide it (low confidence or unknown), the urgent signals seen in the text.
    category_method: Literal["source", "code", "rule", "model"] | None = None
    needs_triage: bool = False
    signals: tuple[str, ...] = ()
    # Where: the H3 cell (resolution 9, basic_int form), the district, and what was wrong with
    # the point if it could not be placed.
    h3_cell: int | None = None
    district_code: str | None = None
    district_name: str | None = None
    location_flag: Literal["null_island", "swapped", "outside", "no_location"] | None = None
    # The source's payload as received (personal data already masked), kept for audit.
    raw: dict[str, Any]


def event_id_for(source: str, external_id: str) -> uuid.UUID:
    """The event id for a source's record: the same (source, external id) gives the same id."""
    return uuid.uuid5(EVENT_ID_NAMESPACE, f"{source}\x1f{external_id}")
