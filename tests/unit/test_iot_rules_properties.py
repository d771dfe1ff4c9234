"""Properties of the alarm rule engine (streams/iot/rules.py) over any readings: out of order,
repeated, not numbers at all, huge, around the thresholds; random rules and the pack's own.

What must hold, read off the engine's rules (its module docstring):

- it never raises, and a reading changes at most one thing, at that reading's time;
- a reading not after the last one processed, or not a finite number, changes nothing at all,
  so a sequence gives what its in-order, numeric readings alone give;
- replaying readings from the state they led to (also through the changelog) changes nothing,
  and a restart from a stored state gives the alarms an uninterrupted run gives;
- an alarm is raised only when none is active, changes severity or clears only while one is,
  and every severity is one the rule defines, for a reason the reading itself shows;
- each reading does exactly what the rules say, worked out again from the whole history
  (durations, rates, hysteresis, de-escalation): no alarm early, late, missed or mis-graded;
- the state says what the last reading showed (which levels hold, since when);
- only data time counts: shifting every timestamp shifts the changes and nothing else;
- no-data alarms: raised once per silence, at its deadline, cleared only by a newer reading.

They found two ways to raise: an integer too large for a float (OverflowError, in the worker's
conversion and in the engine) and a no-data reason for a time outside datetime's years 1-9999.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterable, Iterator
from typing import Any

import orjson
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from streams.iot.agents import _number
from streams.iot.rules import (
    RANK,
    SEVERITIES,
    AlarmChange,
    AlarmRule,
    AlarmState,
    Condition,
    Level,
    NoDataRule,
    evaluate,
    no_data_deadline,
    on_deadline,
    on_reading,
)
from tests.unit.helpers import pack_rule_sets

PROPERTY = settings(
    max_examples=500,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
T0 = 1_789_000_000_000  # 2026-09-10T00:26:40Z, epoch ms
PACK_RULES = [rule for rules in pack_rule_sets().values() for rule in rules]
Reading = tuple[int, Any]  # (epoch ms, the value as the worker hands it over, or not)


# Rules ---------------------------------------------------------------------------------------

THRESHOLDS = st.integers(-6, 6).map(float) | st.floats(-1e3, 1e3) | st.sampled_from([-1e300, 1e300])
DURATIONS = st.sampled_from([0, 0, 0.001, 30, 60, 120, 600])
COMPARE = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}
OPS = st.sampled_from(list(COMPARE))


@st.composite
def random_rules(draw: st.DrawFn) -> AlarmRule:
    """Any rule the engine accepts: bands need not be ordered or even make sense together."""
    severities = draw(st.lists(st.sampled_from(SEVERITIES), max_size=4, unique=True))
    levels = tuple(
        Level(severity, draw(OPS), draw(THRESHOLDS), draw(DURATIONS)) for severity in severities
    )
    clear = draw(st.none() | st.builds(Condition, OPS, THRESHOLDS, DURATIONS))
    rate = draw(st.none() | st.sampled_from([0.01, 0.5, 1.0, 2.0, 1e6]))
    if not levels and rate is None:
        rate = 1.0
    return AlarmRule(
        "t", "k", levels, clear, rate, draw(st.sampled_from(SEVERITIES)), draw(DURATIONS)
    )


RULES = random_rules() | st.sampled_from(PACK_RULES)


# Readings ------------------------------------------------------------------------------------

NUMBERS = (
    st.integers(-7, 7).map(float)  # on and around the generated thresholds
    | st.floats(-10, 10)
    | st.floats(-100, 100)  # around the pack's thresholds
    | st.floats(allow_nan=True, allow_infinity=True)  # huge, tiny, NaN, ±inf
    | st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -1e308, 5e-324, -0.0])
)
# What a reading's value can be before the worker's conversion: any JSON scalar, or missing.
RAW_VALUES = (
    NUMBERS
    | st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.sampled_from([10**400, -(10**400), "5.5", "", "NaN"])
)
# Milliseconds since the previous reading: mostly forward, some repeated or late; often whole
# half-minutes, so that durations and rates land exactly on their limits.
STEPS = (
    st.integers(0, 20).map(lambda n: n * 30_000)
    | st.integers(0, 600_000)
    | st.integers(-120_000, 0)
    | st.sampled_from([0, 1, -1])
)


@st.composite
def readings(draw: st.DrawFn, values: st.SearchStrategy[Any] = NUMBERS) -> list[Reading]:
    ts = draw(st.integers(0, 2 * T0))
    out = []
    for step, value in draw(st.lists(st.tuples(STEPS, values), max_size=50)):
        ts += step
        out.append((ts, value))
    return out


def numeric(value: Any) -> float | None:
    """The value as the worker hands it to the engine (None: the reading is skipped)."""
    return _number(value)


def numeric_readings(sequence: Iterable[Reading]) -> Iterator[tuple[int, float]]:
    """The readings the worker hands to the engine, as (time, number)."""
    for ts, raw in sequence:
        value = numeric(raw)
        if value is not None:
            yield ts, value


def feed(
    rule: AlarmRule, state: AlarmState | None, sequence: Iterable[Reading]
) -> tuple[AlarmState | None, list[tuple[int, Any, list[AlarmChange]]]]:
    """Every reading through ``evaluate`` as the worker does; the final state and, per reading
    evaluated, (ts, value, its changes)."""
    seen = []
    for ts, value in numeric_readings(sequence):
        state, changes = evaluate(rule, state, ts, value)
        seen.append((ts, value, changes))
    return state, seen


def all_changes(seen: list[tuple[int, Any, list[AlarmChange]]]) -> list[AlarmChange]:
    return [change for _, _, changes in seen for change in changes]


def holds(op: str, value: float, threshold: float) -> bool:
    return bool(COMPARE[op](value, threshold))


# The engine never raises, and does at most one thing per reading -----------------------------


@PROPERTY
@given(RULES, readings(RAW_VALUES))
def test_any_readings_go_through_without_an_error(rule: AlarmRule, sequence: list[Reading]) -> None:
    for _, raw in sequence:
        value = numeric(raw)
        assert value is None or math.isfinite(value)
    _, seen = feed(rule, None, sequence)
    for ts, value, changes in seen:
        assert len(changes) <= 1
        for change in changes:
            assert (change.alarm_type, change.at_ms, change.value) == (rule.alarm_type, ts, value)
            assert change.reason


@PROPERTY
@given(RULES, readings(), st.sampled_from([math.nan, math.inf, -math.inf, 10**400, -(10**400)]))
def test_the_engine_itself_ignores_what_is_not_a_finite_number(
    rule: AlarmRule, sequence: list[Reading], value: float
) -> None:
    """Even without the worker's conversion: an int too large for a float included."""
    state, _ = feed(rule, None, sequence)
    ts = (state.last_ts_ms if state and state.last_ts_ms is not None else T0) + 1_000
    after, changes = evaluate(rule, state, ts, value)
    assert changes == [] and after is (state or after) and after == (state or AlarmState())


