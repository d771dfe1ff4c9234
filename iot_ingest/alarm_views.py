"""Alarms for people: list them (a department sees its own devices' alarms, the operations
centre all) and acknowledge them. The lifecycle: active and unacknowledged → acknowledged →
cleared (by the rules, when the condition clears), each step in alarm_history."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel

from hub.deps import PoolDep, StaffDep

router = APIRouter(prefix="/api/v1/alarms", tags=["alarms"])
ALARM_SEVERITIES = ("warning", "minor", "major", "critical")  # ascending


class AlarmRead(BaseModel):
    alarm_id: uuid.UUID
    device_id: uuid.UUID
    serial: str
    profile: str
    department_code: str
    district_code: str | None
    lon: float
    lat: float
    alarm_type: str
    severity: str
    raised_at: datetime
    changed_at: datetime
    cleared_at: datetime | None
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    value: float | None
    reason: str


SELECT = """
SELECT a.alarm_id, a.device_id, d.serial, d.profile_code AS profile, d.department_code,
       d.district_code, d.lon, d.lat, a.alarm_type, a.severity, a.raised_at, a.changed_at,
       a.cleared_at, a.acknowledged_at, a.acknowledged_by, a.value, a.reason
FROM alarms a JOIN devices d USING (device_id)
"""


@router.get("", response_model=list[AlarmRead])
async def list_alarms(
    pool: PoolDep,
    principal: StaffDep,
    active: bool = True,
    severity: Annotated[list[str] | None, Query(max_length=4)] = None,
    district: Annotated[list[str] | None, Query(max_length=16)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[AlarmRead]:
    """Alarms, the most severe and newest first; active ones (not cleared) by default."""
    department = principal.scope if principal.role == "department" else None
    rows = await pool.fetch(
        SELECT
        + """WHERE ($1::text IS NULL OR d.department_code = $1)
               AND (a.cleared_at IS NULL) = $2
               AND ($3::text[] IS NULL OR a.severity = ANY($3))
               AND ($4::text[] IS NULL OR d.district_code = ANY($4))
             ORDER BY array_position($5::text[], a.severity) DESC, a.raised_at DESC
             LIMIT $6""",
        department, active, severity, district, list(ALARM_SEVERITIES), limit,
    )  # fmt: skip
    return [AlarmRead.model_validate(dict(row)) for row in rows]


@router.post("/{alarm_id}/ack", response_model=AlarmRead)
async def acknowledge(alarm_id: uuid.UUID, pool: PoolDep, principal: StaffDep) -> AlarmRead:
    """Acknowledge: someone has seen it and is on it. Repeating it changes nothing."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(SELECT + "WHERE a.alarm_id = $1 FOR UPDATE OF a", alarm_id)
        if row is None:
            raise HTTPException(404, detail=f"no alarm {alarm_id}")
        if principal.role == "department" and row["department_code"] != principal.scope:
            raise HTTPException(403, detail=f"{principal.name} may not acknowledge this alarm")
        if row["acknowledged_at"] is None:
            who = f"{principal.name}#{principal.key_id}"
            await conn.execute(
                """UPDATE alarms SET acknowledged_at = now(), acknowledged_by = $2
                   WHERE alarm_id = $1""",
                alarm_id,
                who,
            )
            await conn.execute(
                """INSERT INTO alarm_history (alarm_id, kind, severity, at, value, reason)
                   VALUES ($1, 'acknowledged', $2, now(), NULL, $3)""",
                alarm_id,
                row["severity"],
                f"acknowledged by {who}",
            )
            row = await conn.fetchrow(SELECT + "WHERE a.alarm_id = $1", alarm_id)
    return AlarmRead.model_validate(dict(row))
