"""Who may call what: every route the app serves × every kind of caller, one cell each, against
the table below. A route the app serves without a row fails `test_every_route_has_a_row`, so a
new endpoint cannot ship without its expectations.

Columns (callers)
    nil  no key at all                        unk  a well-formed key the hub never issued
    dev  a device's access token (as the key; in the path for the device API)
    src  the 12345 hotline's source key       311  an Open311 client's key (source, open311)
    vnd  a device vendor's key                ops  the operations centre
    own  the department that owns the ticket, the device and its alarm
         (urban-management-330302, 鹿城区综合行政执法局)
    oth  another department (water)
Cells
    ok   allowed: anything but 401 and 403 (the request itself may still be refused: a stale
         ticket version 409, a missing field 422, an unknown id 404; nothing is changed)
    401  no or unknown credentials            403  known, but not this caller's to call
    404  refused without confirming that the object exists: events and devices, whose ids
         follow from public facts (source and order number, vendor and serial); tickets and
         alarms have random ids, and another department hears 403
The websocket's refusals are close codes 4401 and 4403 (in the table: 401 and 403). Open311
answers a missing or bad api_key with 403, as GeoReport v2 specifies.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from starlette.routing import Mount, WebSocketRoute

from dispatch.rulebook import load_rulebook
from dispatch.tickets.service import get_ticket
from hub.api import create_app
from hub.auth import create_api_key, generate_key
from hub.settings import Settings
from tests.integration.helpers import incident_change, open_ticket, register_device

pytestmark = pytest.mark.integration

MATRIX = """
route                                                      nil unk dev src 311 vnd ops own oth
GET    /healthz                                            ok  ok  ok  ok  ok  ok  ok  ok  ok
GET    /readyz                                             ok  ok  ok  ok  ok  ok  ok  ok  ok
GET    /openapi.json                                       ok  ok  ok  ok  ok  ok  ok  ok  ok
GET    /docs                                               ok  ok  ok  ok  ok  ok  ok  ok  ok
GET    /docs/oauth2-redirect                               ok  ok  ok  ok  ok  ok  ok  ok  ok
GET    /redoc                                              ok  ok  ok  ok  ok  ok  ok  ok  ok
GET    /                                                   ok  ok  ok  ok  ok  ok  ok  ok  ok
GET    /workbench                                          ok  ok  ok  ok  ok  ok  ok  ok  ok
GET    /static/{path}                                      ok  ok  ok  ok  ok  ok  ok  ok  ok
GET    /api/v1/ops/districts                               ok  ok  ok  ok  ok  ok  ok  ok  ok
WS     /ws/ops                                             401 401 401 403 403 403 ok  403 403
GET    /api/v1/whoami                                      401 401 401 ok  ok  ok  ok  ok  ok
POST   /api/v1/intake/hotline-12345                        401 401 401 ok  403 403 403 403 403
POST   /api/v1/intake/hotline-12345:batch                  401 401 401 ok  403 403 403 403 403
POST   /api/v1/intake/emergency-120                        401 401 401 403 403 403 403 403 403
POST   /api/v1/intake/emergency-120:batch                  401 401 401 403 403 403 403 403 403
POST   /api/v1/intake/urban-inspection                     401 401 401 403 403 403 403 403 403
POST   /api/v1/intake/urban-inspection:batch               401 401 401 403 403 403 403 403 403
POST   /api/v1/intake/grid-governance                      401 401 401 403 403 403 403 403 403
POST   /api/v1/intake/grid-governance:batch                401 401 401 403 403 403 403 403 403
GET    /api/v1/intake/{source}/{external_id}               401 401 401 ok  403 403 ok  403 403
GET    /api/v1/events/{event_id}                           401 401 401 ok  404 404 ok  404 404
GET    /api/v1/tickets                                     401 401 401 403 403 403 ok  ok  ok
GET    /api/v1/tickets?department={own}                    401 401 401 403 403 403 ok  ok  403
GET    /api/v1/tickets/{ticket_id}                         401 401 401 403 403 403 ok  ok  403
POST   /api/v1/tickets/{ticket_id}/accept                  401 401 401 403 403 403 ok  ok  403
POST   /api/v1/tickets/{ticket_id}/start                   401 401 401 403 403 403 ok  ok  403
POST   /api/v1/tickets/{ticket_id}/reject                  401 401 401 403 403 403 403 ok  403
POST   /api/v1/tickets/{ticket_id}/transfer                401 401 401 403 403 403 ok  ok  403
POST   /api/v1/tickets/{ticket_id}/request-info            401 401 401 403 403 403 ok  ok  403
POST   /api/v1/tickets/{ticket_id}/provide-info            401 401 401 403 403 403 ok  ok  403
POST   /api/v1/tickets/{ticket_id}/comment                 401 401 401 403 403 403 ok  ok  403
POST   /api/v1/tickets/{ticket_id}/resolve                 401 401 401 403 403 403 ok  ok  403
POST   /api/v1/tickets/{ticket_id}/close                   401 401 401 403 403 403 ok  403 403
POST   /api/v1/tickets/{ticket_id}/reopen                  401 401 401 403 403 403 ok  403 403
POST   /api/v1/tickets/{ticket_id}/merge                   401 401 401 403 403 403 ok  403 403
GET    /api/v1/departments                                 401 401 401 403 403 403 ok  ok  ok
PUT    /api/v1/admin/departments/{code}/webhook            401 401 401 403 403 403 ok  403 403
DELETE /api/v1/admin/departments/{code}/webhook            401 401 401 403 403 403 ok  403 403
GET    /api/v1/admin/departments/{code}/webhook/deliveries 401 401 401 403 403 403 ok  403 403
GET    /api/v1/admin/dead-letters                          401 401 401 403 403 403 ok  403 403
POST   /api/v1/admin/dead-letters/{letter_id}/replay       401 401 401 403 403 403 ok  403 403
GET    /api/v1/admin/intake-stats                          401 401 401 403 403 403 ok  403 403
GET    /api/v1/admin/routing-rules                         401 401 401 403 403 403 ok  403 403
PUT    /api/v1/admin/routing-rules                         401 401 401 403 403 403 ok  403 403
GET    /api/v1/admin/routing-rules/versions                401 401 401 403 403 403 ok  403 403
GET    /api/v1/admin/routing-rules/versions/{version}      401 401 401 403 403 403 ok  403 403
POST   /api/v1/admin/routing-rules/explain                 401 401 401 403 403 403 ok  403 403
GET    /api/v1/admin/vendors                               401 401 401 403 403 403 ok  403 403
PUT    /api/v1/admin/vendors/{code}                        401 401 401 403 403 403 ok  403 403
POST   /api/v1/admin/devices                               401 401 401 403 403 403 ok  403 403
POST   /api/v1/admin/devices/import                        401 401 401 403 403 403 ok  403 403
POST   /api/v1/admin/devices/{device_id}/disable           401 401 401 403 403 403 ok  403 403
POST   /api/v1/admin/devices/{device_id}/enable            401 401 401 403 403 403 ok  403 403
POST   /api/v1/admin/devices/{device_id}/token             401 401 401 403 403 403 ok  403 403
GET    /api/v1/admin/device-profiles                       401 401 401 403 403 403 ok  403 403
PUT    /api/v1/admin/device-profiles/{code}/rules          401 401 401 403 403 403 ok  403 403
GET    /api/v1/alarms                                      401 401 401 403 403 403 ok  ok  ok
POST   /api/v1/alarms/{alarm_id}/ack                       401 401 401 403 403 403 ok  ok  403
GET    /api/v1/devices                                     401 401 401 403 403 403 ok  ok  ok
GET    /api/v1/devices/{device_id}                         401 401 401 403 403 403 ok  ok  404
POST   /api/v1/vendor/telemetry                            401 401 401 403 403 ok  403 403 403
POST   /api/v1/{token}/telemetry                           401 401 ok  401 401 401 401 401 401
POST   /api/v1/{token}/attributes                          401 401 ok  401 401 401 401 401 401
GET    /open311/v2/discovery.{fmt}                         ok  ok  ok  ok  ok  ok  ok  ok  ok
GET    /open311/v2/services.{fmt}                          ok  ok  ok  ok  ok  ok  ok  ok  ok
GET    /open311/v2/services/{service_code}.{fmt}           ok  ok  ok  ok  ok  ok  ok  ok  ok
GET    /open311/v2/requests.{fmt}                          ok  ok  ok  ok  ok  ok  ok  ok  ok
GET    /open311/v2/requests/{service_request_id}.{fmt}     ok  ok  ok  ok  ok  ok  ok  ok  ok
GET    /open311/v2/tokens/{token}.{fmt}                    ok  ok  ok  ok  ok  ok  ok  ok  ok
POST   /open311/v2/requests.{fmt}                          403 403 403 403 ok  403 403 403 403
"""
OWN, OTHER = "urban-management-330302", "water"
NOWHERE = str(uuid.UUID(int=1))  # an id nothing has: an allowed caller hears 404


def parse(table: str) -> tuple[list[str], dict[str, dict[str, str]]]:
    header, *rows = table.strip().splitlines()
    callers = header.split()[1:]
    expected = {}
    for row in rows:
        method, path, *cells = row.split()
        assert len(cells) == len(callers), row
        expected[f"{method} {path}"] = dict(zip(callers, cells, strict=True))
    return callers, expected


CALLERS, EXPECTED = parse(MATRIX)


def served_routes(app: FastAPI) -> set[str]:
    """Every route of the app as ``METHOD /path`` (``WS`` for websockets; a mount's files as
    ``GET /mount/{path}``); HEAD, which Starlette adds to every GET, is left out."""
    served = set()
    for route in iter_route_contexts(app.routes):
        if isinstance(route.original_route, Mount):
            served.add(f"GET {route.path}/{{path}}")
        elif isinstance(route.original_route, WebSocketRoute):
            served.add(f"WS {route.path}")
        else:
            methods = set(route.methods or ()) - {"HEAD"}
            served.update(f"{method} {route.path}" for method in methods)
    return served


def test_every_route_has_a_row(prepared: Settings) -> None:
    app = create_app(prepared)
    served = served_routes(app)
    paths = app.openapi()["paths"]
    documented = {f"{method.upper()} {path}" for path in paths for method in paths[path]}
    assert documented <= served  # the enumeration misses nothing the OpenAPI document names
    rows = {route for route in EXPECTED if "?" not in route}
    assert served - rows == set(), "routes without a row in MATRIX: add their expectations"
    assert rows - served == set(), "rows for routes the app no longer serves"
    assert {route.split("?")[0] for route in EXPECTED} <= served  # variants of served routes


@dataclass
class World:
    """The callers' credentials and the objects their requests name."""

    credentials: dict[str, str | None]
    device_token: str
    params: dict[str, str]
    ticket_version: int = 0
    alarm_id: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@pytest.fixture(scope="module")