# Late, repeated and non-numeric readings change nothing ---------------------------------------


@PROPERTY
@given(RULES, readings(RAW_VALUES))
def test_a_late_or_repeated_reading_leaves_the_very_same_state(
    rule: AlarmRule, sequence: list[Reading]
) -> None:
    state: AlarmState | None = None
    for ts, value in numeric_readings(sequence):
        stale = state is not None and state.last_ts_ms is not None and ts <= state.last_ts_ms
        before = None if state is None else state.to_dict()
        new, changes = evaluate(rule, state, ts, value)
        if stale:
            assert new is state and changes == []
        assert state is None or state.to_dict() == before  # never modified in place
        state = new


@PROPERTY
@given(RULES, readings(RAW_VALUES))
def test_a_sequence_gives_what_its_in_order_numeric_readings_alone_give(
    rule: AlarmRule, sequence: list[Reading]
) -> None:
    kept, latest = [], None
    for ts, raw in sequence:
        value = numeric(raw)
        if value is not None and (latest is None or ts > latest):
            kept.append((ts, raw))
            latest = ts
    state, seen = feed(rule, None, sequence)
    alone_state, alone = feed(rule, None, kept)
    assert state == alone_state
    assert all_changes(seen) == all_changes(alone)


# Replays change nothing ----------------------------------------------------------------------


