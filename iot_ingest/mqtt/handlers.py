"""What the gateway does with each PUBLISH, by topic (ThingsBoard's device and gateway API).

A handler answers in one of three ways, and the session treats them differently:

* an `Outcome` now (refusals, RPC replies);
* a future that resolves once Kafka has the readings (telemetry): the session goes on reading
  and sends the PUBACK when it resolves, in order;
* a coroutine when the answer needs the database first (a gateway naming devices not in the
  cache, attributes): the session stops reading until it is done, so one connection's
  messages are still handled in the order they came.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeAlias

import orjson

from iot_ingest.devices import Device, DeviceRates, DeviceSerials
from iot_ingest.mqtt.sink import TelemetrySink
from iot_ingest.payloads import (
    PayloadError,
    Reading,
    parse_attributes,
    parse_gateway_telemetry,
    parse_telemetry,
)

TELEMETRY = "v1/devices/me/telemetry"
ATTRIBUTES = "v1/devices/me/attributes"
ATTRIBUTES_REQUEST = "v1/devices/me/attributes/request/"
RPC_REQUEST = "v1/devices/me/rpc/request/"
RPC_RESPONSE = "v1/devices/me/rpc/response/"
GATEWAY_TELEMETRY = "v1/gateway/telemetry"
GATEWAY_ATTRIBUTES = "v1/gateway/attributes"
GATEWAY_CONNECT = "v1/gateway/connect"
GATEWAY_DISCONNECT = "v1/gateway/disconnect"
MAX_REQUEST_ID_LENGTH = 20

# PUBACK reason codes (MQTT 5); a 3.1.1 client hears a refusal as the connection closing.
OK = 0x00
UNSPECIFIED_ERROR = 0x80
NOT_AUTHORIZED = 0x87
TOPIC_NAME_INVALID = 0x90
QUOTA_EXCEEDED = 0x97
PAYLOAD_FORMAT_INVALID = 0x99


@dataclass(frozen=True, slots=True)
class Outcome:
    reason: int = OK
    text: str | None = None


ACCEPTED = Outcome()
Later: TypeAlias = "Coroutine[Any, Any, Outcome | asyncio.Future[None]]"
Answer: TypeAlias = "Outcome | asyncio.Future[None] | Later"
Reply = Callable[[str, bytes], None]  # publish (topic, payload) to this client


@dataclass
class Limits:
    """What a session may do, as the SDK's ``getSessionLimits`` RPC reports it."""

    max_packet_bytes: int
    receive_maximum: int
    device_rate_per_s: float

    def session_limits(self) -> bytes:
        per_second = max(1, int(self.device_rate_per_s))
        window = f"{per_second}:1,{per_second * 60}:60"
        return orjson.dumps({
            "maxPayloadSize": self.max_packet_bytes,
            "maxInflightMessages": self.receive_maximum,
            "rateLimits": {"messages": window, "telemetryMessages": window},
        })  # fmt: skip


