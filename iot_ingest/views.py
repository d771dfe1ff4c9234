"""The ThingsBoard device HTTP API (``POST /api/v1/{token}/telemetry`` and ``/attributes``) and
the vendors' batch API (``POST /api/v1/vendor/telemetry``, with a vendor key).

Unmodified ThingsBoard firmware and the official SDK's HTTP client work as they are: the same
paths, bodies and answers (200 with an empty body; 401 for an unknown token; 400 for a body it
cannot read; 429 over the device's rate, never 500). Telemetry is on Kafka (acks=all) before
the 200: one record per request, keyed by device, holding all its readings.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, HTTPException, Path, Request, Response
from pydantic import BaseModel, Field

from hub.auth import Principal
from hub.deps import BusDep, PoolDep, PrincipalDep, SettingsDep, client_host
from hub.guessing import GuessingLimiter
from iot_ingest.devices import Device, DeviceRates, DeviceTokens
from iot_ingest.payloads import PayloadError, parse_attributes, parse_telemetry
from schemas import topics
from schemas.codec import dumps
from schemas.telemetry import ReadingV1, TelemetryV1

router = APIRouter(prefix="/api/v1", tags=["device API (ThingsBoard-compatible)"])
Token = Annotated[str, Path(min_length=1, max_length=128, description="the device's access token")]
ANSWERS: dict[int | str, dict[str, Any]] = {
    400: {"description": "the body is not telemetry ThingsBoard would accept (reason given)"},
    401: {"description": "unknown or disabled access token"},
    429: {
        "description": "over the device's message rate, or too many unknown tokens from the "
        "caller's address; retry after the Retry-After header's seconds"
    },
}


class VendorItem(BaseModel):
    """One device's telemetry in a vendor batch: the device by the vendor's serial, and a
    ThingsBoard telemetry body (an object, ``{"ts", "values"}``, or an array of either)."""

    serial: str = Field(min_length=1, max_length=128)
    telemetry: Any


class VendorBatch(BaseModel):
    items: list[VendorItem] = Field(min_length=1)


class ItemResult(BaseModel):
    serial: str
    status: Literal["accepted", "rejected"]
    reason: str | None = None


class VendorBatchResult(BaseModel):
    accepted: int
    rejected: int
    results: list[ItemResult]


async def _vendor(principal: PrincipalDep) -> Principal:
    if principal.role != "vendor":
        raise HTTPException(403, detail=f"{principal.name} may not post vendor telemetry")
    return principal


# Before the token routes: "vendor" must not be taken for a device token.
@router.post("/vendor/telemetry", response_model=VendorBatchResult)
async def post_vendor_telemetry(
    batch: VendorBatch,
    request: Request,
    pool: PoolDep,
    bus: BusDep,
    settings: SettingsDep,
    vendor: Annotated[Principal, Depends(_vendor)],
) -> VendorBatchResult:
    """Many devices' telemetry in one request, each item answered on its own: accepted items are
    on Kafka (one record per device) before the answer; a rejected one says why."""
    if len(batch.items) > settings.max_batch_items:
        raise HTTPException(413, detail=f"at most {settings.max_batch_items} items per batch")
    rows = await pool.fetch(
        """SELECT serial, device_id, profile_code FROM devices
           WHERE vendor_code = $1 AND serial = ANY($2::text[]) AND disabled_at IS NULL""",
        vendor.scope,
        [item.serial for item in batch.items],
    )
    known = {row["serial"]: row for row in rows}
    rates: DeviceRates = request.app.state.device_rates
    now_ms = int(time.time() * 1000)
    results: list[ItemResult] = []
    by_device: dict[uuid.UUID, TelemetryV1] = {}
    for item in batch.items:
        row = known.get(item.serial)
        if row is None:
            results.append(ItemResult(serial=item.serial, status="rejected",
                                       reason="no such device of this vendor"))  # fmt: skip
            continue
        device_id = uuid.UUID(bytes=row["device_id"].bytes)
        if not rates.allow(device_id):
            results.append(ItemResult(serial=item.serial, status="rejected",
                                      reason="too many messages from this device"))  # fmt: skip
            continue
        try:
            readings = parse_telemetry(orjson.dumps(item.telemetry), now_ms=now_ms)
        except PayloadError as exc:
            results.append(ItemResult(serial=item.serial, status="rejected", reason=str(exc)))
            continue
        packed = [ReadingV1(ts=r.ts_ms, values=r.values, clamped=r.clamped) for r in readings]
        earlier = by_device.get(device_id)
        by_device[device_id] = TelemetryV1(
            device_id=device_id, profile=row["profile_code"], received_at=now_ms, via="vendor",
            readings=[*(earlier.readings if earlier else []), *packed],
        )  # fmt: skip
        results.append(ItemResult(serial=item.serial, status="accepted"))
    if by_device:
        await bus.send_many(
            settings.topic(topics.IOT_TELEMETRY),
            [(device_id.bytes, dumps(record)) for device_id, record in by_device.items()],
        )
    accepted = sum(r.status == "accepted" for r in results)
    return VendorBatchResult(accepted=accepted, rejected=len(results) - accepted, results=results)


async def _device(request: Request, pool: object, token: str) -> Device:
    guessing: GuessingLimiter = request.app.state.guessing
    host = client_host(request)
    guessing.check(host)  # 429 for an address that failed too often: tokens are not guessed
    tokens: DeviceTokens = request.app.state.device_tokens
    device = await tokens.resolve(pool, token)
    if device is None:
        guessing.failed(host)
        raise HTTPException(401, detail="unknown or disabled device token")
    if device.gateway:
        raise HTTPException(401, detail="a gateway's token: gateways publish over MQTT "
                                        "(v1/gateway/telemetry), never as a device")  # fmt: skip
    rates: DeviceRates = request.app.state.device_rates
    if not rates.allow(device.device_id):
        raise HTTPException(429, detail="too many messages from this device",
                            headers={"Retry-After": "1"})  # fmt: skip
    return device


@router.post("/{token}/telemetry", status_code=200, responses=ANSWERS)
async def post_telemetry(
    token: Token, request: Request, pool: PoolDep, bus: BusDep, settings: SettingsDep
) -> Response:
    """Telemetry: ``{"key": value}``, ``{"ts": ms, "values": {…}}`` or an array of either."""
    device = await _device(request, pool, token)
    now_ms = int(time.time() * 1000)
    try:
        readings = parse_telemetry(await request.body(), now_ms=now_ms)
    except PayloadError as exc:
        raise HTTPException(400, detail=str(exc)) from None
    if not readings:
        return Response(status_code=200)  # all values null, or the SDK's {} connection test
    record = TelemetryV1(
        device_id=device.device_id,
        profile=device.profile,
        received_at=now_ms,
        via="http",
        readings=[ReadingV1(ts=r.ts_ms, values=r.values, clamped=r.clamped) for r in readings],
    )
    await bus.send(
        settings.topic(topics.IOT_TELEMETRY), key=device.device_id.bytes, value=dumps(record)
    )
    return Response(status_code=200)


@router.post("/{token}/attributes", status_code=200, responses=ANSWERS)
async def post_attributes(token: Token, request: Request, pool: PoolDep) -> Response:
    """Client attributes (what the device says about itself): a flat object, merged."""
    device = await _device(request, pool, token)
    try:
        attributes = parse_attributes(await request.body())
    except PayloadError as exc:
        raise HTTPException(400, detail=str(exc)) from None
    await pool.execute(
        "UPDATE devices SET client_attributes = client_attributes || $2::jsonb"
        " WHERE device_id = $1",
        device.device_id,
        attributes,
    )
    return Response(status_code=200)
