import doctest
import itertools
import math
import random
from pathlib import Path

import orjson
import pytest
import shapely
from shapely.geometry import shape

import geo.jurisdiction
from geo.h3cells import cell_of
from geo.jurisdiction import District, DistrictIndex, PointCheck

REPO = Path(__file__).resolve().parents[2]
DISTRICTS_FILE = REPO / "packs" / "wenzhou" / "districts.geojson"

WENZHOU = {
    "330302": "鹿城区",
    "330303": "龙湾区",
    "330304": "瓯海区",
    "330305": "洞头区",
    "330324": "永嘉县",
    "330326": "平阳县",
    "330327": "苍南县",
    "330328": "文成县",
    "330329": "泰顺县",
    "330381": "瑞安市",
    "330382": "乐清市",
    "330383": "龙港市",
}


@pytest.fixture(scope="module")
def index() -> DistrictIndex:
    return DistrictIndex.from_geojson(DISTRICTS_FILE)


def test_the_pack_has_wenzhous_twelve_divisions(index):
    assert {d.code: d.name for d in index.districts} == WENZHOU
    features = orjson.loads(DISTRICTS_FILE.read_bytes())["features"]
    assert [f["properties"]["gb"] for f in features] == ["156" + code for code in WENZHOU]
    assert index.res == 8
    assert index.bbox == (119.622383, 27.167389, 121.253786, 28.614376)


# WGS-84 (lon, lat) of well-known places, each at least 800 m inside its district's polygon.
LANDMARKS = [
    ("温州市人民政府", 120.6994, 27.9938, "330302", "鹿城区"),
    ("温州龙湾国际机场", 120.852, 27.912, "330303", "龙湾区"),
    ("瑞安市区", 120.655, 27.778, "330381", "瑞安市"),
    ("乐清市区", 120.987, 28.113, "330382", "乐清市"),
    ("洞头", 121.157, 27.836, "330305", "洞头区"),
    ("龙港市区", 120.553, 27.578, "330383", "龙港市"),
    ("泰顺县城", 119.717, 27.557, "330329", "泰顺县"),
]


@pytest.mark.parametrize(("place", "lon", "lat", "code", "name"), LANDMARKS)
def test_landmarks_are_in_their_districts(index, place, lon, lat, code, name):
    assert index.district_of(lon, lat) == District(code=code, name=name), place
    assert index.classify_point(lon, lat) == PointCheck(flag=None, district=District(code, name))


def test_hangzhou_is_outside(index):
    assert index.district_of(120.15, 30.27) is None
    assert index.classify_point(120.15, 30.27) == PointCheck(flag="outside", district=None)


def test_null_island(index):
    assert index.classify_point(0.0, 0.0) == PointCheck(flag="null_island", district=None)
    assert index.district_of(0.0, 0.0) is None


def test_swapped_wenzhou_point(index):
    assert index.classify_point(27.9938, 120.6994) == PointCheck(flag="swapped", district=None)


def test_non_finite_points_are_outside(index):
    assert index.district_of(math.nan, 27.99) is None
    assert index.classify_point(math.inf, math.nan).flag == "outside"


def offset_across(
    a: tuple[float, float], b: tuple[float, float], metres: float
) -> tuple[float, float]:
    """The point ``metres`` to the left of the middle of edge a→b (negative: to the right)."""
    mid_lon, mid_lat = (a[0] + b[0]) / 2, (a[1] + b[1]) / 2
    per_lon, per_lat = 111_320 * math.cos(math.radians(mid_lat)), 110_574.0
    dx, dy = (b[0] - a[0]) * per_lon, (b[1] - a[1]) * per_lat
    length = math.hypot(dx, dy)
    return mid_lon - metres * dy / length / per_lon, mid_lat + metres * dx / length / per_lat


# Edges shared by two districts in the data (both polygons have both vertices), with the
# district to their left and to their right going from the first vertex to the second.
SHARED_EDGES = [
    ((120.635916, 28.013094), (120.639, 27.977468), "鹿城区", "瓯海区"),
    ((120.745987, 27.993507), (120.77434, 27.978013), "鹿城区", "龙湾区"),
    ((120.563706, 27.579354), (120.589244, 27.590704), "平阳县", "龙港市"),
]


