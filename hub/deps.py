"""FastAPI dependencies: settings, the pool, the bus and the calling principal.

All are ``async def``: FastAPI runs plain ``def`` dependencies in a thread pool, a costly hop
on every request for what is only an attribute read.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Header, HTTPException, Request
from starlette.requests import HTTPConnection

from hub.auth import KeyResolver, Principal
from hub.bus import EventBus
from hub.guessing import GuessingLimiter
from hub.settings import Settings


async def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def _pool(request: Request) -> Any:
    return request.app.state.pool


async def _bus(request: Request) -> EventBus:
    bus: EventBus = request.app.state.bus
    return bus


async def _principal(
    request: Request,
    x_api_key: Annotated[str | None, Header(description="the caller's API key")] = None,
    authorization: Annotated[str | None, Header(description="or: Bearer <API key>")] = None,
) -> Principal:
    key = x_api_key
    if key is None and authorization and authorization.lower().startswith("bearer "):
        key = authorization[7:].strip()
    if not key:
        raise HTTPException(
            401,
            detail="an API key is required (X-API-Key header or Authorization: Bearer)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    principal = await resolve_key(request, key)
    if principal is None:
        raise HTTPException(
            401, detail="unknown or revoked API key", headers={"WWW-Authenticate": "Bearer"}
        )
    return principal


def client_host(request: HTTPConnection) -> str:
    """The caller's address (uvicorn puts a trusted proxy's X-Forwarded-For here)."""
    return request.client.host if request.client else ""


async def resolve_key(request: HTTPConnection, key: str) -> Principal | None:
    """The key's principal, or None (counted as a failure of the caller's address). An address
    that failed too often hears `TooManyFailures` (429) before its key is looked up."""
    guessing: GuessingLimiter = request.app.state.guessing
    host = client_host(request)
    guessing.check(host)
    keys: KeyResolver = request.app.state.keys
    principal = await keys.resolve(request.app.state.pool, key)
    if principal is None:
        guessing.failed(host)
    return principal


SettingsDep = Annotated[Settings, Depends(_settings)]
PoolDep = Annotated[Any, Depends(_pool)]
BusDep = Annotated[EventBus, Depends(_bus)]
PrincipalDep = Annotated[Principal, Depends(_principal)]


async def _staff(principal: PrincipalDep) -> Principal:
    if principal.role not in ("department", "ops"):
        raise HTTPException(403, detail=f"{principal.name} may not read tickets")
    return principal


StaffDep = Annotated[Principal, Depends(_staff)]


def only_source(source: str) -> Any:
    """A dependency: only the source system itself may post as that source. As a dependency it
    runs before the body is validated, so a stranger learns nothing about the payload's rules."""

    async def _only_this_source(principal: PrincipalDep) -> Principal:
        if principal.role != "source" or principal.scope != source:
            raise HTTPException(403, detail=f"{principal.name} may not post {source} events")
        return principal

    return Depends(_only_this_source)


async def _ops(principal: PrincipalDep) -> Principal:
    if principal.role != "ops":
        raise HTTPException(403, detail=f"{principal.name} is not the operations centre")
    return principal


OpsDep = Annotated[Principal, Depends(_ops)]
