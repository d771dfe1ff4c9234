"""Departments' and the operations centre's ticket API.

A department reads and acts on its own tickets only (403 otherwise); the operations centre on
all. Every action takes the version the caller last read (optimistic concurrency: 409 if stale)
and returns where the ticket now stands.
"""

# No `from __future__ import annotations` here: the action routes are built in a loop and
# FastAPI must see their body types as objects, not as names to look up.
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request

from dispatch.rulebook import RulebookCache
from dispatch.tickets import service
from dispatch.tickets.actions import ActionInput, act
from dispatch.tickets.lifecycle import Action, Refused
from dispatch.tickets.models import (
    ActionBody,
    ActionResult,
    MergeBody,
    ResolveBody,
    TicketPage,
    TicketRead,
    TicketSummary,
    TransferBody,
)
from hub.auth import Principal
from hub.deps import PoolDep, StaffDep

router = APIRouter(prefix="/api/v1/tickets", tags=["tickets"])


def _may_see(principal: Principal, ticket: dict[str, Any]) -> None:
    if principal.role == "department" and ticket["department_code"] != principal.scope:
        raise HTTPException(
            403, detail=f"{principal.name} may not read another department's ticket"
        )


@router.get("", response_model=TicketPage)
async def list_tickets(
    pool: PoolDep,
    principal: StaffDep,
    status: Annotated[list[str] | None, Query(max_length=8)] = None,
    priority: Annotated[list[str] | None, Query(max_length=4)] = None,
    category: Annotated[list[str] | None, Query(max_length=32)] = None,
    sla_state: Annotated[list[str] | None, Query(max_length=3)] = None,
    district: Annotated[list[str] | None, Query(max_length=16)] = None,
    department: Annotated[str | None, Query(max_length=64, description="ops only")] = None,
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
    per_page: Annotated[int, Query(ge=1, le=200)] = 50,
) -> TicketPage:
    """A queue, the most urgent first (resolve due time). A department gets its own tickets."""
    if principal.role == "department":
        if department not in (None, principal.scope):
            raise HTTPException(403, detail=f"{principal.name} may not list {department}'s tickets")
        department = principal.scope
    items, total = await service.list_tickets(
        pool,
        department=department,
        statuses=status,
        priorities=priority,
        categories=category,
        sla_states=sla_state,
        districts=district,
        page=page,
        per_page=per_page,
    )
    summaries = [TicketSummary.model_validate(item) for item in items]
    return TicketPage(items=summaries, page=page, per_page=per_page, total=total)


@router.get("/{ticket_id}", response_model=TicketRead)
async def read_ticket(ticket_id: uuid.UUID, pool: PoolDep, principal: StaffDep) -> TicketRead:
    """One ticket with its full history."""
    ticket = await service.get_ticket(pool, ticket_id=ticket_id)
    if ticket is None:
        raise HTTPException(404, detail=f"no ticket {ticket_id}")
    _may_see(principal, ticket)
    return TicketRead.model_validate(ticket)


async def _act(
    request: Request, pool: Any, principal: Principal, ticket_id: uuid.UUID, command: ActionInput
) -> ActionResult:
    cache: RulebookCache = request.app.state.rulebook
    book = await cache.get(pool)
    async with pool.acquire() as conn:
        try:
            await act(
                conn,
                book,
                ticket_id=ticket_id,
                principal=principal,
                request=command,
                now=datetime.now(UTC),
            )
        except Refused as refused:
            raise HTTPException(refused.status, detail=refused.reason) from None
    ticket = await service.get_ticket(pool, ticket_id=ticket_id)
    assert ticket is not None  # it was just changed, and tickets are never deleted
    visible = principal.role == "ops" or ticket["department_code"] == principal.scope
    return ActionResult(
        ticket_id=ticket_id,
        status=ticket["status"],
        department_code=ticket["department_code"],
        version=ticket["version"],
        ticket=TicketRead.model_validate(ticket) if visible else None,
    )


ACTIONS: dict[Action, tuple[type[ActionBody], str]] = {
    Action.ACCEPT: (ActionBody, "Accept (签收) a ticket sent to your department."),
    Action.START: (ActionBody, "Start work on an accepted ticket."),
    Action.REJECT: (
        ActionBody,
        "Reject (退单) a ticket that is not yours, with the reason: it is routed again past "
        "every department that rejected it, or to the triage queue.",
    ),
    Action.TRANSFER: (TransferBody, "Transfer (转派) to another department, with the reason."),
    Action.REQUEST_INFO: (
        ActionBody,
        "Return for more information (退回补充): the SLA clocks pause until it arrives.",
    ),
    Action.PROVIDE_INFO: (
        ActionBody,
        "The information arrived: work resumes and due times move by the paused working time.",
    ),
    Action.COMMENT: (ActionBody, "An internal comment; the status does not change."),
    Action.RESOLVE: (ResolveBody, "Resolve (办结), with evidence URLs (photos, documents)."),
    Action.CLOSE: (ActionBody, "Close after verification or the citizen's feedback (ops)."),
    Action.REOPEN: (ActionBody, "Reopen a resolved or closed ticket, with a fresh clock (ops)."),
    Action.MERGE: (MergeBody, "Merge into another ticket as its duplicate (ops)."),
}


def _command(action: Action, body: ActionBody) -> ActionInput:
    return ActionInput(
        action=action,
        version=body.version,
        note=body.note,
        to_department=getattr(body, "to_department", None),
        into_ticket=getattr(body, "into_ticket", None),
        evidence_urls=tuple(str(url) for url in getattr(body, "evidence_urls", ())),
    )


def _add_action_route(action: Action, model: type[ActionBody], summary: str) -> None:
    async def take_action(
        ticket_id: uuid.UUID,
        body: model,  # type: ignore[valid-type]
        request: Request,
        pool: PoolDep,
        principal: StaffDep,
    ) -> ActionResult:
        return await _act(request, pool, principal, ticket_id, _command(action, body))

    router.add_api_route(
        f"/{{ticket_id}}/{action.value}",
        take_action,
        methods=["POST"],
        response_model=ActionResult,
        summary=summary.split(":")[0].split("(")[0].strip(),
        description=summary,
        name=f"ticket_{action.name.lower()}",
        responses={400: {"description": "a note, department or ticket the action needs"},
                   403: {"description": "not yours, or not your role's action"},
                   404: {"description": "no such ticket"},
                   409: {"description": "stale version, or not allowed in this status"}},
    )  # fmt: skip


for _action, (_model, _summary) in ACTIONS.items():
    _add_action_route(_action, _model, _summary)
