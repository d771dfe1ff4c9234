"""Operations-centre admin: dead letters (list, replay) and intake counters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query
from pydantic import BaseModel

from dispatch.deadletters import service
from dispatch.intake import service as intake
from hub.deps import BusDep, OpsDep, PoolDep

router = APIRouter(prefix="/api/v1/admin", tags=["admin"])


class DeadLetterRead(BaseModel):
    id: int
    topic: str
    partition: int
    offset: int
    source: str | None
    stage: str
    reason: str
    failed_at: datetime
    stored_at: datetime
    replayed_at: datetime | None
    replay_count: int
    value_text: str


class ReplayResult(BaseModel):
    id: int
    replayed_at: datetime
    replay_count: int


class IntakeStats(BaseModel):
    source: str
    accepted: int
    updated: int
    duplicate: int
    rejected: int
    dead_lettered: int


@router.get("/dead-letters", response_model=list[DeadLetterRead])
async def list_dead_letters(
    pool: PoolDep,
    _: OpsDep,
    source: str | None = None,
    stage: str | None = None,
    include_replayed: bool = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    """Records the stream could not process, newest first, each with its reason."""
    async with pool.acquire() as conn:
        return await service.list_letters(
            conn, source=source, stage=stage, include_replayed=include_replayed, limit=limit
        )


@router.post("/dead-letters/{letter_id}/replay", response_model=ReplayResult)
async def replay_dead_letter(
    letter_id: Annotated[int, Path(ge=1, le=2**63 - 1)], pool: PoolDep, bus: BusDep, _: OpsDep
) -> Any:
    """Send the record, byte for byte, back to the topic it failed on (after a fix).

    Replays are idempotent downstream: an event is stored once however often it arrives."""
    async with pool.acquire() as conn:
        letter = await service.get_letter(conn, letter_id=letter_id)
        if letter is None:
            raise HTTPException(404, detail=f"no dead letter {letter_id}")
        await bus.send(letter["topic"], key=letter["key"] or b"", value=letter["value"])
        return await service.mark_replayed(conn, letter_id=letter_id)


@router.get("/intake-stats", response_model=list[IntakeStats])
async def intake_stats(
    pool: PoolDep, _: OpsDep, days: Annotated[int, Query(ge=1, le=366)] = 7
) -> list[dict[str, Any]]:
    """Accepted, updated, duplicate, rejected and dead-lettered records per source."""
    since = (datetime.now(UTC) - timedelta(days=days - 1)).date()
    return await intake.stats(pool, since=since)
