"""Alarm rules as pure logic: one state machine per (device, alarm type), fed that device's
readings in the order they arrive. No I/O: the caller keeps each ``AlarmState`` (in a changelog,
through ``to_dict``/``from_dict``) and publishes the ``AlarmChange`` records.

Time is data time throughout: durations, alarm times and rates come from the readings' own
timestamps, never from when they were processed, so a replay or a backlog gives the same alarms.

The rules, where a choice had to be made:

- **Severity bands.** A rule has levels, one per severity. A level is *satisfied* when its
  condition has held for its ``for_s``; it *holds* when its condition is true now. The most
  severe satisfied level (or the rate rule) raises or escalates. ``for_s`` gates going up only.
- **Duration.** "Held for ``for_s``" means every reading since the first one that met the
  condition met it too; a reading that breaks it restarts that level's clock. The engine cannot
  see between readings, so a gap between two readings that both meet the condition counts as
  held. The alarm's time is the timestamp of the reading that completed the duration.
- **De-escalation** (ThingsBoard keeps the highest severity until the alarm clears,
  thingsboard/thingsboard#5508; its users ask for this). While active, when the most severe
  level that holds is below the alarm's severity, the alarm steps down to it; with
  ``deescalate_after_s`` only once no level at its severity has held for that long (time in
  the hysteresis band counts), which stops a value wandering around a band's edge from flapping
  between two severities.
- **Clearing and hysteresis.** Without ``clear``, the alarm clears at the first reading at which
  no level holds (and the rate rule is quiet). With ``clear``, it clears only once ``clear`` has
  held for its ``for_s`` with no level holding; in between (the hysteresis band: below every
  level, not yet clear) the alarm stays exactly as it is, severity included.
- **Rate of change.** ``|Δvalue| / Δt`` per minute between this reading and the previous
  in-order one; at or above ``rate_per_min`` it counts as a satisfied level of
  ``severity_on_rate`` for this reading (no duration), combined with the bands by taking the
  higher severity.
- **Order.** A reading whose timestamp is not after the last one processed for this state is
  ignored: no change, state unchanged. Late readings never rewrite what was decided, and
  duplicates (the SDK re-sends, QoS 1 redelivers) are harmless.
- **Not numbers.** NaN and ±inf are refused by the parser upstream; here they are ignored.
- **One alarm.** The engine never raises while its state has an active alarm; one state per
  (device, alarm type) is the caller's invariant.
- **No data.** Each reading arms a deadline, ``last reading's ts + timeout``; if it passes with
  no newer reading the alarm is raised once, timed at the deadline (the data time at which the
  silence exceeded the timeout, not when the timer happened to fire). The next newer reading
  clears it (``on_reading``).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

Severity = Literal["warning", "minor", "major", "critical"]
Op = Literal[">", ">=", "<", "<="]
ChangeKind = Literal["raised", "escalated", "deescalated", "cleared"]

SEVERITIES: tuple[Severity, ...] = ("warning", "minor", "major", "critical")  # ascending
RANK: dict[str, int] = {severity: rank for rank, severity in enumerate(SEVERITIES)}
_COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}


def _check_condition(op: str, value: float, for_s: float) -> None:
    if op not in _COMPARE:
        raise ValueError(f"unknown operator {op!r}")
    if not math.isfinite(value):
        raise ValueError("a threshold must be finite")
    if not (math.isfinite(for_s) and for_s >= 0):
        raise ValueError("for_s must be a finite number of seconds ≥ 0")


def _check_severity(severity: str) -> None:
    if severity not in RANK:
        raise ValueError(f"unknown severity {severity!r}")


@dataclass(frozen=True)
class Level:
    """One severity band of a threshold rule: ``value <op> threshold`` held for ``for_s``."""

    severity: Severity
    op: Op
    value: float
    for_s: float = 0.0
    for_ms: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_severity(self.severity)
        _check_condition(self.op, self.value, self.for_s)
        object.__setattr__(self, "for_ms", round(self.for_s * 1000))


@dataclass(frozen=True)
class Condition:
    """A rule's clear condition: ``value <op> threshold`` held for ``for_s``."""

    op: Op
    value: float
    for_s: float = 0.0
    for_ms: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_condition(self.op, self.value, self.for_s)
        object.__setattr__(self, "for_ms", round(self.for_s * 1000))


