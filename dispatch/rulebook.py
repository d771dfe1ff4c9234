"""The rulebook dispatch decides with: routing rules, SLA policies and calendars, departments.

Rules and policies live in PostgreSQL (rules are edited through the admin API); the working
calendar comes from the pack. Each process keeps one rulebook and rereads it every few seconds,
so a rule edited in the API routes the worker's next tickets without a restart.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from dispatch.routing.rules import Decision, RoutingContext, Rule, route
from dispatch.routing.store import current_version, read_rules
from dispatch.sla.calendar import SlaCalendar, parse_duration
from dispatch.sla.policy import Deadlines, SlaPolicy, deadlines, load_calendars, policy_for


@dataclass(frozen=True)
class DepartmentCard:
    code: str
    name: str
    supervisor: str  # who escalations reach first
    is_triage: bool


@dataclass(frozen=True)
class Rulebook:
    routing_version: int | None
    rules: tuple[Rule, ...]
    policies: tuple[SlaPolicy, ...]
    calendars: dict[str, SlaCalendar]
    departments: dict[str, DepartmentCard]
    triage: str

    def route(
        self,
        *,
        category: str | None,
        district_code: str | None,
        priority: str,
        at: datetime,
        exclude: frozenset[str] = frozenset(),
    ) -> Decision:
        context = RoutingContext(
            category=category, district_code=district_code, priority=priority, at=at
        )
        return route(self.rules, context, exclude=exclude, triage=self.triage)

    def policy(self, category: str | None, priority: str) -> SlaPolicy:
        return policy_for(self.policies, category, priority)

    def deadlines(self, policy: SlaPolicy, start: datetime) -> Deadlines:
        return deadlines(policy, start, self.calendars)

    def calendar(self, name: str | None) -> SlaCalendar:
        return self.calendars[name or "working"]


def policy_label(policy: SlaPolicy) -> str:
    return f"{policy.category}/{policy.priority}"


async def load_rulebook(conn: Any, pack_dir: Path) -> Rulebook:
    version = await current_version(conn)
    rules = await read_rules(conn, version)
    policies = [
        SlaPolicy(
            category=row["category"],
            priority=row["priority"],
            calendar=row["calendar"],
            accept_within=parse_duration(row["accept_within"]),
            resolve_within=parse_duration(row["resolve_within"]),
            warn_at=row["warn_at"],
            escalate_city_after=parse_duration(row["escalate_city_after"]),
        )
        for row in await conn.fetch("SELECT * FROM sla_policies")
    ]
    departments = {
        row["code"]: DepartmentCard(row["code"], row["name"], row["supervisor"], row["is_triage"])
        for row in await conn.fetch(
            """SELECT d.code, d.name, d.is_triage,
                      coalesce((SELECT p.person FROM department_people p
                                WHERE p.department_code = d.code AND p.role = 'supervisor'
                                ORDER BY p.person LIMIT 1), '') AS supervisor
               FROM departments d"""
        )
    }
    triage = next((d.code for d in departments.values() if d.is_triage), None)
    if triage is None or not policies:
        raise LookupError("no triage department or SLA policies: run `hub seed`")
    calendars = load_calendars(pack_dir)
    return Rulebook(version, tuple(rules), tuple(policies), calendars, departments, triage)


class RulebookCache:
    """One rulebook per process, reread after ``ttl_s``; concurrent callers share one read."""

    def __init__(self, pack_dir: Path, *, ttl_s: float = 5.0) -> None:
        self._pack_dir = pack_dir
        self._ttl_s = ttl_s
        self._book: Rulebook | None = None
        self._read_at = 0.0
        self._lock = asyncio.Lock()

    async def get(self, pool: Any) -> Rulebook:
        if self._book is not None and time.monotonic() - self._read_at < self._ttl_s:
            return self._book
        async with self._lock:
            if self._book is None or time.monotonic() - self._read_at >= self._ttl_s:
                async with pool.acquire() as conn:
                    self._book = await load_rulebook(conn, self._pack_dir)
                self._read_at = time.monotonic()
        return self._book

    def forget(self) -> None:
        """Reread on next use (after this process edited the rules)."""
        self._book = None
