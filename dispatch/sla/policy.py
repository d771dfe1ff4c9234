"""SLA policies from a city pack, and the deadlines a policy gives a ticket.

A policy says, for a category and a priority, on which calendar the clocks run, how long a
department has to accept a ticket and to resolve it, when to warn, and how long after a resolve
breach the escalation moves from the department's supervisor to the city.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dispatch.sla.calendar import (
    Duration,
    RoundTheClock,
    SlaCalendar,
    WorkingCalendar,
    parse_duration,
)

CalendarName = Literal["working", "24x7"]
ANY = "*"
PRIORITIES = ("urgent", "high", "normal", "low")
POLICY_COLUMNS = (
    "category",
    "priority",
    "calendar",
    "accept_within",
    "resolve_within",
    "warn_at",
    "escalate_city_after",
)
HOLIDAY_COLUMNS = ("date", "kind", "name")
_CALENDARS: dict[str, CalendarName] = {"working": "working", "24x7": "24x7"}


@dataclass(frozen=True)
class SlaPolicy:
    category: str
    priority: str
    calendar: CalendarName
    accept_within: Duration
    resolve_within: Duration
    warn_at: float
    escalate_city_after: Duration


@dataclass(frozen=True)
class Deadlines:
    accept_warn_at: datetime
    accept_due_at: datetime
    resolve_warn_at: datetime
    resolve_due_at: datetime
    city_escalation_at: datetime


def _csv_rows(path: Path, columns: Sequence[str]) -> Iterator[tuple[int, dict[str, str]]]:
    """Rows with their line numbers, values stripped. utf-8-sig: packs are edited in Excel."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) != tuple(columns):
            raise ValueError(f"{path}:1: expected columns {','.join(columns)}")
        for row in reader:
            if None in row or any(value is None for value in row.values()):
                raise ValueError(f"{path}:{reader.line_num}: expected {len(columns)} values")
            yield reader.line_num, {key: value.strip() for key, value in row.items()}


def _warn_fraction(text: str) -> float:
    try:
        fraction = float(text)
    except ValueError:
        raise ValueError(f"warn_at {text!r} is not a number") from None
    # 1.0 is allowed: a warning at the due time, i.e. no early warning.
    if not 0 < fraction <= 1:
        raise ValueError(f"warn_at {text!r} must be above 0 and at most 1")
    return fraction


def _policy_from_row(row: dict[str, str]) -> SlaPolicy:
    if not row["category"]:
        raise ValueError(f'category is empty (use "{ANY}" for any category)')
    if row["priority"] not in (*PRIORITIES, ANY):
        raise ValueError(f"priority {row['priority']!r} is not one of {', '.join(PRIORITIES)}, *")
    if row["calendar"] not in _CALENDARS:
        raise ValueError(f"calendar {row['calendar']!r} is not working or 24x7")
    return SlaPolicy(
        category=row["category"],
        priority=row["priority"],
        calendar=_CALENDARS[row["calendar"]],
        accept_within=parse_duration(row["accept_within"]),
        resolve_within=parse_duration(row["resolve_within"]),
        warn_at=_warn_fraction(row["warn_at"]),
        escalate_city_after=parse_duration(row["escalate_city_after"]),
    )


def load_policies(path: Path) -> list[SlaPolicy]:
    """Read a pack's ``sla-policies.csv``. One row per category and priority; "*" is any, and
    the "*,*" fallback row is required so that every ticket gets a policy."""
    policies: list[SlaPolicy] = []
    seen: dict[tuple[str, str], int] = {}
    for line, row in _csv_rows(path, POLICY_COLUMNS):
        try:
            policy = _policy_from_row(row)
        except ValueError as error:
            raise ValueError(f"{path}:{line}: {error}") from None
        key = (policy.category, policy.priority)
        if key in seen:
            raise ValueError(f"{path}:{line}: {','.join(key)} is already on line {seen[key]}")
        seen[key] = line
        policies.append(policy)
    if (ANY, ANY) not in seen:
        raise ValueError(f"{path}: the fallback row {ANY},{ANY} is missing")
    return policies


def policy_for(policies: Sequence[SlaPolicy], category: str | None, priority: str) -> SlaPolicy:
    """The most specific policy: category+priority, then category+*, *+priority, *+*."""
    by_key = {(policy.category, policy.priority): policy for policy in policies}
    wanted = [(ANY, priority), (ANY, ANY)]
    if category is not None:
        wanted = [(category, priority), (category, ANY), *wanted]
    for key in wanted:
        if key in by_key:
            return by_key[key]
    raise LookupError(f"no SLA policy for category {category!r}, priority {priority!r}")


