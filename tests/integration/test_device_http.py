"""The ThingsBoard device HTTP API on the real app, Kafka and PostgreSQL: every body shape
reaches `iot.telemetry` as one record per request keyed by device; bad tokens, bad bodies and
too many messages get ThingsBoard's answers."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import orjson
import pytest

from hub.auth import create_api_key
from hub.settings import Settings
from schemas import topics
from schemas.telemetry import TelemetryV1
from tests.integration.helpers import read_until, register_device

pytestmark = pytest.mark.integration


async def telemetry_of(settings: Settings, device_id: uuid.UUID, marker: str) -> TelemetryV1:
    record = await read_until(
        settings,
        topics.IOT_TELEMETRY,
        lambda r: r.key == device_id.bytes and marker.encode() in r.value,
    )
    return TelemetryV1.model_validate_json(record.value)


async def test_every_thingsboard_body_shape_reaches_kafka(
    api: httpx.AsyncClient, pool: Any, prepared: Settings
) -> None:
    token = f"tok-{uuid.uuid4().hex}"
    device_id = await register_device(pool, token)
    now_ms = int(time.time() * 1000)
    bodies = [
        ({"water_level": 3.2, "marker_a": 1}, "marker_a"),
        ({"ts": now_ms - 5000, "values": {"water_level": "3.4", "marker_b": True}}, "marker_b"),
        ([{"ts": now_ms - 2000, "values": {"water_level": 3.5}},
          {"ts": now_ms - 1000, "values": {"water_level": 3.6, "marker_c": "ok"}}], "marker_c"),
        # the SDK's HTTP client stamps local (UTC+8) time as if it were UTC: 8 h ahead
        ([{"ts": now_ms + 8 * 3600_000, "values": {"marker_d": 1}}], "marker_d"),
    ]  # fmt: skip
    for body, _ in bodies:
        answer = await api.post(f"/api/v1/{token}/telemetry", content=orjson.dumps(body))
        assert (answer.status_code, answer.content) == (200, b""), answer.text
    plain = await telemetry_of(prepared, device_id, "marker_a")
    assert plain.via == "http" and plain.profile == "water-level"
    [reading] = plain.readings
    assert abs(reading.ts - now_ms) < 5000 and reading.values["water_level"] == 3.2
    cast = (await telemetry_of(prepared, device_id, "marker_b")).readings[0]
    assert cast.ts == now_ms - 5000 and cast.values == {"water_level": 3.4, "marker_b": True}
    packed = await telemetry_of(prepared, device_id, "marker_c")
    assert [r.values["water_level"] for r in packed.readings] == [3.5, 3.6]  # one record
    ahead = (await telemetry_of(prepared, device_id, "marker_d")).readings[0]
    assert ahead.clamped and ahead.ts <= int(time.time() * 1000)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b'{"water_level": "NaN"}', "NaN"),
        (b'{"water_level": NaN}', "invalid JSON"),
        (b'{"water_level": {"nested": 1}}', "nested"),
        (b"not json", "JSON"),
        (b"[]", "empty"),
    ],
)
async def test_a_bad_body_is_refused_with_a_reason(
    api: httpx.AsyncClient, pool: Any, body: bytes, words: str
) -> None:
    token = f"tok-{uuid.uuid4().hex}"
    await register_device(pool, token)
    answer = await api.post(f"/api/v1/{token}/telemetry", content=body)
    assert answer.status_code == 400 and words.lower() in answer.text.lower(), answer.text


async def test_unknown_tokens_get_401_and_a_chatty_device_429(
    api: httpx.AsyncClient, pool: Any
) -> None:
    unknown = await api.post("/api/v1/no-such-token-123/telemetry", content=b'{"a": 1}')
    assert unknown.status_code == 401
    token = f"tok-{uuid.uuid4().hex}"
    await register_device(pool, token)
    codes = [
        (await api.post(f"/api/v1/{token}/telemetry", content=b'{"a": 1}')).status_code
        for _ in range(30)
    ]
    assert codes[:20] == [200] * 20 and 429 in codes[20:]  # a burst of 20, then limited


async def test_attributes_are_merged_into_the_device(api: httpx.AsyncClient, pool: Any) -> None:
    token = f"tok-{uuid.uuid4().hex}"
    device_id = await register_device(pool, token)
    for body in (b'{"firmware": "1.2.0", "battery": 88}', b'{"battery": "87"}'):
        assert (await api.post(f"/api/v1/{token}/attributes", content=body)).status_code == 200
    stored = await pool.fetchval(
        "SELECT client_attributes FROM devices WHERE device_id = $1", device_id
    )
    assert stored == {"firmware": "1.2.0", "battery": 87}
    # Regression: jsonb cannot hold U+0000; the answer was PostgreSQL's error class, no reason.
    refused = await api.post(f"/api/v1/{token}/attributes", content=b'{"note": "a\\u0000b"}')
    assert refused.status_code == 400 and "U+0000" in refused.text


async def test_a_vendor_batch_answers_each_item_and_packs_records_per_device(
    api: httpx.AsyncClient, pool: Any, prepared: Settings, keys: dict[str, str]
) -> None:
    async with pool.acquire() as conn:
        vendor_key = await create_api_key(conn, role="vendor", scope="test-vendor")
    first = await register_device(pool, f"tok-{uuid.uuid4().hex}")
    second = await register_device(pool, f"tok-{uuid.uuid4().hex}")
    serials = dict(await pool.fetch(
        "SELECT device_id, serial FROM devices WHERE device_id = ANY($1::uuid[])", [first, second]
    ))  # fmt: skip
    now_ms = int(time.time() * 1000)
    batch = {"items": [
        {"serial": serials[first], "telemetry": {"ts": now_ms - 2000, "values": {"vb_mark": 1}}},
        {"serial": serials[first], "telemetry": [{"ts": now_ms - 1000, "values": {"vb_mark": 2}}]},
        {"serial": serials[second], "telemetry": {"water_level_m": "NaN"}},
        {"serial": "NO-SUCH-SERIAL", "telemetry": {"a": 1}},
    ]}  # fmt: skip
    answer = await api.post(
        "/api/v1/vendor/telemetry", json=batch, headers={"X-API-Key": vendor_key}
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["accepted"], body["rejected"]) == (2, 2)
    assert [r["status"] for r in body["results"]] == ["accepted", "accepted", "rejected",
                                                      "rejected"]  # fmt: skip
    assert "NaN" in body["results"][2]["reason"]
    assert body["results"][3]["reason"] == "no such device of this vendor"
    packed = await telemetry_of(prepared, first, "vb_mark")
    assert packed.via == "vendor" and [r.values["vb_mark"] for r in packed.readings] == [1, 2]
    for headers, status in [({}, 401), ({"X-API-Key": keys["water"]}, 403)]:
        denied = await api.post("/api/v1/vendor/telemetry", json=batch, headers=headers)
        assert denied.status_code == status