@pytest.mark.parametrize(("a", "b", "left", "right"), SHARED_EDGES)
@pytest.mark.parametrize("metres", [2.0, 5.0])
def test_each_side_of_a_shared_border_is_exact(index, a, b, left, right, metres):
    for offset, expected in ((metres, left), (-metres, right)):
        lon, lat = offset_across(a, b, offset)
        district = index.district_of(lon, lat)
        assert district is not None and district.name == expected, (lon, lat)
        # These points are decided by the polygons, not by a cell's precomputed answer.
        assert cell_of(lon, lat, index.res) in index.boundary_cells


def test_a_point_exactly_on_a_shared_vertex_goes_to_the_first_district(index):
    # 120.704815, 27.986838 is a vertex of 鹿城区, 龙湾区 and 瓯海区.
    assert index.district_of(120.704815, 27.986838) == District("330302", "鹿城区")


def brute_force(features, lon, lat):
    for code, geometry in features:
        if shapely.intersects_xy(geometry, lon, lat):
            return code
    return None


@pytest.mark.parametrize("res", [7, 8])
def test_same_answers_as_testing_every_polygon(res):
    index = DistrictIndex.from_geojson(DISTRICTS_FILE, res=res)
    features = [
        (f["properties"]["code"], shape(f["geometry"]))
        for f in orjson.loads(DISTRICTS_FILE.read_bytes())["features"]
    ]
    rng = random.Random(res)
    west, south, east, north = index.bbox
    points = [(rng.uniform(west, east), rng.uniform(south, north)) for _ in range(20_000)]
    # Many more points within about 20 m of a border, where cells do not decide alone.
    for _, geometry in features:
        for ring in shapely.get_rings(shapely.get_parts(geometry)):
            coords = list(ring.coords)
            for (x1, y1), (x2, y2) in itertools.pairwise(coords):
                for _ in range(5):
                    t = rng.random()
                    points.append(
                        (
                            x1 + t * (x2 - x1) + rng.uniform(-2e-4, 2e-4),
                            y1 + t * (y2 - y1) + rng.uniform(-2e-4, 2e-4),
                        )
                    )
    for lon, lat in points:
        found = index.district_of(lon, lat)
        assert (found.code if found else None) == brute_force(features, lon, lat), (lon, lat)


def test_cells_split_into_interior_and_boundary(index):
    interior, boundary = index.interior_cells, index.boundary_cells
    assert not interior.keys() & boundary.keys()
    assert len(interior) > 5 * len(boundary)
    assert all(len(candidates) >= 1 for candidates in boundary.values())
    assert max(len(candidates) for candidates in boundary.values()) >= 3  # a tripoint


def test_synthetic_squares_shared_edge_and_hole():
    west = shapely.box(120.0, 28.0, 120.1, 28.1)
    east_with_hole = shapely.Polygon(
        [(120.1, 28.0), (120.2, 28.0), (120.2, 28.1), (120.1, 28.1)],
        [[(120.14, 28.04), (120.16, 28.04), (120.16, 28.06), (120.14, 28.06)]],
    )
    index = DistrictIndex([(District("1", "west"), west), (District("2", "east"), east_with_hole)])
    assert index.bbox == (120.0, 28.0, 120.2, 28.1)
    assert index.district_of(120.05, 28.05) == District("1", "west")
    assert index.district_of(120.1, 28.05) == District("1", "west")  # on the shared edge
    assert index.district_of(120.1 + 1e-7, 28.05) == District("2", "east")
    assert index.district_of(120.15, 28.05) is None  # in the hole
    assert index.district_of(120.13, 28.05) == District("2", "east")
    assert index.classify_point(120.15, 28.05).flag == "outside"


def test_no_districts_is_refused():
    with pytest.raises(ValueError, match="no districts"):
        DistrictIndex([])


def test_docstring_examples(monkeypatch):
    monkeypatch.chdir(REPO)
    assert doctest.testmod(geo.jurisdiction).failed == 0
