"""The hub's one FastAPI application: built by ``create_app()``, served by ``hub api``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from dispatch.deadletters.views import router as admin_router
from dispatch.departments.views import admin_router as departments_admin_router
from dispatch.departments.views import router as departments_router
from dispatch.intake.receipts import ReceiptBook
from dispatch.intake.service import IntakeCounters
from dispatch.intake.views import build_router as build_intake_router
from dispatch.intake.views import events_router
from dispatch.open311.formats import Open311Error, render_error
from dispatch.open311.views import router as open311_router
from dispatch.ops.feed import Feed, follow_forever
from dispatch.ops.pages import WEB_DIST
from dispatch.ops.pages import router as pages_router
from dispatch.ops.views import router as ops_router
from dispatch.routing.views import router as routing_router
from dispatch.rulebook import RulebookCache
from dispatch.tickets.views import router as tickets_router
from hub.auth import KeyResolver
from hub.bus import BusUnavailable, EventBus
from hub.db import create_pool
from hub.guessing import GuessingLimiter, TooManyFailures
from hub.identity import router as identity_router
from hub.limits import BodySizeLimit, RefuseDeepJson, RefuseNulInUrl
from hub.redact import redact_request_logs
from hub.settings import Settings, get_settings
from iot_ingest.alarm_views import router as alarms_router
from iot_ingest.devices import DeviceRates, DeviceTokens
from iot_ingest.registry_views import router as registry_router
from iot_ingest.views import router as device_router
from schemas.intake import CIVIC_SOURCES

log = logging.getLogger(__name__)
health_router = APIRouter(tags=["health"])
DATABASE_ERRORS = (
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.InterfaceError,
    OSError,
)


@health_router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is alive (it says nothing about Kafka or PostgreSQL)."""
    return {"status": "ok"}


@health_router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """Ready when Kafka and PostgreSQL both answer now; 503 names what does not."""
    checks: dict[str, str] = {}
    try:
        await request.app.state.bus.check()
        checks["kafka"] = "ok"
    except BusUnavailable as exc:
        checks["kafka"] = str(exc)
    try:
        await asyncio.wait_for(request.app.state.pool.fetchval("SELECT 1"), timeout=3)
        checks["postgres"] = "ok"
    except (TimeoutError, *DATABASE_ERRORS, asyncpg.PostgresError) as exc:
        checks["postgres"] = f"PostgreSQL does not answer: {exc!r}"
    ready = all(value == "ok" for value in checks.values())
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)


def _open311_validation_error(exc: RequestValidationError) -> Open311Error:
    """The spec's error list: 404 for a format not served, 400 for other bad parameters."""
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"][1:]) or "request"
    if tuple(first["loc"]) == ("path", "fmt"):
        return Open311Error(404, "format not served: use .json or .xml")
    return Open311Error(400, f"{where}: {first['msg']}")


_INTAKE_POSTS = {
    f"/api/v1/intake/{source.value}{suffix}": source.value
    for source in CIVIC_SOURCES
    for suffix in ("", ":batch")
}


def _intake_source(request: Request) -> str | None:
    """The source whose record a refused request carried: only posts to an intake path count."""
    if request.method != "POST":
        return None
    return _INTAKE_POSTS.get(request.url.path)


