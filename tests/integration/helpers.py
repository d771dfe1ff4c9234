"""Helpers for integration tests: read real topics, wait for real effects."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from hub.settings import Settings


async def end_offsets(settings: Settings, topic: str) -> int:
    """How many records a topic holds in all (sum of its partitions' end offsets)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(settings.topic(topic)) or set()
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(settings.topic(topic)) or set()
        tps = [TopicPartition(settings.topic(topic), p) for p in partitions]
        return sum((await consumer.end_offsets(tps)).values())
    finally:
        await consumer.stop()


def earliest_consumer(settings: Settings, topic: str) -> AIOKafkaConsumer:
    """A consumer of ``topic`` from its beginning, in no group (it commits nothing)."""
    return AIOKafkaConsumer(
        settings.topic(topic),
        bootstrap_servers=settings.bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )


async def read_until(
    settings: Settings, topic: str, predicate: Callable[[Any], bool], *, seconds: float = 30
) -> Any:
    """The first record of ``topic`` (from the beginning) that satisfies ``predicate``."""
    consumer = earliest_consumer(settings, topic)
    await consumer.start()
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    if predicate(record):
                        return record
        raise AssertionError(f"no matching record on {topic} within {seconds}s")
    finally:
        await consumer.stop()


async def eventually(check: Callable[[], Any], *, seconds: float = 60, every: float = 0.3) -> Any:
    """Await ``check()`` until it returns something truthy; fail after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {seconds}s")
        await asyncio.sleep(every)
