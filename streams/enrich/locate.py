"""Where an event is: its H3 cell and district, or a flag saying why it could not be placed.

Points come in WGS-84 (normalisation converted them). Events without coordinates are placed
in a district by the district's name in their address, when the address names one.
"""

from __future__ import annotations

from typing import Any, Protocol

from geo.h3cells import cell_of
from schemas.event import EventV1


class DistrictLookup(Protocol):
    def classify_point(self, lon: float, lat: float) -> Any: ...

    @property
    def districts(self) -> Any: ...


def district_by_address(address: str | None, districts: Any) -> Any:
    """The district an address names (鹿城区, or just 鹿城), if exactly one is named."""
    if not address:
        return None
    named = [d for d in districts if d.name in address or d.name[:-1] in address]
    return named[0] if len(named) == 1 else None


def locate(event: EventV1, *, districts: DistrictLookup) -> dict[str, object]:
    """The location fields for ``event`` (to ``model_copy(update=…)`` it with)."""
    if event.location is None:
        district = district_by_address(event.address, districts.districts)
        return {
            "h3_cell": None,
            "district_code": district.code if district else None,
            "district_name": district.name if district else None,
            "location_flag": None if district else "no_location",
        }
    lon, lat = event.location.lon, event.location.lat
    check = districts.classify_point(lon, lat)
    district = check.district
    return {
        "h3_cell": cell_of(lon, lat, 9) if check.flag != "null_island" else None,
        "district_code": district.code if district else None,
        "district_name": district.name if district else None,
        "location_flag": check.flag,
    }
