"""Open311 GeoReport v2 under ``/open311/v2/``, in JSON and XML.

Reads are public, as the spec intends; posting needs a per-client ``api_key`` (a ``source`` key
scoped to ``open311``). A posted request is answered with its ``service_request_id`` at once:
it is the event id, durable in Kafka before the answer.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from dispatch.intake import service as intake
from dispatch.intake.checks import location_errors
from dispatch.open311 import service
from dispatch.open311.formats import Open311Error, iso, render
from hub.deps import BusDep, PoolDep, SettingsDep, resolve_key
from hub.pack import load_pack
from schemas import topics
from schemas.event import Source
from schemas.intake import CHINA_TZ, Open311Request

_BOTH: dict[str, Any] = {"content": {"application/json": {}, "text/xml": {}}}
router = APIRouter(
    prefix="/open311/v2",
    tags=["open311"],
    default_response_class=Response,
    responses={
        200: {"description": "the document, in the format the path names", **_BOTH},
        201: {"description": "the request was accepted (POST only)", **_BOTH},
        400: {"description": "the spec's error list", **_BOTH},
        403: {"description": "the spec's error list", **_BOTH},
        404: {"description": "the spec's error list", **_BOTH},
    },
)
DEFAULT_WINDOW = timedelta(days=90)
MAX_REQUESTS = 1000
PERSONAL_FIELDS = ("email", "phone", "first_name", "last_name", "device_id", "account_id")


Format = Literal["json", "xml"]  # an unknown one is answered 404 by the app's handler


@router.get("/discovery.{fmt}")
async def discovery(fmt: Format, request: Request) -> Response:
    """Where this GeoReport v2 endpoint lives and what it speaks."""
    base = str(request.base_url).rstrip("/") + "/open311/v2/"
    document = {
        "changeset": iso(datetime(2026, 11, 26, tzinfo=UTC)),
        "contact": "温州市城市运行管理服务中心 (12345)",
        "key_service": "API keys are issued by the operations centre (hub keys create)",
        "endpoints": [
            {
                "specification": "http://wiki.open311.org/GeoReport_v2",
                "url": base,
                "changeset": iso(datetime(2026, 11, 26, tzinfo=UTC)),
                "type": "production",
                "formats": ["text/xml", "application/json"],
            }
        ],
    }
    return render(fmt, "discovery", document)


@router.get("/services.{fmt}")
async def list_services(fmt: Format, pool: PoolDep) -> Response:
    """Every service (category) a request can be filed under."""
    async with pool.acquire() as conn:
        return render(fmt, "services", await service.list_services(conn))


@router.get("/services/{service_code}.{fmt}")
async def service_definition(service_code: str, fmt: Format, pool: PoolDep) -> Response:
    """The attributes a service asks for (its extra questions)."""
    async with pool.acquire() as conn:
        definition = await service.get_service(conn, code=service_code)
    if definition is None:
        raise Open311Error(404, f"service_code {service_code!r} not found", fmt)
    return render(fmt, "service_definition", definition)


def _attributes(form: Any, definition: dict[str, Any], fmt: str) -> dict[str, str | list[str]]:
    """``attribute[code]`` (and ``attribute[code][]`` for lists), checked against the service."""
    given: dict[str, str | list[str]] = {}
    for key in form:
        if key.startswith("attribute[") and key.endswith("[]"):
            given[key[10:-3]] = form.getlist(key)
        elif key.startswith("attribute[") and key.endswith("]"):
            given[key[10:-1]] = form[key]
    known = {a["code"]: a for a in definition["attributes"]}
    for code in given:
        if code not in known:
            raise Open311Error(400, f"attribute {code!r} is not defined for this service", fmt)
    for code, attribute in known.items():
        value = given.get(code)
        if attribute.get("required") and not value:
            raise Open311Error(400, f"attribute {code!r} is required", fmt)
        allowed = {v["key"] for v in attribute.get("values", [])}
        values = value if isinstance(value, list) else [value] if value else []
        if allowed and any(v not in allowed for v in values):
            raise Open311Error(400, f"attribute {code!r} must be one of {sorted(allowed)}", fmt)
        if attribute.get("datatype") == "number" and values:
            try:
                float(values[0])
            except ValueError:
                raise Open311Error(400, f"attribute {code!r} must be a number", fmt) from None
    return given


async def _client(request: Request, api_key: str | None, fmt: str) -> str:
    principal = await resolve_key(request, api_key) if api_key else None
    if principal is None or principal.role != "source" or principal.scope != Source.OPEN311:
        raise Open311Error(403, "api_key was not provided or is not an Open311 client key", fmt)
    return f"key-{principal.key_id}"


_FORM_FIELDS = {
    "api_key": "the client's key (required)",
    "service_code": "from services (required)",
    "lat": "WGS-84 latitude; lat and long, or address_string, is required",
    "long": "WGS-84 longitude",
    "address_string": "a human-readable address",
    "address_id": "an address id of the jurisdiction",
    "description": "up to 4,000 characters",
    "media_url": "a URL of a photo",
    "email": "stored masked",
    "phone": "stored masked",
    "first_name": "",
    "last_name": "",
    "device_id": "",
    "account_id": "echoed in the answer",
}
POST_FORM = {
    "requestBody": {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "required": ["api_key", "service_code"],
                    "properties": {
                        name: {"type": "string", "description": text}
                        for name, text in _FORM_FIELDS.items()
                    },
                    "additionalProperties": {
                        "type": "string",
                        "description": "attribute[code] (or attribute[code][] for lists)",
                    },
                }
            }
        },
    }
}


@router.post("/requests.{fmt}", openapi_extra=POST_FORM)
async def post_request(
    fmt: Format, request: Request, pool: PoolDep, bus: BusDep, settings: SettingsDep
) -> Response:
    """File a service request (form-encoded, per the spec). Answered once Kafka holds it."""
    form = await request.form()
    client = await _client(request, _str(form.get("api_key")), fmt)
    service_code = _str(form.get("service_code"))
    if not service_code:
        raise Open311Error(400, "service_code is required", fmt)
    async with pool.acquire() as conn:
        definition = await service.get_service(conn, code=service_code)
    if definition is None:
        raise Open311Error(404, f"service_code {service_code!r} not found", fmt)
    fields = {
        "service_code": service_code,
        "description": _str(form.get("description")) or "",
        "lat": _str(form.get("lat")),
        "long": _str(form.get("long")),
        "address_string": _str(form.get("address_string")),
        "address_id": _str(form.get("address_id")),
        "media_url": _str(form.get("media_url")),
        "requested_at": datetime.now(UTC),
        "client": client,
        "attributes": _attributes(form, definition, fmt),
        **{name: _str(form.get(name)) for name in PERSONAL_FIELDS},
    }
    try:
        open311_request = Open311Request.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "request"
        raise Open311Error(400, f"{where}: {first['msg']}", fmt) from None
    pack = load_pack(settings.pack_dir)
    errors = location_errors(open311_request.long, open311_request.lat, "WGS84", pack)
    if errors:
        raise Open311Error(400, f"lat/long: {errors[0]['msg']}", fmt)
    payload = open311_request.model_dump(mode="json", exclude_none=True)
    record = intake.prepare(Source.OPEN311, payload, uuid.uuid4().hex)
    [outcome] = await intake.accept(
        receipts=request.app.state.receipts,
        bus=bus,
        topic=settings.topic(topics.INTAKE_RAW),
        source=Source.OPEN311,
        records=[record],
    )
    request.app.state.counters.add(Source.OPEN311.value, outcome.status)
    answer = {
        "service_request_id": str(outcome.event_id),
        "service_notice": "已受理，将转交相关部门处理",
        "account_id": open311_request.account_id,
    }
    return render(fmt, "service_requests", [answer], status_code=201)


def _str(value: Any) -> str | None:
    """A form value as text; an uploaded file where text belongs is refused."""
    if value is None or isinstance(value, str):
        return value or None
    raise Open311Error(400, "files are not accepted: use media_url")


def _parse_time(value: str | None, name: str, fmt: str) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise Open311Error(400, f"{name} must be an ISO 8601 date-time", fmt) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=CHINA_TZ)


def _ids(value: str, fmt: str) -> list[uuid.UUID]:
    try:
        return [uuid.UUID(part.strip()) for part in value.split(",") if part.strip()]
    except ValueError:
        raise Open311Error(404, "no service request with that service_request_id", fmt) from None


@router.get("/requests.{fmt}")
async def list_requests(
    fmt: Format,
    pool: PoolDep,
    settings: SettingsDep,
    service_request_id: str | None = None,
    service_code: str | None = None,
    start_date: str | None = None,
    end_date: str | None = None,
    status: str | None = None,
) -> Response:
    """Requests, newest first: by id (other filters then ignored, per the spec), or by service
    code, status and date range (default the last 90 days, at most 1,000)."""
    sources = settings.open311_public_sources
    async with pool.acquire() as conn:
        if service_request_id:
            found = await service.requests_by_id(
                conn, ids=_ids(service_request_id, fmt), sources=sources
            )
            return render(fmt, "service_requests", found)
        start = _parse_time(start_date, "start_date", fmt)
        end = _parse_time(end_date, "end_date", fmt)
        end = end or (start + DEFAULT_WINDOW if start else datetime.now(UTC))
        start = start or end - DEFAULT_WINDOW
        if end <= start:
            raise Open311Error(400, "end_date must be after start_date", fmt)
        if end - start > DEFAULT_WINDOW:
            raise Open311Error(400, "start_date to end_date may span at most 90 days", fmt)
        statuses = [s.strip() for s in status.split(",")] if status else None
        if statuses and not set(statuses) <= {"open", "closed"}:
            raise Open311Error(400, "status must be open, closed or both", fmt)
        codes = [c.strip() for c in service_code.split(",")] if service_code else None
        found = await service.requests_filtered(
            conn, sources=sources, start=start, end=end, service_codes=codes,
            statuses=statuses, limit=MAX_REQUESTS,
        )  # fmt: skip
    return render(fmt, "service_requests", found)


@router.get("/requests/{service_request_id}.{fmt}")
async def get_request(
    service_request_id: str, fmt: Format, pool: PoolDep, settings: SettingsDep
) -> Response:
    """One request, as a list of one (the spec's shape)."""
    async with pool.acquire() as conn:
        found = await service.requests_by_id(
            conn, ids=_ids(service_request_id, fmt), sources=settings.open311_public_sources
        )
    if not found:
        raise Open311Error(404, f"no service request {service_request_id}", fmt)
    return render(fmt, "service_requests", found)


@router.get("/tokens/{token}.{fmt}")
async def get_token(token: str, fmt: Format, pool: PoolDep, settings: SettingsDep) -> Response:
    """Tokens are service request ids here (ids are known at once); answered for
    clients that poll tokens."""
    async with pool.acquire() as conn:
        found = await service.requests_by_id(
            conn, ids=_ids(token, fmt), sources=settings.open311_public_sources
        )
    if not found:
        raise Open311Error(404, f"no service request for token {token}", fmt)
    return render(fmt, "service_requests", [{"service_request_id": token, "token": token}])
