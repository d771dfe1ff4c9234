import doctest
import json
from dataclasses import replace
from datetime import UTC, datetime, time
from pathlib import Path

import pytest

import dispatch.routing.rules
from dispatch.routing.rules import (
    COLUMNS,
    Decision,
    RoutingContext,
    Rule,
    parse_rules,
    route,
    rules_to_rows,
    validate_rules,
)
from hub.pack import Department, Pack, Person, load_pack

REPO = Path(__file__).resolve().parents[2]
PACK_DIR = REPO / "packs" / "wenzhou"
TRIAGE = "city-dispatch-centre"
# 10:00 in Wenzhou (UTC+8) is 02:00 UTC.
DAY = datetime(2024, 6, 3, 2, 0, tzinfo=UTC)


def at_local(hour: int, minute: int = 0) -> datetime:
    """A UTC instant that is hour:minute in Asia/Shanghai on 3 June 2024."""
    return datetime(2024, 6, 3, (hour - 8) % 24, minute, tzinfo=UTC)


def ctx(
    category: str | None = "garbage",
    district: str | None = "330302",
    priority: str = "normal",
    at: datetime = DAY,
) -> RoutingContext:
    return RoutingContext(category=category, district_code=district, priority=priority, at=at)


def row(**cells: str) -> dict[str, str]:
    base = dict.fromkeys(COLUMNS, "")
    base.update({"position": "10", "name": "r", "department": "dept"})
    base.update(cells)
    return base


# --- matchers ---


def test_a_rule_without_matchers_matches_anything():
    rule = Rule(1, "all", "d")
    assert rule.matches(ctx())
    assert rule.matches(ctx(category=None, district=None, priority="low"))


def test_category_matcher():
    rule = Rule(1, "c", "d", categories=frozenset({"garbage", "streetlight"}))
    assert rule.matches(ctx(category="streetlight"))
    assert not rule.matches(ctx(category="waterlogging"))
    assert not rule.matches(ctx(category=None))  # unclassified never meets a category rule


def test_district_matcher():
    rule = Rule(1, "d", "d", districts=frozenset({"330302"}))
    assert rule.matches(ctx(district="330302"))
    assert not rule.matches(ctx(district="330303"))
    assert not rule.matches(ctx(district=None))


def test_priority_matcher():
    rule = Rule(1, "p", "d", priorities=frozenset({"urgent"}))
    assert rule.matches(ctx(priority="urgent"))
    assert not rule.matches(ctx(priority="high"))


def test_hours_are_local_time_in_shanghai():
    rule = Rule(1, "office", "d", hours=(time(9), time(17)))
    assert rule.matches(ctx(at=at_local(9)))
    assert rule.matches(ctx(at=at_local(16, 59)))
    assert not rule.matches(ctx(at=at_local(17)))  # the end is excluded
    # 10:00 UTC is 18:00 in Wenzhou: outside, though 10:00 is inside in UTC.
    assert not rule.matches(ctx(at=datetime(2024, 6, 3, 10, 0, tzinfo=UTC)))


@pytest.mark.parametrize(
    ("hour", "minute", "inside"),
    [(22, 0, True), (23, 59, True), (0, 0, True), (5, 59, True), (6, 0, False), (12, 0, False),
     (21, 59, False)],
)  # fmt: skip
def test_hours_wrap_midnight(hour, minute, inside):
    rule = Rule(1, "night", "d", hours=(time(22), time(6)))
    assert rule.matches(ctx(at=at_local(hour, minute))) is inside


def test_all_matchers_must_agree():
    rule = Rule(
        1,
        "urgent garbage in 鹿城 at night",
        "d",
        categories=frozenset({"garbage"}),
        districts=frozenset({"330302"}),
        priorities=frozenset({"urgent"}),
        hours=(time(22), time(6)),
    )
    assert rule.matches(ctx(priority="urgent", at=at_local(23)))
    assert not rule.matches(ctx(priority="normal", at=at_local(23)))
    assert not rule.matches(ctx(priority="urgent", at=at_local(12)))
    assert not rule.matches(ctx(priority="urgent", district="330303", at=at_local(23)))


def test_a_naive_time_is_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        ctx(at=datetime(2024, 6, 3, 10, 0))


