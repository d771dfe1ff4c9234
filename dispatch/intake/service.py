"""Accepting source records: mask, de-duplicate, make durable in Kafka, remember receipts.

Kafka is the only thing intake needs: if PostgreSQL is away, repeats cannot be recognised and
are sent again, which is harmless because the worker stores each (source, external id) once.
Receipts (what was accepted, by content hash) are looked up and written in shared batches.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal

import asyncpg
import orjson

from dispatch.intake.privacy import mask_payload
from dispatch.intake.receipts import ReceiptBook
from hub.bus import EventBus
from hub.sql import load_queries
from schemas.codec import dumps
from schemas.event import Source, event_id_for
from schemas.intake import (
    CIVIC_SOURCES,
    OPEN311_CONTACT_FIELDS,
    OPEN311_TEXT_FIELDS,
    IntakeEnvelope,
)

log = logging.getLogger(__name__)
Q = load_queries(Path(__file__).with_name("queries.sql"))
Status = Literal["accepted", "updated", "duplicate", "rejected"]


@dataclass
class Outcome:
    status: Status
    event_id: uuid.UUID | None = None


@dataclass
class Prepared:
    """A valid record, masked and hashed, ready to be sent."""

    external_id: str
    payload: dict[str, Any]
    payload_hash: str = field(init=False)

    def __post_init__(self) -> None:
        self.payload_hash = hashlib.sha256(
            orjson.dumps(self.payload, option=orjson.OPT_SORT_KEYS)
        ).hexdigest()


def prepare(source: Source, payload: dict[str, Any], external_id: str) -> Prepared:
    """Mask personal data: nothing unmasked is hashed, sent or stored."""
    if source is Source.OPEN311:
        text_fields, contact_fields = OPEN311_TEXT_FIELDS, OPEN311_CONTACT_FIELDS
    else:
        spec = CIVIC_SOURCES[source]
        text_fields, contact_fields = spec.text_fields, spec.contact_fields
    return Prepared(
        external_id,
        mask_payload(payload, text_fields=text_fields, contact_fields=contact_fields),
    )


async def accept(
    *, receipts: ReceiptBook, bus: EventBus, topic: str, source: Source, records: list[Prepared]
) -> list[Outcome]:
    """Send what is new or changed, in order; report each record's outcome.

    Raises BusUnavailable (nothing is answered 2xx) when Kafka does not acknowledge.
    """
    known = await receipts.known_hashes(source.value, [r.external_id for r in records])
    now = datetime.now(UTC)
    outcomes: list[Outcome] = []
    to_send: list[tuple[bytes, bytes]] = []
    sent: dict[str, tuple[uuid.UUID, str]] = {}
    for record in records:
        event_id = event_id_for(source, record.external_id)
        previous = known.get(record.external_id)
        if previous == record.payload_hash:
            outcomes.append(Outcome("duplicate", event_id))
            continue
        outcomes.append(Outcome("accepted" if previous is None else "updated", event_id))
        # A repeat later in the same batch is then a duplicate.
        known[record.external_id] = record.payload_hash
        # Built from values made here, so not validated again (the worker validates on read).
        envelope = IntakeEnvelope.model_construct(
            event_id=event_id,
            source=source,
            external_id=record.external_id,
            received_at=now,
            payload_hash=record.payload_hash,
            payload=record.payload,
        )
        to_send.append((event_id.bytes, dumps(envelope)))
        sent[record.external_id] = (event_id, record.payload_hash)
    if to_send:
        await bus.send_many(topic, to_send)
        await receipts.record(source.value, sent)
    return outcomes


async def read_back(pool: Any, *, source: Source, external_id: str) -> dict[str, Any] | None:
    row = await pool.fetchrow(Q["read_back"], source.value, external_id)
    return dict(row) if row else None


class IntakeCounters:
    """Accepted / updated / duplicate / rejected per source, added to PostgreSQL in batches."""

    def __init__(self) -> None:
        self._pending: Counter[tuple[str, date, Status]] = Counter()

    def add(self, source: str, status: Status, count: int = 1) -> None:
        self._pending[(source, datetime.now(UTC).date(), status)] += count

    async def flush(self, pool: Any) -> None:
        if not self._pending:
            return
        pending, self._pending = self._pending, Counter()
        rows: dict[tuple[str, date], dict[str, int]] = {}
        for (source, day, status), count in pending.items():
            rows.setdefault((source, day), Counter())[status] += count
        try:
            await pool.execute(
                Q["add_counters"],
                [source for source, _ in rows],
                [day for _, day in rows],
                *([counts.get(s, 0) for counts in rows.values()]
                  for s in ("accepted", "updated", "duplicate", "rejected")),
            )  # fmt: skip
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            self._pending.update(pending)  # keep them for the next try
            log.warning("could not store intake counters: %r", exc)


async def stats(pool: Any, *, since: date) -> list[dict[str, Any]]:
    return [dict(row) for row in await pool.fetch(Q["stats"], since)]
