"""The alarm rule engine (streams/iot/rules.py): thresholds, duration, hysteresis, de-escalation,
rate of change, order, no-data, and its state through the changelog."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.pack import load_pack
from hub.settings import get_settings
from streams.iot.rules import (
    MAX_RULES,
    RANK,
    AlarmChange,
    AlarmRule,
    AlarmState,
    Condition,
    Level,
    NoDataRule,
    RuleError,
    evaluate,
    no_data_deadline,
    on_deadline,
    on_reading,
    parse_rule_set,
    rule_from_dict,
    rule_set_to_json,
    rule_to_dict,
)
from tests.unit.helpers import pack_rule_sets

RULE_SETS = pack_rule_sets()
T0 = int(datetime(2026, 9, 14, 8, 0, tzinfo=UTC).timestamp() * 1000)  # a typhoon morning
WATER = AlarmRule(
    "high-water-level",
    "water_level_m",
    (Level("warning", ">", 4.0), Level("major", ">", 4.5), Level("critical", ">", 5.0)),
    clear=Condition("<", 3.8),
)
BANDS = AlarmRule(  # the same bands, clearing as soon as no level holds
    "high-water-level",
    "water_level_m",
    (Level("warning", ">", 4.0), Level("major", ">", 4.5), Level("critical", ">", 5.0)),
)


def at(seconds: float) -> int:
    return T0 + round(seconds * 1000)


def run(rule, readings, state=None):
    """Feeds (seconds after T0, value) readings; returns the final state and every change."""
    changes: list[AlarmChange] = []
    for seconds, value in readings:
        state, new = evaluate(rule, state, at(seconds), value)
        changes += new
    return state, changes


def kinds(changes):
    return [(c.kind, c.severity) for c in changes]


def every_minute(*values):
    return [(60 * i, v) for i, v in enumerate(values)]


# Condition kinds


@pytest.mark.parametrize(
    ("op", "threshold", "below", "on", "beyond"),
    [
        (">", 5.0, 4.9, 5.0, 5.1),
        (">=", 5.0, 4.9, 5.0, 5.1),
        ("<", 0.1, 0.11, 0.1, 0.09),
        ("<=", 0.1, 0.11, 0.1, 0.09),
    ],
)
def test_each_operator_raises_beyond_its_threshold_and_on_it_only_when_inclusive(
    op, threshold, below, on, beyond
):
    rule = AlarmRule("t", "k", (Level("major", op, threshold),))
    assert run(rule, every_minute(below))[1] == []
    on_changes = run(rule, every_minute(on))[1]
    assert kinds(on_changes) == ([("raised", "major")] if "=" in op else [])
    [raised] = run(rule, every_minute(below, beyond))[1]
    assert (raised.kind, raised.severity, raised.at_ms, raised.value) == (
        "raised",
        "major",
        at(60),
        beyond,
    )
    assert raised.reason == f"k {beyond:g} {op} {threshold:g}"


def test_a_reading_raises_the_most_severe_band_it_is_in_at_once():
    state, changes = run(WATER, every_minute(5.3))
    assert kinds(changes) == [("raised", "critical")]
    assert changes[0].reason == "water_level_m 5.3 > 5"
    assert state.active == "critical" and state.raised_at_ms == T0


def test_bands_escalate_and_deescalate_then_the_alarm_clears():
    _, changes = run(BANDS, every_minute(3.9, 4.2, 4.7, 5.2, 4.8, 4.3, 4.6, 3.9))
    assert kinds(changes) == [
        ("raised", "warning"),
        ("escalated", "major"),
        ("escalated", "critical"),
        ("deescalated", "major"),
        ("deescalated", "warning"),
        ("escalated", "major"),
        ("cleared", None),
    ]
    assert [c.previous for c in changes] == [
        None,
        "warning",
        "major",
        "critical",
        "major",
        "warning",
        "major",
    ]
    assert changes[3].reason == "water_level_m 4.8 > 4.5"
    assert changes[-1].reason == "water_level_m 3.9: no level holds"
    assert [c.at_ms for c in changes] == [at(60 * i) for i in (1, 2, 3, 4, 5, 6, 7)]


def test_deescalation_waits_out_deescalate_after_s_so_a_band_edge_does_not_flap():
    rule = AlarmRule(
        "high-water-level",
        "water_level_m",
        (Level("warning", ">", 4.0), Level("major", ">", 4.5)),
        deescalate_after_s=300,
    )
    wobbling = every_minute(4.6, 4.4, 4.6, 4.4, 4.6, 4.4, 4.4, 4.4, 4.4, 4.4, 4.4)
    _, changes = run(rule, wobbling)
    assert kinds(changes) == [("raised", "major"), ("deescalated", "warning")]
    # below major continuously from the reading at 300 s, five minutes later at 600 s
    assert changes[1].at_ms == at(600)
    assert changes[1].reason == "water_level_m 4.4 > 4, below major for 300 s"


def test_deescalation_counts_time_in_the_hysteresis_band_as_below():
    rule = AlarmRule(
        "high-water-level",
        "water_level_m",
        (Level("warning", ">", 4.0), Level("major", ">", 4.5)),
        clear=Condition("<", 3.8),
        deescalate_after_s=120,
    )
    _, changes = run(rule, every_minute(4.6, 3.9, 3.9, 4.1))
    assert kinds(changes) == [("raised", "major"), ("deescalated", "warning")]
    assert changes[1].at_ms == at(180)


# Duration


def test_duration_raises_at_the_reading_that_completes_it():
    rule = AlarmRule("high-water-level", "water_level_m", (Level("warning", ">", 4.0, for_s=120),))
    _, changes = run(rule, every_minute(4.1, 4.2, 4.3, 4.4))
    [raised] = changes
    assert raised.at_ms == at(120) and raised.value == 4.3
    assert raised.reason == "water_level_m 4.3 > 4 for 120 s"


def test_a_reading_that_breaks_the_condition_restarts_its_duration():
    rule = AlarmRule("high-water-level", "water_level_m", (Level("warning", ">", 4.0, for_s=120),))
    state, changes = run(rule, every_minute(4.1, 4.2, 3.9, 4.1, 4.2))
    assert changes == [] and state.pending == {"warning": at(180)}
    _, changes = run(rule, [(300, 4.3)], state)
    assert [c.at_ms for c in changes] == [at(300)]


def test_a_gap_between_two_readings_that_both_hold_counts_as_held():
    rule = AlarmRule("t", "k", (Level("major", ">", 1, for_s=600),))
    assert [c.at_ms for c in run(rule, [(0, 2), (3600, 2)])[1]] == [at(3600)]


def test_each_band_has_its_own_duration_and_a_quick_lower_band_raises_first():
    rule = AlarmRule("t", "k", (Level("warning", ">", 1), Level("critical", ">", 2, for_s=180)))
    _, changes = run(rule, every_minute(2.5, 2.5, 2.5, 2.5))
    assert kinds(changes) == [("raised", "warning"), ("escalated", "critical")]
    assert changes[1].at_ms == at(180) and changes[1].reason == "k 2.5 > 2 for 180 s"


def test_a_band_held_but_not_yet_for_its_duration_keeps_the_alarm_without_escalating():
    rule = AlarmRule("t", "k", (Level("warning", ">", 1), Level("major", ">", 2, for_s=600)))
    state, changes = run(rule, every_minute(1.5, 2.5, 2.5))
    assert kinds(changes) == [("raised", "warning")] and state.active == "warning"


# Hysteresis and flapping


def test_with_clear_the_alarm_holds_below_the_raise_threshold_until_clear_holds():
    state, changes = run(WATER, every_minute(4.2, 3.95, 3.85, 3.8))
    assert kinds(changes) == [("raised", "warning")] and state.active == "warning"
    _, changes = run(WATER, [(240, 3.79)], state)
    assert kinds(changes) == [("cleared", None)]
    assert changes[0].previous == "warning" and changes[0].reason == "water_level_m 3.79 < 3.8"


def test_in_the_hysteresis_band_the_severity_is_kept():
    state, changes = run(WATER, every_minute(5.2, 3.9, 3.9))
    assert kinds(changes) == [("raised", "critical")] and state.active == "critical"


def test_clear_must_hold_for_its_duration_and_a_reading_above_restarts_it():
    rule = AlarmRule(
        "high-water-level",
        "water_level_m",
        (Level("warning", ">", 4.0),),
        clear=Condition("<", 3.8, for_s=600),
    )
    readings = [(0, 4.2), (60, 3.7), (400, 3.6), (500, 3.9), (560, 3.7), (1100, 3.6), (1160, 3.5)]
    _, changes = run(rule, readings)
    assert kinds(changes) == [("raised", "warning"), ("cleared", None)]
    assert changes[1].at_ms == at(1160) and changes[1].reason == "water_level_m 3.5 < 3.8 for 600 s"


def test_a_level_holding_keeps_the_alarm_even_where_clear_would_hold():
    overlapping = AlarmRule("t", "k", (Level("warning", ">", 4.0),), clear=Condition("<", 5.0))
    assert kinds(run(overlapping, every_minute(4.5, 4.2, 3.0))[1]) == [
        ("raised", "warning"),
        ("cleared", None),
    ]


def test_a_value_oscillating_around_the_raise_threshold_raises_once_and_never_clears():
    oscillating = every_minute(*[4.0 + (0.15 if i % 2 else -0.15) for i in range(200)])
    _, changes = run(WATER, oscillating)
    assert kinds(changes) == [("raised", "warning")]
    # the same oscillation without a clear condition flaps, which is what clear is for
    assert len(run(BANDS, oscillating)[1]) == 199


# Rate of change


RISING = AlarmRule(
    "high-water-level",
    "water_level_m",
    (Level("warning", ">", 4.0), Level("critical", ">", 5.0)),
    rate_per_min=0.2,
    severity_on_rate="major",
)


def test_a_fast_change_raises_the_rate_severity_and_clears_when_it_slows():
    _, changes = run(RISING, [(0, 1.0), (60, 1.1), (120, 1.4), (180, 1.45)])
    assert kinds(changes) == [("raised", "major"), ("cleared", None)]
    assert changes[0].at_ms == at(120)
    assert changes[0].reason == "water_level_m changing 0.3/min ≥ 0.2/min"


def test_the_rate_uses_data_time_and_either_direction():
    # 0.3 m in 30 s is 0.6 m/min; a drop counts as much as a rise
    assert kinds(run(RISING, [(0, 2.0), (30, 1.7)])[1]) == [("raised", "major")]
    # the same 0.3 m over three minutes is not fast
    assert run(RISING, [(0, 2.0), (180, 1.7)])[1] == []


def test_rate_and_bands_combine_by_the_higher_severity():
    _, changes = run(RISING, [(0, 3.9), (60, 4.3), (120, 4.35), (180, 5.2), (240, 5.25)])
    assert kinds(changes) == [
        ("raised", "major"),  # 0.4 m/min, above warning's band
        ("deescalated", "warning"),  # slower again, still in the warning band
        ("escalated", "critical"),  # both fast and critical: the band, the higher, wins
    ]
    assert changes[2].reason == "water_level_m 5.2 > 5"


def test_a_rate_only_rule_works_without_levels():
    rule = AlarmRule("settling-fast", "settlement_mm", rate_per_min=0.05, severity_on_rate="major")
    _, changes = run(rule, [(0, 10.0), (3600, 14.0), (7200, 14.5)])
    assert kinds(changes) == [("raised", "major"), ("cleared", None)]


# Order, duplicates and values that are not numbers


def test_a_reading_not_after_the_last_one_is_ignored():
    state, _ = run(BANDS, every_minute(4.2, 4.7))
    for ts, value in [(at(30), 5.5), (at(60), 3.0), (at(0), 9.9)]:
        after, changes = evaluate(BANDS, state, ts, value)
        assert after is state and changes == []
    assert state.active == "major" and state.last_ts_ms == at(60)


def test_duplicates_are_harmless():
    state, changes = run(BANDS, every_minute(4.2, 4.7))
    again, more = run(BANDS, every_minute(4.2, 4.7), state)
    assert kinds(changes) == [("raised", "warning"), ("escalated", "major")]
    assert more == [] and again == state


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_values_that_are_not_finite_numbers_are_ignored(value):
    state, _ = run(BANDS, every_minute(4.7))
    after, changes = evaluate(BANDS, state, at(60), value)
    assert after is state and changes == []
    assert evaluate(BANDS, None, at(0), value)[1] == []


def test_evaluate_leaves_the_state_it_was_given_as_it_was():
    state, _ = run(WATER, every_minute(4.2))
    before = state.to_dict()
    evaluate(WATER, state, at(60), 5.5)
    assert state.to_dict() == before


# No data


NO_DATA = NoDataRule(600)


def test_the_deadline_is_the_last_reading_plus_the_timeout():
    assert no_data_deadline(NO_DATA, at(0)) == at(600)
    assert no_data_deadline(NoDataRule(0.5), 1000) == 1500


def test_no_data_raises_once_at_the_deadline_and_a_later_reading_clears_it():
    state, changes = on_reading(NO_DATA, None, at(0))
    assert changes == []
    assert on_deadline(NO_DATA, state, at(0), at(599.999))[1] == []
    state, [raised] = on_deadline(NO_DATA, state, at(0), at(640))
    assert (raised.kind, raised.severity, raised.at_ms, raised.alarm_type) == (
        "raised",
        "major",
        at(600),
        "no-data",
    )
    assert raised.reason == "no data for 600 s after 2026-09-14T08:00:00.000+00:00"
    assert on_deadline(NO_DATA, state, at(0), at(1200))[1] == []  # once
    assert on_reading(NO_DATA, state, at(0))[1] == []  # not newer: no proof of life
    state, [cleared] = on_reading(NO_DATA, state, at(900))
    assert (cleared.kind, cleared.previous, cleared.at_ms) == ("cleared", "major", at(900))
    assert cleared.reason == "data at 2026-09-14T08:15:00.000+00:00 after 900 s of silence"
    assert state.active is None and state.last_ts_ms == at(900)


def test_a_deadline_armed_by_an_older_reading_does_nothing():
    state, _ = on_reading(NO_DATA, None, at(0))
    state, _ = on_reading(NO_DATA, state, at(300))
    assert on_deadline(NO_DATA, state, at(0), at(700)) == (state, [])
    assert kinds(on_deadline(NO_DATA, state, at(300), at(900))[1]) == [("raised", "major")]


def test_a_deadline_without_state_still_fires_after_a_restart():
    state, changes = on_deadline(NoDataRule(60, severity="critical"), None, at(0), at(61))
    assert kinds(changes) == [("raised", "critical")] and state.last_ts_ms == at(0)


# State through the changelog


def round_trip(state: AlarmState) -> AlarmState:
    return AlarmState.from_dict(json.loads(json.dumps(state.to_dict())))


def test_state_round_trips_mid_sequence_with_the_same_outputs():
    rule = AlarmRule(
        "high-water-level",
        "water_level_m",
        (Level("warning", ">", 4.0, for_s=120), Level("major", ">", 4.5, for_s=60)),
        clear=Condition("<", 3.8, for_s=180),
        rate_per_min=0.5,
        deescalate_after_s=120,
    )
    readings = every_minute(
        3.9, 4.1, 4.2, 4.6, 4.7, 4.8, 4.4, 4.2, 4.1, 3.7, 3.9, 3.6, 3.5, 3.4, 3.3, 3.2, 4.0
    )
    _, straight = run(rule, readings)
    assert kinds(straight) == [
        ("raised", "warning"),
        ("escalated", "major"),
        ("deescalated", "warning"),
        ("cleared", None),
        ("raised", "major"),
    ]
    for cut in range(1, len(readings)):
        state, first = run(rule, readings[:cut])
        stored = round_trip(state)
        assert stored == state
        _, rest = run(rule, readings[cut:], stored)
        assert first + rest == straight


def test_from_dict_refuses_an_unknown_severity():
    with pytest.raises(ValueError, match="unknown severity"):
        AlarmState.from_dict({"active": "apocalyptic"})
    assert AlarmState.from_dict({}) == AlarmState()


# Rules that cannot work are refused


@pytest.mark.parametrize(
    "make",
    [
        lambda: AlarmRule("t", "k"),
        lambda: AlarmRule("t", "k", (Level("major", ">", 1), Level("major", ">", 2))),
        lambda: AlarmRule("t", "k", (Level("major", "=", 1),)),
        lambda: AlarmRule("t", "k", (Level("major", ">", math.nan),)),
        lambda: AlarmRule("t", "k", (Level("major", ">", 1, for_s=-1),)),
        lambda: AlarmRule("t", "k", rate_per_min=0),
        lambda: AlarmRule("t", "k", rate_per_min=1, severity_on_rate="fatal"),
        lambda: NoDataRule(0),
    ],
)
def test_impossible_rules_are_refused(make):
    with pytest.raises(ValueError):
        make()


def test_levels_are_kept_most_severe_first_whatever_order_they_were_given_in():
    rule = AlarmRule(
        "t", "k", (Level("warning", ">", 1), Level("critical", ">", 3), Level("major", ">", 2))
    )
    assert [level.severity for level in rule.levels] == ["critical", "major", "warning"]


# Wenzhou's profiles


def test_every_profile_of_the_pack_has_its_rules():
    pack = load_pack(get_settings().pack_dir)
    assert list(RULE_SETS) == [p.code for p in pack.device_profiles]
    assert all(RULE_SETS.values())
    assert all(rule.note for rules in RULE_SETS.values() for rule in rules)  # why, for tuners


@pytest.mark.parametrize("code", sorted(RULE_SETS))
def test_a_profiles_clear_condition_lies_beyond_its_lowest_band(code):
    rules = RULE_SETS[code]
    assert len({rule.alarm_type for rule in rules}) == len(rules)
    for rule in rules:
        if rule.clear is None or not rule.levels:
            continue
        lowest = rule.levels[-1]
        if lowest.op.startswith(">"):
            assert rule.clear.op.startswith("<") and rule.clear.value <= lowest.value
        else:
            assert rule.clear.op.startswith(">") and rule.clear.value >= lowest.value


def test_a_typhoon_at_a_river_gauge_raises_escalates_steps_down_and_clears():
    [rule] = RULE_SETS["water-level"]
    rising = [3.5 + 0.05 * i for i in range(36)]  # 3.5 m to 5.25 m, 5 cm a minute
    falling = [5.25 - 0.025 * i for i in range(1, 81)]  # back down to 3.25 m, slower
    _, changes = run(rule, every_minute(*rising, *falling))
    assert kinds(changes) == [
        ("raised", "warning"),
        ("escalated", "major"),
        ("escalated", "critical"),
        ("deescalated", "major"),
        ("deescalated", "warning"),
        ("cleared", None),
    ]
    assert changes[0].reason == "water_level_m 4.1 >= 4 for 120 s"


def test_hydrant_pressure_alarms_on_low_pressure():
    [rule] = RULE_SETS["hydrant-pressure"]
    readings = [(300 * i, 0.09) for i in range(4)]
    _, changes = run(rule, [(-300, 0.3), *readings])
    # major and critical need 300 s below their thresholds, warning 600 s: critical comes first
    assert kinds(changes) == [("raised", "critical")] and changes[0].at_ms == at(300)
    assert changes[0].reason == "pressure_mpa 0.09 < 0.1 for 300 s"


# Rules as JSON (the pack's device-rules.json, device_profiles.rules)

PACK_RULES = [rule for rules in RULE_SETS.values() for rule in rules]


@pytest.mark.parametrize("rule", PACK_RULES, ids=[rule.alarm_type for rule in PACK_RULES])
def test_every_pack_rule_survives_a_json_round_trip(rule):
    data = json.loads(json.dumps(rule_to_dict(rule)))
    again = rule_from_dict(data)
    assert again == rule and again.note == rule.note
    assert [level.for_ms for level in again.levels] == [level.for_ms for level in rule.levels]
    assert again.deescalate_ms == rule.deescalate_ms
    assert rule_to_dict(again) == data


def test_a_rule_set_round_trips_and_absent_fields_take_the_defaults():
    for rules in RULE_SETS.values():
        assert parse_rule_set(json.loads(json.dumps(rule_set_to_json(rules)))) == rules
    minimal = {"alarm_type": "t", "key": "k", "levels": [{"severity": "major", "op": ">",
                                                           "value": 1}]}  # fmt: skip
    assert rule_from_dict(minimal) == AlarmRule("t", "k", (Level("major", ">", 1),))
    rate_only = rule_from_dict({"alarm_type": "t", "key": "k", "rate_per_min": 2, "clear": None})
    assert rate_only == AlarmRule("t", "k", rate_per_min=2) and rate_only.note == ""


def _water(**changes):
    """The pack's river gauge rule as JSON (levels critical, major, warning), changed."""
    data = rule_to_dict(RULE_SETS["water-level"][0])
    for path, value in changes.items():
        target, *keys = data, *path.split("__")
        for key in keys[:-1]:
            target = target[int(key)] if isinstance(target, list) else target[key]
        last = keys[-1]
        if value is DELETE:
            del target[last]
        elif isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value
    return data


