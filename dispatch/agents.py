"""open_tickets: events.enriched → one ticket per event in PostgreSQL, in batches.

Until routing rules exist every ticket goes to the triage department. Database trouble is
retried, never skipped: the batch's offsets are committed only after it is written.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from dispatch.tickets import service
from hub.db import create_pool
from schemas.codec import loads
from schemas.event import EventV1
from streams.app import app, events_enriched, settings
from streams.deadletter import describe, send_to_dead_letter

log = logging.getLogger(__name__)


async def _decode(batch: list[Any]) -> list[EventV1]:
    events = []
    for event in batch:
        try:
            events.append(loads(EventV1, event.value))
        except ValueError as exc:
            await send_to_dead_letter(event.message, stage="open_tickets", reason=describe(exc))
    return events


async def _write_until_done(pool: Any, events: list[EventV1]) -> None:
    delay = 0.5
    while True:
        try:
            async with pool.acquire() as conn:
                department = await service.get_triage_department(conn)
                if department is None:
                    raise LookupError("no triage department: run `hub seed`")
                await service.store_events_and_open_tickets(
                    conn, events=events, department_code=department
                )
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the database is away or not set up: wait, never drop
            log.warning("writing %d events failed (%r); retrying in %.1fs", len(events), exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)


@app.agent(events_enriched)
async def open_tickets(stream: Any) -> None:
    pool = await create_pool(settings.dsn, min_size=0, max_size=4)
    try:
        async for batch in stream.take_events(
            settings.worker_batch_size, within=settings.worker_batch_window_s
        ):
            events = await _decode(batch)
            if events:
                await _write_until_done(pool, events)
    finally:
        await pool.close()
