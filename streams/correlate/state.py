"""Correlation state: each partition's open incidents, kept in memory and in a compacted
changelog topic, so a worker that takes a partition over resumes where the last one was.

The changelog has as many partitions as events.enriched; the state of input partition p lives
in changelog partition p. An entry's key is the correlation key, ``|``, the incident id (16
bytes); its value the incident (``to_state``), or a tombstone once it expired. On assignment a
partition's changelog is read to its end and folded, last value per key wins.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

import orjson
from aiokafka import ConsumerRebalanceListener

from streams.changelog import read_partitions
from streams.correlate.engine import Incident, OpenSet, from_state, to_state

log = logging.getLogger(__name__)
SEPARATOR = b"|"


def entry_key(key: bytes, incident: Incident) -> bytes:
    return key + SEPARATOR + incident.incident_id.bytes


def entry_value(incident: Incident) -> bytes:
    return orjson.dumps(to_state([incident])[0])


def fold(entries: Iterable[tuple[bytes, bytes | None]]) -> dict[bytes, OpenSet]:
    """The open incidents per correlation key that a changelog's entries, in order, leave."""
    latest: dict[bytes, bytes | None] = {}
    for key, value in entries:
        latest[key] = value
    by_key: dict[bytes, list[dict[str, Any]]] = {}
    for key, value in latest.items():
        if value is not None:
            # Correlation keys hold no separator ("category:<code>"): the first one splits.
            correlation_key = key.split(SEPARATOR, 1)[0]
            by_key.setdefault(correlation_key, []).append(orjson.loads(value))
    return {key: OpenSet(from_state(rows)) for key, rows in by_key.items()}


class CorrelationState(ConsumerRebalanceListener):  # type: ignore[misc]
    """The open incidents of the partitions this worker owns now. A batch holds ``lock`` while
    it correlates and writes, so a rebalance never swaps the state under it."""

    def __init__(self, *, bootstrap: str, changelog: str) -> None:
        self._bootstrap = bootstrap
        self.changelog = changelog
        self._partitions: dict[int, dict[bytes, OpenSet]] = {}
        self.lock = asyncio.Lock()

    def of(self, partition: int, key: bytes) -> OpenSet:
        return self._partitions.setdefault(partition, {}).setdefault(key, OpenSet())

    async def on_partitions_revoked(self, revoked: Any) -> None:
        async with self.lock:
            for tp in revoked:  # another worker will restore them from the changelog
                self._partitions.pop(tp.partition, None)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        partitions = sorted(tp.partition for tp in assigned)
        if partitions:
            async with self.lock:
                self._partitions.update(await self.restore(partitions))

    async def restore(self, partitions: list[int]) -> dict[int, dict[bytes, OpenSet]]:
        entries = await read_partitions(self._bootstrap, self.changelog, partitions)
        restored = {p: fold(rows.items()) for p, rows in entries.items()}
        counts = {p: sum(len(s) for s in keys.values()) for p, keys in restored.items()}
        log.info("correlation state restored: open incidents by partition %s", counts)
        return restored
