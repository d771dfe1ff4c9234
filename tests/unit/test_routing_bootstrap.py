import csv
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dispatch.routing.bootstrap import district_codes_of, learn_rules, write_rules_csv
from dispatch.routing.rules import RoutingContext, Rule, parse_rules, route
from geo.jurisdiction import DistrictIndex
from hub.cli import main as hub_cli

REPO = Path(__file__).resolve().parents[2]
DISTRICTS_FILE = REPO / "packs" / "wenzhou" / "districts.geojson"
# A point in 鹿城区 (near 五马街).
LUCHENG = (120.6555, 28.0167)


def orders(category: str, district: str, department: str, n: int) -> list[dict[str, str]]:
    row = {"category": category, "district": district, "lon": "", "lat": "",
           "department": department}  # fmt: skip
    return [dict(row) for _ in range(n)]


def no_coordinates(lon: float, lat: float) -> str | None:
    raise AssertionError("district_of must not be called when the district is given")


def by_department(rules: list[Rule]) -> dict[str, Rule]:
    return {rule.department_code: rule for rule in rules}


def test_the_majority_department_of_a_pair_becomes_a_district_rule():
    rows = (
        orders("garbage", "330302", "um-330302", 8)
        + orders("garbage", "330302", "urban-management", 2)
        + orders("garbage", "330303", "um-330303", 6)
    )
    rules, report = learn_rules(rows, district_of=no_coordinates)
    learned = by_department(rules)
    assert learned["um-330302"].categories == {"garbage"}
    assert learned["um-330302"].districts == {"330302"}
    assert learned["um-330303"].districts == {"330303"}
    # City-wide, um-330302 handled 8 of 16 garbage orders: half is not a majority.
    assert "urban-management" not in learned
    assert any("no city-wide majority for garbage" in line for line in report)


def test_a_pair_without_a_clear_handler_is_skipped_and_reported():
    rows = orders("streetlight", "330304", "um-330304", 5) + orders(
        "streetlight", "330304", "power", 5
    )
    rows += orders("pollution", "330304", "eco-330304", 11) + orders(
        "pollution", "330304", "ecology-environment", 9
    )  # 55 %: below the default 60 %
    rules, report = learn_rules(rows, district_of=no_coordinates)
    assert not [rule for rule in rules if rule.districts]
    ambiguous = [line for line in report if line.startswith("ambiguous, skipped")]
    assert len(ambiguous) == 2
    assert any("pollution@330304" in line and "eco-330304 11/20" in line for line in ambiguous)
    assert learn_rules(rows, district_of=no_coordinates, min_share=0.55)[0][0].districts == {
        "330304"
    }


def test_pairs_with_fewer_than_min_count_orders_learn_nothing():
    rows = orders("manhole-cover", "330305", "um-330305", 4)
    rules, report = learn_rules(rows, district_of=no_coordinates)
    assert rules == []
    assert "0 learned, 1 with fewer than 5 orders" in report[1]
    rules, _ = learn_rules(rows, district_of=no_coordinates, min_count=4)
    assert rules and rules[0].department_code == "um-330305"


def test_fallbacks_follow_all_district_rules():
    rows = (
        orders("waterlogging", "330302", "water", 20)
        + orders("waterlogging", "330381", "water-330381", 6)
        + orders("water-supply", "330381", "water-330381", 6)
        + orders("water-supply", "330382", "water-330382", 6)
        + orders("water-supply", "330383", "water", 30)
    )
    rules, report = learn_rules(rows, district_of=no_coordinates)
    assert [r.position for r in rules] == [10, 20, 30, 40, 50]
    district_rules, fallback = rules[:-1], rules[-1]
    # 瑞安 handles both categories itself: one rule for both; 乐清 only water-supply.
    assert {(r.department_code, r.categories, r.districts) for r in district_rules} == {
        ("water", frozenset({"waterlogging"}), frozenset({"330302"})),
        ("water-330381", frozenset({"waterlogging", "water-supply"}), frozenset({"330381"})),
        ("water-330382", frozenset({"water-supply"}), frozenset({"330382"})),
        ("water", frozenset({"water-supply"}), frozenset({"330383"})),
    }
    assert (fallback.department_code, fallback.districts) == ("water", frozenset())
    assert fallback.categories == {"waterlogging", "water-supply"}
    assert report[-1] == "5 rules: 4 for districts, 1 city-wide"