def test_explain_names_the_rule_its_conditions_and_department():
    rule = Rule(3, "积水内涝·鹿城", "water", frozenset({"waterlogging"}), frozenset({"330302"}))
    assert rule.explain() == "rule 3 «积水内涝·鹿城» category=waterlogging, district=330302 → water"
    night = Rule(7, "夜间施工", "um", frozenset({"construction-noise"}), hours=(time(22), time(6)))
    assert (
        night.explain() == "rule 7 «夜间施工» category=construction-noise, hours=22:00-06:00 → um"
    )
    assert Rule(9, "兜底", "x").explain() == "rule 9 «兜底» any ticket → x"


# --- route ---

RULES = [
    Rule(30, "fallback", "urban-management", frozenset({"garbage"})),
    Rule(10, "鹿城 garbage", "um-330302", frozenset({"garbage"}), frozenset({"330302"})),
    Rule(20, "鹿城 any", "other-330302", districts=frozenset({"330302"})),
]


def test_the_first_matching_rule_by_position_wins_whatever_the_list_order():
    decision = route(RULES, ctx(), triage=TRIAGE)
    assert decision == Decision("um-330302", 10, RULES[1].explain())


def test_later_rules_catch_what_earlier_ones_do_not():
    assert route(RULES, ctx(district="330303"), triage=TRIAGE).department_code == (
        "urban-management"
    )
    assert route(RULES, ctx(category="streetlight"), triage=TRIAGE).rule_position == 20


def test_departments_that_rejected_the_ticket_are_passed_by():
    decision = route(RULES, ctx(), exclude=frozenset({"um-330302"}), triage=TRIAGE)
    assert (decision.department_code, decision.rule_position) == ("other-330302", 20)
    assert "skipped rule 10 (um-330302 rejected it)" in decision.reason
    both = route(RULES, ctx(), exclude=frozenset({"um-330302", "other-330302"}), triage=TRIAGE)
    assert both.department_code == "urban-management"


def test_no_match_goes_to_triage_and_says_what_was_routed():
    decision = route(RULES, ctx(category="pollution", district="330303"), triage=TRIAGE)
    assert decision.department_code == TRIAGE
    assert decision.rule_position is None
    assert decision.reason == (
        "no rule matched category=pollution, district=330303, priority=normal, "
        "local time 10:00: triage queue"
    )
    assert route([], ctx(category=None, district=None), triage=TRIAGE).department_code == TRIAGE


def test_when_every_match_rejected_it_triage_gets_it():
    decision = route(RULES[:2], ctx(), exclude=frozenset({"um-330302", "urban-management"}),
                     triage=TRIAGE)  # fmt: skip
    assert decision.department_code == TRIAGE
    assert "skipped rule 10" in decision.reason and "rule 30" in decision.reason


# --- parse / rows ---


def test_parse_reads_lists_hours_and_sorts_by_position():
    rules = parse_rules(
        [
            row(position="20", category="garbage | streetlight", district="330302|330303",
                priority="urgent|high", hours="22:00-06:00", department="um"),
            row(position="10", name="any", department="triage"),
        ]
    )  # fmt: skip
    assert [r.position for r in rules] == [10, 20]
    assert rules[0] == Rule(10, "any", "triage")
    assert rules[1].categories == {"garbage", "streetlight"}
    assert rules[1].districts == {"330302", "330303"}
    assert rules[1].priorities == {"urgent", "high"}
    assert rules[1].hours == (time(22), time(6))


@pytest.mark.parametrize(
    ("cells", "message"),
    [
        ({"hours": "22-06"}, "hours must be HH:MM-HH:MM"),
        ({"hours": "25:00-06:00"}, "out of range"),
        ({"hours": "08:00-08:00"}, "empty window"),
        ({"department": " "}, "empty department"),
        ({"position": "x"}, "position must be a whole number"),
        ({"position": ""}, "position must be a whole number"),
        ({"priority": "urgent|asap"}, "unknown priorities"),
    ],
)
def test_parse_errors_name_the_row(cells, message):
    rows = [row(position="1", name="ok"), row(name="bad one", **cells)]
    with pytest.raises(ValueError, match=message) as raised:
        parse_rules(rows)
    assert "row 2" in str(raised.value) and "bad one" in str(raised.value)


def test_a_position_used_twice_is_refused():
    with pytest.raises(ValueError, match=r"row 2 .*position 10 already used by row 1"):
        parse_rules([row(name="a"), row(name="b")])


