"""The MQTT gateway (`hub gateway`, a real process) on real Kafka and PostgreSQL, spoken to over
TCP: ThingsBoard's device and gateway topics, CONNACK and PUBACK reason codes in MQTT 5 and
3.1.1, and bad input that closes one connection while the others go on."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from typing import Any

import orjson
import pytest

from hub.settings import Settings
from iot_ingest.mqtt import packets as p
from iot_ingest.mqtt.client import MqttClient, MqttError
from iot_ingest.registry import create_gateway
from schemas import topics
from schemas.telemetry import TelemetryV1
from tests.integration.helpers import read_until, register_device

pytestmark = pytest.mark.integration
HOST = "127.0.0.1"
TELEMETRY = "v1/devices/me/telemetry"


async def device(pool: Any) -> tuple[str, uuid.UUID]:
    token = f"tok-{uuid.uuid4().hex}"
    return token, await register_device(pool, token)


async def telemetry_with(settings: Settings, marker: str) -> TelemetryV1:
    record = await read_until(settings, topics.IOT_TELEMETRY, lambda r: marker.encode() in r.value)
    return TelemetryV1.model_validate_json(record.value)


@pytest.mark.parametrize("level", [p.V5, p.V311])
async def test_a_device_publishes_every_body_shape_and_hears_a_puback_once_stored(
    gateway_port: int, pool: Any, prepared: Settings, level: int
) -> None:
    token, device_id = await device(pool)
    client = await MqttClient.connect(HOST, gateway_port, username=token, level=level)
    marker = f"m{uuid.uuid4().hex[:8]}"
    now_ms = int(time.time() * 1000)
    bodies = [{"water_level_m": 1.5},
              {"ts": now_ms - 2000, "values": {"water_level_m": "1.6"}},
              [{"ts": now_ms - 1000, "values": {"water_level_m": 1.7, marker: 1}}]]  # fmt: skip
    codes = await asyncio.gather(
        *(client.publish(TELEMETRY, orjson.dumps(body), qos=1) for body in bodies)
    )
    assert codes == [0, 0, 0]
    record = await telemetry_with(prepared, marker)
    assert record.device_id == device_id and record.via == "mqtt"
    assert record.readings[-1].values["water_level_m"] == 1.7
    await client.publish(TELEMETRY, orjson.dumps({"water_level_m": 1.8, f"{marker}q0": 1}), qos=0)
    assert (await telemetry_with(prepared, f"{marker}q0")).device_id == device_id
    await client.close()


@pytest.mark.parametrize(
    ("level", "username", "reason"),
    [(p.V5, "no-such-token", 0x87), (p.V5, "", 0x86),
     (p.V311, "no-such-token", 0x05), (p.V311, "", 0x04)],
)  # fmt: skip
async def test_a_bad_or_missing_token_is_refused_with_the_versions_connack_code(
    gateway_port: int, level: int, username: str, reason: int
) -> None:
    with pytest.raises(MqttError) as refused:
        await MqttClient.connect(HOST, gateway_port, username=username, level=level)
    assert refused.value.reason_code == reason


async def test_bad_bodies_are_refused_per_message_and_the_connection_goes_on(
    gateway_port: int, pool: Any
) -> None:
    token, _ = await device(pool)
    client = await MqttClient.connect(HOST, gateway_port, username=token)
    bad = [b"not json", b'{"v": NaN}', b'{"v": "Infinity"}', b'{"v": {"deep": [1]}}',
           b'[{"ts": 1, "values": {"v": 1}}]']  # fmt: skip
    for body in bad:
        assert await client.publish(TELEMETRY, body, qos=1) == 0x99, body
    # Regression: jsonb cannot hold U+0000; PostgreSQL's refusal closed the connection (0x80).
    nul = b'{"note": "a\\u0000b"}'
    assert await client.publish("v1/devices/me/attributes", nul, qos=1) == 0x99
    assert await client.publish("v1/devices/me/nowhere", b"{}", qos=1) == 0x90
    assert await client.publish(TELEMETRY, b'{"water_level_m": 1}', qos=1) == 0
    await client.close()


async def test_over_the_device_rate_the_puback_says_quota_exceeded(
    gateway_port: int, pool: Any, prepared: Settings
) -> None:
    token, _ = await device(pool)
    client = await MqttClient.connect(HOST, gateway_port, username=token)
    burst = int(prepared.device_rate_burst) + 10
    codes = await asyncio.gather(
        *(client.publish(TELEMETRY, b'{"water_level_m": 1}', qos=1) for _ in range(burst))
    )
    assert codes.count(0) >= prepared.device_rate_burst and 0x97 in codes
    assert set(codes) == {0, 0x97}
    await client.close()


async def test_the_sdk_session_limits_rpc_is_answered(gateway_port: int, pool: Any) -> None:
    token, _ = await device(pool)
    client = await MqttClient.connect(HOST, gateway_port, username=token)
    assert client.connack.properties[p.MAXIMUM_QOS] == 1
    assert client.connack.properties[p.RECEIVE_MAXIMUM] > 0
    await client.publish("v1/devices/me/rpc/request/1", b'{"method":"getSessionLimits"}', qos=1)
    answer = await asyncio.wait_for(client.messages.get(), 10)
    assert answer.topic == "v1/devices/me/rpc/response/1"
    limits = orjson.loads(answer.payload)
    assert limits["maxPayloadSize"] > 0 and limits["rateLimits"]["messages"].startswith("10:1")
    await client.close()


async def test_malformed_and_oversized_packets_close_only_their_connection(
    gateway_port: int, pool: Any
) -> None:
    token, _ = await device(pool)
    bystander = await MqttClient.connect(HOST, gateway_port, username=token)

    # Junk before any CONNECT, and a 10 MB PUBLISH: each connection is closed.
    reader, writer = await asyncio.open_connection(HOST, gateway_port)
    writer.write(b"\x10\xff\xff\xff\xff\x7f junk")
    assert await asyncio.wait_for(reader.read(), 10) == b""
    writer.close()

    other_token, _ = await device(pool)
    big = await MqttClient.connect(HOST, gateway_port, username=other_token)
    with pytest.raises(ConnectionError):
        await big.publish(TELEMETRY, b"[" + b" " * 10_000_000 + b"]", qos=1)
    assert big.disconnect_reason == 0x95  # packet too large

    assert await bystander.publish(TELEMETRY, b'{"water_level_m": 1}', qos=1) == 0
    await bystander.close()


async def test_a_silent_client_is_closed_after_one_and_a_half_keepalives(
    gateway_port: int, pool: Any
) -> None:
    token, _ = await device(pool)
    client = await MqttClient.connect(HOST, gateway_port, username=token, keepalive=1)
    started = time.monotonic()
    await client.wait_closed(timeout_s=10)
    assert client.closed and client.disconnect_reason == 0x8D
    assert time.monotonic() - started >= 1.4


async def test_a_device_connecting_again_takes_over_its_session(
    gateway_port: int, pool: Any
) -> None:
    token, _ = await device(pool)
    first = await MqttClient.connect(HOST, gateway_port, username=token)
    second = await MqttClient.connect(HOST, gateway_port, username=token)
    await first.wait_closed(timeout_s=5)
    assert first.closed and first.disconnect_reason == 0x8E
    assert await second.publish(TELEMETRY, b'{"water_level_m": 1}', qos=1) == 0
    await second.close()


async def test_a_gateway_publishes_for_its_vendors_devices_by_serial(
    gateway_port: int, pool: Any, prepared: Settings
) -> None:
    _, first = await device(pool)
    _, second = await device(pool)
    serials = {row["device_id"]: row["serial"] for row in await pool.fetch(
        "SELECT device_id, serial FROM devices WHERE device_id = ANY($1::uuid[])",
        [first, second])}  # fmt: skip
    async with pool.acquire() as conn:
        token = await create_gateway(conn, "test-vendor", f"gw-{uuid.uuid4().hex[:6]}")
    gateway = await MqttClient.connect(HOST, gateway_port, username=token)
    marker = f"g{uuid.uuid4().hex[:8]}"
    now_ms = int(time.time() * 1000)
    body = {serial: [{"ts": now_ms, "values": {"water_level_m": 2.0, marker: 1}}]
            for serial in serials.values()}  # fmt: skip
    assert await gateway.publish("v1/gateway/connect", b'{"device": "x"}', qos=1) == 0
    assert await gateway.publish("v1/gateway/telemetry", orjson.dumps(body), qos=1) == 0
    seen: set[uuid.UUID] = set()
    for _ in range(2):
        record = await read_until(
            prepared, topics.IOT_TELEMETRY,
            lambda r: marker.encode() in r.value and uuid.UUID(bytes=r.key) not in seen,
        )  # fmt: skip
        telemetry = TelemetryV1.model_validate_json(record.value)
        assert telemetry.via == "gateway"
        seen.add(telemetry.device_id)
    assert seen == {first, second}

    unknown = {"NO-SUCH-SERIAL": [{"ts": now_ms, "values": {"v": 1}}]}
    assert await gateway.publish("v1/gateway/telemetry", orjson.dumps(unknown), qos=1) == 0x87
    # A gateway is no device: its own telemetry topic is not its to use, nor HTTP.
    assert await gateway.publish(TELEMETRY, b'{"v": 1}', qos=1) == 0x90
    await gateway.close()


async def test_attributes_are_merged_and_read_back(gateway_port: int, pool: Any) -> None:
    token, device_id = await device(pool)
    client = await MqttClient.connect(HOST, gateway_port, username=token)
    attributes = b'{"firmware": "2.1.0", "battery": 87}'
    assert await client.publish("v1/devices/me/attributes", attributes, qos=1) == 0
    stored = await pool.fetchval(
        "SELECT client_attributes FROM devices WHERE device_id = $1", device_id
    )
    assert stored == {"firmware": "2.1.0", "battery": 87}
    await client.publish("v1/devices/me/attributes/request/7", b'{"clientKeys": "firmware"}')
    answer = await asyncio.wait_for(client.messages.get(), 10)
    assert answer.topic == "v1/devices/me/attributes/response/7"
    assert orjson.loads(answer.payload)["client"]["firmware"] == "2.1.0"
    await client.close()


async def test_garbage_on_many_connections_never_stops_the_gateway(
    gateway_port: int, pool: Any
) -> None:
    """Random bytes after a valid CONNECT and instead of one, on 60 connections at once."""
    rng = random.Random(7)
    token, _ = await device(pool)

    async def junk(index: int) -> None:
        reader, writer = await asyncio.open_connection(HOST, gateway_port)
        if index % 2:
            writer.write(p.encode_connect(client_id=f"junk{index}", username=token, level=p.V5))
        writer.write(rng.randbytes(rng.randrange(1, 4000)))
        try:
            await asyncio.wait_for(reader.read(), 10)  # the gateway closes it, or it idles out
        except TimeoutError:
            pass
        writer.close()

    await asyncio.gather(*(junk(i) for i in range(60)))
    other, _ = await device(pool)
    client = await MqttClient.connect(HOST, gateway_port, username=other)
    assert await client.publish(TELEMETRY, b'{"water_level_m": 1}', qos=1) == 0
    await client.close()


async def test_a_shared_subscription_is_refused_as_the_connack_announced(
    gateway_port: int, pool: Any
) -> None:
    token, _ = await device(pool)
    client = await MqttClient.connect(HOST, gateway_port, username=token)
    assert client.connack.properties[p.SHARED_SUBSCRIPTION_AVAILABLE] == 0
    with pytest.raises(ConnectionError):
        await client.subscribe([("$share/group/v1/devices/me/attributes", 1)])
    assert client.disconnect_reason == 0x9E