async def app(prepared: Settings) -> AsyncIterator[FastAPI]:
    """One app in this process, with its lifespan, for every cell (HTTP and the websocket)."""
    app = create_app(prepared)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture(scope="module")
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app)
    async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
        yield client


@pytest.fixture(scope="module")
async def world(pool: Any, keys: dict[str, str], prepared: Settings) -> World:
    async with pool.acquire() as conn:
        book = await load_rulebook(conn, prepared.pack_dir)
        open311 = await create_api_key(conn, role="source", scope="open311")
        vendor = await create_api_key(conn, role="vendor", scope="test-vendor")
    # A streetlight in 鹿城区: the pack routes it to OWN.
    change = incident_change(category="streetlight")
    ticket_id = await open_ticket(pool, book, change, now=datetime.now(UTC))
    ticket = await get_ticket(pool, ticket_id=ticket_id)
    assert ticket is not None and ticket["department_code"] == OWN
    token = f"tok-{uuid.uuid4().hex}"
    device_id = await register_device(pool, token, department=OWN)
    alarm_id = uuid.uuid4()
    await pool.execute(
        """INSERT INTO alarms (alarm_id, device_id, alarm_type, severity, raised_at, changed_at,
                               reason)
           VALUES ($1, $2, 'authz-matrix', 'major', now(), now(), 'a test alarm')""",
        alarm_id, device_id,
    )  # fmt: skip
    assert change.event is not None
    event_id = str(change.event.event_id)
    credentials: dict[str, str | None] = {
        "nil": None, "unk": generate_key(), "dev": token, "src": keys["hotline"],
        "311": open311, "vnd": vendor, "ops": keys["ops"], "own": keys["lucheng"],
        "oth": keys["water"],
    }  # fmt: skip
    assert set(credentials) == set(CALLERS)
    params = {"ticket_id": str(ticket_id), "device_id": str(device_id), "alarm_id": str(alarm_id),
              "event_id": event_id, "source": "hotline-12345",
              "external_id": change.event.external_id, "letter_id": str(2**62), "version": "1",
              "fmt": "json", "service_code": "streetlight", "service_request_id": event_id,
              "own": OWN, "path": "app.js"}  # fmt: skip
    return World(credentials, token, params, ticket_version=ticket["version"])


