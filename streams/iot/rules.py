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
- **Not numbers.** NaN and ±inf are refused by the parser upstream; here they are ignored, and
  so are integers too large for a float.
- **One alarm.** The engine never raises while its state has an active alarm; one state per
  (device, alarm type) is the caller's invariant.
- **No data.** Each reading arms a deadline, ``last reading's ts + timeout``; if it passes with
  no newer reading the alarm is raised once, timed at the deadline (the data time at which the
  silence exceeded the timeout, not when the timer happened to fire). The next newer reading
  clears it (``on_reading``).

The rules themselves are data: each device profile's set is a JSON list (``parse_rule_set``,
``rule_set_to_json``), seeded from the pack's ``device-rules.json`` into
``device_profiles.rules``, where operations admins edit it and the worker reads it.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar, cast

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
    # Why the thresholds are what they are (units, standards): for the people who tune them.
    note: str = field(default="", compare=False)
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
    if not _finite(value) or (state.last_ts_ms is not None and ts_ms <= state.last_ts_ms):
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


def _finite(value: float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


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
    try:
        return datetime.fromtimestamp(ts_ms / 1000, UTC).isoformat(timespec="milliseconds")
    except (ValueError, OverflowError, OSError):  # outside the years 1 to 9999
        return f"{ts_ms} ms since 1970"


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


# Rule sets as data: the pack's device-rules.json and device_profiles.rules hold a profile's
# rules as a JSON list of rule objects, edited by people, so every field is checked here and a
# refusal names the field it is about.

MAX_RULES = 32  # per profile
MAX_NAME_LENGTH = 64  # alarm types and telemetry keys (as iot_ingest.payloads.MAX_KEY_LENGTH)
MAX_NOTE_LENGTH = 1000
# The worker raises these itself; a rule of that type would share its alarm state.
RESERVED_ALARM_TYPES = frozenset({"no-data"})

_RULE_FIELDS = frozenset({"alarm_type", "key", "levels", "clear", "rate_per_min",
                          "severity_on_rate", "deescalate_after_s", "note"})  # fmt: skip
_LEVEL_FIELDS = frozenset({"severity", "op", "value", "for_s"})
_CONDITION_FIELDS = frozenset({"op", "value", "for_s"})
_T = TypeVar("_T")


class RuleError(ValueError):
    """A rule or rule set that cannot be used; the message starts with the field's path
    (``rules[0].levels[1].for_s: must be a number ≥ 0``)."""


def rule_to_dict(rule: AlarmRule) -> dict[str, Any]:
    """A JSON-ready dict with every field; ``rule_from_dict`` of it is an equal rule."""
    return {
        "alarm_type": rule.alarm_type,
        "key": rule.key,
        "levels": [{"severity": level.severity, **_condition_dict(level)} for level in rule.levels],
        "clear": None if rule.clear is None else _condition_dict(rule.clear),
        "rate_per_min": rule.rate_per_min,
        "severity_on_rate": rule.severity_on_rate,
        "deescalate_after_s": rule.deescalate_after_s,
        "note": rule.note,
    }


def _condition_dict(condition: Level | Condition) -> dict[str, Any]:
    return {"op": condition.op, "value": condition.value, "for_s": condition.for_s}


def rule_set_to_json(rules: Iterable[AlarmRule]) -> list[dict[str, Any]]:
    return [rule_to_dict(rule) for rule in rules]


def rule_from_dict(data: Mapping[str, Any]) -> AlarmRule:
    """A rule from its JSON object. Strict: unknown fields, wrong types and impossible rules
    raise ``RuleError``; an absent optional field takes the dataclass's default."""
    return _rule(data, "")


def parse_rule_set(data: Any) -> list[AlarmRule]:
    """A profile's rules from their JSON list: at most ``MAX_RULES``, alarm types unique (one
    state per device and alarm type). Refusals are ``RuleError``, prefixed ``rules[i].``."""
    if not isinstance(data, list):
        raise RuleError("rules: must be a list")
    if len(data) > MAX_RULES:
        raise RuleError(f"rules: at most {MAX_RULES} rules, not {len(data)}")
    rules: list[AlarmRule] = []
    for index, item in enumerate(data):
        rule = _rule(item, f"rules[{index}]")
        if any(other.alarm_type == rule.alarm_type for other in rules):
            raise RuleError(f"rules[{index}].alarm_type: {rule.alarm_type} is used twice")
        rules.append(rule)
    return rules


def _path(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _check_object(data: Any, where: str, known: frozenset[str], required: tuple[str, ...]) -> None:
    if not isinstance(data, Mapping):
        raise RuleError(f"{where or 'rule'}: must be an object")
    for name in data:
        if name not in known:
            raise RuleError(f"{_path(where, str(name))}: unknown field")
    for name in required:
        if name not in data:
            raise RuleError(f"{_path(where, name)}: required")


def _rule(data: Any, where: str) -> AlarmRule:
    _check_object(data, where, _RULE_FIELDS, ("alarm_type", "key"))
    alarm_type = _name(data["alarm_type"], _path(where, "alarm_type"))
    if alarm_type in RESERVED_ALARM_TYPES:
        raise RuleError(f"{_path(where, 'alarm_type')}: {alarm_type} is reserved")
    # Only the fields given, so an absent one takes the dataclass's default.
    fields: dict[str, Any] = {
        "alarm_type": alarm_type,
        "key": _name(data["key"], _path(where, "key")),
    }
    if "levels" in data:
        fields["levels"] = _levels(data["levels"], _path(where, "levels"))
    if data.get("clear") is not None:
        fields["clear"] = _condition(data["clear"], _path(where, "clear"))
    if data.get("rate_per_min") is not None:
        fields["rate_per_min"] = _rate(data["rate_per_min"], _path(where, "rate_per_min"))
    if "severity_on_rate" in data:
        fields["severity_on_rate"] = _severity(
            data["severity_on_rate"], _path(where, "severity_on_rate")
        )
    if "deescalate_after_s" in data:
        fields["deescalate_after_s"] = _duration(
            data["deescalate_after_s"], _path(where, "deescalate_after_s")
        )
    if "note" in data:
        fields["note"] = _note(data["note"], _path(where, "note"))
    if not fields.get("levels") and "rate_per_min" not in fields:
        raise RuleError(f"{_path(where, 'levels')}: a rule needs levels or a rate_per_min")
    return _build(AlarmRule, fields, where)


def _levels(data: Any, where: str) -> tuple[Level, ...]:
    if not isinstance(data, list):
        raise RuleError(f"{where}: must be a list")
    levels: list[Level] = []
    for index, item in enumerate(data):
        at = f"{where}[{index}]"
        _check_object(item, at, _LEVEL_FIELDS, ("severity", "op", "value"))
        fields = _condition_fields(item, at)
        fields["severity"] = _severity(item["severity"], f"{at}.severity")
        if any(level.severity == fields["severity"] for level in levels):
            raise RuleError(f"{at}.severity: {fields['severity']} is used twice")
        levels.append(_build(Level, fields, at))
    return tuple(levels)


def _condition(data: Any, where: str) -> Condition:
    _check_object(data, where, _CONDITION_FIELDS, ("op", "value"))
    return _build(Condition, _condition_fields(data, where), where)


def _condition_fields(data: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The op, threshold and duration a level shares with a clear condition."""
    op = data["op"]
    if not isinstance(op, str) or op not in _COMPARE:
        raise RuleError(f"{where}.op: must be one of {', '.join(_COMPARE)}")
    fields: dict[str, Any] = {
        "op": op,
        "value": _number(data["value"], f"{where}.value", "must be a finite number"),
    }
    if "for_s" in data:
        fields["for_s"] = _duration(data["for_s"], f"{where}.for_s")
    return fields


def _build(cls: Callable[..., _T], fields: dict[str, Any], where: str) -> _T:
    try:
        return cls(**fields)
    except ValueError as error:  # whatever the dataclass refuses that the checks above let by
        raise RuleError(f"{where or 'rule'}: {error}") from error


def _name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= MAX_NAME_LENGTH:
        raise RuleError(
            f"{where}: must be a non-empty string of at most {MAX_NAME_LENGTH} characters"
        )
    return value


def _note(value: Any, where: str) -> str:
    if not isinstance(value, str) or len(value) > MAX_NOTE_LENGTH:
        raise RuleError(f"{where}: must be a string of at most {MAX_NOTE_LENGTH} characters")
    return value


def _severity(value: Any, where: str) -> Severity:
    if not isinstance(value, str) or value not in RANK:
        raise RuleError(f"{where}: must be one of {', '.join(SEVERITIES)}")
    return cast(Severity, value)


def _duration(value: Any, where: str) -> float:
    number = _number(value, where, "must be a number ≥ 0")
    if number < 0:
        raise RuleError(f"{where}: must be a number ≥ 0")
    return number


def _rate(value: Any, where: str) -> float:
    number = _number(value, where, "must be a number > 0")
    if number <= 0:
        raise RuleError(f"{where}: must be a number > 0")
    return number


def _number(value: Any, where: str, must: str) -> float:
    """A finite JSON number as a float (a bool is not one, whatever Python says); otherwise
    ``RuleError`` saying what the field ``must`` be."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RuleError(f"{where}: {must}")
    try:
        number = float(value)
    except OverflowError:  # an int too large for a float
        raise RuleError(f"{where}: {must}") from None
    if not math.isfinite(number):
        raise RuleError(f"{where}: {must}")
    return number
