"""Batch loops: a lean consumer-group loop for the stateless hot stages of the worker.

Measured on this 2-core machine (bench.pipeline, faust-streaming 0.15.3): a Faust agent spends
about 200 µs of framework per record, a plain aiokafka ``getmany`` loop about 10 µs. The hot
stages (normalise, correlate, store tickets) therefore read their topic in batches here, inside
the worker process: normalising ran at 2,500 reports/s as a Faust agent and 6,000/s as a loop,
the whole pipeline at 1,300/s and 2,500/s. Correlation keeps its state itself
(streams/correlate/state.py).

At least once: a batch's offsets are committed after ``handle`` returned, that is after its
output is acknowledged by Kafka or committed in PostgreSQL; a crash or a rebalance in between
redelivers the batch, and every sink downstream is idempotent.
"""

from __future__ import annotations

import logging
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
    listener: ConsumerRebalanceListener | None = None,
) -> None:
    """Consume ``topic`` in the stage's group forever: batches in partition order to
    ``handle``, then commit. ``listener`` hears of partitions assigned and revoked (a stateful
    stage restores and drops its state there). Returns only when cancelled."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap,
        group_id=group_for(settings, stage),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=max_records,
        # A handler may wait for the database for a while (it retries until done): stay in the
        # group meanwhile rather than be rebalanced away and redeliver its batch elsewhere.
        max_poll_interval_ms=600_000,
    )
    if listener is None:
        consumer.subscribe([settings.topic(topic)])
    else:
        consumer.subscribe([settings.topic(topic)], listener=listener)
    await consumer.start()
    try:
        while True:
            batches = await consumer.getmany(timeout_ms=wait_ms, max_records=max_records)
            records = [record for partition in sorted(batches) for record in batches[partition]]
            if not records:
                continue
            await handle(records)
            try:
                await consumer.commit()
            except (CommitFailedError, KafkaError) as exc:
                # The group moved on (a rebalance): whoever owns these partitions now reads
                # the batch again, and the sinks make the repeat harmless.
                log.warning("%s: commit failed (%r); the batch will be redelivered", stage, exc)
    finally:
        await consumer.stop()