class Handlers:
    def __init__(
        self,
        *,
        pool: Any,
        sink: TelemetrySink,
        device_rates: DeviceRates,
        gateway_rates: DeviceRates,
        serials: DeviceSerials,
        limits: Limits,
    ) -> None:
        self._pool = pool
        self._sink = sink
        self._device_rates = device_rates
        self._gateway_rates = gateway_rates
        self._serials = serials
        self._limits = limits

    def handle(self, device: Device, topic: str, payload: bytes, reply: Reply) -> Answer:
        if topic.startswith(RPC_REQUEST):
            return self._rpc(topic[len(RPC_REQUEST) :], payload, reply)
        if topic.startswith(RPC_RESPONSE):
            return ACCEPTED  # answers to server-side RPCs; the hub sends none yet
        rates = self._gateway_rates if device.gateway else self._device_rates
        if not rates.allow(device.device_id):
            return Outcome(QUOTA_EXCEEDED, "too many messages from this connection")
        if device.gateway:
            return self._gateway(device, topic, payload)
        if topic == TELEMETRY:
            return self._telemetry(device, payload)
        if topic == ATTRIBUTES:
            return self._attributes(device, payload)
        if topic.startswith(ATTRIBUTES_REQUEST):
            return self._attributes_request(device, topic[len(ATTRIBUTES_REQUEST) :], reply)
        return Outcome(TOPIC_NAME_INVALID, f"no such topic for a device: {topic[:80]}")

    def _telemetry(self, device: Device, payload: bytes) -> Answer:
        try:
            readings = parse_telemetry(payload, now_ms=int(time.time() * 1000))
        except PayloadError as exc:
            return Outcome(PAYLOAD_FORMAT_INVALID, str(exc))
        if not readings:
            return ACCEPTED
        return self._sink.submit(device.device_id, device.profile, "mqtt", readings)

    def _attributes(self, device: Device, payload: bytes) -> Answer:
        try:
            attributes = parse_attributes(payload)
        except PayloadError as exc:
            return Outcome(PAYLOAD_FORMAT_INVALID, str(exc))
        return self._merge_attributes([(device, attributes)])

    async def _merge_attributes(self, changes: list[tuple[Device, dict[str, Any]]]) -> Outcome:
        await self._pool.executemany(
            "UPDATE devices SET client_attributes = client_attributes || $2::jsonb"
            " WHERE device_id = $1",
            [(device.device_id, attributes) for device, attributes in changes],
        )
        return ACCEPTED

    def _attributes_request(self, device: Device, request_id: str, reply: Reply) -> Answer:
        if not request_id.isdigit() or len(request_id) > MAX_REQUEST_ID_LENGTH:
            return Outcome(TOPIC_NAME_INVALID, "the request id must be a number")

        async def answer() -> Outcome:
            stored = await self._pool.fetchval(
                "SELECT client_attributes FROM devices WHERE device_id = $1", device.device_id
            )
            # The hub keeps no shared (server-set) attributes yet.
            body = {"client": stored or {}, "shared": {}}
            reply(f"v1/devices/me/attributes/response/{request_id}", orjson.dumps(body))
            return ACCEPTED

        return answer()

    def _rpc(self, request_id: str, payload: bytes, reply: Reply) -> Answer:
        if not request_id.isdigit() or len(request_id) > MAX_REQUEST_ID_LENGTH:
            return Outcome(TOPIC_NAME_INVALID, "the request id must be a number")
        try:
            method = orjson.loads(payload).get("method")
        except (orjson.JSONDecodeError, AttributeError):
            return Outcome(PAYLOAD_FORMAT_INVALID, 'an RPC request is {"method": …, "params": …}')
        if method == "getSessionLimits":
            body = self._limits.session_limits()
        else:
            body = orjson.dumps({"error": f"unsupported method {str(method)[:60]!r}"})
        reply(RPC_RESPONSE + request_id, body)
        return ACCEPTED

    def _gateway(self, gateway: Device, topic: str, payload: bytes) -> Answer:
        if topic == GATEWAY_TELEMETRY:
            try:
                by_name = parse_gateway_telemetry(payload, now_ms=int(time.time() * 1000))
            except PayloadError as exc:
                return Outcome(PAYLOAD_FORMAT_INVALID, str(exc))
            return self._children(gateway, by_name, self._send_children)
        if topic == GATEWAY_ATTRIBUTES:
            try:
                attributes = _gateway_attributes(payload)
            except PayloadError as exc:
                return Outcome(PAYLOAD_FORMAT_INVALID, str(exc))
            return self._children(gateway, attributes, self._merge_children_attributes)
        if topic in (GATEWAY_CONNECT, GATEWAY_DISCONNECT):
            return ACCEPTED  # devices are registered beforehand; nothing to create or forget
        return Outcome(TOPIC_NAME_INVALID, f"no such topic for a gateway: {topic[:80]}")

    def _children(
        self, gateway: Device, by_name: dict[str, Any], then: Callable[[dict[str, Any],
        dict[str, Device]], Answer]
    ) -> Answer:  # fmt: skip
        """Resolve the named devices (from the cache if it can), then ``then`` them; a name that
        is not a device of the gateway's vendor refuses the whole message."""
        names = list(by_name)
        known = self._serials.cached(gateway.vendor, names)
        if known is not None:
            return self._checked(known, by_name, then)

        async def look_up() -> Outcome | asyncio.Future[None]:
            found = await self._serials.resolve(self._pool, gateway.vendor, names)
            answer = self._checked(found, by_name, then)
            if asyncio.iscoroutine(answer):
                return await answer
            return answer

        return look_up()

    def _checked(
        self,
        found: dict[str, Device | None],
        by_name: dict[str, Any],
        then: Callable[[dict[str, Any], dict[str, Device]], Answer],
    ) -> Answer:
        unknown = [name for name, device in found.items() if device is None]
        if unknown:
            return Outcome(NOT_AUTHORIZED, f"not a device of this gateway's vendor: {unknown[0]!r}")
        devices = {name: device for name, device in found.items() if device is not None}
        over = [name for name, device in devices.items()
                if not self._device_rates.allow(device.device_id)]  # fmt: skip
        if over:
            return Outcome(QUOTA_EXCEEDED, f"too many messages for device {over[0]!r}")
        return then(by_name, devices)

    def _send_children(
        self, by_name: dict[str, list[Reading]], devices: dict[str, Device]
    ) -> Answer:
        futures = [
            self._sink.submit(device.device_id, device.profile, "gateway", by_name[name])
            for name, device in devices.items()
            if by_name[name]
        ]
        if not futures:
            return ACCEPTED
        return futures[0]  # all in the sink's current batch: one future

    def _merge_children_attributes(
        self, by_name: dict[str, dict[str, Any]], devices: dict[str, Device]
    ) -> Answer:
        return self._merge_attributes([(devices[name], by_name[name]) for name in devices])


def _gateway_attributes(payload: bytes) -> dict[str, dict[str, Any]]:
    """``{"device name": {attributes}, ...}``, each object checked as device attributes are."""
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise PayloadError(f"not JSON: {exc}") from None
    if type(data) is not dict or not data:
        raise PayloadError("gateway attributes must be a non-empty object of device name to object")
    return {
        str(name): parse_attributes(orjson.dumps(attributes)) for name, attributes in data.items()
    }