def through_changelog(state: AlarmState | None) -> AlarmState | None:
    """As the worker stores and reloads it (orjson, the compacted iot.rules.state topic)."""
    return (
        None if state is None else AlarmState.from_dict(orjson.loads(orjson.dumps(state.to_dict())))
    )


@PROPERTY
@given(RULES, readings(RAW_VALUES), st.data())
def test_replaying_readings_from_the_state_they_led_to_changes_nothing(
    rule: AlarmRule, sequence: list[Reading], data: st.DataObject
) -> None:
    state, _ = feed(rule, None, sequence)
    stored = through_changelog(state)
    assert stored == state
    replay = data.draw(st.permutations(sequence)) if sequence else []
    for start in (state, stored):
        again, seen = feed(rule, start, replay)
        assert again == state and all_changes(seen) == []


@PROPERTY
@given(RULES, readings(RAW_VALUES), st.data())
def test_a_restart_anywhere_gives_the_same_alarms(
    rule: AlarmRule, sequence: list[Reading], data: st.DataObject
) -> None:
    """A worker restarting reloads the state stored after some readings and replays from its
    last committed offset, at or before them: the replay's alarms are exactly those an
    uninterrupted run has after that state, none twice and none lost."""
    straight_state, straight = feed(rule, None, sequence)
    cut = data.draw(st.integers(0, len(sequence)))
    replayed_from = data.draw(st.integers(0, cut))  # the batch that was being done
    state, first = feed(rule, None, sequence[:cut])
    state, replayed = feed(rule, through_changelog(state), sequence[replayed_from:])
    assert state == straight_state
    assert all_changes(first) + all_changes(replayed) == all_changes(straight)


# One alarm at a time, in the rule's own severities --------------------------------------------


def rate_of(previous: tuple[int, float] | None, ts: int, value: float) -> float | None:
    if previous is None:
        return None
    last_ts, last_value = previous
    return abs(value - last_value) * 60_000 / (ts - last_ts)


@PROPERTY
@given(RULES, readings(RAW_VALUES))
def test_an_alarm_is_raised_once_until_cleared_in_the_rules_severities_for_what_the_reading_shows(
    rule: AlarmRule, sequence: list[Reading]
) -> None:
    defined = {level.severity for level in rule.levels}
    if rule.rate_per_min is not None:
        defined.add(rule.severity_on_rate)
    by_severity = {level.severity: level for level in rule.levels}
    state: AlarmState | None = None
    active: str | None = None
    previous: tuple[int, float] | None = None  # the last reading processed
    for ts, value in numeric_readings(sequence):
        state, changes = evaluate(rule, state, ts, value)
        if previous is not None and ts <= previous[0]:
            assert changes == []
            continue
        rate = rate_of(previous, ts, value)
        fast = rule.rate_per_min is not None and rate is not None and rate >= rule.rate_per_min
        holding = [level for level in rule.levels if holds(level.op, value, level.value)]
        previous = (ts, value)
        for change in changes:
            assert change.previous == active
            if change.kind == "cleared":
                assert active is not None and change.severity is None
                assert not holding and not fast
                assert rule.clear is None or holds(rule.clear.op, value, rule.clear.value)
            else:
                assert change.severity in defined
                level = by_severity.get(change.severity)
                shown = level is not None and holds(level.op, value, level.value)
                assert shown or (fast and change.severity == rule.severity_on_rate)
            if change.kind == "raised":
                assert active is None
            elif change.kind == "escalated":
                assert active is not None and RANK[change.severity] > RANK[active]
            elif change.kind == "deescalated":
                assert active is not None and RANK[change.severity] < RANK[active]
                # to the most severe band that holds now (or the rate's, if higher)
                strongest = max((RANK[level.severity] for level in holding), default=-1)
                if fast:
                    strongest = max(strongest, RANK[rule.severity_on_rate])
                assert RANK[change.severity] == strongest
            active = change.severity
        assert state.active == active


