"""normalize_intake: intake.raw → normalised, classified, located events on events.enriched,
keyed by category for correlation; records that cannot be normalised → dead letters."""

from __future__ import annotations

import asyncio
from typing import Any

from schemas.codec import dumps, loads
from schemas.intake import IntakeEnvelope
from streams.app import app, events_enriched, intake_raw, settings
from streams.correlate.engine import correlation_key
from streams.deadletter import describe, send_to_dead_letter
from streams.enrich.enricher import load_enricher
from streams.normalize.adapters import normalize


@app.agent(intake_raw)
async def normalize_intake(stream: Any) -> None:
    # Trains the text model and indexes the districts: off the event loop, once per worker.
    enricher = await asyncio.to_thread(load_enricher, settings.pack_dir)
    async for event in stream.events():
        try:
            record = enricher.enrich(normalize(loads(IntakeEnvelope, event.value)))
        except ValueError as exc:  # JSON and validation errors are ValueErrors
            await send_to_dead_letter(event.message, stage="normalize", reason=describe(exc))
            continue
        # Keyed for correlation: reports that may join one incident meet in one partition.
        await events_enriched.send(key=correlation_key(record), value=dumps(record))