def test_rows_round_trip():
    rules = parse_rules(
        [
            row(position="5", category="a|b", district="330302", priority="low",
                hours="09:30-17:00", department="x"),
            row(position="7", name="empty matchers", department="y"),
        ]
    )  # fmt: skip
    rows = rules_to_rows(rules)
    assert rows[0] == {
        "position": "5", "name": "r", "category": "a|b", "district": "330302",
        "priority": "low", "hours": "09:30-17:00", "department": "x",
    }  # fmt: skip
    assert parse_rules(rows) == rules


def test_validate_reports_unknown_codes():
    rules = [
        Rule(1, "ok", "d1", frozenset({"c1"}), frozenset({"330302"})),
        Rule(2, "bad", "nope", frozenset({"c1", "c9"}), frozenset({"999999"})),
        Rule(2, "again", "d1", priorities=frozenset({"soon"})),
    ]
    problems = validate_rules(rules, departments={"d1"}, categories={"c1"}, districts={"330302"})
    assert problems == [
        "rule 2 «bad»: unknown department nope",
        "rule 2 «bad»: unknown categories ['c9']",
        "rule 2 «bad»: unknown districts ['999999']",
        "rule 2 «again»: position 2 used twice",
        "rule 2 «again»: unknown priorities ['soon']",
    ]


def test_the_module_doctest():
    assert doctest.testmod(dispatch.routing.rules).failed == 0


# --- the Wenzhou pack ---


@pytest.fixture(scope="module")
def pack() -> Pack:
    return load_pack(PACK_DIR)


@pytest.fixture(scope="module")
def district_codes() -> set[str]:
    collection = json.loads((PACK_DIR / "districts.geojson").read_text(encoding="utf-8"))
    return {f["properties"]["code"] for f in collection["features"]}


def test_wenzhou_rules_validate_against_the_pack(pack, district_codes):
    assert pack.directory == PACK_DIR
    assert [r.position for r in pack.routing_rules] == sorted(
        r.position for r in pack.routing_rules
    )
    problems = validate_rules(
        pack.routing_rules,
        departments={d.code for d in pack.departments},
        categories={c.code for c in pack.categories},
        districts=district_codes,
    )
    assert problems == []


def test_every_category_in_every_district_routes_past_triage_except_other(pack, district_codes):
    triage = next(d.code for d in pack.departments if d.is_triage)
    for category in pack.categories:
        for district in sorted(district_codes):
            for priority in ("urgent", "high", "normal", "low"):
                for hour in (3, 12):
                    context = ctx(category.code, district, priority, at_local(hour))
                    decision = route(pack.routing_rules, context, triage=triage)
                    if category.code == "other":
                        assert decision.department_code == triage
                    else:
                        assert decision.department_code != triage, decision.reason


def test_wenzhou_district_rules_go_to_that_districts_departments(pack):
    departments = {d.code: d for d in pack.departments}
    triage = next(d.code for d in pack.departments if d.is_triage)
    for rule in pack.routing_rules:
        department = departments[rule.department_code]
        if department.level == "district":
            assert rule.districts == {department.district_code}, rule.explain()
    # A few decisions a dispatcher would expect.
    expect = [
        (ctx("garbage", "330302"), "urban-management-330302"),
        (ctx("waterlogging", "330302"), "water"),  # core districts: the city water group
        (ctx("waterlogging", "330381"), "water-330381"),  # 瑞安: its own utility
        (ctx("gas-leak", "330303", "urgent"), "gas"),
        (ctx("medical-emergency", "330329", "urgent"), "emergency-centre"),
        (ctx("building-safety", "330304", "urgent"), "fire-rescue-330304"),
        (ctx("building-safety", "330304", "high"), "housing-330304"),
        (ctx("construction-noise", "330382", at=at_local(23)), "urban-management-330382"),
        (ctx("construction-noise", "330382", at=at_local(14)), "ecology-environment-330382"),
        (ctx("food-market", "330383"), "market-regulation"),
        (ctx("garbage", None), "urban-management"),  # no district: the city-wide fallback
    ]
    for context, department in expect:
        assert route(pack.routing_rules, context, triage=triage).department_code == department


def test_a_gas_leak_the_utility_rejects_goes_to_the_districts_fire_brigade(pack):
    decision = route(
        pack.routing_rules,
        ctx("gas-leak", "330302", "urgent"),
        exclude=frozenset({"gas"}),
        triage=TRIAGE,
    )
    assert decision.department_code == "fire-rescue-330302"