DELETE = object()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"colour": "red"}, "colour: unknown field"),
        ({"levels__0__colour": "red"}, r"levels\[0\]\.colour: unknown field"),
        ({"clear__colour": "red"}, r"clear\.colour: unknown field"),
        ({"levels__0__value": True}, r"levels\[0\]\.value: must be a finite number"),
        ({"levels__1__for_s": False}, r"levels\[1\]\.for_s: must be a number ≥ 0"),
        ({"levels__1__for_s": -1}, r"levels\[1\]\.for_s: must be a number ≥ 0"),
        ({"levels__0__value": math.nan}, r"levels\[0\]\.value: must be a finite number"),
        ({"clear__value": math.inf}, r"clear\.value: must be a finite number"),
        ({"levels__2__value": 10**400}, r"levels\[2\]\.value: must be a finite number"),
        ({"levels__0__value": "5"}, r"levels\[0\]\.value: must be a finite number"),
        ({"levels__2__for_s": math.nan}, r"levels\[2\]\.for_s: must be a number ≥ 0"),
        ({"deescalate_after_s": -5}, "deescalate_after_s: must be a number ≥ 0"),
        ({"deescalate_after_s": None}, "deescalate_after_s: must be a number ≥ 0"),
        ({"levels__1__severity": "fatal"},
         r"levels\[1\]\.severity: must be one of warning, minor, major, critical"),
        ({"severity_on_rate": "fatal"}, "severity_on_rate: must be one of warning, minor"),
        ({"levels__1__severity": "critical"}, r"levels\[1\]\.severity: critical is used twice"),
        ({"levels__0__op": "=="}, r"levels\[0\]\.op: must be one of >, >=, <, <="),
        ({"clear__op": "!="}, r"clear\.op: must be one of >, >=, <, <="),
        ({"levels__0__op": DELETE}, r"levels\[0\]\.op: required"),
        ({"clear": 3.8}, "clear: must be an object"),
        ({"rate_per_min": 0}, "rate_per_min: must be a number > 0"),
        ({"rate_per_min": "0.2"}, "rate_per_min: must be a number > 0"),
        ({"levels": {"critical": 5}}, "levels: must be a list"),
        ({"levels": [], "rate_per_min": None}, "levels: a rule needs levels or a rate_per_min"),
        ({"levels__0": 5}, r"levels\[0\]: must be an object"),
        ({"alarm_type": "no-data"}, "alarm_type: no-data is reserved"),
        ({"alarm_type": ""}, "alarm_type: must be a non-empty string of at most 64"),
        ({"alarm_type": "x" * 65}, "alarm_type: must be a non-empty string of at most 64"),
        ({"key": 7}, "key: must be a non-empty string"),
        ({"key": DELETE}, "key: required"),
        ({"note": None}, "note: must be a string"),
        ({"note": "x" * 1001}, "note: must be a string of at most 1000"),
    ],
)  # fmt: skip
def test_a_bad_rule_is_refused_naming_its_field(changes, message):
    with pytest.raises(RuleError, match=f"^{message}"):
        rule_from_dict(_water(**changes))
    # In a set, the same message after the rule's index.
    with pytest.raises(RuleError, match=f"^rules\\[1\\]\\.{message}"):
        parse_rule_set([rule_to_dict(RULE_SETS["rainfall"][0]), _water(**changes)])


