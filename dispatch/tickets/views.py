"""Departments' and the operations centre's ticket API."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, HTTPException

from dispatch.tickets import service
from dispatch.tickets.models import TicketRead
from hub.deps import PoolDep, StaffDep

router = APIRouter(prefix="/api/v1/tickets", tags=["tickets"])


@router.get("/{ticket_id}", response_model=TicketRead)
async def read_ticket(ticket_id: uuid.UUID, pool: PoolDep, principal: StaffDep) -> TicketRead:
    """One ticket with its full history. A department sees only its own tickets."""
    ticket = await service.get_ticket(pool, ticket_id=ticket_id)
    visible = ticket is not None and (
        principal.role == "ops" or ticket["department_code"] == principal.scope
    )
    if ticket is None or not visible:
        # The same answer for "absent" and "not yours": existence is not disclosed.
        raise HTTPException(404, detail=f"no ticket {ticket_id} visible to {principal.name}")
    return TicketRead.model_validate(ticket)
