"""The departments directory, for transfer targets and escalation contacts (staff only), and
the operations centre's admin of departments' webhooks."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Response
from pydantic import AnyHttpUrl, BaseModel, ConfigDict

from dispatch.departments.webhooks import new_secret
from hub.deps import OpsDep, PoolDep, StaffDep

router = APIRouter(prefix="/api/v1/departments", tags=["departments"])
admin_router = APIRouter(prefix="/api/v1/admin/departments", tags=["admin"])
DepartmentCode = Annotated[str, Path(pattern="^[a-z0-9][a-z0-9-]{1,63}$")]


class Person(BaseModel):
    person: str
    role: str  # handler, supervisor, leader
    phone: str


class DepartmentRead(BaseModel):
    code: str
    name: str
    level: str
    district_code: str | None
    parent_code: str | None
    is_triage: bool
    phone: str
    email: str
    people: list[Person]


@router.get("", response_model=list[DepartmentRead])
async def list_departments(pool: PoolDep, principal: StaffDep) -> list[DepartmentRead]:
    """Every department with its role accounts, city level first."""
    rows = await pool.fetch(
        """SELECT d.code, d.name, d.level, d.district_code, d.parent_code, d.is_triage, d.phone,
                  d.email,
                  coalesce(jsonb_agg(jsonb_build_object('person', p.person, 'role', p.role,
                                                        'phone', p.phone)
                                     ORDER BY p.role, p.person)
                           FILTER (WHERE p.person IS NOT NULL), '[]') AS people
           FROM departments d LEFT JOIN department_people p ON p.department_code = d.code
           GROUP BY d.code ORDER BY d.level, d.code"""
    )
    return [DepartmentRead.model_validate(dict(row)) for row in rows]


class WebhookSet(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: AnyHttpUrl
    enabled: bool = True
    rotate_secret: bool = False


class WebhookRead(BaseModel):
    department_code: str
    url: str
    enabled: bool
    # Shown once, when first set or rotated; null otherwise.
    secret: str | None


class DeliveryRead(BaseModel):
    id: int
    change_id: int
    attempts: int
    next_attempt_at: datetime
    delivered_at: datetime | None
    failed_at: datetime | None
    last_status: int | None
    last_error: str | None
    created_at: datetime


@admin_router.put("/{code}/webhook", response_model=WebhookRead)
async def set_webhook(
    code: DepartmentCode, body: WebhookSet, pool: PoolDep, principal: OpsDep
) -> WebhookRead:
    """Send this department's ticket changes to its own system, signed with HMAC-SHA256. The
    secret is generated here and shown once (when first set, or with rotate_secret)."""
    if not await pool.fetchval("SELECT true FROM departments WHERE code = $1", code):
        raise HTTPException(404, detail=f"no department {code}")
    fresh = new_secret()
    row = await pool.fetchrow(
        """INSERT INTO department_webhooks AS w (department_code, url, secret, enabled)
           VALUES ($1, $2, $3, $4)
           ON CONFLICT (department_code) DO UPDATE SET
               url = excluded.url, enabled = excluded.enabled, updated_at = now(),
               secret = CASE WHEN $5 THEN excluded.secret ELSE w.secret END
           RETURNING secret""",
        code,
        str(body.url),
        fresh,
        body.enabled,
        body.rotate_secret,
    )
    shown = fresh if row["secret"] == fresh else None
    return WebhookRead(department_code=code, url=str(body.url), enabled=body.enabled, secret=shown)


@admin_router.delete("/{code}/webhook", status_code=204)
async def delete_webhook(code: DepartmentCode, pool: PoolDep, principal: OpsDep) -> Response:
    """Stop the webhook; deliveries not yet made are dropped with it."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "DELETE FROM webhook_deliveries WHERE department_code = $1 AND delivered_at IS NULL",
            code,
        )
        await conn.execute("DELETE FROM department_webhooks WHERE department_code = $1", code)
    return Response(status_code=204)


@admin_router.get("/{code}/webhook/deliveries", response_model=list[DeliveryRead])
async def list_deliveries(
    code: DepartmentCode,
    pool: PoolDep,
    principal: OpsDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[DeliveryRead]:
    """The newest deliveries to this department's webhook, with their outcome."""
    rows = await pool.fetch(
        """SELECT id, change_id, attempts, next_attempt_at, delivered_at, failed_at, last_status,
                  last_error, created_at
           FROM webhook_deliveries WHERE department_code = $1 ORDER BY id DESC LIMIT $2""",
        code,
        limit,
    )
    return [DeliveryRead.model_validate(dict(row)) for row in rows]
