"""Dispatch in the worker: incidents become routed tickets; SLA timers fire; the outbox relay
publishes every ticket change on `tickets.changes`.

open_tickets, a batch loop (streams/batchloop.py): database trouble is retried, never skipped:
the batch's offsets are committed only after it is written. A record the database refuses for
its content is dead-lettered alone; the rest of its batch is stored.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from functools import partial
from typing import Any

from dispatch.departments.webhooks import deliver_due, webhook_client
from dispatch.outbox import relay_forever
from dispatch.rulebook import RulebookCache
from dispatch.sla.escalation import run_cycle
from dispatch.tickets import service
from schemas import topics
from schemas.incident import IncidentChangeV1
from streams.app import app, settings, worker_bus, worker_pool
from streams.batchloop import run_batch_loop
from streams.deadletter import decode_or_dead_letter, store_or_isolate
from streams.retry import retry_until_done

log = logging.getLogger(__name__)
STAGE = "open_tickets"
rulebook = RulebookCache(settings.pack_dir)
# Due tickets per timer transaction: 500 keep a cycle near 50 ms with 1 M open tickets
# (bench.dispatch); the loop drains a backlog at the same rate as larger batches would.
SLA_BATCH = 500
WEBHOOK_BATCH = 50


async def _store(pool: Any, changes: list[IncidentChangeV1]) -> None:
    book = await rulebook.get(pool)
    async with pool.acquire() as conn:
        await service.store_incident_changes(
            conn, changes=changes, book=book, now=datetime.now(UTC)
        )


async def store_batch(pool: Any, records: list[Any]) -> None:
    decoded = await decode_or_dead_letter(records, IncidentChangeV1, stage=STAGE)
    if decoded:
        what = f"{len(decoded)} incident changes"
        store = partial(store_or_isolate, partial(_store, pool), decoded, stage=STAGE)
        await retry_until_done(store, what=what)
    # Dead letters (undecodable or refused records) are out before the batch is committed.
    await app.producer.flush()


@app.task  # type: ignore[untyped-decorator]
async def open_tickets() -> None:
    pool = await worker_pool.get()
    await run_batch_loop(
        settings,
        stage="tickets",
        topic=topics.INCIDENTS,
        handle=partial(store_batch, pool),
        max_records=settings.worker_batch_size,
    )


@app.timer(interval=settings.sla_tick_s)  # type: ignore[untyped-decorator]
async def sla_timers() -> None:
    """Warn, breach and escalate what is due; drains a backlog in batches within one tick."""
    pool = await worker_pool.get()
    try:
        book = await rulebook.get(pool)
        async with pool.acquire() as conn:
            now = datetime.now(UTC)
            while await run_cycle(conn, book, now=now, limit=SLA_BATCH) == SLA_BATCH:
                pass
    except Exception as exc:  # the next tick tries again; nothing is marked until it commits
        log.warning("SLA timer cycle failed: %r", exc, exc_info=exc)


@app.task  # type: ignore[untyped-decorator]
async def relay_outbox() -> None:
    pool = await worker_pool.get()
    await relay_forever(pool, await worker_bus.get(), topic_name=settings.topic)


@app.task  # type: ignore[untyped-decorator]
async def send_webhooks() -> None:
    """Departments' webhooks: send what is due, back off when there is nothing to send."""
    pool = await worker_pool.get()
    async with webhook_client() as client:
        while True:
            try:
                sent = await deliver_due(pool, client, now=datetime.now(UTC), limit=WEBHOOK_BATCH)
            except Exception as exc:  # the database is away: deliveries wait in their table
                log.warning("webhook delivery failed: %r", exc)
                sent = 0
            if sent < WEBHOOK_BATCH:
                await asyncio.sleep(1.0)
