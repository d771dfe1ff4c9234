"""Per-source adapters: one source payload in, one canonical EventV1 out. Pure functions."""

from __future__ import annotations

import re
from collections.abc import Callable

from geo.crs import to_wgs84
from schemas.event import Crs, EventV1, Location, Priority, Source
from schemas.intake import Hotline12345Order, IntakeEnvelope

_SPACES = re.compile(r"[ \t\u3000]+")
_BLANK_LINES = re.compile(r"\n\s*\n+")


class UnknownSource(ValueError):
    pass


def clean_text(text: str) -> str:
    """Collapse runs of spaces (full-width too) and blank lines; strip the ends."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _BLANK_LINES.sub("\n", _SPACES.sub(" ", text)).strip()


def locate(lon: float | None, lat: float | None, crs: str) -> Location | None:
    if lon is None or lat is None:
        return None
    wgs_lon, wgs_lat = to_wgs84(lon, lat, crs)
    return Location(lon=wgs_lon, lat=wgs_lat, source_crs=Crs(crs), source_lon=lon, source_lat=lat)


def from_hotline_12345(envelope: IntakeEnvelope) -> EventV1:
    order = Hotline12345Order.model_validate(envelope.payload)
    return EventV1(
        event_id=envelope.event_id,
        source=Source.HOTLINE_12345,
        external_id=order.order_no,
        occurred_at=order.call_time,
        received_at=envelope.received_at,
        location=locate(order.longitude, order.latitude, order.coord_system),
        address=order.address,
        text=clean_text(order.content),
        # The hotline's own urgency flag (加急) is a dispatcher's judgement: trust it.
        priority=Priority.HIGH if order.urgent else Priority.NORMAL,
        raw=envelope.payload,
    )


ADAPTERS: dict[Source, Callable[[IntakeEnvelope], EventV1]] = {
    Source.HOTLINE_12345: from_hotline_12345,
}


def normalize(envelope: IntakeEnvelope) -> EventV1:
    adapter = ADAPTERS.get(envelope.source)
    if adapter is None:
        raise UnknownSource(f"no adapter for source {envelope.source!r}")
    return adapter(envelope)
