"""Intake receipts, looked up and written in shared batches.

Under load many requests arrive in the same event-loop tick; each used to cost two database
round trips. Here they share one look-up and one upsert per tick, and each still waits for its
own answer, so a repeat posted right after its original is recognised as a duplicate.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg

from hub.sql import load_queries

log = logging.getLogger(__name__)
Q = load_queries(Path(__file__).with_name("queries.sql"))
DATABASE_TROUBLE = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)
Key = tuple[str, str]  # (source, external id)


class ReceiptBook:
    def __init__(self, pool: Any) -> None:
        self._pool = pool
        self._lookups: list[tuple[list[Key], asyncio.Future[dict[Key, str]]]] = []
        self._writes: list[tuple[Key, uuid.UUID, str, asyncio.Future[None]]] = []
        self._lookup_task: asyncio.Task[None] | None = None
        self._write_task: asyncio.Task[None] | None = None

    async def known_hashes(self, source: str, external_ids: list[str]) -> dict[str, str]:
        """external id → payload hash of what was accepted before; {} if the database is away
        (then repeats are sent again, which the worker absorbs)."""
        future: asyncio.Future[dict[Key, str]] = asyncio.get_running_loop().create_future()
        self._lookups.append(([(source, i) for i in external_ids], future))
        if self._lookup_task is None:
            self._lookup_task = asyncio.create_task(self._run_lookups())
        found = await future
        return {i: found[(source, i)] for i in external_ids if (source, i) in found}

    async def _run_lookups(self) -> None:
        await asyncio.sleep(0)  # let the rest of this tick's requests join the batch
        batch, self._lookups, self._lookup_task = self._lookups, [], None
        keys = list({key for keys, _ in batch for key in keys})
        found: dict[Key, str] = {}
        try:
            rows = await self._pool.fetch(
                Q["known_hashes"], [s for s, _ in keys], [i for _, i in keys]
            )
            found = {(row["source"], row["external_id"]): row["payload_hash"] for row in rows}
        except DATABASE_TROUBLE as exc:
            log.warning("receipts unavailable, sending without de-duplication: %r", exc)
        for _, future in batch:
            if not future.done():
                future.set_result(found)

    async def record(self, source: str, receipts: dict[str, tuple[uuid.UUID, str]]) -> None:
        """Remember what was just made durable in Kafka. Never raises: a lost receipt only
        means a later repeat is sent again."""
        loop = asyncio.get_running_loop()
        futures = []
        for external_id, (event_id, digest) in receipts.items():
            future: asyncio.Future[None] = loop.create_future()
            self._writes.append(((source, external_id), event_id, digest, future))
            futures.append(future)
        if self._write_task is None:
            self._write_task = asyncio.create_task(self._run_writes())
        await asyncio.gather(*futures)

    async def _run_writes(self) -> None:
        await asyncio.sleep(0)
        batch, self._writes, self._write_task = self._writes, [], None
        deliveries = Counter(key for key, _, _, _ in batch)
        latest = {key: (event_id, digest) for key, event_id, digest, _ in batch}
        try:
            await self._pool.execute(
                Q["record_receipts"],
                [s for s, _ in latest],
                [i for _, i in latest],
                [event_id for event_id, _ in latest.values()],
                [digest for _, digest in latest.values()],
                [deliveries[key] for key in latest],
            )
        except DATABASE_TROUBLE as exc:
            log.warning("could not record %d receipts: %r", len(latest), exc)
        for _, _, _, future in batch:
            if not future.done():
                future.set_result(None)
