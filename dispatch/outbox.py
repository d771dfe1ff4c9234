"""The outbox relay: publishes rows of the ``outbox`` table to Kafka in id order, then deletes them.

Rows are written in the same transaction as the change they announce (a trigger on
ticket_history), so a change is published if and only if it committed. One relay publishes at a
time (a transaction-scoped advisory lock), which keeps each ticket's changes in order even with
several workers. A crash between Kafka's acknowledgement and the delete publishes a batch twice:
consumers deduplicate on ``change_id``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from itertools import groupby
from typing import Any

from hub.bus import EventBus

log = logging.getLogger(__name__)
# Any constant works; it only has to differ from the hub's other advisory locks (migrations).
RELAY_LOCK = 0x6875625F6F757478  # "hub_outx"


async def publish_batch(
    conn: Any, bus: EventBus, *, topic_name: Callable[[str], str], limit: int = 1000
) -> int:
    """Publish up to ``limit`` of the oldest rows; return how many went out."""
    async with conn.transaction():
        if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", RELAY_LOCK):
            return 0  # another relay is publishing
        rows = await conn.fetch(
            "SELECT id, topic, key, value FROM outbox ORDER BY id LIMIT $1", limit
        )
        if not rows:
            return 0
        # Consecutive rows of one topic go as one batch; send_many keeps their order.
        for topic, group in groupby(rows, key=lambda row: row["topic"]):
            records = [(bytes(row["key"]), bytes(row["value"])) for row in group]
            await bus.send_many(topic_name(topic), records)
        await conn.execute(
            "DELETE FROM outbox WHERE id = ANY($1::bigint[])", [r["id"] for r in rows]
        )
    return len(rows)


async def relay_forever(
    pool: Any, bus: EventBus, *, topic_name: Callable[[str], str], idle_s: float = 0.1
) -> None:
    """Publish while there is something to publish; poll every ``idle_s`` otherwise."""
    delay = idle_s
    while True:
        try:
            async with pool.acquire() as conn:
                sent = await publish_batch(conn, bus, topic_name=topic_name)
            delay = idle_s
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # Kafka or the database is away: the rows wait, nothing lost
            log.warning("outbox relay failed (%r); retrying in %.1fs", exc, delay)
            sent = 0
            delay = min(delay * 2, 5.0)
        if not sent:
            await asyncio.sleep(delay)