# Path parameters that differ by route, and bodies: what an allowed caller may send without
# changing anything (unknown ids, a stale version, a field missing).
PARAMS: dict[str, dict[str, str]] = {
    "PUT /api/v1/admin/departments/{code}/webhook": {"code": "no-such-department"},
    "DELETE /api/v1/admin/departments/{code}/webhook": {"code": "no-such-department"},
    "GET /api/v1/admin/departments/{code}/webhook/deliveries": {"code": "no-such-department"},
    "PUT /api/v1/admin/vendors/{code}": {"code": "authz-matrix"},
    "PUT /api/v1/admin/device-profiles/{code}/rules": {"code": "no-such-profile"},
    "POST /api/v1/admin/devices/{device_id}/disable": {"device_id": NOWHERE},
    "POST /api/v1/admin/devices/{device_id}/enable": {"device_id": NOWHERE},
    "POST /api/v1/admin/devices/{device_id}/token": {"device_id": NOWHERE},
}
STALE = {"version": 999, "note": "authz matrix"}
BODIES: dict[str, dict[str, Any]] = {
    "POST /api/v1/intake/{source}": {"json": {}},
    "POST /api/v1/intake/{source}:batch": {"json": []},
    "POST /api/v1/tickets/{ticket_id}/{action}": {"json": STALE},
    "POST /api/v1/tickets/{ticket_id}/transfer": {"json": {**STALE, "to_department": OTHER}},
    "POST /api/v1/tickets/{ticket_id}/merge": {"json": {**STALE, "into_ticket": NOWHERE}},
    "PUT /api/v1/admin/departments/{code}/webhook": {"json": {"url": "https://example.invalid/"}},
    "PUT /api/v1/admin/routing-rules": {"json": {}},
    "POST /api/v1/admin/routing-rules/explain": {"json": {"category": "streetlight",
                                                          "district_code": "330302"}},
    "PUT /api/v1/admin/vendors/{code}": {"json": {"code": "not-the-paths", "name": "x"}},
    "POST /api/v1/admin/devices": {"json": {}},
    "POST /api/v1/admin/devices/import": {"content": b"", "headers": {"content-type": "text/csv"}},
    "PUT /api/v1/admin/device-profiles/{code}/rules": {"json": []},
    "POST /api/v1/vendor/telemetry": {"json": {"items": [{"serial": "NO-SUCH-SERIAL",
                                                          "telemetry": {"a": 1}}]}},
    "POST /api/v1/{token}/telemetry": {"content": b"{}"},  # the SDK's connection test
    "POST /api/v1/{token}/attributes": {"content": b'{"authz_matrix": 1}'},
}  # fmt: skip


