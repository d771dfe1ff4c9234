"""Deeply nested JSON is refused before any handler runs: a 400 that says why, quickly, on every
kind of endpoint that reads JSON (civic intake, device telemetry, vendor batches, admin edits).

Two depths: 10,000 levels (beyond every JSON parser's recursion limit) and 300 (within what
the standard library parses, beyond the 254 levels orjson can write back out)."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pytest

from hub.auth import create_api_key
from tests.integration.helpers import register_device

pytestmark = pytest.mark.integration


def nested(depth: int, inner: bytes = b"1") -> bytes:
    """``depth`` levels of arrays and objects, alternating, around ``inner``."""
    opening = b"".join(b'{"a":' if level % 2 else b"[" for level in range(depth))
    closing = b"".join(b"}" if level % 2 else b"]" for level in reversed(range(depth)))
    return opening + inner + closing


@pytest.fixture(scope="module")
async def callers(pool: Any, keys: dict[str, str]) -> dict[str, str]:
    token = f"tok-{uuid.uuid4().hex}"
    device_id = await register_device(pool, token)
    serial = await pool.fetchval("SELECT serial FROM devices WHERE device_id = $1", device_id)
    async with pool.acquire() as conn:
        vendor = await create_api_key(conn, role="vendor", scope="test-vendor")
    return {"token": token, "serial": serial, "vendor": vendor, "hotline": keys["hotline"],
            "ops": keys["ops"]}  # fmt: skip


def deep_request(endpoint: str, depth: int, callers: dict[str, str]) -> dict[str, Any]:
    """The method, URL, headers and body that put ``depth`` levels where each endpoint reads."""
    json_type = {"Content-Type": "application/json"}
    hotline = {**json_type, "X-API-Key": callers["hotline"]}
    if endpoint == "intake":
        inner = b'{"order_no": "WZ-deep", "content": ' + nested(depth) + b"}"
        return {"method": "POST", "url": "/api/v1/intake/hotline-12345", "content": inner,
                "headers": hotline}  # fmt: skip
    if endpoint == "intake-batch":
        return {"method": "POST", "url": "/api/v1/intake/hotline-12345:batch",
                "content": b"[" + nested(depth) + b"]", "headers": hotline}  # fmt: skip
    if endpoint == "device-telemetry":
        return {"method": "POST", "url": f"/api/v1/{callers['token']}/telemetry",
                "content": nested(depth), "headers": json_type}  # fmt: skip
    if endpoint == "device-telemetry-untyped":  # ThingsBoard firmware often names no type
        return {"method": "POST", "url": f"/api/v1/{callers['token']}/telemetry",
                "content": nested(depth)}  # fmt: skip
    if endpoint == "vendor-telemetry":
        body = (b'{"items": [{"serial": "' + callers["serial"].encode() + b'", "telemetry": '
                + nested(depth) + b"}]}")  # fmt: skip
        return {"method": "POST", "url": "/api/v1/vendor/telemetry", "content": body,
                "headers": {**json_type, "X-API-Key": callers["vendor"]}}  # fmt: skip
    assert endpoint == "profile-rules"
    return {"method": "PUT", "url": "/api/v1/admin/device-profiles/water-level/rules",
            "content": b"[" + nested(depth) + b"]",
            "headers": {**json_type, "X-API-Key": callers["ops"]}}  # fmt: skip


ENDPOINTS = ["intake", "intake-batch", "device-telemetry", "device-telemetry-untyped",
             "vendor-telemetry", "profile-rules"]  # fmt: skip


@pytest.mark.parametrize("depth", [10_000, 300])
@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_deeply_nested_json_is_refused_with_a_reason(
    api: httpx.AsyncClient, callers: dict[str, str], endpoint: str, depth: int
) -> None:
    started = time.monotonic()
    answer = await api.request(**deep_request(endpoint, depth, callers))
    assert answer.status_code == 400, answer.text
    assert "nested" in answer.text, answer.text
    assert time.monotonic() - started < 2


async def test_ordinary_nesting_still_reaches_the_handler(
    api: httpx.AsyncClient, callers: dict[str, str]
) -> None:
    """Ten levels is no problem: the handler answers (telemetry refuses nested values)."""
    answer = await api.request(**deep_request("vendor-telemetry", 10, callers))
    assert answer.status_code == 200, answer.text
    assert answer.json()["results"][0]["status"] == "rejected"