def expected_change(
    rule: AlarmRule, active: str | None, history: list[tuple[int, float]]
) -> tuple[str, str | None] | None:
    """What the module docstring's rules say the last of ``history`` (every reading processed,
    in order) does to an alarm at ``active``: (kind, severity), or None. Worked out from the
    whole history each time, not from a state carried along as the engine does."""
    ts, value = history[-1]
    fast = False
    if rule.rate_per_min is not None and len(history) > 1:
        rate = rate_of(history[-2], ts, value)
        fast = rate is not None and rate >= rule.rate_per_min

    def held_since(condition: Level | Condition | None, upto: int) -> int | None:
        """When the run of readings meeting ``condition`` that ends at ``upto`` began."""
        since = None
        for at, v in reversed(history[: upto + 1]):
            if condition is not None and not holds(condition.op, v, condition.value):
                break
            since = at
        return since

    last = len(history) - 1
    satisfied = [
        RANK[level.severity]
        for level in rule.levels
        if (since := held_since(level, last)) is not None and ts - since >= level.for_ms
    ]
    rate_rank = [RANK[rule.severity_on_rate]] if fast else []
    target = max(satisfied + rate_rank, default=-1)
    if active is None:
        return ("raised", SEVERITIES[target]) if target >= 0 else None
    if target > RANK[active]:
        return "escalated", SEVERITIES[target]

    def band(index: int) -> int:
        """The most severe band that holds at a reading (the rate counted where it was fast)."""
        at, v = history[index]
        rates = []
        if rule.rate_per_min is not None and index > 0:
            rate = rate_of(history[index - 1], at, v)
            if rate is not None and rate >= rule.rate_per_min:
                rates = [RANK[rule.severity_on_rate]]
        holding = [RANK[level.severity] for level in rule.levels if holds(level.op, v, level.value)]
        return max(holding + rates, default=-1)

    def run_start(meets: Any) -> int:
        """The time of the first reading of the run, ending now, whose readings all meet
        ``meets``; every change of the alarm breaks such runs (see the test below)."""
        start = ts
        for index in range(last, -1, -1):
            if not meets(index):
                break
            start = history[index][0]
        return start

    now = band(last)
    if now >= 0:
        if now >= RANK[active]:
            return None
        lower_since = run_start(lambda index: band(index) < RANK[active])
        return ("deescalated", SEVERITIES[now]) if ts - lower_since >= rule.deescalate_ms else None
    clear = rule.clear
    if clear is None:
        return "cleared", None
    if not holds(clear.op, value, clear.value):
        return None
    clear_since = run_start(
        lambda index: band(index) < 0 and holds(clear.op, history[index][1], clear.value)
    )
    return ("cleared", None) if ts - clear_since >= clear.for_ms else None


@PROPERTY
@given(RULES, readings())
# Limits met exactly, which random readings seldom do: a rate equal to rate_per_min raises; time
# in the hysteresis band counts towards deescalate_after_s.
@example(
    AlarmRule("t", "k", rate_per_min=1.0), [(T0, 0.0), (T0 + 60_000, 1.0), (T0 + 120_000, 1.5)]
)
@example(
    AlarmRule("t", "k", (Level("warning", ">", 2), Level("major", ">", 4)),
              clear=Condition("<", 0), deescalate_after_s=30),
    [(T0, 5.0), (T0 + 30_000, 1.0), (T0 + 60_000, 3.0)],
)  # fmt: skip
def test_each_reading_does_exactly_what_the_rules_say(
    rule: AlarmRule, sequence: list[Reading]
) -> None:
    """Against `expected_change`, which reads durations, hysteresis and de-escalation off the
    history: an alarm is never late, early, missed or of another severity. (A run of readings
    counted for de-escalating or clearing never spans a change: the reading that raises or
    escalates holds a band at least as severe as the alarm's, and so does the one that
    de-escalates, so each breaks the run.)"""
    state: AlarmState | None = None
    history: list[tuple[int, float]] = []
    for ts, raw in sequence:
        value = numeric(raw)
        if value is None or (history and ts <= history[-1][0]):
            continue
        active = state.active if state else None
        history.append((ts, value))
        state, changes = evaluate(rule, state, ts, value)
        got = [(change.kind, change.severity) for change in changes]
        expected = expected_change(rule, active, history)
        assert got == ([] if expected is None else [expected]), (ts, value)