def body_for(route: str) -> dict[str, Any]:
    if route in BODIES:
        return BODIES[route]
    path = route.split(" ", 1)[1]
    if path.startswith("/api/v1/intake/"):
        batch = ":batch" if path.endswith(":batch") else ""
        return BODIES[f"POST /api/v1/intake/{{source}}{batch}"]
    if path.startswith("/api/v1/tickets/{ticket_id}/"):
        return BODIES["POST /api/v1/tickets/{ticket_id}/{action}"]
    return {}


def request_for(route: str, caller: str, world: World) -> dict[str, Any]:
    method, path = route.split(" ", 1)
    credential = world.credentials[caller]
    params = {**world.params, **PARAMS.get(route, {})}
    if path.startswith("/api/v1/{token}/"):
        # The device API's credential is the token in its path; an API key is no token.
        params["token"] = credential or "no-such-token"
    elif path.startswith("/open311/v2/tokens/"):
        params["token"] = world.params["event_id"]
    request: dict[str, Any] = {"method": method, "url": path.format(**params), **body_for(route)}
    headers = dict(request.pop("headers", {}))
    if credential is not None:
        headers["X-API-Key"] = credential
    if route == "POST /open311/v2/requests.{fmt}":  # Open311 clients send the key in the form
        request["data"] = {"api_key": credential} if credential else {}
    return {**request, "headers": headers}


