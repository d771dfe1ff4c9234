"""Local infrastructure for development and tests: Apache Kafka (KRaft) and PostgreSQL 15.

Pointed at existing services (``HUB_KAFKA_BOOTSTRAP``, ``HUB_DATABASE_URL``) it starts none.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from hub.infra import kafka, postgres
from hub.infra.process import InfraError, port_answers, split_host_port
from hub.settings import Settings

__all__ = ["InfraError", "down", "status", "up"]


def up(settings: Settings) -> list[str]:
    """Start the local services this configuration uses; report one line per service."""
    lines = []
    if settings.uses_local_kafka:
        lines.append(f"kafka: {kafka.up(kafka.KafkaPaths(settings.state_dir / 'kafka'))}")
    else:
        lines.append(f"kafka: external {settings.bootstrap}, not started")
    if settings.uses_local_database:
        lines.append(f"postgres: {postgres.up(settings.state_dir, settings.dsn)}")
    else:
        lines.append("postgres: external HUB_DATABASE_URL, not started")
    return lines


def down(settings: Settings) -> list[str]:
    lines = []
    if settings.uses_local_kafka:
        lines.append(f"kafka: {kafka.down(kafka.KafkaPaths(settings.state_dir / 'kafka'))}")
    if settings.uses_local_database:
        lines.append(f"postgres: {postgres.down(settings.state_dir)}")
    return lines


def status(settings: Settings) -> list[tuple[str, bool, str]]:
    """(service, answers, where) for each service the hub uses, local or external."""
    if settings.uses_local_kafka:
        kafka_row = kafka.status(kafka.KafkaPaths(settings.state_dir / "kafka"))
    else:
        first = settings.bootstrap.split(",")[0]
        kafka_row = (port_answers(*split_host_port(first, 9092)), f"{first} (external)")
    if settings.uses_local_database:
        pg_row = postgres.status(settings.state_dir)
    else:
        parts = urlsplit(settings.dsn)
        pg_row = (
            port_answers(parts.hostname or "localhost", parts.port or 5432),
            f"{parts.hostname}:{parts.port or 5432} (external)",
        )
    return [("kafka", *kafka_row), ("postgres", *pg_row)]
