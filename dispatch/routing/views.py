"""Routing rules admin (operations centre): read, replace as a new version, explain a decision.

Rules are edited as a whole ordered list, the way they are evaluated; each save is a version,
and a save based on an older version than the newest is refused (409) rather than lost.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Request
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from dispatch.routing import store
from dispatch.routing.rules import Rule, parse_rules, rules_to_rows, validate_rules
from dispatch.rulebook import RulebookCache
from dispatch.tickets.actions import actor_of
from hub.deps import OpsDep, PoolDep
from hub.pack import load_pack
from hub.settings import Settings

router = APIRouter(prefix="/api/v1/admin/routing-rules", tags=["admin"])


class RuleModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    position: int = Field(ge=1, le=100_000, description="evaluated in ascending order")
    name: str = Field(min_length=1, max_length=200)
    categories: list[str] = Field(default_factory=list, max_length=100, description="any if empty")
    districts: list[str] = Field(default_factory=list, max_length=100, description="any if empty")
    priorities: list[str] = Field(default_factory=list, max_length=4, description="any if empty")
    hours: str = Field(default="", max_length=11, description="local HH:MM-HH:MM, or any")
    department: str = Field(max_length=64)


class RuleSet(BaseModel):
    version: int | None
    rules: list[RuleModel]


class RuleSetEdit(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base_version: int | None = Field(description="the version this edit starts from")
    note: str = Field(default="", max_length=500)
    rules: list[RuleModel] = Field(max_length=5000)


class VersionInfo(BaseModel):
    version: int
    created_at: datetime
    created_by: str
    note: str
    rules: int


class ExplainQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    category: str | None = Field(default=None, max_length=64)
    district_code: str | None = Field(default=None, max_length=12)
    priority: str = Field(default="normal", pattern="^(urgent|high|normal|low)$")
    at: AwareDatetime | None = Field(default=None, description="when; now if absent")


class Explanation(BaseModel):
    department_code: str
    rule_position: int | None
    reason: str
    routing_version: int | None


def _to_models(rules: list[Rule]) -> list[RuleModel]:
    def split(cell: str) -> list[str]:
        return [part for part in cell.split("|") if part]

    return [
        RuleModel(
            position=int(row["position"]),
            name=row["name"],
            categories=split(row["category"]),
            districts=split(row["district"]),
            priorities=split(row["priority"]),
            hours=row["hours"],
            department=row["department"],
        )
        for row in rules_to_rows(rules)
    ]


def _to_rules(models: list[RuleModel]) -> list[Rule]:
    try:
        return parse_rules(
            {
                "position": str(m.position),
                "name": m.name,
                "category": "|".join(m.categories),
                "district": "|".join(m.districts),
                "priority": "|".join(m.priorities),
                "hours": m.hours,
                "department": m.department,
            }
            for m in models
        )
    except ValueError as exc:
        raise HTTPException(400, detail=str(exc)) from None


async def _known_codes(conn: Any) -> dict[str, set[str]]:
    row = await conn.fetchrow(
        """SELECT (SELECT array_agg(code) FROM departments) AS departments,
                  (SELECT array_agg(code) FROM categories) AS categories"""
    )
    return {
        "departments": set(row["departments"] or ()),
        "categories": set(row["categories"] or ()),
    }


@router.get("", response_model=RuleSet)
async def read_rules(pool: PoolDep, principal: OpsDep) -> RuleSet:
    """The rules that route now, in evaluation order."""
    async with pool.acquire() as conn:
        version = await store.current_version(conn)
        return RuleSet(version=version, rules=_to_models(await store.read_rules(conn, version)))


@router.put("", response_model=RuleSet)
async def replace_rules(
    edit: RuleSetEdit, request: Request, pool: PoolDep, principal: OpsDep
) -> RuleSet:
    """Save the whole ordered list as the next version. Unknown departments, categories or
    districts are refused (400); an edit from an old version is refused (409)."""
    rules = _to_rules(edit.rules)
    settings: Settings = request.app.state.settings
    districts = set(load_pack(settings.pack_dir).district_codes)
    async with pool.acquire() as conn:
        problems = validate_rules(rules, districts=districts, **await _known_codes(conn))
        if problems:
            raise HTTPException(400, detail=problems)
        try:
            version = await store.install_rules(
                conn, rules, created_by=actor_of(principal), note=edit.note,
                base_version=edit.base_version,
            )  # fmt: skip
        except store.StaleVersion as exc:
            raise HTTPException(409, detail=str(exc)) from None
    cache: RulebookCache = request.app.state.rulebook
    cache.forget()
    return RuleSet(version=version, rules=_to_models(rules))


@router.get("/versions", response_model=list[VersionInfo])
async def list_versions(pool: PoolDep, principal: OpsDep) -> list[VersionInfo]:
    """Every saved version, newest first: who saved it, when and why."""
    async with pool.acquire() as conn:
        return [VersionInfo.model_validate(v) for v in await store.list_versions(conn)]


@router.get("/versions/{version}", response_model=RuleSet)
async def read_version(
    version: Annotated[int, Path(ge=1, le=2**31 - 1)], pool: PoolDep, principal: OpsDep
) -> RuleSet:
    async with pool.acquire() as conn:
        rules = await store.read_rules(conn, version)
        if not rules and version != await store.current_version(conn):
            raise HTTPException(404, detail=f"no routing rules version {version}")
    return RuleSet(version=version, rules=_to_models(rules))


@router.post("/explain", response_model=Explanation)
async def explain(
    query: ExplainQuery, request: Request, pool: PoolDep, principal: OpsDep
) -> Explanation:
    """Which department a ticket with these facts would go to now, and which rule says so."""
    cache: RulebookCache = request.app.state.rulebook
    book = await cache.get(pool)
    decision = book.route(
        category=query.category,
        district_code=query.district_code,
        priority=query.priority,
        at=query.at or datetime.now(UTC),
    )
    return Explanation(
        department_code=decision.department_code,
        rule_position=decision.rule_position,
        reason=decision.reason,
        routing_version=book.routing_version,
    )
