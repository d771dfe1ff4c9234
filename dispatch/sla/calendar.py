"""Working-time arithmetic for SLA clocks: office hours, official holidays and 调休.

Which days are working days comes, in order, from the pack's own dates (``holidays.csv``), then
the ``chinese-calendar`` package (official holidays and swapped working weekends for 2004–2026),
then, for years the package does not know, Monday to Friday. 2027's schedule must be added to
the pack's ``holidays.csv`` when the State Council publishes it (each year, in the autumn
before); until then only 2027-01-01 (元旦) is there.

Semantics
---------
Minute and hour durations count working time only, inside the working periods of working days.
A start outside working time (night, lunch break, weekend, holiday) starts counting at the next
working period; a due time that uses up a period exactly is that period's end (12:00, not 13:30).

Day durations follow the Chinese rule for time limits (期间开始的日不计算在内): the day of the
start never counts, whatever the hour and whether or not it is a working day. "N working days"
ends at the end of the last working period of the Nth working day after the start's local date.
So a report on Thursday at 10:00 or at 07:00 with 1d is due Friday 17:30, and one on Saturday is
due Monday 17:30.

All arithmetic is done in UTC on the instants of period starts and ends, so results stay right
for zones with daylight saving; results are returned in the calendar's zone.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from functools import lru_cache
from typing import Literal, Protocol

import chinese_calendar  # type: ignore[import-untyped]

Unit = Literal["m", "h", "d"]
_UNITS: dict[str, Unit] = {"m": "m", "h": "h", "d": "d"}
_UNIT_MINUTES: dict[str, int] = {"m": 1, "h": 60}
# No sign, no leading zeros, no spaces inside: "0m", "30m", "4h", "5d".
_DURATION = re.compile(r"(0|[1-9][0-9]*)([mhd])")
_ONE_DAY = timedelta(days=1)


@dataclass(frozen=True)
class Duration:
    """An SLA time limit: minutes or hours of clock time, or whole (working) days."""

    amount: int
    unit: Unit

    def __post_init__(self) -> None:
        if self.amount < 0:
            raise ValueError(f"duration must not be negative, got {self.amount}{self.unit}")
        if self.unit not in _UNITS:
            raise ValueError(f"duration unit must be m, h or d, got {self.unit!r}")

    def __str__(self) -> str:
        return f"{self.amount}{self.unit}"

    def as_timedelta(self) -> timedelta:
        """Minutes and hours only: a day is a calendar's notion, not a fixed length."""
        if self.unit == "d":
            raise ValueError(f"{self} is in days; its length depends on the calendar")
        return timedelta(minutes=self.amount * _UNIT_MINUTES[self.unit])


def parse_duration(text: str) -> Duration:
    """Parse "30m", "4h" or "5d" (minutes, hours, days).

    >>> parse_duration("4h")
    Duration(amount=4, unit='h')
    """
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise ValueError(
            f"bad duration {text!r}: expected a whole number and a unit m, h or d, "
            'like "30m", "4h" or "5d"'
        )
    amount, unit = match.groups()
    return Duration(int(amount), _UNITS[unit])


class SlaCalendar(Protocol):
    """What SLA deadlines need from a calendar; WorkingCalendar and RoundTheClock provide it."""

    def is_workday(self, day: date) -> bool: ...

    def add(self, start: datetime, duration: Duration) -> datetime: ...

    def working_time_between(self, a: datetime, b: datetime) -> timedelta: ...

    def extend(self, due: datetime, by: timedelta) -> datetime: ...


@lru_cache(maxsize=16384)
def _official_workday(day: date) -> bool | None:
    """The package's answer, or None for a year it does not cover. Cached: the package's own
    range check scans its whole table on every call."""
    try:
        return bool(chinese_calendar.is_workday(day))
    except NotImplementedError:
        return None


def _require_aware(moment: datetime, name: str) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {moment.isoformat()}")


def _check_periods(periods: Sequence[tuple[time, time]]) -> tuple[tuple[time, time], ...]:
    if not periods:
        raise ValueError("a working calendar needs at least one working period")
    for start, end in periods:
        if start.tzinfo is not None or end.tzinfo is not None:
            raise ValueError("working periods are local wall-clock times, without a zone")
        if start >= end:
            raise ValueError(f"working period {start}-{end} does not end after it starts")
    for (_, earlier_end), (later_start, _) in itertools.pairwise(periods):
        if later_start < earlier_end:
            raise ValueError("working periods must be in order and must not overlap")
    return tuple(periods)


