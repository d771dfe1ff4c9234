"""The API's Kafka producer: acks=all, idempotent, batched, and honest when Kafka is away.

The API starts even when Kafka is down; requests then get ``BusUnavailable`` (503) and the
producer keeps trying to connect in the background, so the API recovers by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from aiokafka.partitioner import DefaultPartitioner

log = logging.getLogger(__name__)
# From this many records on, a send is grouped into per-partition batches by hand.
BULK_RECORDS = 16


class BusUnavailable(RuntimeError):
    """Kafka did not acknowledge in time; the caller must retry."""


class EventBus:
    def __init__(self, bootstrap: str, *, send_timeout_s: float, linger_ms: int = 5) -> None:
        self._bootstrap = bootstrap
        # The API's concurrent requests share a batch if the producer lingers a little. The
        # worker sends whole batches at once: 1 ms still lets one request carry every
        # partition's batch (0 ms: a request per partition, 20% fewer events/s), 5 ms doubled
        # its p99 latency (bench.pipeline).
        self._linger_ms = linger_ms
        self._send_timeout_s = send_timeout_s
        self._producer: AIOKafkaProducer | None = None
        self._connector: asyncio.Task[None] | None = None
        self._last_error = "not connected yet"
        # The same key-to-partition mapping as every Kafka client (murmur2), so a record sent in
        # a batch lands where a single send of it would.
        self._partitioner = DefaultPartitioner()

    def _new_producer(self) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=self._bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=self._linger_ms,
            # A whole :batch request fits one batch per partition: with idempotence a broker
            # takes one request at a time, so small batches meant sequential round trips.
            max_batch_size=1024 * 1024,
            request_timeout_ms=int(self._send_timeout_s * 1000) + 5000,
            max_request_size=1_048_576,
        )

    async def start(self, *, wait_s: float = 10.0) -> None:
        """Connect, waiting up to ``wait_s``; then keep trying in the background. Never raises."""
        self._connector = asyncio.create_task(self._connect_forever())
        await asyncio.wait([self._connector], timeout=wait_s)

    async def _connect_forever(self) -> None:
        delay = 0.5
        while True:
            producer = self._new_producer()
            try:
                await producer.start()
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    await producer.stop()
                raise
            except (KafkaError, OSError) as exc:
                self._last_error = f"cannot reach Kafka at {self._bootstrap}: {exc}"
                log.warning("%s; retrying in %.1fs", self._last_error, delay)
                with contextlib.suppress(Exception):
                    await producer.stop()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            self._producer = producer
            log.info("connected to Kafka at %s", self._bootstrap)
            return

    async def stop(self) -> None:
        if self._connector is not None:
            self._connector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connector
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    @property
    def connected(self) -> bool:
        return self._producer is not None

    async def send(self, topic: str, *, key: bytes, value: bytes) -> None:
        """Return only once Kafka has the record on all in-sync replicas."""
        await self.send_many(topic, [(key, value)])

    async def send_many(self, topic: str, records: list[tuple[bytes, bytes]]) -> None:
        """Send (key, value) records in order, as few batches as Kafka allows; return once
        every one is acknowledged by all in-sync replicas, or raise BusUnavailable."""
        if self._producer is None:
            raise BusUnavailable(self._last_error)
        producer = self._producer

        async def enqueue_then_wait() -> None:
            # In order, so records with the same key keep it; then all acknowledgements at once.
            if len(records) >= BULK_RECORDS:
                deliveries = await self._enqueue_in_batches(producer, topic, records)
            else:
                deliveries = [await producer.send(topic, value=v, key=k) for k, v in records]
            await asyncio.gather(*deliveries)

        await self._acknowledged(enqueue_then_wait())

    async def _acknowledged(self, work: Awaitable[None]) -> None:
        try:
            await asyncio.wait_for(work, timeout=self._send_timeout_s)
        except TimeoutError as exc:
            raise BusUnavailable(
                f"Kafka did not acknowledge within {self._send_timeout_s:.0f}s"
            ) from exc
        except KafkaError as exc:
            raise BusUnavailable(f"Kafka refused the record: {exc}") from exc

    async def _enqueue_in_batches(
        self, producer: AIOKafkaProducer, topic: str, records: list[tuple[bytes, bytes]]
    ) -> list[asyncio.Future[Any]]:
        """Many records at once: group them by partition into ready-made batches, skipping the
        per-record bookkeeping of ``send`` (the cost that dominated bulk intake)."""
        partitions = sorted(await producer.partitions_for(topic))
        by_partition: dict[int, list[tuple[bytes, bytes | None]]] = {}
        for key, value in records:
            partition = self._partitioner(key, partitions, partitions)
            by_partition.setdefault(partition, []).append((key, value))
        return await self._send_batches(producer, topic, by_partition)

    async def send_to_partition(
        self, topic: str, partition: int, records: list[tuple[bytes, bytes | None]]
    ) -> None:
        """Send records (None: a tombstone) to one partition, in order; return once all are
        acknowledged. For state kept beside the partition of the input it came from."""
        if self._producer is None:
            raise BusUnavailable(self._last_error)
        producer = self._producer

        async def enqueue_then_wait() -> None:
            deliveries = await self._send_batches(producer, topic, {partition: records})
            await asyncio.gather(*deliveries)

        await self._acknowledged(enqueue_then_wait())

    @staticmethod
    async def _send_batches(
        producer: AIOKafkaProducer,
        topic: str,
        by_partition: dict[int, list[tuple[bytes, bytes | None]]],
    ) -> list[asyncio.Future[Any]]:
        deliveries = []
        for partition, items in by_partition.items():
            batch = producer.create_batch()
            for key, value in items:
                if batch.append(key=key, value=value, timestamp=None) is None:
                    deliveries.append(await producer.send_batch(batch, topic, partition=partition))
                    batch = producer.create_batch()
                    batch.append(key=key, value=value, timestamp=None)
            deliveries.append(await producer.send_batch(batch, topic, partition=partition))
        return deliveries

    async def check(self) -> None:
        """Raise BusUnavailable unless the cluster answers a metadata request now."""
        if self._producer is None:
            raise BusUnavailable(self._last_error)
        try:
            await asyncio.wait_for(self._producer.client.fetch_all_metadata(), timeout=3)
        except (TimeoutError, KafkaError, OSError) as exc:
            raise BusUnavailable(f"Kafka at {self._bootstrap} does not answer: {exc!r}") from exc


COMPACT = ("cleanup.policy", "compact")


@dataclass(frozen=True)
class TopicsReport:
    created: list[str]
    made_compacted: list[str]  # existed without compaction (auto-created by a broker): fixed


async def ensure_topics(
    bootstrap: str,
    names: list[str],
    *,
    partitions: int,
    replication: int,
    compacted: frozenset[str] = frozenset(),
) -> TopicsReport:
    """Create the topics that are missing; ``compacted`` ones keep the last value per key, and
    one that exists without compaction (a broker that auto-creates topics made it before
    `hub migrate` ran) is made compacted, or restoring state from it would read every change
    ever written."""

    def _configs(name: str) -> dict[str, str]:
        return {COMPACT[0]: COMPACT[1]} if name in compacted else {}

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [name for name in names if name not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(
                    [
                        NewTopic(name, partitions, replication, topic_configs=_configs(name))
                        for name in missing
                    ]
                )
        wrong = await _not_compacted(admin, sorted(compacted & set(names)))
        if wrong:
            await admin.alter_configs(
                [ConfigResource(ConfigResourceType.TOPIC, name, dict([COMPACT])) for name in wrong]
            )
        return TopicsReport(created=missing, made_compacted=wrong)
    finally:
        await admin.close()


async def _not_compacted(admin: AIOKafkaAdminClient, names: list[str]) -> list[str]:
    if not names:
        return []
    wanted = [ConfigResource(ConfigResourceType.TOPIC, n, {COMPACT[0]: None}) for n in names]
    wrong = []
    for response in await admin.describe_configs(wanted):
        # (error code, message, type, topic, [(name, value, read only, source, sensitive, …)])
        for _, _, _, topic, entries in response.resources:
            policy = {entry[0]: entry[1] for entry in entries}.get(COMPACT[0], "")
            if COMPACT[1] not in policy.split(","):
                wrong.append(topic)
    return wrong


async def delete_topics_with_prefix(bootstrap: str, prefix: str) -> list[str]:
    """Delete every topic whose name starts with ``prefix`` (a test or benchmark run's own);
    refuses the empty prefix, which would mean every topic."""
    if not prefix:
        raise ValueError("refusing to delete topics without a prefix")
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        ours = [t for t in await admin.list_topics() if t.startswith(prefix)]
        if ours:
            await admin.delete_topics(ours)
        return sorted(ours)
    finally:
        await admin.close()


async def topic_partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    """A topic's partitions as a started consumer sees them. A consumer that subscribed to
    nothing has no metadata for the topic yet (``partitions_for_topic`` is None, even after
    ``topics()``), so this fetches it."""
    partitions = consumer.partitions_for_topic(topic)
    if not partitions:
        await consumer._client.force_metadata_update()
        partitions = consumer.partitions_for_topic(topic) or set()
    return [TopicPartition(topic, p) for p in sorted(partitions)]