async def websocket_outcome(app: FastAPI, credential: str | None) -> str:
    """Speak /ws/ops at the ASGI level: "ok" once welcomed, else the close code."""
    hello = {"type": "hello", **({"key": credential} if credential else {})}
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    inbox.put_nowait({"type": "websocket.connect"})
    inbox.put_nowait({"type": "websocket.receive", "text": orjson.dumps(hello).decode()})
    scope = {"type": "websocket", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "scheme": "ws", "path": "/ws/ops", "raw_path": b"/ws/ops", "query_string": b"",
             "root_path": "", "headers": [(b"host", b"hub")], "client": ("127.0.0.1", 1),
             "server": ("hub", 80), "subprotocols": []}  # fmt: skip
    served = asyncio.create_task(app(scope, inbox.get, outbox.put))
    try:
        while True:
            message = await asyncio.wait_for(outbox.get(), 30)
            if message["type"] == "websocket.close":
                return str(message["code"])
            if message["type"] == "websocket.send" and b'"welcome"' in message.get("bytes", b""):
                return "ok"
    finally:
        inbox.put_nowait({"type": "websocket.disconnect", "code": 1000})
        with contextlib.suppress(Exception):
            await asyncio.wait_for(served, 10)


CELLS = [(route, caller) for route in EXPECTED for caller in CALLERS]


@pytest.mark.parametrize(("route", "caller"), CELLS, ids=[f"{r} | {c}" for r, c in CELLS])
async def test_cell(
    app: FastAPI, client: httpx.AsyncClient, world: World, route: str, caller: str
) -> None:
    expected = EXPECTED[route][caller]
    if route.startswith("WS "):
        outcome = await websocket_outcome(app, world.credentials[caller])
        assert outcome == (expected if expected == "ok" else f"4{expected}"), (route, caller)
        return
    answer = await client.request(**request_for(route, caller, world))
    if expected == "ok":
        assert answer.status_code not in (401, 403), (route, caller, answer.text)
        assert answer.status_code < 500, (route, caller, answer.text)
    else:
        assert answer.status_code == int(expected), (route, caller, answer.text)


async def test_the_matrix_changed_nothing(pool: Any, world: World) -> None:
    """Every allowed action carried a stale version or an unknown id: the ticket is as it was."""
    version = await pool.fetchval(
        "SELECT version FROM tickets WHERE ticket_id = $1", uuid.UUID(world.params["ticket_id"])
    )
    assert version == world.ticket_version
    assert await pool.fetchval("SELECT count(*) FROM vendors WHERE code = 'authz-matrix'") == 0


async def test_a_department_lists_only_its_own(
    client: httpx.AsyncClient, world: World, keys: dict[str, str]
) -> None:
    """Each department's lists hold its own things only: never another's ticket, device, alarm."""
    ticket_id, device_id = world.params["ticket_id"], world.params["device_id"]
    alarm_id = world.params["alarm_id"]
    for key, department in ((keys["water"], OTHER), (keys["lucheng"], OWN)):
        headers = {"X-API-Key": key}
        tickets = (await client.get("/api/v1/tickets", headers=headers,
                                    params={"per_page": 200})).json()["items"]  # fmt: skip
        devices = (await client.get("/api/v1/devices", headers=headers,
                                    params={"limit": 1000})).json()  # fmt: skip
        alarms = (await client.get("/api/v1/alarms", headers=headers,
                                   params={"limit": 500})).json()  # fmt: skip
        for listed in (tickets, devices, alarms):
            assert {item["department_code"] for item in listed} <= {department}
        if department == OTHER:  # (OWN's lists may be too long to hold them on one page)
            assert ticket_id not in {t["ticket_id"] for t in tickets}
            assert device_id not in {d["device_id"] for d in devices}
            assert alarm_id not in {a["alarm_id"] for a in alarms}