class WorkingCalendar:
    """Office hours on the official working days of mainland China, with a pack's overrides."""

    def __init__(
        self,
        periods: Sequence[tuple[time, time]],
        tz: tzinfo,
        extra_holidays: frozenset[date] = frozenset(),
        extra_workdays: frozenset[date] = frozenset(),
    ) -> None:
        both = extra_holidays & extra_workdays
        if both:
            listed = ", ".join(sorted(day.isoformat() for day in both))
            raise ValueError(f"dates listed both as holiday and as working day: {listed}")
        self.periods = _check_periods(periods)
        self.tz = tz
        self.extra_holidays = extra_holidays
        self.extra_workdays = extra_workdays

    def __repr__(self) -> str:
        hours = ", ".join(f"{start:%H:%M}-{end:%H:%M}" for start, end in self.periods)
        return f"WorkingCalendar([{hours}], {self.tz})"

    def is_workday(self, day: date) -> bool:
        if day in self.extra_workdays:
            return True
        if day in self.extra_holidays:
            return False
        official = _official_workday(day)
        return day.weekday() < 5 if official is None else official

    def add(self, start: datetime, duration: Duration) -> datetime:
        _require_aware(start, "start")
        if duration.amount == 0:
            return start.astimezone(self.tz)
        if duration.unit == "d":
            return self._end_of_nth_workday_after(start, duration.amount)
        return self._add_working_time(start, duration.as_timedelta())

    def working_time_between(self, a: datetime, b: datetime) -> timedelta:
        """Working time in [a, b); zero when b is not after a."""
        _require_aware(a, "a")
        _require_aware(b, "b")
        if b <= a:
            return timedelta(0)
        a_utc, b_utc = a.astimezone(UTC), b.astimezone(UTC)
        total = timedelta(0)
        day, last_day = a.astimezone(self.tz).date(), b.astimezone(self.tz).date()
        while day <= last_day:
            for opens, closes in self._working_intervals(day):
                overlap = min(closes, b_utc) - max(opens, a_utc)
                if overlap > timedelta(0):
                    total += overlap
            day += _ONE_DAY
        return total

    def extend(self, due: datetime, by: timedelta) -> datetime:
        """Push a due time back by working time, e.g. the working time a ticket spent paused."""
        _require_aware(due, "due")
        if by < timedelta(0):
            raise ValueError(f"cannot extend by a negative time ({by})")
        if by == timedelta(0):
            return due.astimezone(self.tz)
        return self._add_working_time(due, by)

    def _working_intervals(self, day: date) -> list[tuple[datetime, datetime]]:
        """The day's working periods as UTC instants; none on a day off."""
        if not self.is_workday(day):
            return []
        return [
            (
                datetime.combine(day, opens, tzinfo=self.tz).astimezone(UTC),
                datetime.combine(day, closes, tzinfo=self.tz).astimezone(UTC),
            )
            for opens, closes in self.periods
        ]

    def _add_working_time(self, start: datetime, amount: timedelta) -> datetime:
        # One pass per day; a working day always exists within a week (Monday to Friday at
        # worst), so the loop ends.
        cursor = start.astimezone(UTC)
        remaining = amount
        day = start.astimezone(self.tz).date()
        while True:
            for opens, closes in self._working_intervals(day):
                if closes <= cursor:
                    continue
                begin = max(opens, cursor)
                available = closes - begin
                if remaining <= available:
                    return (begin + remaining).astimezone(self.tz)
                remaining -= available
            day += _ONE_DAY

    def _end_of_nth_workday_after(self, start: datetime, n: int) -> datetime:
        day = start.astimezone(self.tz).date()
        counted = 0
        while counted < n:
            day += _ONE_DAY
            if self.is_workday(day):
                counted += 1
        return datetime.combine(day, self.periods[-1][1], tzinfo=self.tz)


class RoundTheClock:
    """Emergencies: every hour counts, every day is a working day, a day is 24 hours.

    Results are in ``tz``; without one, in the zone of the datetime given (the instant is the
    same either way: only working calendars need a zone to place office hours).
    """

    def __init__(self, tz: tzinfo | None = None) -> None:
        self.tz = tz

    def __repr__(self) -> str:
        return f"RoundTheClock({self.tz})"

    def is_workday(self, day: date) -> bool:
        return True

    def add(self, start: datetime, duration: Duration) -> datetime:
        _require_aware(start, "start")
        if duration.unit == "d":
            return self.extend(start, timedelta(hours=24 * duration.amount))
        return self.extend(start, duration.as_timedelta())

    def working_time_between(self, a: datetime, b: datetime) -> timedelta:
        _require_aware(a, "a")
        _require_aware(b, "b")
        # Via UTC: subtracting two datetimes that share a tzinfo ignores daylight saving.
        return max(b.astimezone(UTC) - a.astimezone(UTC), timedelta(0))

    def extend(self, due: datetime, by: timedelta) -> datetime:
        _require_aware(due, "due")
        if by < timedelta(0):
            raise ValueError(f"cannot extend by a negative time ({by})")
        return (due.astimezone(UTC) + by).astimezone(self.tz or due.tzinfo)
