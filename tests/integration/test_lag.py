"""`hub lag` (hub/lag.py): a group's committed offsets against the end of its topic."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from hub.bus import ensure_topics
from hub.lag import by_group, consumer_lag

pytestmark = pytest.mark.integration


async def test_lag_is_what_a_group_has_not_committed_yet(prepared: Any, producer: Any) -> None:
    probe = uuid.uuid4().hex[:8]
    topic = prepared.topic(f"lag-probe-{probe}")
    group = f"{prepared.topic_prefix}hub-lag-probe-{probe}"
    await ensure_topics(prepared.bootstrap, [topic], partitions=1, replication=1)
    for n in range(5):
        await producer.send_and_wait(topic, f"record {n}".encode(), partition=0)
    consumer = AIOKafkaConsumer(bootstrap_servers=prepared.bootstrap, group_id=group,
                                enable_auto_commit=False)  # fmt: skip
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, 0)])
        await consumer.commit({TopicPartition(topic, 0): OffsetAndMetadata(2, "")})
    finally:
        await consumer.stop()

    rows = await consumer_lag(prepared.bootstrap, group)
    assert [(r.topic, r.partition, r.committed, r.end, r.lag) for r in rows] == [
        (topic, 0, 2, 5, 3)
    ]
    assert by_group(rows) == {group: 3}
    # Another prefix sees none of it.
    assert await consumer_lag(prepared.bootstrap, f"{group}-other") == []
