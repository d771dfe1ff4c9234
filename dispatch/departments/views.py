"""The departments directory, for transfer targets and escalation contacts (staff only)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from hub.deps import PoolDep, StaffDep

router = APIRouter(prefix="/api/v1/departments", tags=["departments"])


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