def _warning(calendar: SlaCalendar, start: datetime, due: datetime, fraction: float) -> datetime:
    # A fraction of the working time, added as working time: warnings never fall at night.
    return calendar.extend(start, calendar.working_time_between(start, due) * fraction)


def deadlines(
    policy: SlaPolicy, start: datetime, calendars: Mapping[str, SlaCalendar]
) -> Deadlines:
    """All of a ticket's SLA times, from its start and its policy. Clocks start when the ticket
    is dispatched (派单), as 12345 practice counts them, not when the citizen called."""
    try:
        calendar = calendars[policy.calendar]
    except KeyError:
        raise KeyError(f"no calendar named {policy.calendar!r} for {policy}") from None
    accept_due = calendar.add(start, policy.accept_within)
    resolve_due = calendar.add(start, policy.resolve_within)
    return Deadlines(
        accept_warn_at=_warning(calendar, start, accept_due, policy.warn_at),
        accept_due_at=accept_due,
        resolve_warn_at=_warning(calendar, start, resolve_due, policy.warn_at),
        resolve_due_at=resolve_due,
        city_escalation_at=calendar.add(resolve_due, policy.escalate_city_after),
    )


def _working_period(text: str) -> tuple[time, time]:
    problem = f'working period {text!r} is not like "08:30-12:00"'
    opens, sep, closes = text.partition("-")
    if not sep:
        raise ValueError(problem)
    try:
        return time.fromisoformat(opens.strip()), time.fromisoformat(closes.strip())
    except ValueError:
        raise ValueError(problem) from None


def _read_sla_settings(path: Path) -> tuple[list[tuple[time, time]], ZoneInfo]:
    try:
        settings: Any = json.loads(path.read_text(encoding="utf-8"))
        hours = settings["working_hours"]
        if not isinstance(hours, list) or not all(isinstance(item, str) for item in hours):
            raise ValueError('"working_hours" must be a list of "HH:MM-HH:MM" strings')
        return [_working_period(item) for item in hours], ZoneInfo(settings["timezone"])
    # ZoneInfoNotFoundError is a KeyError, so it goes first.
    except ZoneInfoNotFoundError as unknown:
        raise ValueError(f"{path}: unknown timezone: {unknown}") from None
    except KeyError as missing:
        raise ValueError(f"{path}: {missing} is missing") from None
    except (ValueError, TypeError) as error:
        raise ValueError(f"{path}: {error}") from None


def _holiday_entry(row: dict[str, str]) -> tuple[date, str]:
    try:
        day = date.fromisoformat(row["date"])
    except ValueError:
        raise ValueError(f"date {row['date']!r} is not YYYY-MM-DD") from None
    if row["kind"] not in ("holiday", "workday"):
        raise ValueError(f"kind {row['kind']!r} is not holiday or workday")
    return day, row["kind"]


def _read_holidays(path: Path) -> tuple[frozenset[date], frozenset[date]]:
    days: dict[str, set[date]] = {"holiday": set(), "workday": set()}
    seen: dict[date, int] = {}
    for line, row in _csv_rows(path, HOLIDAY_COLUMNS):
        try:
            day, kind = _holiday_entry(row)
        except ValueError as error:
            raise ValueError(f"{path}:{line}: {error}") from None
        if day in seen:
            raise ValueError(f"{path}:{line}: {day} is already on line {seen[day]}")
        seen[day] = line
        days[kind].add(day)
    return frozenset(days["holiday"]), frozenset(days["workday"])


def load_calendar(pack_dir: Path) -> WorkingCalendar:
    """The pack's working calendar: hours and zone from ``sla.json``, its own holidays and
    working days from ``holidays.csv`` (both required; the CSV may have no data rows)."""
    sla_json = pack_dir / "sla.json"
    periods, tz = _read_sla_settings(sla_json)
    holidays, workdays = _read_holidays(pack_dir / "holidays.csv")
    try:
        return WorkingCalendar(periods, tz, extra_holidays=holidays, extra_workdays=workdays)
    except ValueError as error:
        raise ValueError(f"{sla_json}: {error}") from None


def load_calendars(pack_dir: Path) -> dict[str, SlaCalendar]:
    """Both calendars a policy can name, keyed as in ``sla-policies.csv``."""
    working = load_calendar(pack_dir)
    return {"working": working, "24x7": RoundTheClock(working.tz)}
