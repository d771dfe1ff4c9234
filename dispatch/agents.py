"""open_tickets: events.enriched → one ticket per event in PostgreSQL, in batches.

Until routing rules exist every ticket goes to the triage department. Database trouble is
retried, never skipped: the batch's offsets are committed only after it is written.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from dispatch.tickets import service
from schemas.codec import loads
from schemas.event import EventV1
from streams.app import app, events_enriched, settings, worker_pool
from streams.deadletter import describe, send_to_dead_letter
from streams.retry import retry_until_done

log = logging.getLogger(__name__)


async def _decode(batch: list[Any]) -> list[EventV1]:
    events = []
    for event in batch:
        try:
            events.append(loads(EventV1, event.value))
        except ValueError as exc:
            await send_to_dead_letter(event.message, stage="open_tickets", reason=describe(exc))
    return events


async def _store(pool: Any, events: list[EventV1]) -> None:
    async with pool.acquire() as conn:
        department = await service.get_triage_department(conn)
        if department is None:
            raise LookupError("no triage department: run `hub seed`")
        await service.store_events_and_open_tickets(conn, events=events, department_code=department)


@app.agent(events_enriched)
async def open_tickets(stream: Any) -> None:
    pool = await worker_pool.get()
    async for batch in stream.take_events(
        settings.worker_batch_size, within=settings.worker_batch_window_s
    ):
        events = await _decode(batch)
        if events:
            await retry_until_done(partial(_store, pool, events), what=f"{len(events)} events")