@PROPERTY
@given(RULES, readings(RAW_VALUES))
def test_the_state_says_what_the_last_reading_showed(
    rule: AlarmRule, sequence: list[Reading]
) -> None:
    state: AlarmState | None = None
    for ts, value in numeric_readings(sequence):
        state, _ = evaluate(rule, state, ts, value)
        assert state.last_ts_ms is not None and state.last_value is not None
        last = state.last_value
        # Exactly the levels that hold at the last value are pending, each since then or before.
        assert set(state.pending) == {
            level.severity for level in rule.levels if holds(level.op, last, level.value)
        }
        assert all(since <= state.last_ts_ms for since in state.pending.values())
        if state.active is None:
            assert (state.raised_at_ms, state.changed_at_ms) == (None, None)
            assert (state.clear_since_ms, state.lower_since_ms) == (None, None)
        else:
            assert state.raised_at_ms is not None and state.changed_at_ms is not None
            assert state.raised_at_ms <= state.changed_at_ms <= state.last_ts_ms
            for since in (state.clear_since_ms, state.lower_since_ms):
                assert since is None or state.changed_at_ms <= since <= state.last_ts_ms


@PROPERTY
@given(RULES, readings(), st.integers(-T0, T0))
def test_only_data_time_counts(rule: AlarmRule, sequence: list[Reading], shift: int) -> None:
    _, seen = feed(rule, None, sequence)
    _, shifted = feed(rule, None, [(ts + shift, value) for ts, value in sequence])
    moved = [
        AlarmChange(
            c.kind, c.alarm_type, c.severity, c.previous, c.at_ms + shift, c.value, c.reason
        )
        for c in all_changes(seen)
    ]
    assert all_changes(shifted) == moved


# No data -------------------------------------------------------------------------------------

# (kind, seconds on the clock since the previous event): readings may be late or repeated.
NO_DATA_EVENTS = st.lists(
    st.tuples(st.sampled_from(["reading", "late reading", "deadline"]), st.integers(0, 900)),
    max_size=40,
)


@PROPERTY
@given(
    st.sampled_from([0.5, 60, 300, 600, 86_400]),
    st.integers(-(2**62), 2**62) | st.integers(0, 2 * T0),
    NO_DATA_EVENTS,
)
def test_no_data_is_raised_once_per_silence_at_its_deadline_and_cleared_by_newer_data(
    timeout_s: float, start: int, events: list[tuple[str, int]]
) -> None:
    rule = NoDataRule(timeout_s)
    state: AlarmState | None = None
    clock, latest, active = start, None, False
    for kind, step_s in events:
        clock += step_s * 1000
        if kind == "deadline":
            if latest is None:
                continue
            state, changes = on_deadline(rule, state, latest, clock)
            again, repeated = on_deadline(rule, state, latest, clock)  # a tick fires twice
            assert repeated == [] and again == state
            due = clock >= no_data_deadline(rule, latest)
            if active or not due:
                assert changes == []
            else:
                [raised] = changes
                assert (raised.kind, raised.severity, raised.previous) == ("raised", "major", None)
                assert raised.at_ms == no_data_deadline(rule, latest)
                active = True
        else:
            ts = clock - (step_s * 1000 if kind == "late reading" else 0)
            newer = latest is None or ts > latest
            state, changes = on_reading(rule, state, ts)
            if newer and active:
                [cleared] = changes
                assert (cleared.kind, cleared.previous, cleared.at_ms) == ("cleared", "major", ts)
                active = False
            else:
                assert changes == []
            latest = ts if newer else latest
        assert state is not None and (state.active is not None) == active
        assert state.last_ts_ms == latest
