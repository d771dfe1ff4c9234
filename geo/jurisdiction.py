"""Which district a point is in, by H3 cell lookup with exact polygon tests only near borders.

``DistrictIndex`` covers a city's districts with H3 cells once, at build time:

* an *interior* cell lies wholly inside one district, so any point in it is in that district:
  a dict lookup answers;
* a *boundary* cell touches a district border (or more than one district): it keeps the
  districts it touches, and a point in it is tested against those polygons exactly (shapely,
  prepared);
* a point in no cell of either kind is in no district.

So the answer is always the exact point-in-polygon answer for the data; the cells only make
it fast. Points exactly on a shared border go to the first district in file order.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import orjson
import shapely
from h3.api.basic_int import (
    LatLngPoly,
    average_hexagon_edge_length,
    cell_to_boundary,
    h3shape_to_cells,
    latlng_to_cell,
)
from shapely.geometry import shape

# Resolution 8 (cells of about 0.6 km² in Wenzhou) builds Wenzhou's index in about 0.4 s and
# answers 92 % of in-city points from the dict; 7 sends 20 % to the polygons and is slower
# overall, 9 takes 2.3 s to build and its 7x larger dict looks up slower (bench/geo.py).
DEFAULT_RES = 8
# Each cell's polygon is grown by this much (degrees, about 0.1 m) before the inside/touches
# tests: h3's cell edges are great-circle arcs and shapely's are straight in lon/lat, a few
# millimetres apart at resolution 8, so a cell within this of a border is a boundary cell.
CELL_SLACK_DEG = 1e-6
NULL_ISLAND_DEG = 1e-6  # about 0.1 m: nothing the hub serves is that near (0, 0)

PointFlag = Literal["null_island", "swapped", "outside"]


@dataclass(frozen=True, slots=True)
class District:
    """A county-level division: its 6-digit GB/T 2260 code (``330302``) and name (``鹿城区``)."""

    code: str
    name: str


@dataclass(frozen=True, slots=True)
class PointCheck:
    """What ``DistrictIndex.classify_point`` found: a district, or a flag saying what is wrong.

    ``flag`` is ``None`` when the point is in ``district``; ``"null_island"`` for (0, 0), the
    usual default of a device without a fix; ``"swapped"`` when (lat, lon) would be in the city
    but (lon, lat) is not; ``"outside"`` when the point is in no district.
    """

    flag: PointFlag | None
    district: District | None


class DistrictIndex:
    """Point → district for one city, built once from its districts' polygons.

    Examples
    --------
    >>> index = DistrictIndex.from_geojson("packs/wenzhou/districts.geojson")
    >>> index.district_of(120.6994, 27.9938)
    District(code='330302', name='鹿城区')
    >>> index.classify_point(27.9938, 120.6994).flag
    'swapped'
    """

    __slots__ = ("_bbox", "_boundary", "_districts", "_interior", "_res")

    def __init__(
        self, districts: Iterable[tuple[District, Any]], *, res: int = DEFAULT_RES
    ) -> None:
        """Index ``districts``: (district, shapely Polygon or MultiPolygon in lon/lat) pairs."""
        pairs = list(districts)
        if not pairs:
            raise ValueError("no districts to index")
        geometries = [geometry for _, geometry in pairs]
        for geometry in geometries:
            shapely.prepare(geometry)
        self._res = res
        self._districts = tuple(district for district, _ in pairs)
        west, south, east, north = shapely.total_bounds(geometries).tolist()
        self._bbox: tuple[float, float, float, float] = (west, south, east, north)

        # Every cell that can touch a district has its centre within one cell of it: take the
        # cells whose centres lie in each district grown by two edge lengths, then test them.
        margin_deg = 2 * average_hexagon_edge_length(res, "m") / _metres_per_degree_lon(north)
        touching: dict[int, list[int]] = {}
        inside_one: dict[int, int] = {}
        for number, geometry in enumerate(geometries):
            cells = _cells_with_centre_in(shapely.buffer(geometry, margin_deg, quad_segs=2), res)
            grown = shapely.buffer(_cell_polygons(cells), CELL_SLACK_DEG, join_style="mitre")
            touches = shapely.intersects(geometry, grown)
            inside = shapely.contains(geometry, grown)
            for cell, touch, within in zip(cells, touches.tolist(), inside.tolist(), strict=True):
                if touch:
                    touching.setdefault(cell, []).append(number)
                if within:
                    inside_one[cell] = number

        self._interior: dict[int, District] = {}
        self._boundary: dict[int, tuple[tuple[District, Any], ...]] = {}
        for cell, numbers in touching.items():
            if len(numbers) == 1 and inside_one.get(cell) == numbers[0]:
                self._interior[cell] = pairs[numbers[0]][0]
            else:
                self._boundary[cell] = tuple(pairs[n] for n in sorted(numbers))

    @classmethod
    def from_geojson(cls, path: str | Path, res: int = DEFAULT_RES) -> DistrictIndex:
        """Build from a GeoJSON FeatureCollection whose features have ``code`` and ``name``."""
        collection = orjson.loads(Path(path).read_bytes())
        return cls(
            (
                (
                    District(code=str(f["properties"]["code"]), name=str(f["properties"]["name"])),
                    shape(f["geometry"]),
                )
                for f in collection["features"]
            ),
            res=res,
        )

    @property
    def res(self) -> int:
        """The H3 resolution of the cells."""
        return self._res

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        """(west, south, east, north) of all districts, in degrees."""
        return self._bbox

    @property
    def districts(self) -> tuple[District, ...]:
        """The districts, in file order."""
        return self._districts

    @property
    def interior_cells(self) -> Mapping[int, District]:
        """Cells wholly inside one district (read-only)."""
        return MappingProxyType(self._interior)

    @property
    def boundary_cells(self) -> Mapping[int, tuple[District, ...]]:
        """Cells on a border, with the districts each touches (read-only, built on each call)."""
        return MappingProxyType(
            {cell: tuple(d for d, _ in pairs) for cell, pairs in self._boundary.items()}
        )

    def district_of(self, lon: float, lat: float) -> District | None:
        """The district that contains the WGS-84 point (lon, lat), or None if none does."""
        west, south, east, north = self._bbox
        if not (west <= lon <= east and south <= lat <= north):  # also refuses NaN
            return None
        cell = latlng_to_cell(lat, lon, self._res)
        district = self._interior.get(cell)
        if district is not None:
            return district
        for candidate, geometry in self._boundary.get(cell, ()):
            if shapely.intersects_xy(geometry, lon, lat):
                return candidate
        return None

    def classify_point(self, lon: float, lat: float) -> PointCheck:
        """The district of (lon, lat), or why there is none (see ``PointCheck``)."""
        if abs(lon) < NULL_ISLAND_DEG and abs(lat) < NULL_ISLAND_DEG:
            return PointCheck(flag="null_island", district=None)
        district = self.district_of(lon, lat)
        if district is not None:
            return PointCheck(flag=None, district=district)
        if self.district_of(lat, lon) is not None:
            return PointCheck(flag="swapped", district=None)
        return PointCheck(flag="outside", district=None)


def _metres_per_degree_lon(lat: float) -> float:
    return 111_320.0 * math.cos(math.radians(min(abs(lat), 89.0)))


def _cells_with_centre_in(geometry: Any, res: int) -> list[int]:
    parts = geometry.geoms if geometry.geom_type == "MultiPolygon" else [geometry]
    cells: set[int] = set()
    for part in parts:
        shell = [(lat, lon) for lon, lat in part.exterior.coords]
        holes = [[(lat, lon) for lon, lat in ring.coords] for ring in part.interiors]
        cells.update(h3shape_to_cells(LatLngPoly(shell, *holes), res))
    return sorted(cells)


def _cell_polygons(cells: list[int]) -> list[Any]:
    # Hexagons have 6 vertices, pentagons 5, and cells across an icosahedron edge up to 10.
    return [shapely.Polygon([(lon, lat) for lat, lon in cell_to_boundary(c)]) for c in cells]
