"""The official ThingsBoard Python SDK (`tb-mqtt-client`, unmodified) against the hub: its MQTT 5
client through `hub gateway` and its HTTP client through `hub api`, each pushing readings of a
river gauge that raise an alarm and then clear it in the real worker."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from tb_device_http import TBHTTPDevice
from tb_device_mqtt import TBDeviceMqttClient

from tests.integration.helpers import cleared_alarm, register_device

pytestmark = pytest.mark.integration

# Data time an hour ago: above 4.0 m for over 120 s (warning), then below 3.8 m for over 600 s.
LEVELS = [(0, 4.2), (130, 4.3), (200, 4.35), (900, 3.0), (1000, 3.1), (1700, 3.0)]


def readings(start_ms: int) -> list[dict[str, Any]]:
    return [{"ts": start_ms + s * 1000, "values": {"water_level_m": v}} for s, v in LEVELS]


async def raised_then_cleared(pool: Any, device_id: uuid.UUID) -> Any:
    alarm = await cleared_alarm(pool, device_id, "high-water-level")
    kinds = await pool.fetch(
        "SELECT kind FROM alarm_history WHERE alarm_id = $1 ORDER BY at, kind", alarm["alarm_id"]
    )
    return alarm, [k["kind"] for k in kinds]


def push_over_mqtt(port: int, token: str, body: list[dict[str, Any]]) -> tuple[int, bool]:
    """The SDK as a device's firmware uses it: connect, wait for the session, send, disconnect."""
    client = TBDeviceMqttClient("127.0.0.1", port=port, username=token)
    client.connect()
    deadline = time.monotonic() + 20
    while not (client.is_connected() and client.rate_limits_received):
        assert time.monotonic() < deadline, "the SDK never finished connecting"
        time.sleep(0.05)
    result = client.send_telemetry(body).get()
    limits_applied = client.max_payload_size < 65536  # the hub's limit, less the SDK's margin
    client.disconnect()
    client.stop()
    return result, limits_applied


async def test_the_sdks_mqtt_client_raises_and_clears_an_alarm(
    gateway_port: int, worker: Any, pool: Any
) -> None:
    token = f"tok-{uuid.uuid4().hex}"
    device_id = await register_device(pool, token)
    start_ms = int(time.time() * 1000) - 3600_000
    result, limits_applied = await asyncio.to_thread(
        push_over_mqtt, gateway_port, token, readings(start_ms)
    )
    assert result == 0 and limits_applied
    alarm, kinds = await raised_then_cleared(pool, device_id)
    assert kinds[0] == "raised" and kinds[-1] == "cleared"
    assert int(alarm["raised_at"].timestamp() * 1000) == start_ms + 130_000  # data time


def push_over_http(url: str, token: str, body: list[dict[str, Any]]) -> bool:
    device = TBHTTPDevice(url, token)
    connected = device.connect()  # posts {} to test the connection
    for reading in body:
        at = datetime.fromtimestamp(reading["ts"] / 1000, tz=UTC)
        device.send_telemetry(reading["values"], timestamp=at, queued=False)
    device.stop_publish_worker()
    return connected


async def test_the_sdks_http_client_raises_and_clears_an_alarm(
    api_url: str, worker: Any, pool: Any
) -> None:
    token = f"tok-{uuid.uuid4().hex}"
    device_id = await register_device(pool, token)
    start_ms = int(time.time() * 1000) - 3600_000
    assert await asyncio.to_thread(push_over_http, api_url, token, readings(start_ms))
    alarm, kinds = await raised_then_cleared(pool, device_id)
    assert kinds[0] == "raised" and kinds[-1] == "cleared"
    assert int(alarm["raised_at"].timestamp() * 1000) == start_ms + 130_000