def test_a_rule_that_is_not_an_object_is_refused():
    with pytest.raises(RuleError, match=r"^rule: must be an object"):
        rule_from_dict(["high-water-level"])  # type: ignore[arg-type]
    with pytest.raises(RuleError, match=r"^rules\[0\]: must be an object"):
        parse_rule_set(["high-water-level"])


def test_a_bad_rule_set_is_refused():
    water = rule_to_dict(RULE_SETS["water-level"][0])
    with pytest.raises(RuleError, match=r"^rules: must be a list"):
        parse_rule_set({"high-water-level": water})
    with pytest.raises(RuleError, match=r"^rules\[1\]\.alarm_type: high-water-level is used twice"):
        parse_rule_set([water, dict(water, key="other_key")])
    many = [dict(water, alarm_type=f"t{i}") for i in range(MAX_RULES + 1)]
    assert len(parse_rule_set(many[:MAX_RULES])) == MAX_RULES
    with pytest.raises(RuleError, match=f"^rules: at most {MAX_RULES} rules, not {MAX_RULES + 1}"):
        parse_rule_set(many)
    assert issubclass(RuleError, ValueError)


# Properties


@st.composite
def rules(draw):
    severities = draw(st.lists(st.sampled_from(list(RANK)), min_size=0, max_size=4, unique=True))
    op = draw(st.sampled_from([">", ">=", "<", "<="]))
    thresholds = sorted(
        draw(
            st.lists(
                st.integers(-5, 5), min_size=len(severities), max_size=len(severities), unique=True
            )
        )
    )
    if op.startswith("<"):
        thresholds.reverse()
    ordered = sorted(severities, key=RANK.__getitem__)
    durations = st.sampled_from([0, 0, 30, 60, 120])
    levels = tuple(
        Level(s, op, t, draw(durations)) for s, t in zip(ordered, thresholds, strict=True)
    )
    clear = draw(
        st.none()
        | st.builds(
            Condition, st.sampled_from(["<", ">", "<=", ">="]), st.integers(-6, 6), durations
        )
    )
    rate = draw(st.none() | st.sampled_from([0.5, 2.0, 5.0]))
    if not levels and rate is None:
        rate = 1.0
    return AlarmRule(
        "t", "k", levels, clear, rate, draw(st.sampled_from(list(RANK))), draw(durations)
    )


