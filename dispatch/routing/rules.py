"""Routing rules: which department a ticket goes to, decided by the first rule that matches.

Pure: no I/O, no clock. A rule matches on any combination of category, district, priority and
local time of day; an empty matcher matches anything. Rules are tried in ``position`` order,
skipping departments that already rejected the ticket; when none matches, the ticket goes to
the triage department's queue.

Examples
--------
>>> from datetime import datetime, timezone
>>> row = {"position": "10", "name": "积水内涝·鹿城", "category": "waterlogging",
...        "district": "330302", "priority": "", "hours": "", "department": "water"}
>>> rules = parse_rules([row])
>>> at = datetime(2024, 6, 1, 2, 0, tzinfo=timezone.utc)
>>> route(rules, RoutingContext("waterlogging", "330302", "high", at), triage="dispatch").reason
'rule 10 «积水内涝·鹿城» category=waterlogging, district=330302 → water'
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, tzinfo
from zoneinfo import ZoneInfo

from schemas.event import Priority

# The packs' own time zone; a context may carry another for another city's pack.
SHANGHAI = ZoneInfo("Asia/Shanghai")
COLUMNS = ("position", "name", "category", "district", "priority", "hours", "department")
PRIORITIES = frozenset(p.value for p in Priority)
_HOURS = re.compile(r"^(\d{2}):(\d{2})-(\d{2}):(\d{2})$")


@dataclass(frozen=True)
class RoutingContext:
    """What routing looks at: the incident's category, district, priority and when it is."""

    category: str | None
    district_code: str | None
    priority: str
    at: datetime
    tz: tzinfo = field(default=SHANGHAI)

    def __post_init__(self) -> None:
        # A naive time would silently be read in the server's zone, not the city's.
        if self.at.tzinfo is None or self.at.utcoffset() is None:
            raise ValueError("RoutingContext.at must be timezone-aware")

    def local_time(self) -> time:
        """The time of day at ``at`` in the city's time zone."""
        return self.at.astimezone(self.tz).time()

    def describe(self) -> str:
        return (
            f"category={self.category or '-'}, district={self.district_code or '-'}, "
            f"priority={self.priority}, local time {self.local_time():%H:%M}"
        )


@dataclass(frozen=True)
class Rule:
    """Send matching tickets to ``department_code``; empty matchers match anything."""

    position: int
    name: str
    department_code: str
    categories: frozenset[str] = frozenset()
    districts: frozenset[str] = frozenset()
    priorities: frozenset[str] = frozenset()
    # [start, end) in local time; start > end wraps midnight (22:00-06:00).
    hours: tuple[time, time] | None = None

    def __post_init__(self) -> None:
        if not self.department_code:
            raise ValueError(f"rule {self.position}: no department")
        if self.hours is not None and self.hours[0] == self.hours[1]:
            raise ValueError(f"rule {self.position}: empty hours window; leave hours empty")

    def matches(self, ctx: RoutingContext) -> bool:
        return (
            _allows(self.categories, ctx.category)
            and _allows(self.districts, ctx.district_code)
            and _allows(self.priorities, ctx.priority)
            and (self.hours is None or _within(self.hours, ctx.local_time()))
        )

    def explain(self) -> str:
        """``rule 3 «积水内涝·鹿城» category=waterlogging, district=330302 → water``."""
        conditions = [
            f"{label}={'|'.join(sorted(values))}"
            for label, values in (
                ("category", self.categories),
                ("district", self.districts),
                ("priority", self.priorities),
            )
            if values
        ]
        if self.hours is not None:
            conditions.append(f"hours={_format_hours(self.hours)}")
        condition = ", ".join(conditions) or "any ticket"
        return f"rule {self.position} «{self.name}» {condition} → {self.department_code}"


@dataclass(frozen=True)
class Decision:
    """Where a ticket goes and why; ``rule_position`` is None for the triage queue."""

    department_code: str
    rule_position: int | None
    reason: str


def route(
    rules: Sequence[Rule],
    ctx: RoutingContext,
    *,
    exclude: frozenset[str] = frozenset(),
    triage: str,
) -> Decision:
    """The first matching rule whose department has not rejected the ticket, else triage."""
    skipped: list[str] = []
    for rule in sorted(rules, key=lambda r: r.position):
        if not rule.matches(ctx):
            continue
        if rule.department_code in exclude:
            skipped.append(f"rule {rule.position} ({rule.department_code} rejected it)")
            continue
        reason = rule.explain()
        if skipped:
            reason += "; skipped " + ", ".join(skipped)
        return Decision(rule.department_code, rule.position, reason)
    reason = f"no rule matched {ctx.describe()}: triage queue"
    if skipped:
        reason += "; skipped " + ", ".join(skipped)
    return Decision(triage, None, reason)