# --- departments and people in the pack ---


def test_the_pack_keeps_its_municipal_departments_and_adds_district_ones(pack, district_codes):
    departments = {d.code: d for d in pack.departments}
    municipal = [
        "city-dispatch-centre", "urban-management", "water", "housing", "fire-rescue",
        "transport", "ecology-environment", "market-regulation", "emergency-centre",
    ]  # fmt: skip
    assert all(departments[code].level == "city" for code in municipal)
    assert departments["city-dispatch-centre"].is_triage
    assert {"power", "gas"} <= departments.keys()
    for district in district_codes:
        for parent in ("urban-management", "housing", "fire-rescue", "transport",
                       "ecology-environment"):  # fmt: skip
            child = departments[f"{parent}-{district}"]
            assert (child.level, child.district_code, child.parent_code) == (
                "district", district, parent
            )  # fmt: skip
    assert departments["urban-management-330302"].name == "鹿城区综合行政执法局"
    local_water = {d.district_code for d in pack.departments if d.parent_code == "water"}
    assert local_water == district_codes - {"330302", "330303", "330304"}
    assert all(d.email == f"{d.code}@ops.example.cn" and d.phone for d in pack.departments)


def test_every_department_has_a_handler_and_a_supervisor_and_city_ones_a_leader(pack):
    roles: dict[str, set[str]] = {}
    for person in pack.people:
        roles.setdefault(person.department_code, set()).add(person.role)
    for department in pack.departments:
        expected = {"handler", "supervisor"} | ({"leader"} if department.level == "city" else set())
        assert expected <= roles[department.code], department.code


def _copy_pack(tmp_path: Path) -> Path:
    for source in PACK_DIR.iterdir():
        if source.is_file():
            (tmp_path / source.name).write_bytes(source.read_bytes())
    return tmp_path


@pytest.mark.parametrize(
    ("file", "old", "new", "message"),
    [
        ("departments.csv", ",330302,urban-management,", ",330302,no-such-dept,",
         "unknown parent no-such-dept"),
        ("departments.csv", "district,330302,", "district,999999,", "unknown district 999999"),
        ("department-people.csv", "gas,值班员,handler", "gaz,值班员,handler",
         "unknown department gaz"),
        ("department-people.csv", "gas,值班员,handler", "gas,值班员,boss", "role must be one of"),
        ("department-people.csv", "gas,值班科长,supervisor", "gas,值班科长,handler",
         r"without a supervisor: \['gas'\]"),
        ("routing-rules.csv", ",emergency-centre\n", ",ambulance\n",
         "unknown department ambulance"),
        ("device-rules.json", '"severity_on_rate": "critical"', '"severity_on_rate": "fatal"',
         r"device-rules.json: profile building-tilt: rules\[0\]\.severity_on_rate: must be one of"),
        ("device-rules.json", '"for_s": 1200', '"for_s": true',
         r"profile building-tilt: rules\[0\]\.levels\[1\]\.for_s: must be a number ≥ 0"),
        ("device-rules.json", '"rainfall": [', '"rain": [',
         "device-rules.json: profile rain: not in device-profiles.csv"),
    ],
)  # fmt: skip
def test_load_pack_refuses_a_broken_pack(tmp_path, file, old, new, message):
    pack_dir = _copy_pack(tmp_path)
    path = pack_dir / file
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        load_pack(pack_dir)


def test_old_style_construction_still_works():
    department = Department("d", "部门", False)
    assert (department.level, department.district_code, department.parent_code) == (
        "city", None, None
    )  # fmt: skip
    pack = Pack("x", (0.0, 0.0, 1.0, 1.0), (department,), (), {}, {})
    assert pack.people == () and pack.routing_rules == () and pack.directory == Path()
    assert replace(Person("d", "值班员", "handler"), phone="1").phone == "1"


def test_a_profile_the_device_rules_leave_out_has_none(tmp_path):
    pack_dir = _copy_pack(tmp_path)
    full = json.loads((PACK_DIR / "device-rules.json").read_text(encoding="utf-8"))
    only_water = {"water-level": full["water-level"]}
    (pack_dir / "device-rules.json").write_text(json.dumps(only_water), encoding="utf-8")
    rules = load_pack(pack_dir).device_rules
    assert rules["water-level"] == full["water-level"]
    assert set(rules) == set(full)
    assert all(rules[code] == [] for code in set(full) - {"water-level"})
