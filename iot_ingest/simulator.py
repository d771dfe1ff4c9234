"""`hub simulate`: many devices of a realistic mix across Wenzhou, reporting through the
vendors' batch API (HTTP) or MQTT gateways, with scenarios (a typhoon, a fire, a district going
dark).

Pure parts (placing devices, what each reports at a moment) are separate from the loop that
sends, so they are unit-tested without services. Over MQTT the devices speak through a few
gateway connections (ThingsBoard's gateway API), as field gateways do: one connection per
device for 100,000 devices is more sockets than one client process may open.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from iot_ingest.mqtt.client import MqttClient, MqttError

# Share of each profile among the devices (housing, water and fire departments' estates).
MIX = {"smoke": 0.30, "water-level": 0.20, "rainfall": 0.08, "combustible-gas": 0.12,
       "building-tilt": 0.08, "building-settlement": 0.05, "manhole-cover": 0.12,
       "hydrant-pressure": 0.05}  # fmt: skip
# The typhoon floods the low-lying, coastal and river-side divisions first.
LOW_LYING = frozenset({"330302", "330303", "330304", "330381", "330382", "330383"})
FIRE_RADIUS_M = 400.0
SCENARIOS = ("calm", "typhoon", "fire", "offline")
SLICES_PER_SECOND = 10
STRUCTURAL = frozenset({"building-tilt", "building-settlement"})
WEAK_BUILDINGS = 50


@dataclass(frozen=True)
class SimDevice:
    serial: str
    profile: str
    lon: float
    lat: float
    district: str


@dataclass(frozen=True)
class Scenario:
    name: str = "calm"
    started_at: float = 0.0  # epoch seconds
    # fire: where; offline: which district goes dark
    lon: float = 120.6555
    lat: float = 28.0167
    district: str = "330302"

    def progress(self, now: float, ramp_s: float = 600.0) -> float:
        """0 → 1 over the first ``ramp_s`` of the scenario."""
        return min(1.0, max(0.0, (now - self.started_at) / ramp_s))


def place_devices(
    n: int,
    *,
    seed: int,
    bbox: tuple[float, float, float, float],
    district_of: Callable[[float, float], str | None],
) -> list[SimDevice]:
    """``n`` devices at random points on land inside the city's districts (rejection sampling)."""
    rng = random.Random(seed)  # noqa: S311 - simulated data, not secrets
    profiles, weights = list(MIX), list(MIX.values())
    west, south, east, north = bbox
    devices: list[SimDevice] = []
    while len(devices) < n:
        lon, lat = rng.uniform(west, east), rng.uniform(south, north)
        district = district_of(lon, lat)
        if district is None:
            continue
        profile = rng.choices(profiles, weights)[0]
        devices.append(SimDevice(f"SIM-{len(devices):06d}", profile, round(lon, 6),
                                 round(lat, 6), district))  # fmt: skip
    return devices


