"""Intake for civic source systems: validate, mask, make durable in Kafka, then answer.

Normalisation happens in the stream, not here: the edge stays thin and fast, and a replay of
``intake.raw`` re-normalises with whatever the adapters know by then. (No ``from __future__
import annotations`` here: the per-source endpoints take their body type from a variable.)
"""

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Body, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from dispatch.intake import service
from dispatch.intake.checks import payload_errors
from dispatch.intake.models import (
    BatchResult,
    EventStatusRead,
    IntakeAccepted,
    ReadBack,
)
from dispatch.tickets import service as tickets
from hub.auth import Principal
from hub.deps import BusDep, PoolDep, PrincipalDep, SettingsDep, only_source
from hub.pack import load_pack, load_urban_management_codes
from hub.settings import Settings
from schemas import topics
from schemas.event import Source
from schemas.intake import CIVIC_SOURCES, SourcePayload, SourceSpec


def json_safe_errors(exc: ValidationError) -> list[dict[str, Any]]:
    return [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]


def _check(settings: Settings, spec: SourceSpec, payload: SourcePayload) -> list[dict[str, Any]]:
    return payload_errors(
        payload,
        spec,
        pack=load_pack(settings.pack_dir),
        urban_codes=load_urban_management_codes(settings.packs_dir),
        now=datetime.now(UTC),
    )


def _single_endpoint(source: Source, spec: SourceSpec) -> Any:
    model = spec.model

    async def post_one(
        payload: model,  # type: ignore[valid-type]
        request: Request,
        response: Response,
        bus: BusDep,
        settings: SettingsDep,
    ) -> IntakeAccepted:
        errors = _check(settings, spec, payload)
        if errors:
            raise RequestValidationError(errors)  # counted as rejected by the app's handler
        valid_payload: SourcePayload = payload
        record = service.prepare(
            source, valid_payload.model_dump(mode="json"), spec.external_id(valid_payload)
        )
        [outcome] = await service.accept(
            receipts=request.app.state.receipts,
            bus=bus,
            topic=settings.topic(topics.INTAKE_RAW),
            source=source,
            records=[record],
        )
        request.app.state.counters.add(source.value, outcome.status)
        response.status_code = 200 if outcome.status == "duplicate" else 202
        assert outcome.event_id is not None
        return IntakeAccepted(event_id=outcome.event_id, status=outcome.status)  # type: ignore[arg-type]

    post_one.__doc__ = (
        f"Accept one {source.value} record ({model.__name__}). 202 once Kafka holds it; "
        "the same record again is answered 200 `duplicate`, a changed one 202 `updated`."
    )
    return post_one


def _batch_endpoint(source: Source, spec: SourceSpec, max_items: int) -> Any:
    async def post_batch(
        items: Annotated[list[dict[str, Any]], Body(min_length=1, max_length=max_items)],
        request: Request,
        bus: BusDep,
        settings: SettingsDep,
    ) -> BatchResult:
        results: list[dict[str, Any] | None] = [None] * len(items)
        valid: list[tuple[int, service.Prepared]] = []
        for index, item in enumerate(items):
            try:
                payload = spec.model.model_validate(item)
            except ValidationError as exc:
                results[index] = {
                    "index": index,
                    "status": "rejected",
                    "errors": json_safe_errors(exc),
                }
                continue
            errors = _check(settings, spec, payload)
            if errors:
                # Inside a batch item a field is named from the item, as pydantic's errors are.
                item_errors = [{**e, "loc": e["loc"][1:]} for e in errors]
                results[index] = {"index": index, "status": "rejected", "errors": item_errors}
                continue
            record = service.prepare(
                source, payload.model_dump(mode="json"), spec.external_id(payload)
            )
            valid.append((index, record))
        outcomes = await service.accept(
            receipts=request.app.state.receipts,
            bus=bus,
            topic=settings.topic(topics.INTAKE_RAW),
            source=source,
            records=[record for _, record in valid],
        )
        for (index, _), outcome in zip(valid, outcomes, strict=True):
            results[index] = {
                "index": index,
                "status": outcome.status,
                "event_id": outcome.event_id,
            }
        final = [r for r in results if r is not None]
        statuses = ("accepted", "updated", "duplicate", "rejected")
        counts = {status: sum(r["status"] == status for r in final) for status in statuses}
        for status, count in counts.items():
            if count:
                request.app.state.counters.add(source.value, status, count)
        # Already the documented shape (BatchResult): answered directly, not re-validated.
        body = orjson.dumps({**counts, "results": final})
        return Response(body, media_type="application/json")  # type: ignore[return-value]

    post_batch.__doc__ = (
        f"Accept up to {max_items} {source.value} records ({spec.model.__name__}) in one "
        "request. 200 with one result per item, in order: accepted, updated, duplicate, or "
        "rejected with the reasons. Only valid items are sent; 503 means none was accepted."
    )
    return post_batch


