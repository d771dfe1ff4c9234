import math

import pytest

from geo.crs import bd09_to_gcj02, gcj02_to_bd09, gcj02_to_wgs84, to_wgs84, wgs84_to_gcj02

WENZHOU_WGS84 = (120.6994, 27.9938)  # near the city government, Lucheng


def metres_between(a: tuple[float, float], b: tuple[float, float]) -> float:
    lat = math.radians((a[1] + b[1]) / 2)
    dx = (a[0] - b[0]) * 111_320 * math.cos(lat)
    dy = (a[1] - b[1]) * 110_574
    return math.hypot(dx, dy)


def test_gcj02_offset_in_wenzhou_is_hundreds_of_metres():
    shifted = wgs84_to_gcj02(*WENZHOU_WGS84)
    assert 200 < metres_between(shifted, WENZHOU_WGS84) < 800


def test_gcj02_inverse_recovers_wgs84_to_a_millimetre():
    back = gcj02_to_wgs84(*wgs84_to_gcj02(*WENZHOU_WGS84))
    assert metres_between(back, WENZHOU_WGS84) < 0.001


def test_bd09_round_trip_and_conversion():
    gcj = wgs84_to_gcj02(*WENZHOU_WGS84)
    bd = gcj02_to_bd09(*gcj)
    assert metres_between(bd09_to_gcj02(*bd), gcj) < 1.0
    assert metres_between(to_wgs84(*bd, "BD09"), WENZHOU_WGS84) < 1.0


def test_outside_china_no_offset():
    assert wgs84_to_gcj02(2.35, 48.85) == (2.35, 48.85)
    assert to_wgs84(2.35, 48.85, "GCJ02") == (2.35, 48.85)


def test_unknown_crs_is_refused():
    with pytest.raises(ValueError, match="unknown coordinate system"):
        to_wgs84(120.0, 28.0, "EPSG:3857")
