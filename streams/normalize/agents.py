"""normalize_intake: intake.raw → events.enriched, bad records → dead letters."""

from __future__ import annotations

from typing import Any

from schemas.codec import dumps, loads
from schemas.intake import IntakeEnvelope
from streams.app import app, events_enriched, intake_raw
from streams.deadletter import describe, send_to_dead_letter
from streams.normalize.adapters import normalize


@app.agent(intake_raw)
async def normalize_intake(stream: Any) -> None:
    async for event in stream.events():
        try:
            record = normalize(loads(IntakeEnvelope, event.value))
        except ValueError as exc:  # JSON and validation errors are ValueErrors
            await send_to_dead_letter(event.message, stage="normalize", reason=describe(exc))
            continue
        await events_enriched.send(key=record.event_id.bytes, value=dumps(record))
