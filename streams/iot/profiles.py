"""Each device profile's alarm rules as the worker uses them: read from PostgreSQL
(``device_profiles.rules``, seeded from the pack, edited by operations admins) and reread at
most every ``REFRESH_S``, so an edit reaches the rules stage without a restart.

A set that does not parse (only a hand edit in SQL can store one: the admin API checks with
the same ``parse_rule_set``) never stops the stage: the profile keeps the last good set it had,
or none. A profile missing from the table has no entry, and its telemetry is skipped. A
failed read keeps the sets read before.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import orjson

from streams.iot.rules import AlarmRule, RuleError, parse_rule_set

log = logging.getLogger(__name__)
REFRESH_S = 30.0


class ProfileRules:
    """profile code → its rules, refreshed from the database when older than ``refresh_s``;
    concurrent callers share one read."""

    def __init__(
        self, *, refresh_s: float = REFRESH_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._refresh_s = refresh_s
        self._clock = clock
        self._sets: dict[str, list[AlarmRule]] = {}
        self._read_at: float | None = None
        self._lock = asyncio.Lock()

    def _fresh(self) -> bool:
        return self._read_at is not None and self._clock() - self._read_at < self._refresh_s

    async def get(self, pool: Any) -> dict[str, list[AlarmRule]]:
        if self._fresh():
            return self._sets
        async with self._lock:
            if not self._fresh():
                await self._refresh(pool)
        return self._sets

    async def _refresh(self, pool: Any) -> None:
        try:
            rows = await pool.fetch("SELECT code, rules FROM device_profiles")
        except Exception as exc:
            if self._read_at is None:
                raise  # nothing to go on yet
            # Alarms need no database once a device is known: an outage keeps the sets it
            # had rather than stopping the stage, and the read is tried again a period later.
            log.warning("reading device profiles' alarm rules failed (%r); keeping them", exc)
        else:
            self._sets = self._parse(rows)
        self._read_at = self._clock()

    def _parse(self, rows: list[Any]) -> dict[str, list[AlarmRule]]:
        sets: dict[str, list[AlarmRule]] = {}
        for row in rows:
            code, raw = row["code"], row["rules"]
            try:
                # The worker's pool decodes jsonb (hub/db.py); a plain connection gives text.
                sets[code] = parse_rule_set(orjson.loads(raw) if isinstance(raw, str) else raw)
            except (RuleError, orjson.JSONDecodeError) as error:
                # [] when there is no good set to keep: the devices still get no-data alarms.
                sets[code] = self._sets.get(code, [])
                log.error(
                    "device profile %s: its alarm rules in the database are refused (%s); "
                    "keeping the %d rules it had",
                    code,
                    error,
                    len(sets[code]),
                )
        return sets