@dataclass(frozen=True)
class AlarmRule:
    alarm_type: str  # e.g. "high-water-level"
    key: str  # the telemetry key, e.g. "water_level"
    levels: tuple[Level, ...] = ()  # any order given; kept most severe first
    clear: Condition | None = None  # None: clears as soon as no level holds
    rate_per_min: float | None = None
    severity_on_rate: Severity = "major"
    deescalate_after_s: float = 0.0
    deescalate_ms: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.levels and self.rate_per_min is None:
            raise ValueError(f"{self.alarm_type}: a rule needs levels or a rate")
        severities = [level.severity for level in self.levels]
        if len(set(severities)) != len(severities):
            raise ValueError(f"{self.alarm_type}: one level per severity")
        if self.rate_per_min is not None and not (
            math.isfinite(self.rate_per_min) and self.rate_per_min > 0
        ):
            raise ValueError(f"{self.alarm_type}: rate_per_min must be finite and > 0")
        _check_severity(self.severity_on_rate)
        if not (math.isfinite(self.deescalate_after_s) and self.deescalate_after_s >= 0):
            raise ValueError(f"{self.alarm_type}: deescalate_after_s must be ≥ 0")
        ordered = tuple(sorted(self.levels, key=lambda level: RANK[level.severity], reverse=True))
        object.__setattr__(self, "levels", ordered)
        object.__setattr__(self, "deescalate_ms", round(self.deescalate_after_s * 1000))


@dataclass(frozen=True)
class NoDataRule:
    timeout_s: float  # per device: its inactivity timeout
    alarm_type: str = "no-data"
    severity: Severity = "major"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.timeout_s) and self.timeout_s > 0):
            raise ValueError("timeout_s must be finite and > 0")
        _check_severity(self.severity)


