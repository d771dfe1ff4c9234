"""Batch loops: a lean consumer-group loop for the stateless hot stages of the worker.

Measured on this 2-core machine (bench.pipeline, faust-streaming 0.15.3): a Faust agent spends
about 200 µs of framework per record, a plain aiokafka ``getmany`` loop about 10 µs. The hot
stages (normalise, correlate, store tickets) therefore read their topic in batches here, inside
the worker process: normalising ran at 2,500 reports/s as a Faust agent and 6,000/s as a loop,
the whole pipeline at 1,300/s and 2,500/s. Correlation keeps its state itself
(streams/correlate/state.py).

At least once: offsets are committed (every ``commit_every_s``, and when the loop stops) only
for batches ``handle`` returned from, that is whose output is acknowledged by Kafka or committed
in PostgreSQL; a crash or a rebalance redelivers what was not committed, and every sink
downstream is idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, KafkaError

from hub.settings import Settings

log = logging.getLogger(__name__)
Handler = Callable[[list[Any]], Awaitable[None]]


def group_for(settings: Settings, stage: str) -> str:
    """The consumer group of a batch loop (the Faust agents' group is ``…hub-worker``)."""
    return f"{settings.topic_prefix}hub-{stage}"


async def run_batch_loop(
    settings: Settings,
    *,
    stage: str,
    topic: str,
    handle: Handler,
    max_records: int,
    wait_ms: int = 100,
    commit_every_s: float = 0.5,
    listener: ConsumerRebalanceListener | None = None,
    on_tick: Callable[[], Awaitable[None]] | None = None,
    tick_s: float = 1.0,
) -> None:
    """Consume ``topic`` in the stage's group forever: batches in partition order to
    ``handle``, then commit. ``listener`` hears of partitions assigned and revoked (a stateful
    stage restores and drops its state there); ``on_tick`` runs every ``tick_s`` between
    batches (deadlines). Returns only when cancelled."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap,
        group_id=group_for(settings, stage),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=max_records,
        # A handler may wait for the database a while (it retries until done): stay in the group
        # through short outages. This is also how long a rebalance waits for a busy member.
        max_poll_interval_ms=120_000,
    )
    if listener is None:
        consumer.subscribe([settings.topic(topic)])
    else:
        consumer.subscribe([settings.topic(topic)], listener=listener)
    await consumer.start()
    last_commit = last_tick = time.monotonic()
    try:
        while True:
            batches = await consumer.getmany(timeout_ms=wait_ms, max_records=max_records)
            records = [record for partition in sorted(batches) for record in batches[partition]]
            if records:
                await handle(records)
            if on_tick is not None and time.monotonic() - last_tick >= tick_s:
                last_tick = time.monotonic()
                await on_tick()
            # Committing is a round trip to the broker: once per interval, not per batch (a
            # crash replays at most that much more, which the sinks make harmless).
            if time.monotonic() - last_commit >= commit_every_s:
                await _commit(consumer, stage)
                last_commit = time.monotonic()
    finally:
        with contextlib.suppress(Exception):  # what was handled, before leaving the group;
            # bounded: during a rebalance the coordinator may not answer
            await asyncio.wait_for(_commit(consumer, stage), timeout=5)
        await consumer.stop()


async def _commit(consumer: AIOKafkaConsumer, stage: str) -> None:
    try:
        await consumer.commit()
    except (CommitFailedError, KafkaError) as exc:
        # The group moved on (a rebalance): whoever owns these partitions now reads the
        # uncommitted records again, and the sinks make the repeat harmless.
        log.warning("%s: commit failed (%r); those records will be redelivered", stage, exc)
