"""``GET /api/v1/whoami``: who the calling key is, so a front end can greet and route its user
(the workbench names the department) without probing what it may not do."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from hub.deps import PoolDep, PrincipalDep

router = APIRouter(prefix="/api/v1", tags=["identity"])


class Identity(BaseModel):
    role: str  # source, department, ops, vendor
    scope: str  # the source, department or vendor code; "" for the operations centre
    name: str  # the department's name for a department key, else the scope or the role


@router.get("/whoami", response_model=Identity)
async def whoami(principal: PrincipalDep, pool: PoolDep) -> Identity:
    name = principal.scope or principal.role
    if principal.role == "department":
        name = (
            await pool.fetchval("SELECT name FROM departments WHERE code = $1", principal.scope)
            or name
        )
    return Identity(role=principal.role, scope=principal.scope, name=name)
