"""keep_dead_letters: the dead-letter topic → PostgreSQL, where operators list and replay them."""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from dispatch.deadletters import service
from streams.app import app, dead_letter, settings, worker_pool
from streams.retry import retry_until_done

log = logging.getLogger(__name__)


async def _store(pool: Any, rows: list[tuple[Any, ...]]) -> None:
    async with pool.acquire() as conn:
        await service.store(conn, rows)


@app.agent(dead_letter)
async def keep_dead_letters(stream: Any) -> None:
    pool = await worker_pool.get()
    async for batch in stream.take_events(
        settings.worker_batch_size, within=settings.worker_batch_window_s
    ):
        rows = []
        for event in batch:
            try:
                rows.append(service.parse_record(event.value))
            except (ValueError, KeyError, TypeError) as exc:
                # Not one of ours: nowhere further to send it, so say so loudly and move on.
                log.error("unreadable dead letter at %s: %r", event.message.offset, exc)
        if rows:
            await retry_until_done(partial(_store, pool, rows), what=f"{len(rows)} dead letters")