def parse_rules(rows: Iterable[dict[str, str]]) -> list[Rule]:
    """Rules from CSV-like rows (``COLUMNS``); ValueError names the row that is wrong."""
    rules: list[Rule] = []
    seen: dict[int, int] = {}
    for number, row in enumerate(rows, start=1):
        try:
            rule = _parse_row(row)
        except ValueError as error:
            raise ValueError(f"routing rule row {number} ({_label(row)}): {error}") from None
        if rule.position in seen:
            raise ValueError(
                f"routing rule row {number} ({_label(row)}): position {rule.position} "
                f"already used by row {seen[rule.position]}"
            )
        seen[rule.position] = number
        rules.append(rule)
    return sorted(rules, key=lambda r: r.position)


def rules_to_rows(rules: Iterable[Rule]) -> list[dict[str, str]]:
    """The inverse of ``parse_rules``: one row of strings per rule, in position order."""
    return [
        {
            "position": str(rule.position),
            "name": rule.name,
            "category": "|".join(sorted(rule.categories)),
            "district": "|".join(sorted(rule.districts)),
            "priority": "|".join(sorted(rule.priorities)),
            "hours": "" if rule.hours is None else _format_hours(rule.hours),
            "department": rule.department_code,
        }
        for rule in sorted(rules, key=lambda r: r.position)
    ]


def validate_rules(
    rules: Iterable[Rule], *, departments: set[str], categories: set[str], districts: set[str]
) -> list[str]:
    """Problems a pack would have with these rules (unknown codes, reused positions)."""
    problems: list[str] = []
    positions: set[int] = set()
    for rule in rules:
        where = f"rule {rule.position} «{rule.name}»"
        if rule.position in positions:
            problems.append(f"{where}: position {rule.position} used twice")
        positions.add(rule.position)
        if rule.department_code not in departments:
            problems.append(f"{where}: unknown department {rule.department_code}")
        for kind, values, known in (
            ("categories", rule.categories, categories),
            ("districts", rule.districts, districts),
            ("priorities", rule.priorities, PRIORITIES),
        ):
            if unknown := values - known:
                problems.append(f"{where}: unknown {kind} {sorted(unknown)}")
    return problems


def _allows(accepted: frozenset[str], value: str | None) -> bool:
    return not accepted or value in accepted


def _within(hours: tuple[time, time], moment: time) -> bool:
    start, end = hours
    if start < end:
        return start <= moment < end
    return moment >= start or moment < end


def _format_hours(hours: tuple[time, time]) -> str:
    return f"{hours[0]:%H:%M}-{hours[1]:%H:%M}"


def _parse_row(row: dict[str, str]) -> Rule:
    position_text = (row.get("position") or "").strip()
    if not position_text.isdigit():
        raise ValueError(f"position must be a whole number, not {position_text!r}")
    department = (row.get("department") or "").strip()
    if not department:
        raise ValueError("empty department")
    priorities = _codes(row.get("priority"))
    if unknown := priorities - PRIORITIES:
        raise ValueError(f"unknown priorities {sorted(unknown)}")
    return Rule(
        position=int(position_text),
        name=(row.get("name") or "").strip(),
        department_code=department,
        categories=_codes(row.get("category")),
        districts=_codes(row.get("district")),
        priorities=priorities,
        hours=_parse_hours(row.get("hours")),
    )


def _codes(cell: str | None) -> frozenset[str]:
    return frozenset(code.strip() for code in (cell or "").split("|") if code.strip())


def _parse_hours(cell: str | None) -> tuple[time, time] | None:
    text = (cell or "").strip()
    if not text:
        return None
    found = _HOURS.match(text)
    if found is None:
        raise ValueError(f"hours must be HH:MM-HH:MM, not {text!r}")
    start_h, start_m, end_h, end_m = (int(part) for part in found.groups())
    try:
        start, end = time(start_h, start_m), time(end_h, end_m)
    except ValueError:
        raise ValueError(f"hours out of range: {text!r}") from None
    if start == end:
        raise ValueError(f"hours {text!r} is an empty window; leave hours empty for all day")
    return start, end


def _label(row: dict[str, str]) -> str:
    return f"position {row.get('position') or '?'}, «{row.get('name') or ''}»"
