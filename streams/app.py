"""The Faust application (`hub worker`): it runs the worker's tasks and agents, and the shared
database pool and producer.

The hot stages (normalise, correlate, store tickets) are batch loops started as tasks
(streams/batchloop.py); dead letters are a Faust agent; SLA timers, the outbox relay and
webhooks are tasks. All live beside their domain (``streams/normalize/agents.py``,
``dispatch/agents.py``) and are found by autodiscovery when the worker starts.
"""

from __future__ import annotations

import asyncio
from typing import Any

import faust

from hub.bus import EventBus
from hub.db import create_pool
from hub.settings import get_settings
from schemas import topics

settings = get_settings()

app = faust.App(
    f"{settings.topic_prefix}hub-worker",
    broker=f"kafka://{settings.bootstrap}",
    store="memory://",
    autodiscover=[
        "streams.normalize.agents",
        "streams.correlate.agents",
        "streams.iot.agents",
        "dispatch.agents",
        "dispatch.deadletters.agents",
    ],
    origin="streams",
    topic_partitions=settings.topic_partitions,
    topic_replication_factor=settings.topic_replication,
    consumer_auto_offset_reset="earliest",
    producer_acks=-1,
    # A killed worker's share is taken over once its session times out; Faust's default of 60 s
    # also held every other member's shutdown that long (aiokafka's default, as in the loops).
    broker_session_timeout=10.0,
    web_enabled=False,
    datadir=str(settings.state_dir / "worker"),
)


def _raw_topic(name: str) -> faust.TopicT:
    # Raw bytes: each agent decodes and validates itself, so a bad record goes to the
    # dead-letter topic with a reason instead of crashing the stream in the deserialiser.
    return app.topic(settings.topic(name), key_type=bytes, value_type=bytes,
                     key_serializer="raw", value_serializer="raw")  # fmt: skip


dead_letter = _raw_topic(topics.DEAD_LETTER)


class WorkerPool:
    """The worker process's one database pool, opened by the first agent that needs it."""

    def __init__(self) -> None:
        self._pool: Any = None
        self._lock = asyncio.Lock()

    async def get(self) -> Any:
        async with self._lock:
            if self._pool is None:
                self._pool = await create_pool(settings.dsn, min_size=0, max_size=4)
            return self._pool


worker_pool = WorkerPool()


class WorkerBus:
    """The worker process's own producer (acks=all, batched sends) for what the batch loops and
    the outbox relay publish; started by the first caller."""

    def __init__(self) -> None:
        self._bus: EventBus | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> EventBus:
        async with self._lock:
            if self._bus is None:
                bus = EventBus(
                    settings.bootstrap, send_timeout_s=settings.kafka_send_timeout_s, linger_ms=1
                )
                await bus.start()
                self._bus = bus
            return self._bus


worker_bus = WorkerBus()