async def _flush_counters_forever(app: FastAPI) -> None:
    while True:
        await asyncio.sleep(5)
        await app.state.counters.flush(app.state.pool)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.settings = settings
        app.state.keys = KeyResolver()
        app.state.guessing = GuessingLimiter(
            max_failures=settings.auth_max_failures, window_s=settings.auth_failure_window_s
        )
        # min_size=0: the API starts even while PostgreSQL is still coming up.
        app.state.pool = await create_pool(settings.dsn, min_size=0, max_size=10)
        app.state.bus = EventBus(settings.bootstrap, send_timeout_s=settings.kafka_send_timeout_s)
        await app.state.bus.start()
        app.state.counters = IntakeCounters()
        app.state.receipts = ReceiptBook(app.state.pool)
        app.state.rulebook = RulebookCache(settings.pack_dir)
        app.state.device_tokens = DeviceTokens()
        app.state.device_rates = DeviceRates(
            per_second=settings.device_rate_per_s, burst=settings.device_rate_burst
        )
        flusher = asyncio.create_task(_flush_counters_forever(app))
        app.state.ops_feed = Feed()
        following = asyncio.create_task(follow_forever(app.state.ops_feed, settings,
                                                       app.state.pool))  # fmt: skip
        try:
            yield
        finally:
            flusher.cancel()
            following.cancel()
            await asyncio.gather(following, return_exceptions=True)
            await app.state.counters.flush(app.state.pool)
            await app.state.bus.stop()
            await app.state.pool.close()

    app = FastAPI(
        title="City operations hub (一网统管)",
        version="0.1.0",
        lifespan=lifespan,
        default_response_class=JSONResponse,
    )
    app.add_middleware(RefuseDeepJson, max_depth=settings.max_json_depth)  # inside the size limit
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.mount("/static", StaticFiles(directory=WEB_DIST, check_dir=False), name="static")
    app.add_middleware(RefuseNulInUrl)

    @app.exception_handler(BusUnavailable)
    async def _bus_unavailable(request: Request, exc: BusUnavailable) -> JSONResponse:
        return JSONResponse(
            {"detail": f"event bus unavailable, nothing was accepted: {exc}"},
            status_code=503,
            headers={"Retry-After": "5"},
        )

    async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
        log.warning("database unavailable: %r", exc)
        return JSONResponse(
            {"detail": "database unavailable, try again shortly"},
            status_code=503,
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(TooManyFailures)
    async def _guessing(request: Request, exc: TooManyFailures) -> Response:
        headers = {"Retry-After": str(exc.retry_after)}
        if request.url.path.startswith("/open311/"):
            fmt = "xml" if request.url.path.endswith(".xml") else "json"
            response = render_error(Open311Error(429, str(exc), fmt))
            response.headers.update(headers)
            return response
        return JSONResponse({"detail": str(exc)}, status_code=429, headers=headers)

    @app.exception_handler(Open311Error)
    async def _open311_error(request: Request, exc: Open311Error) -> Response:
        return render_error(exc)

    @app.exception_handler(RequestValidationError)
    async def _rejected(request: Request, exc: RequestValidationError) -> Response:
        if request.url.path.startswith("/open311/"):
            return render_error(_open311_validation_error(exc))
        source = _intake_source(request)
        if source is not None:
            request.app.state.counters.add(source, "rejected")
        # The reasons without the rejected input: it may be large and is the caller's anyway.
        errors = [{k: e[k] for k in ("loc", "msg", "type") if k in e} for e in exc.errors()]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.exception_handler(asyncpg.DataError)
    async def _refused_by_database(request: Request, exc: asyncpg.DataError) -> JSONResponse:
        # Input the database cannot represent (a value out of range, an invalid character):
        # the caller's to fix, never a server error.
        return JSONResponse({"detail": f"invalid input: {type(exc).__name__}"}, status_code=400)

    for error in DATABASE_ERRORS:
        app.add_exception_handler(error, _database_unavailable)
    routers = (
        health_router,
        identity_router,
        build_intake_router(settings),
        events_router,
        tickets_router,
        departments_router,
        departments_admin_router,
        admin_router,
        routing_router,
        open311_router,
        alarms_router,
        registry_router,
        ops_router,
        pages_router,
        device_router,  # last: /api/v1/{token}/… must not shadow the fixed paths above
    )
    for router in routers:
        app.include_router(router)
    # Device tokens travel in paths: uvicorn's request lines (the access log, HUB_API_ACCESS_LOG,
    # and websockets') show them masked.
    redact_request_logs(getattr(r, "path", "") for router in routers for r in router.routes)
    return app