def _metres(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    dx = (lon2 - lon1) * 111_320 * math.cos(math.radians(lat1))
    return math.hypot(dx, (lat2 - lat1) * 110_574)


def reading(
    device: SimDevice, now: float, scenario: Scenario, rng: random.Random
) -> dict[str, float | int] | None:
    """What the device reports at ``now`` (None: it is silent), in its profile's keys."""
    if scenario.name == "offline" and device.district == scenario.district:
        return None
    storm = scenario.progress(now) if scenario.name == "typhoon" else 0.0
    flooding = storm if device.district in LOW_LYING else storm * 0.4
    near_fire = scenario.name == "fire" and (
        _metres(device.lon, device.lat, scenario.lon, scenario.lat) <= FIRE_RADIUS_M
    )
    # Sensor noise small enough for the profiles' rate-of-change rules, which compare
    # consecutive readings (10 s apart here): noisier data raised false alarms in calm weather.
    noise = rng.gauss
    if device.profile in STRUCTURAL and not _weak(device):
        storm = 0.0  # a typhoon moves a few weak buildings, not the whole city's
    health = {"battery_pct": 80 + rng.randrange(20), "rssi_dbm": -70 - rng.randrange(30)}
    return {**_measured(device.profile, storm, flooding, near_fire, noise), **health}


def _weak(device: SimDevice) -> bool:
    """One building in WEAK_BUILDINGS, the same ones every run."""
    return zlib.crc32(device.serial.encode()) % WEAK_BUILDINGS == 0


def _measured(
    profile: str, storm: float, flooding: float, near_fire: bool, noise: Callable[..., float]
) -> dict[str, float | int]:
    match profile:
        case "water-level":
            return {"water_level_m": round(2.5 + 3.0 * flooding + noise(0, 0.002), 3)}
        case "rainfall":
            return {"rainfall_mm_h": round(max(0.0, 2 + 78 * storm + noise(0, 1)), 1)}
        case "smoke":
            obscuration = 12.0 if near_fire else abs(noise(0, 0.2))
            return {"smoke_alarm": int(near_fire), "smoke_obscuration_pct_m": round(obscuration, 2)}
        case "combustible-gas":
            return {"gas_lel_pct": round(max(0.0, (30 if near_fire else 0) + noise(1, 0.1)), 1)}
        case "building-tilt":
            return {"tilt_deg": round(0.1 + 0.5 * storm + noise(0, 0.0001), 5)}
        case "building-settlement":
            return {"settlement_mm": round(3 + 5 * storm + noise(0, 0.0005), 4)}
        case "manhole-cover":
            return {
                "cover_open": int(flooding > 0.9),
                "cover_tilt_deg": round(abs(noise(0, 0.3)), 2),
            }
        case _:  # hydrant-pressure
            return {"pressure_mpa": round(0.35 - (0.3 if near_fire else 0.0) + noise(0, 0.001), 4)}


def due(devices: list[SimDevice], tick: int, interval_s: int) -> list[SimDevice]:
    """The devices that report in this second: each once every ``interval_s``, spread out."""
    return [d for i, d in enumerate(devices) if i % interval_s == tick % interval_s]


@dataclass
class Totals:
    sent: int = 0
    accepted: int = 0
    rejected: int = 0
    failed_requests: int = 0


Send = Callable[[list[tuple[str, dict[str, Any]]], "Totals"], Awaitable[None]]


async def post_batches(
    client: httpx.AsyncClient, key: str, items: list[tuple[str, dict[str, Any]]], totals: Totals,
    *, batch_size: int = 500, concurrency: int = 4,
) -> None:  # fmt: skip
    """(serial, telemetry) items through the vendors' batch API."""
    limit = asyncio.Semaphore(concurrency)

    async def post(chunk: list[tuple[str, dict[str, Any]]]) -> None:
        body = {
            "items": [{"serial": serial, "telemetry": telemetry} for serial, telemetry in chunk]
        }
        async with limit:
            try:
                answer = await client.post("/api/v1/vendor/telemetry", json=body,
                                           headers={"X-API-Key": key})  # fmt: skip
            except httpx.HTTPError:
                totals.failed_requests += 1
                return
            if answer.status_code != 200:
                totals.failed_requests += 1
                return
            result = answer.json()
            totals.accepted += result["accepted"]
            totals.rejected += result["rejected"]

    chunks = [items[i : i + batch_size] for i in range(0, len(items), batch_size)]
    totals.sent += len(items)
    await asyncio.gather(*(post(chunk) for chunk in chunks))


class Gateway:
    """One gateway connection that, like a real gateway, connects again after losing the
    hub (at most once a second); readings it could not send meanwhile count as failed."""

    RETRY_S = 1.0

    def __init__(self, host: str, port: int, token: str) -> None:
        self._where = (host, port)
        self._token = token
        self._client: MqttClient | None = None
        self._next_try = 0.0
        self._connecting = asyncio.Lock()

    async def publish(self, topic: str, payload: bytes) -> int:
        client = await self._connected()
        try:
            return await client.publish(topic, payload)
        except ConnectionError:
            self._client = None
            raise

    async def _connected(self) -> MqttClient:
        async with self._connecting:
            if self._client is None:
                if time.monotonic() < self._next_try:
                    raise ConnectionError("gateway connection lost; waiting to reconnect")
                self._next_try = time.monotonic() + self.RETRY_S
                try:
                    self._client = await MqttClient.connect(*self._where, username=self._token,
                                                            keepalive=300)  # fmt: skip
                except (OSError, MqttError) as exc:
                    raise ConnectionError(f"cannot connect: {exc!r}") from exc
            return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()


async def publish_batches(
    gateways: list[Gateway], items: list[tuple[str, dict[str, Any]]], totals: Totals,
    *, batch_size: int = 100,
) -> None:  # fmt: skip
    """(serial, telemetry) items as ``v1/gateway/telemetry`` messages (QoS 1), spread over the
    gateway connections; a refused message (PUBACK ≥ 0x80) counts its readings as rejected."""

    async def publish(index: int, chunk: list[tuple[str, dict[str, Any]]]) -> None:
        body = orjson.dumps({serial: [telemetry] for serial, telemetry in chunk})
        try:
            code = await gateways[index % len(gateways)].publish("v1/gateway/telemetry", body)
        except ConnectionError:
            totals.failed_requests += 1
            return
        if code == 0:
            totals.accepted += len(chunk)
        else:
            totals.rejected += len(chunk)

    chunks = [items[i : i + batch_size] for i in range(0, len(items), batch_size)]
    totals.sent += len(items)
    await asyncio.gather(*(publish(i, chunk) for i, chunk in enumerate(chunks)))


async def run(
    send: Send, devices: list[SimDevice], *, interval_s: int, duration_s: float,
    scenario: Scenario, seed: int = 1, report: Callable[[str], None] = print,
) -> Totals:  # fmt: skip
    """Send every device's readings once per ``interval_s`` for ``duration_s`` (0: forever)."""
    rng = random.Random(seed)  # noqa: S311 - simulated data, not secrets
    totals = Totals()
    started = time.monotonic()
    tick = 0
    while not duration_s or time.monotonic() - started < duration_s:
        now = time.time()
        items = []
        for device in due(devices, tick, interval_s):
            values = reading(device, now, scenario, rng)
            if values is not None:
                items.append((device.serial, {"ts": int(now * 1000), "values": values}))
        # Spread over the second as real devices' clocks are: one burst a second would make
        # every reading wait behind the whole second's.
        for part in range(SLICES_PER_SECOND):
            await send(items[part::SLICES_PER_SECOND], totals)
            await asyncio.sleep(max(0.0, started + tick + (part + 1) / SLICES_PER_SECOND
                                    - time.monotonic()))  # fmt: skip
        tick += 1
        if tick % 10 == 0:
            report(f"simulate: {totals.accepted} readings accepted, {totals.rejected} "
                   f"rejected, {totals.failed_requests} failed requests")  # fmt: skip
        await asyncio.sleep(max(0.0, started + tick - time.monotonic()))
    return totals


async def run_http(base_url: str, key: str, devices: list[SimDevice], **options: Any) -> Totals:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:

        async def send(items: list[tuple[str, dict[str, Any]]], totals: Totals) -> None:
            await post_batches(client, key, items, totals)

        return await run(send, devices, **options)


async def run_mqtt(
    host: str, port: int, gateway_tokens: list[str], devices: list[SimDevice], **options: Any
) -> Totals:
    gateways = [Gateway(host, port, token) for token in gateway_tokens]

    async def send(items: list[tuple[str, dict[str, Any]]], totals: Totals) -> None:
        await publish_batches(gateways, items, totals)

    try:
        return await run(send, devices, **options)
    finally:
        for gateway in gateways:
            await gateway.close()
