"""Intake for civic source systems: validate, mask, make durable in Kafka, then answer 202.

Normalisation happens in the stream, not here: the edge stays thin and fast, and a replay of
``intake.raw`` re-normalises with whatever the adapters know by then.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from fastapi import APIRouter, HTTPException

from dispatch.intake.models import EventStatusRead, IntakeAccepted
from dispatch.intake.privacy import mask_payload
from dispatch.tickets import service
from hub.deps import BusDep, PoolDep, PrincipalDep, SettingsDep, require_source
from schemas import topics
from schemas.codec import dumps
from schemas.event import Source, event_id_for
from schemas.intake import Hotline12345Order, IntakeEnvelope

router = APIRouter(prefix="/api/v1/intake", tags=["intake"])
events_router = APIRouter(prefix="/api/v1/events", tags=["intake"])


@router.post("/hotline-12345", status_code=202, response_model=IntakeAccepted)
async def intake_hotline_12345(
    order: Hotline12345Order, principal: PrincipalDep, bus: BusDep, settings: SettingsDep
) -> IntakeAccepted:
    """Accept a 12345 work order. 202 means Kafka holds it; posting it again is harmless."""
    require_source(principal, Source.HOTLINE_12345)
    envelope = IntakeEnvelope(
        event_id=event_id_for(Source.HOTLINE_12345, order.order_no),
        source=Source.HOTLINE_12345,
        external_id=order.order_no,
        received_at=datetime.now(UTC),
        payload=mask_payload(order.model_dump(mode="json"), contact_fields={"caller_phone"}),
    )
    await bus.send(
        settings.topic(topics.INTAKE_RAW), key=envelope.event_id.bytes, value=dumps(envelope)
    )
    return IntakeAccepted(event_id=envelope.event_id)


@events_router.get("/{event_id}", response_model=EventStatusRead)
async def read_event_status(
    event_id: uuid.UUID, pool: PoolDep, principal: PrincipalDep
) -> EventStatusRead:
    """Read back an event a source sent: where it stands and which ticket carries it."""
    row = await service.get_event_status(pool, event_id=event_id)
    visible = row is not None and (
        principal.role == "ops" or (principal.role == "source" and row["source"] == principal.scope)
    )
    if row is None or not visible:
        raise HTTPException(
            404, detail=f"no processed event {event_id} visible to {principal.name} (yet)"
        )
    ticket = None
    if row["ticket_id"] is not None:
        ticket = {
            "ticket_id": row["ticket_id"],
            "status": row["ticket_status"],
            "department_code": row["department_code"],
            "updated_at": row["updated_at"],
        }
    return EventStatusRead.model_validate({**row, "ticket": ticket})