# (seconds since the previous reading, value): some late or repeated, some not numbers, most
# values whole like the generated thresholds so that readings land on and around them.
readings = st.lists(
    st.tuples(
        st.integers(-30, 120),
        st.integers(-7, 7).map(float) | st.floats(-8, 8) | st.sampled_from([math.nan, math.inf]),
    ),
    max_size=60,
)


def check_lifecycle(changes_per_reading):
    active = None
    for ts, changes in changes_per_reading:
        assert len(changes) <= 1
        for change in changes:
            assert change.at_ms == ts and change.previous == active
            if change.kind == "raised":
                assert active is None and change.severity is not None
            elif change.kind == "cleared":
                assert active is not None and change.severity is None
            elif change.kind == "escalated":
                assert active is not None and RANK[change.severity] > RANK[active]
            else:
                assert active is not None and RANK[change.severity] < RANK[active]
            active = change.severity
    return active


PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(rules(), readings)
def test_raised_and_cleared_alternate_whatever_the_readings(rule, steps):
    state, seen, ts = None, [], T0
    for step_s, value in steps:
        ts += step_s * 1000
        state, changes = evaluate(rule, state, ts, value)
        seen.append((ts, changes))
    active = check_lifecycle(seen)
    assert (state.active if state else None) == active


@PROPERTY
@given(rules(), readings)
def test_storing_the_state_after_every_reading_changes_nothing(rule, steps):
    straight, stored, ts = None, None, T0
    for step_s, value in steps:
        ts += step_s * 1000
        straight, expected = evaluate(rule, straight, ts, value)
        stored, changes = evaluate(rule, stored, ts, value)
        stored = round_trip(stored)
        assert changes == expected and stored == straight


@PROPERTY
@given(
    st.lists(
        st.tuples(st.sampled_from(["reading", "deadline"]), st.integers(-60, 900)), max_size=40
    )
)
def test_no_data_raises_and_clears_alternately(events):
    rule, state, clock, last, seen = NoDataRule(300), None, T0, None, []
    for kind, step_s in events:
        clock += abs(step_s) * 1000
        if kind == "reading":
            ts = clock + min(step_s, 0) * 1000  # sometimes late
            state, changes = on_reading(rule, state, ts)
            last = ts if last is None else max(last, ts)
        elif last is not None:
            state, changes = on_deadline(rule, state, last, clock)
        else:
            continue
        seen.append((changes[0].at_ms if changes else None, changes))
    check_lifecycle(seen)
