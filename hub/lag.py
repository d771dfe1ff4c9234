"""Consumer lag of the hub's stages: how far each consumer group's committed offsets are behind
the end of its topics (`hub lag`). Needs no Kafka command-line tools, only the broker.

A stage's group is ``<prefix>hub-<stage>`` (streams/batchloop.py), the Faust agents'
``<prefix>hub-worker``. Lag that keeps growing means the stage does not keep up (or is not
running); lag that shrinks after a restart is a stage catching up.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient


@dataclass(frozen=True)
class PartitionLag:
    group: str
    topic: str
    partition: int
    committed: int
    end: int

    @property
    def lag(self) -> int:
        return max(0, self.end - self.committed)


async def consumer_lag(bootstrap: str, group_prefix: str) -> list[PartitionLag]:
    """Every partition with a committed offset of every group named ``group_prefix…``."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        groups = sorted(
            group[0] for group in await admin.list_consumer_groups()
            if group[0].startswith(group_prefix)
        )  # fmt: skip
        rows = []
        for group in groups:
            committed = await admin.list_consumer_group_offsets(group)
            ends = await consumer.end_offsets(list(committed)) if committed else {}
            rows += [
                PartitionLag(group, tp.topic, tp.partition, meta.offset, ends[tp])
                for tp, meta in sorted(committed.items())
                if meta.offset >= 0  # -1: nothing committed for that partition yet
            ]
        return rows
    finally:
        await consumer.stop()
        await admin.close()


def by_group(rows: list[PartitionLag]) -> dict[str, int]:
    """Total lag per group."""
    totals: dict[str, int] = {}
    for row in rows:
        totals[row.group] = totals.get(row.group, 0) + row.lag
    return totals
