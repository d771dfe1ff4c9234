"""Per-source adapters: one source payload in, one canonical EventV1 out. Pure functions.

Every adapter validates the payload against its source model again (the stream must not trust
what is on a topic), converts the location to WGS-84, keeps times timezone-aware and keeps the
masked payload as ``raw`` for audit.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from geo.crs import to_wgs84
from schemas.event import Crs, EventV1, Location, Priority, Source
from schemas.intake import (
    DispatchLevel,
    Emergency120Record,
    GridGovernanceEvent,
    Hotline12345Order,
    IntakeEnvelope,
    Open311Request,
    UrbanInspectionCase,
)

_SPACES = re.compile(r"[ \t\u3000]+")
_BLANK_LINES = re.compile(r"\n\s*\n+")
# C0 and C1 control characters, but for tab and the line breaks handled separately.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


class UnknownSource(ValueError):
    pass


def clean_text(text: str) -> str:
    """Drop control characters, collapse runs of spaces (full-width too) and blank lines."""
    text = _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    return _BLANK_LINES.sub("\n", _SPACES.sub(" ", text)).strip()


def locate(lon: float | None, lat: float | None, crs: str) -> Location | None:
    if lon is None or lat is None:
        return None
    wgs_lon, wgs_lat = to_wgs84(lon, lat, crs)
    return Location(lon=wgs_lon, lat=wgs_lat, source_crs=Crs(crs), source_lon=lon, source_lat=lat)


def _event(envelope: IntakeEnvelope, **fields: Any) -> EventV1:
    return EventV1(
        event_id=envelope.event_id,
        source=envelope.source,
        external_id=envelope.external_id,
        received_at=envelope.received_at,
        payload_hash=envelope.payload_hash,
        raw=envelope.payload,
        **fields,
    )


def from_hotline_12345(envelope: IntakeEnvelope) -> EventV1:
    order = Hotline12345Order.model_validate(envelope.payload)
    return _event(
        envelope,
        occurred_at=order.call_time,
        location=locate(order.longitude, order.latitude, order.coord_system),
        address=order.address,
        text=clean_text(order.content),
        # The hotline's own urgency flag (加急) is an operator's judgement: trust it.
        priority=Priority.HIGH if order.urgent else Priority.NORMAL,
        source_category=order.request_type.value,
    )


_LEVEL_PRIORITY = {
    DispatchLevel.CRITICAL: Priority.URGENT,
    DispatchLevel.SEVERE: Priority.URGENT,
    DispatchLevel.URGENT: Priority.HIGH,
    DispatchLevel.NON_URGENT: Priority.NORMAL,
}
MASS_CASUALTY_PATIENTS = 3


def from_emergency_120(envelope: IntakeEnvelope) -> EventV1:
    record = Emergency120Record.model_validate(envelope.payload)
    priority = _LEVEL_PRIORITY[record.dispatch_level]
    if record.patients >= MASS_CASUALTY_PATIENTS:
        priority = Priority.URGENT  # several patients at once is a mass-casualty signal
    return _event(
        envelope,
        occurred_at=record.call_time,
        location=locate(record.longitude, record.latitude, record.coord_system),
        address=record.address,
        text=clean_text(record.chief_complaint),
        priority=priority,
        source_category=f"level-{record.dispatch_level.value}",
    )


def from_urban_inspection(envelope: IntakeEnvelope) -> EventV1:
    case = UrbanInspectionCase.model_validate(envelope.payload)
    return _event(
        envelope,
        occurred_at=case.discovered_at,
        location=locate(case.longitude, case.latitude, case.coord_system),
        address=case.address,
        text=clean_text(case.description),
        priority=Priority.NORMAL,
        # The inspector's national code is kept, never re-guessed.
        source_category=f"{case.kind}:{case.code}",
    )


def from_grid_governance(envelope: IntakeEnvelope) -> EventV1:
    report = GridGovernanceEvent.model_validate(envelope.payload)
    return _event(
        envelope,
        occurred_at=report.reported_at,
        location=locate(report.longitude, report.latitude, report.coord_system),
        address=report.address,
        text=clean_text(report.description),
        priority=Priority.NORMAL,
        source_category=report.event_type,
    )


def from_open311(envelope: IntakeEnvelope) -> EventV1:
    request = Open311Request.model_validate(envelope.payload)
    return _event(
        envelope,
        occurred_at=request.requested_at,
        # GeoReport v2 coordinates are WGS-84.
        location=locate(request.long, request.lat, Crs.WGS84),
        address=request.address_string,
        text=clean_text(request.description),
        priority=Priority.NORMAL,
        # The citizen chose the service: that is the category.
        category=request.service_code,
        category_confidence=1.0,
        source_category=request.service_code,
    )


ADAPTERS: dict[Source, Callable[[IntakeEnvelope], EventV1]] = {
    Source.HOTLINE_12345: from_hotline_12345,
    Source.EMERGENCY_120: from_emergency_120,
    Source.URBAN_INSPECTION: from_urban_inspection,
    Source.GRID_GOVERNANCE: from_grid_governance,
    Source.OPEN311: from_open311,
}


def normalize(envelope: IntakeEnvelope) -> EventV1:
    adapter = ADAPTERS.get(envelope.source)
    if adapter is None:
        raise UnknownSource(f"no adapter for source {envelope.source!r}")
    return adapter(envelope)