def test_districts_with_the_same_department_and_categories_share_a_rule():
    rows = orders("fire-hazard", "330302", "fire-rescue", 5) + orders(
        "fire-hazard", "330303", "fire-rescue", 5
    )
    rows += orders("fire-hazard", "330324", "fire-330324", 12)
    rules, _ = learn_rules(rows, district_of=no_coordinates)
    learned = by_department([rule for rule in rules if rule.districts])
    assert learned["fire-rescue"].districts == {"330302", "330303"}
    assert learned["fire-330324"].districts == {"330324"}


def test_orders_with_only_coordinates_use_district_of():
    seen: list[tuple[float, float]] = []

    def district_of(lon: float, lat: float) -> str | None:
        seen.append((lon, lat))
        return "330302" if lon < 120.7 else None

    rows = [
        {"category": "garbage", "district": "", "lon": "120.6", "lat": "28.0",
         "department": "um-330302"}
        for _ in range(5)
    ] + [
        {"category": "garbage", "district": "", "lon": "121.0", "lat": "28.0",
         "department": "urban-management"},
        {"category": "garbage", "district": "", "lon": "", "lat": "", "department": "x"},
        {"category": "", "district": "330302", "lon": "", "lat": "", "department": "x"},
        {"category": "garbage", "district": "", "lon": "east", "lat": "28", "department": "x"},
    ]  # fmt: skip
    rules, report = learn_rules(rows, district_of=district_of)
    assert seen == [(120.6, 28.0)] * 5 + [(121.0, 28.0)]
    assert (rules[0].department_code, rules[0].districts) == ("um-330302", {"330302"})
    # 5 of the 8 garbage orders: also the city-wide majority.
    assert (rules[1].department_code, rules[1].districts) == ("um-330302", frozenset())
    assert report[0].startswith("read 9 orders: 1 without category or department skipped, 3")


def test_a_point_in_lucheng_is_found_by_the_real_district_index():
    district_of = district_codes_of(DistrictIndex.from_geojson(DISTRICTS_FILE))
    assert district_of(*LUCHENG) == "330302"
    lon, lat = (str(v) for v in LUCHENG)
    rows = [
        {"category": "streetlight", "district": "", "lon": lon, "lat": lat,
         "department": "urban-management-330302"}
    ] * 6  # fmt: skip
    rules, _ = learn_rules(rows, district_of=district_of)
    context = RoutingContext("streetlight", "330302", "normal", datetime(2024, 6, 3, tzinfo=UTC))
    assert route(rules, context, triage="t").department_code == "urban-management-330302"


def test_rules_written_to_csv_read_back(tmp_path):
    rows = orders("garbage", "330302", "um-330302", 6) + orders("garbage", "330303", "um", 6)
    rules, _ = learn_rules(rows, district_of=no_coordinates)
    path = tmp_path / "rules.csv"
    write_rules_csv(rules, path)
    with open(path, newline="", encoding="utf-8") as handle:
        assert parse_rules(csv.DictReader(handle)) == rules


def test_the_command_line_writes_rules_and_prints_the_report(tmp_path, capsys):
    orders_path, out = tmp_path / "orders.csv", tmp_path / "rules.csv"
    with open(orders_path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, ["category", "district", "lon", "lat", "department"])
        writer.writeheader()
        writer.writerows(orders("greenery", "", "um-330302", 5))
        for row in writer_rows_with_point(5):
            writer.writerow(row)
    hub_cli(["routing", "learn", str(orders_path), str(out), "--districts", str(DISTRICTS_FILE)])
    assert "read 10 orders" in capsys.readouterr().out
    with open(out, newline="", encoding="utf-8") as handle:
        rules = parse_rules(csv.DictReader(handle))
    # 鹿城's five orders give a district rule; all ten the city-wide fallback.
    assert [(r.department_code, r.districts) for r in rules] == [
        ("um-330302", {"330302"}),
        ("um-330302", frozenset()),
    ]


def writer_rows_with_point(n: int) -> list[dict[str, str]]:
    lon, lat = (str(v) for v in LUCHENG)
    return [{"category": "greenery", "district": "", "lon": lon, "lat": lat,
             "department": "um-330302"}] * n  # fmt: skip


@pytest.mark.parametrize("share", [0.5, 0.6])
def test_a_tie_is_never_learned(share):
    rows = orders("garbage", "330302", "a", 5) + orders("garbage", "330302", "b", 5)
    rules, _ = learn_rules(rows, district_of=no_coordinates, min_share=share)
    assert rules == []
