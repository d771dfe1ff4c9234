import doctest
import math

import pytest
from h3.api import basic_int as h3
from hypothesis import given, settings
from hypothesis import strategies as st

import geo.h3cells
from geo.h3cells import (
    cell_of,
    cell_to_str,
    cells_within_metres,
    parent_of,
    parents_of,
    ring_of,
    rings_to_cover,
)

CITY_GOVERNMENT = (120.6994, 27.9938)  # 温州市人民政府, Lucheng, WGS-84 (lon, lat)
CELL_RES9 = 618148927948193791
CELL_RES9_STR = "8941b2cc4a3ffff"
PARENT_RES8 = 613645328322658303  # 8841b2cc4bfffff
PARENT_RES7 = 609141728699482111  # 8741b2cc4ffffff


def test_cell_of_a_known_point_at_res_9():
    assert cell_of(*CITY_GOVERNMENT) == CELL_RES9
    assert cell_of(*CITY_GOVERNMENT, res=9) == CELL_RES9
    assert cell_to_str(CELL_RES9) == CELL_RES9_STR


def test_cell_of_takes_lon_first_and_h3_lat_first():
    lon, lat = CITY_GOVERNMENT
    assert cell_of(lon, lat) == h3.latlng_to_cell(lat, lon, 9)
    assert cell_of(lat, lon) != CELL_RES9


def test_parents_at_res_7_and_8():
    assert parent_of(CELL_RES9, 8) == PARENT_RES8
    assert parents_of(CELL_RES9) == {7: PARENT_RES7, 8: PARENT_RES8}
    assert parents_of(CELL_RES9, (8,)) == {8: PARENT_RES8}
    assert cell_to_str(PARENT_RES8) == "8841b2cc4bfffff"
    assert cell_to_str(PARENT_RES7) == "8741b2cc4ffffff"
    assert cell_of(*CITY_GOVERNMENT, res=8) == PARENT_RES8


@pytest.mark.parametrize(("k", "size"), [(0, 1), (1, 7), (2, 19), (3, 37)])
def test_ring_sizes(k, size):
    ring = ring_of(CELL_RES9, k)
    assert len(ring) == size
    assert CELL_RES9 in ring


def test_rings_to_cover_grows_with_the_radius():
    assert rings_to_cover(CELL_RES9, 0) == 0
    assert rings_to_cover(CELL_RES9, 1) == 1
    assert rings_to_cover(CELL_RES9, 500) == 3
    assert cells_within_metres(*CITY_GOVERNMENT, 0) == {CELL_RES9}
    assert len(cells_within_metres(*CITY_GOVERNMENT, 500)) == 37


def test_negative_or_nan_radius_is_refused():
    with pytest.raises(ValueError, match="metres"):
        cells_within_metres(*CITY_GOVERNMENT, -1)
    with pytest.raises(ValueError, match="metres"):
        cells_within_metres(*CITY_GOVERNMENT, math.nan)


def destination(lon: float, lat: float, metres: float, bearing_deg: float) -> tuple[float, float]:
    """The point ``metres`` from (lon, lat) along ``bearing_deg``, on a sphere."""
    radius = 6_371_007.2  # h3's Earth radius
    d, b = metres / radius, math.radians(bearing_deg)
    lat1, lon1 = math.radians(lat), math.radians(lon)
    lat2 = math.asin(math.sin(lat1) * math.cos(d) + math.cos(lat1) * math.sin(d) * math.cos(b))
    lon2 = lon1 + math.atan2(
        math.sin(b) * math.sin(d) * math.cos(lat1), math.cos(d) - math.sin(lat1) * math.sin(lat2)
    )
    return math.degrees(lon2), math.degrees(lat2)


def assert_covers(lon: float, lat: float, metres: float, res: int) -> None:
    cells = cells_within_metres(lon, lat, metres, res)
    for step in range(72):
        for fraction in (1.0, 0.5):
            point = destination(lon, lat, metres * fraction, step * 5.0)
            assert cell_of(*point, res) in cells, (lon, lat, metres, res, point)


@settings(max_examples=200, deadline=None)
@given(
    lon=st.floats(119.5, 121.4),
    lat=st.floats(26.9, 28.7),
    metres=st.floats(0.5, 5_000),
    res=st.integers(7, 10),
)
def test_cells_within_metres_cover_the_circle_in_wenzhou(lon, lat, metres, res):
    assert_covers(lon, lat, metres, res)


@pytest.mark.parametrize("res", [7, 8, 9])
def test_cells_within_metres_cover_the_circle_next_to_a_pentagon(res):
    # Cells are most distorted around H3's 12 pentagons.
    for pentagon in h3.get_pentagons(res):
        lat, lon = h3.cell_to_latlng(pentagon)
        edge = h3.average_hexagon_edge_length(res, "m")
        for metres in (0.5 * edge, 2 * edge, 7 * edge):
            assert_covers(lon, lat, metres, res)


def test_docstring_examples():
    assert doctest.testmod(geo.h3cells).failed == 0
