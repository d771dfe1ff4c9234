"""open_tickets: incidents → reports, incidents and one ticket per incident in PostgreSQL.

Until routing rules exist every ticket goes to the triage department. Database trouble is
retried, never skipped: the batch's offsets are committed only after it is written. A record
the database refuses for its content is dead-lettered alone; the rest of its batch is stored.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

import asyncpg

from dispatch.tickets import service
from schemas.codec import loads
from schemas.incident import IncidentChangeV1
from streams.app import app, incidents, settings, worker_pool
from streams.deadletter import describe, send_to_dead_letter
from streams.retry import retry_until_done

log = logging.getLogger(__name__)
# Refusals about the data itself: retrying the same record can never succeed.
REFUSED_RECORD = (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError)
STAGE = "open_tickets"


async def _decode(batch: list[Any]) -> list[tuple[Any, IncidentChangeV1]]:
    decoded = []
    for message in batch:
        try:
            decoded.append((message, loads(IncidentChangeV1, message.value)))
        except ValueError as exc:
            await send_to_dead_letter(message.message, stage=STAGE, reason=describe(exc))
    return decoded


async def _store(pool: Any, changes: list[IncidentChangeV1]) -> None:
    async with pool.acquire() as conn:
        department = await service.get_triage_department(conn)
        if department is None:
            raise LookupError("no triage department: run `hub seed`")
        await service.store_incident_changes(conn, changes=changes, department_code=department)


async def _store_or_isolate(pool: Any, decoded: list[tuple[Any, IncidentChangeV1]]) -> None:
    try:
        await _store(pool, [change for _, change in decoded])
        return
    except REFUSED_RECORD as exc:
        log.warning("batch of %d refused (%r): storing one by one", len(decoded), exc)
    for message, change in decoded:  # stores are idempotent: repeating the good is safe
        try:
            await _store(pool, [change])
        except REFUSED_RECORD as exc:
            reason = f"the database refused the event: {type(exc).__name__}: {exc}"
            await send_to_dead_letter(message.message, stage=STAGE, reason=reason)


@app.agent(incidents)
async def open_tickets(stream: Any) -> None:
    pool = await worker_pool.get()
    async for batch in stream.take_events(
        settings.worker_batch_size, within=settings.worker_batch_window_s
    ):
        decoded = await _decode(batch)
        if decoded:
            what = f"{len(decoded)} incident changes"
            await retry_until_done(partial(_store_or_isolate, pool, decoded), what=what)