@dataclass(slots=True)
class AlarmState:
    """What one (device, alarm type) remembers between readings."""

    active: Severity | None = None  # the active alarm's severity; None when there is none
    raised_at_ms: int | None = None
    changed_at_ms: int | None = None  # when ``active`` last took its value
    # Per level (by severity): the data time since which its condition has held.
    pending: dict[str, int] = field(default_factory=dict)
    clear_since_ms: int | None = None  # since when the clear condition has held
    lower_since_ms: int | None = None  # since when no level at the active severity has held
    last_ts_ms: int | None = None  # the last reading processed; older ones are ignored
    last_value: float | None = None

    def copy(self) -> AlarmState:
        return AlarmState(
            self.active,
            self.raised_at_ms,
            self.changed_at_ms,
            dict(self.pending),
            self.clear_since_ms,
            self.lower_since_ms,
            self.last_ts_ms,
            self.last_value,
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; ``from_dict`` of it is an equal state."""
        return {
            "active": self.active,
            "raised_at_ms": self.raised_at_ms,
            "changed_at_ms": self.changed_at_ms,
            "pending": dict(self.pending),
            "clear_since_ms": self.clear_since_ms,
            "lower_since_ms": self.lower_since_ms,
            "last_ts_ms": self.last_ts_ms,
            "last_value": self.last_value,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AlarmState:
        active = data.get("active")
        if active is not None:
            _check_severity(active)
        pending = {str(severity): int(ts) for severity, ts in (data.get("pending") or {}).items()}
        for severity in pending:
            _check_severity(severity)
        last_value = data.get("last_value")
        return cls(
            active=active,
            raised_at_ms=_int_or_none(data.get("raised_at_ms")),
            changed_at_ms=_int_or_none(data.get("changed_at_ms")),
            pending=pending,
            clear_since_ms=_int_or_none(data.get("clear_since_ms")),
            lower_since_ms=_int_or_none(data.get("lower_since_ms")),
            last_ts_ms=_int_or_none(data.get("last_ts_ms")),
            last_value=None if last_value is None else float(last_value),
        )


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


@dataclass(frozen=True)
class AlarmChange:
    kind: ChangeKind
    alarm_type: str
    severity: Severity | None  # the new severity; None when cleared
    previous: Severity | None
    at_ms: int  # the data time that caused it
    value: float | None
    reason: str  # e.g. "water_level 5.3 > 5 for 120 s"


def evaluate(
    rule: AlarmRule, state: AlarmState | None, ts_ms: int, value: float
) -> tuple[AlarmState, list[AlarmChange]]:
    """One reading of ``rule.key`` through the rule: the new state and what changed (at most
    one change). ``state`` is not modified; an ignored reading returns it as it was."""
    if state is None:
        state = AlarmState()
    if not math.isfinite(value) or (state.last_ts_ms is not None and ts_ms <= state.last_ts_ms):
        return state, []
    new = state.copy()
    pending = new.pending
    satisfied: Level | None = None  # the most severe level held for its for_s
    holding: Level | None = None  # the most severe level whose condition is true now
    for level in rule.levels:
        if _COMPARE[level.op](value, level.value):
            start = pending.setdefault(level.severity, ts_ms)
            if holding is None:
                holding = level
            if satisfied is None and ts_ms - start >= level.for_ms:
                satisfied = level
        else:
            pending.pop(level.severity, None)
    rate: float | None = None
    if rule.rate_per_min is not None and state.last_ts_ms is not None:
        assert state.last_value is not None
        per_min = abs(value - state.last_value) * 60_000 / (ts_ms - state.last_ts_ms)
        if per_min >= rule.rate_per_min:
            rate = per_min
    new.last_ts_ms, new.last_value = ts_ms, value

    target, why = _strongest(rule, satisfied, rate, value, ts_ms, pending)
    active = new.active
    if active is None:
        if target is None:
            return new, []
        new.active, new.raised_at_ms, new.changed_at_ms = target, ts_ms, ts_ms
        new.clear_since_ms = new.lower_since_ms = None
        return new, [AlarmChange("raised", rule.alarm_type, target, None, ts_ms, value, why)]
    if target is not None and RANK[target] > RANK[active]:
        new.active, new.changed_at_ms = target, ts_ms
        new.clear_since_ms = new.lower_since_ms = None
        return new, [AlarmChange("escalated", rule.alarm_type, target, active, ts_ms, value, why)]

    band, why = _strongest(rule, holding, rate, value, ts_ms, None)
    if band is not None:
        new.clear_since_ms = None
        if RANK[band] >= RANK[active]:
            new.lower_since_ms = None
            return new, []
        lower_since = ts_ms if new.lower_since_ms is None else new.lower_since_ms
        if ts_ms - lower_since < rule.deescalate_ms:
            new.lower_since_ms = lower_since
            return new, []
        if rule.deescalate_ms:
            why += f", below {active} for {_seconds(ts_ms - lower_since)} s"
        new.active, new.changed_at_ms, new.lower_since_ms = band, ts_ms, None
        return new, [AlarmChange("deescalated", rule.alarm_type, band, active, ts_ms, value, why)]

    if new.lower_since_ms is None:
        new.lower_since_ms = ts_ms
    clear = rule.clear
    if clear is None:
        why = f"{rule.key} {value:g}: no level holds"
    elif _COMPARE[clear.op](value, clear.value):
        clear_since = ts_ms if new.clear_since_ms is None else new.clear_since_ms
        if ts_ms - clear_since < clear.for_ms:
            new.clear_since_ms = clear_since
            return new, []
        why = f"{rule.key} {value:g} {clear.op} {clear.value:g}"
        if clear.for_ms:
            why += f" for {_seconds(ts_ms - clear_since)} s"
    else:  # the hysteresis band: below every level, not yet clear
        new.clear_since_ms = None
        return new, []
    cleared = AlarmState(pending=pending, last_ts_ms=ts_ms, last_value=value)
    return cleared, [AlarmChange("cleared", rule.alarm_type, None, active, ts_ms, value, why)]


def _strongest(
    rule: AlarmRule,
    level: Level | None,
    rate: float | None,
    value: float,
    ts_ms: int,
    pending: dict[str, int] | None,
) -> tuple[Severity | None, str]:
    """The higher of a level's and the rate rule's severity, and why (the level wins a tie).
    With ``pending``, the reason says how long the level's condition has held."""
    if rate is not None and (level is None or RANK[rule.severity_on_rate] > RANK[level.severity]):
        return rule.severity_on_rate, (
            f"{rule.key} changing {rate:.3g}/min ≥ {rule.rate_per_min:g}/min"
        )
    if level is None:
        return None, ""
    why = f"{rule.key} {value:g} {level.op} {level.value:g}"
    if pending is not None and level.for_ms:
        why += f" for {_seconds(ts_ms - pending[level.severity])} s"
    return level.severity, why


def _seconds(ms: int) -> str:
    return f"{ms / 1000:g}"


def _iso(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, UTC).isoformat(timespec="milliseconds")


def no_data_deadline(rule: NoDataRule, last_ts_ms: int) -> int:
    """When the no-data alarm fires if nothing newer than ``last_ts_ms`` arrives."""
    return last_ts_ms + round(rule.timeout_s * 1000)


def on_deadline(
    rule: NoDataRule, state: AlarmState | None, last_ts_ms: int, now_ms: int
) -> tuple[AlarmState, list[AlarmChange]]:
    """The deadline armed by the reading at ``last_ts_ms``, checked at ``now_ms``: raises the
    alarm once if it has passed and no newer reading has been seen; otherwise no change."""
    if state is None:
        state = AlarmState()
    deadline = no_data_deadline(rule, last_ts_ms)
    superseded = state.last_ts_ms is not None and state.last_ts_ms > last_ts_ms
    if superseded or state.active is not None or now_ms < deadline:
        return state, []
    new = state.copy()
    new.active, new.raised_at_ms, new.changed_at_ms = rule.severity, deadline, deadline
    new.last_ts_ms = last_ts_ms
    why = f"no data for {rule.timeout_s:g} s after {_iso(last_ts_ms)}"
    return new, [AlarmChange("raised", rule.alarm_type, rule.severity, None, deadline, None, why)]


def on_reading(
    rule: NoDataRule, state: AlarmState | None, ts_ms: int
) -> tuple[AlarmState, list[AlarmChange]]:
    """A reading of the device, any key: remembered (so older deadlines are stale), and it
    clears an active no-data alarm. Re-arming the deadline is the caller's."""
    if state is None:
        state = AlarmState()
    previous = state.last_ts_ms
    if previous is not None and ts_ms <= previous:
        return state, []
    if state.active is None:
        return AlarmState(last_ts_ms=ts_ms), []
    why = f"data at {_iso(ts_ms)}"
    if previous is not None:
        why += f" after {_seconds(ts_ms - previous)} s of silence"
    change = AlarmChange("cleared", rule.alarm_type, None, state.active, ts_ms, None, why)
    return AlarmState(last_ts_ms=ts_ms), [change]


# Wenzhou's device profiles (packs/wenzhou/device-profiles.csv; no-data timeouts are the
# profiles' default inactivity timeouts, a device's own overrides them). Starting values for the
# owning departments to tune. Units are in the keys' names and in the comments.
PROFILES: dict[str, tuple[list[AlarmRule], NoDataRule]] = {
    "water-level": (
        [
            # River, canal and underpass gauges: level in metres above the gauge's datum. A change
            # of 0.2 m a minute (12 m/h) either way is a flash flood, a gate or a failed sensor.
            AlarmRule(
                "high-water-level",
                "water_level_m",
                (
                    Level("warning", ">=", 4.0, for_s=120),
                    Level("major", ">=", 4.5, for_s=120),
                    Level("critical", ">=", 5.0, for_s=60),
                ),
                clear=Condition("<", 3.8, for_s=600),
                rate_per_min=0.2,
                severity_on_rate="major",
                deescalate_after_s=600,
            ),
        ],
        NoDataRule(600),
    ),
    "rainfall": (
        [
            # Intensity in mm/h over the gauge's last hour; 20 mm/h is 短时强降水.
            AlarmRule(
                "heavy-rainfall",
                "rainfall_mm_h",
                (
                    Level("warning", ">=", 20, for_s=600),
                    Level("major", ">=", 50, for_s=300),
                    Level("critical", ">=", 80),
                ),
                clear=Condition("<", 10, for_s=1800),
                deescalate_after_s=1800,
            ),
        ],
        NoDataRule(1800),
    ),
    "smoke": (
        [
            # The detector's own alarm flag, 0 or 1: it already debounces, so no duration.
            AlarmRule(
                "smoke-alarm",
                "smoke_alarm",
                (Level("critical", ">=", 1),),
                clear=Condition("<=", 0, for_s=120),
            ),
            # Obscuration in %/m, for detectors that report it: rising smoke before the flag.
            AlarmRule(
                "smoke-density",
                "smoke_obscuration_pct_m",
                (
                    Level("warning", ">=", 1.5, for_s=60),
                    Level("major", ">=", 3, for_s=30),
                    Level("critical", ">=", 6),
                ),
                clear=Condition("<", 1, for_s=300),
            ),
        ],
        NoDataRule(3600),
    ),
    "combustible-gas": (
        [
            # Concentration in %LEL; 25 %LEL is GB 50493's ceiling for a detector's first alarm
            # level. A leak is urgent: no duration above warning.
            AlarmRule(
                "combustible-gas",
                "gas_lel_pct",
                (
                    Level("warning", ">=", 10, for_s=30),
                    Level("major", ">=", 20),
                    Level("critical", ">=", 25),
                ),
                clear=Condition("<", 5, for_s=300),
                rate_per_min=10,
                severity_on_rate="major",
            ),
        ],
        NoDataRule(600),
    ),
    "building-tilt": (
        [
            # Tilt in degrees from the installation baseline; 0.57° is a 1 % lean. Readings come
            # every ten minutes: twenty minutes is three readings, so one gust is not an alarm.
            AlarmRule(
                "building-tilt",
                "tilt_deg",
                (
                    Level("warning", ">=", 0.2, for_s=1200),
                    Level("major", ">=", 0.4, for_s=1200),
                    Level("critical", ">=", 0.6, for_s=600),
                ),
                clear=Condition("<", 0.15, for_s=3600),
                rate_per_min=0.01,  # 0.1° in ten minutes: the building is moving now
                severity_on_rate="critical",
                deescalate_after_s=3600,
            ),
        ],
        NoDataRule(3600),
    ),
    "building-settlement": (
        [
            # Cumulative settlement in mm from the baseline; it does not recover by itself, so the
            # alarm clears after a re-survey resets the baseline.
            AlarmRule(
                "building-settlement",
                "settlement_mm",
                (
                    Level("warning", ">=", 20, for_s=3600),
                    Level("major", ">=", 30, for_s=3600),
                    Level("critical", ">=", 50),
                ),
                clear=Condition("<", 15),
                rate_per_min=0.05,  # 3 mm in an hour: excavation or a void nearby
                severity_on_rate="major",
            ),
        ],
        NoDataRule(14400),
    ),
    "manhole-cover": (
        [
            # The cover's open flag, 0 or 1: an open well on a road swallows people in a flood.
            AlarmRule(
                "manhole-open",
                "cover_open",
                (Level("critical", ">=", 1),),
                clear=Condition("<=", 0, for_s=60),
            ),
            # The cover's tilt in degrees: a lifted or displaced cover before it is open.
            AlarmRule(
                "manhole-displaced",
                "cover_tilt_deg",
                (
                    Level("warning", ">=", 5, for_s=60),
                    Level("major", ">=", 15),
                ),
                clear=Condition("<", 3, for_s=300),
            ),
        ],
        NoDataRule(3600),
    ),
    "hydrant-pressure": (
        [
            # Outlet pressure in MPa; GB 50974 asks 0.10 MPa of a municipal hydrant in a fire.
            # A jump of 0.1 MPa a minute is the hydrant opened or a burst main.
            AlarmRule(
                "low-hydrant-pressure",
                "pressure_mpa",
                (
                    Level("warning", "<", 0.2, for_s=600),
                    Level("major", "<", 0.14, for_s=300),
                    Level("critical", "<", 0.10, for_s=300),
                ),
                clear=Condition(">=", 0.22, for_s=600),
                rate_per_min=0.1,
                severity_on_rate="minor",
                deescalate_after_s=600,
            ),
        ],
        NoDataRule(1800),
    ),
}
