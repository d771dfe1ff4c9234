"""Edge checks that depend on the clock, the jurisdiction or code tables.

They run before anything is accepted, and never in the stream, so a replayed record is never
refused for having grown old.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from geo.crs import to_wgs84
from hub.pack import Pack
from schemas.intake import SourcePayload, SourceSpec, UrbanInspectionCase

# Clocks drift; reports are forwarded late. Beyond these bounds a time is a mistake.
MAX_AHEAD = timedelta(minutes=10)
MAX_AGE = timedelta(days=365)


def _error(field: str, message: str, kind: str) -> dict[str, Any]:
    return {"loc": ["body", field], "msg": message, "type": kind}


def time_errors(occurred: datetime, field: str, *, now: datetime) -> list[dict[str, Any]]:
    if occurred > now + MAX_AHEAD:
        return [_error(field, "is in the future (over 10 minutes ahead of UTC now)", "future")]
    if occurred < now - MAX_AGE:
        return [_error(field, "is more than 365 days old", "too_old")]
    return []


def location_errors(
    lon: float | None, lat: float | None, crs: str, pack: Pack
) -> list[dict[str, Any]]:
    """Refuse points that cannot be in the city: (0, 0), swapped axes, elsewhere. The city's box
    is WGS-84, so the point is converted from its declared system first."""
    if lon is None or lat is None:
        return []
    if lon == 0 and lat == 0:
        return [_error("longitude", "(0, 0) is a missing location, not a place", "null_island")]
    wgs_lon, wgs_lat = to_wgs84(lon, lat, crs)
    if not pack.contains(wgs_lon, wgs_lat):
        if pack.contains(wgs_lat, wgs_lon):
            return [_error("longitude", "longitude and latitude look swapped", "swapped")]
        return [_error("longitude", f"({lon}, {lat}) is outside {pack.name}", "outside")]
    return []


def payload_errors(
    payload: SourcePayload,
    spec: SourceSpec,
    *,
    pack: Pack,
    urban_codes: dict[tuple[str, str], str],
    now: datetime,
) -> list[dict[str, Any]]:
    errors = time_errors(spec.occurred_at(payload), spec.time_field, now=now)
    errors += location_errors(payload.longitude, payload.latitude, payload.coord_system, pack)
    if isinstance(payload, UrbanInspectionCase) and (payload.kind, payload.code) not in urban_codes:
        message = f"{payload.kind} code {payload.code} is not in GB/T 47678.5"
        errors.append(_error("code", message, "unknown_code"))
    return errors