def _ticket_summary(row: Any) -> dict[str, Any] | None:
    """The ticket columns of a read-back row (aliased ticket_status, ticket_updated_at)."""
    if row["ticket_id"] is None:
        return None
    return {
        "ticket_id": row["ticket_id"],
        "status": row["ticket_status"],
        "department_code": row["department_code"],
        "department_name": row["department_name"],
        "updated_at": row["ticket_updated_at"],
    }


def _may_read(principal: Principal, source: str) -> bool:
    return principal.role == "ops" or (principal.role == "source" and principal.scope == source)


def build_router(settings: Settings) -> APIRouter:
    router = APIRouter(prefix="/api/v1/intake", tags=["intake"])
    for source, spec in CIVIC_SOURCES.items():
        router.add_api_route(
            f"/{source.value}", _single_endpoint(source, spec), methods=["POST"],
            status_code=202, response_model=IntakeAccepted,
            dependencies=[only_source(source.value)],
            name=f"intake_{source.name.lower()}",
            responses={200: {"model": IntakeAccepted, "description": "duplicate"}},
        )  # fmt: skip
        router.add_api_route(
            f"/{source.value}:batch", _batch_endpoint(source, spec, settings.max_batch_items),
            methods=["POST"], response_model=BatchResult,
            dependencies=[only_source(source.value)],
            name=f"intake_{source.name.lower()}_batch",
        )  # fmt: skip

    @router.get("/{source}/{external_id}", response_model=ReadBack)
    async def read_back(
        source: Source, external_id: str, pool: PoolDep, principal: PrincipalDep
    ) -> ReadBack:
        """Where a record a source sent stands: its event, ticket, status and department."""
        if not _may_read(principal, source.value):
            detail = f"{principal.name} may not read {source.value} records"
            raise HTTPException(403, detail=detail)
        row = await service.read_back(pool, source=source, external_id=external_id)
        if row is None:
            raise HTTPException(404, detail=f"no {source.value} record {external_id!r}")
        ticket = _ticket_summary(row)
        state = "ticketed" if ticket else "stored" if row["revision"] is not None else "queued"
        return ReadBack.model_validate({**row, "state": state, "ticket": ticket})

    return router


events_router = APIRouter(prefix="/api/v1/events", tags=["intake"])


@events_router.get("/{event_id}", response_model=EventStatusRead)
async def read_event_status(
    event_id: uuid.UUID, pool: PoolDep, principal: PrincipalDep
) -> EventStatusRead:
    """Read back an event by its id: where it stands and which ticket carries it."""
    row = await tickets.get_event_status(pool, event_id=event_id)
    if row is None or not _may_read(principal, row["source"]):
        raise HTTPException(
            404, detail=f"no processed event {event_id} visible to {principal.name} (yet)"
        )
    return EventStatusRead.model_validate({**row, "ticket": _ticket_summary(row)})
