"""The ThingsBoard device HTTP API: ``POST /api/v1/{token}/telemetry`` and ``/attributes``.

Unmodified ThingsBoard firmware and the official SDK's HTTP client work as they are: the same
paths, bodies and answers (200 with an empty body; 401 for an unknown token; 400 for a body it
cannot read; 429 over the device's rate, never 500). Telemetry is on Kafka (acks=all) before
the 200: one record per request, keyed by device, holding all its readings.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Request, Response

from hub.deps import BusDep, PoolDep, SettingsDep
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
    429: {"description": "over the device's message rate; retry after a second"},
}


async def _device(request: Request, pool: object, token: str) -> Device:
    tokens: DeviceTokens = request.app.state.device_tokens
    device = await tokens.resolve(pool, token)
    if device is None:
        raise HTTPException(401, detail="unknown or disabled device token")
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
