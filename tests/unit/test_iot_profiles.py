"""The worker's rule sets from device_profiles.rules (streams/iot/profiles.py): parsed, reread
at most every 30 s, the last good set kept when a stored one is refused or the read fails."""

from __future__ import annotations

import logging

import orjson
import pytest

from streams.iot.profiles import REFRESH_S, ProfileRules
from streams.iot.rules import rule_set_to_json
from tests.unit.helpers import pack_rule_sets

RULE_SETS = pack_rule_sets()
WATER = rule_set_to_json(RULE_SETS["water-level"])
SMOKE = rule_set_to_json(RULE_SETS["smoke"])


class FakePool:
    """device_profiles as rows; counts the reads, fails them while ``down``."""

    def __init__(self, table: dict[str, object]) -> None:
        self.table = table
        self.reads = 0
        self.down = False

    async def fetch(self, query: str) -> list[dict[str, object]]:
        assert query == "SELECT code, rules FROM device_profiles"
        self.reads += 1
        if self.down:
            raise OSError("connection refused")
        return [{"code": code, "rules": rules} for code, rules in self.table.items()]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_sets_are_read_once_per_period_and_an_edit_applies_after_it():
    pool, clock = FakePool({"water-level": WATER, "smoke": []}), Clock()
    profiles = ProfileRules(clock=clock)
    sets = await profiles.get(pool)
    assert sets == {"water-level": RULE_SETS["water-level"], "smoke": []}
    pool.table["smoke"] = SMOKE
    clock.now += REFRESH_S - 1
    assert (await profiles.get(pool))["smoke"] == [] and pool.reads == 1
    clock.now += 1
    assert (await profiles.get(pool))["smoke"] == RULE_SETS["smoke"] and pool.reads == 2


async def test_rules_as_json_text_are_read_too():
    """A plain asyncpg connection has no jsonb codec: the rules come as text."""
    pool = FakePool({"water-level": orjson.dumps(WATER).decode()})
    assert (await ProfileRules().get(pool))["water-level"] == RULE_SETS["water-level"]


async def test_a_refused_set_keeps_the_last_good_one_and_is_logged(caplog):
    pool, clock = FakePool({"water-level": WATER, "smoke": SMOKE}), Clock()
    profiles = ProfileRules(clock=clock)
    await profiles.get(pool)
    broken = [dict(WATER[0], levels=[{"severity": "fatal", "op": ">", "value": 1}])]
    pool.table.update({"water-level": broken, "smoke": "[not json", "rainfall": broken})
    clock.now += REFRESH_S
    with caplog.at_level(logging.ERROR, logger="streams.iot.profiles"):
        sets = await profiles.get(pool)
    assert sets["water-level"] == RULE_SETS["water-level"]
    assert sets["smoke"] == RULE_SETS["smoke"]
    assert sets["rainfall"] == []  # nothing good to keep: no thresholds, but still no-data
    logged = caplog.text
    assert "device profile water-level" in logged and "rules[0].levels[0].severity" in logged
    assert "device profile smoke" in logged and "device profile rainfall" in logged


async def test_a_failed_read_keeps_the_sets_but_the_first_one_raises():
    pool, clock = FakePool({"water-level": WATER}), Clock()
    profiles = ProfileRules(clock=clock)
    pool.down = True
    with pytest.raises(OSError):
        await profiles.get(pool)
    pool.down = False
    await profiles.get(pool)
    pool.down = True
    clock.now += REFRESH_S
    assert (await profiles.get(pool))["water-level"] == RULE_SETS["water-level"]
    assert pool.reads == 3
    assert (await profiles.get(pool))["water-level"] and pool.reads == 3  # not every batch


async def test_a_profile_gone_from_the_table_is_gone():
    pool, clock = FakePool({"water-level": WATER, "smoke": SMOKE}), Clock()
    profiles = ProfileRules(clock=clock)
    await profiles.get(pool)
    del pool.table["smoke"]
    clock.now += REFRESH_S
    assert set(await profiles.get(pool)) == {"water-level"}
