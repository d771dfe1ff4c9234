"""The Faust application (`hub worker`) and the topics its agents share.

Agents live beside their domain (``streams/normalize/agents.py``, ``dispatch/agents.py``) and
are found by autodiscovery when the worker starts.
"""

from __future__ import annotations

import faust

from hub.settings import get_settings
from schemas import topics

settings = get_settings()

app = faust.App(
    f"{settings.topic_prefix}hub-worker",
    broker=f"kafka://{settings.bootstrap}",
    store="memory://",
    autodiscover=["streams.normalize", "dispatch.agents"],
    origin="streams",
    topic_partitions=settings.topic_partitions,
    topic_replication_factor=settings.topic_replication,
    consumer_auto_offset_reset="earliest",
    producer_acks=-1,
    web_enabled=False,
    datadir=str(settings.state_dir / "worker"),
)


def _raw_topic(name: str) -> faust.TopicT:
    # Raw bytes: each agent decodes and validates itself, so a bad record goes to the
    # dead-letter topic with a reason instead of crashing the stream in the deserialiser.
    return app.topic(settings.topic(name), key_type=bytes, value_type=bytes,
                     key_serializer="raw", value_serializer="raw")  # fmt: skip


intake_raw = _raw_topic(topics.INTAKE_RAW)
events_enriched = _raw_topic(topics.EVENTS_ENRICHED)
dead_letter = _raw_topic(topics.DEAD_LETTER)
