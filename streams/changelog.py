"""Compacted changelog topics: where a batch loop keeps the state of each input partition.

The state of input partition p lives in changelog partition p (both topics have as many
partitions). A stage writes its changed entries after each batch, before its outputs, and reads
its partitions back to their end when a rebalance assigns them to it.
"""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, TopicPartition


async def read_partitions(
    bootstrap: str, topic: str, partitions: list[int]
) -> dict[int, dict[bytes, bytes]]:
    """Each partition's entries as they stand: the last value per key, tombstones removed."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    latest: dict[int, dict[bytes, bytes | None]] = {p: {} for p in partitions}
    try:
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        remaining = {tp for tp in tps if ends[tp] > 0}
        while remaining:
            batches = await consumer.getmany(*remaining, timeout_ms=1000, max_records=10_000)
            for tp, records in batches.items():
                entries = latest[tp.partition]
                for record in records:
                    entries[record.key or b""] = record.value
                if records and records[-1].offset + 1 >= ends[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()
    return {
        p: {key: value for key, value in entries.items() if value is not None}
        for p, entries in latest.items()
    }
