"""`hub gateway`: the MQTT 5 / 3.1.1 device gateway (ThingsBoard's MQTT device API).

Why the hub's own: a device connects with its access token as user name and publishes to
``v1/devices/me/...``; a general broker (Mosquitto) cannot map ``me`` to the device, and the
hub must refuse, rate-limit and durably store per device (ThingsBoard's transport is its own
for the same reasons). One process holds every connection on one event loop; readings go to
Kafka through one batching sink.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import signal
import time
from collections import Counter
from typing import Any

from hub.bus import EventBus
from hub.db import create_pool
from hub.guessing import GuessingLimiter
from hub.settings import Settings
from iot_ingest.devices import Device, DeviceRates, DeviceSerials, DeviceTokens
from iot_ingest.mqtt.handlers import Handlers, Limits
from iot_ingest.mqtt.session import SERVER_SHUTTING_DOWN, SESSION_TAKEN_OVER, Session
from iot_ingest.mqtt.sink import TelemetrySink
from schemas import topics

log = logging.getLogger(__name__)
SWEEP_INTERVAL_S = 1.0
FD_RESERVE = 64  # descriptors kept for Kafka, PostgreSQL, logs


class Gateway:
    def __init__(self, settings: Settings, *, pool: Any, bus: EventBus) -> None:
        self.settings = settings
        self.pool = pool
        self.bus = bus
        self.max_packet_bytes = settings.mqtt_max_packet_bytes
        self.receive_maximum = settings.mqtt_receive_maximum
        self.connect_timeout_s = 10
        self.max_connections = min(settings.mqtt_max_connections, _descriptor_budget())
        self.clock = time.monotonic
        self.sessions: set[Session] = set()
        self.by_device: dict[Any, Session] = {}
        self.counters: Counter[str] = Counter()
        self.tokens = DeviceTokens()
        self.guessing = GuessingLimiter(max_failures=settings.auth_max_failures,
                                        window_s=settings.auth_failure_window_s)  # fmt: skip
        self.sink = TelemetrySink(bus, settings.topic(topics.IOT_TELEMETRY))
        self.handlers = Handlers(
            pool=pool,
            sink=self.sink,
            device_rates=DeviceRates(per_second=settings.device_rate_per_s,
                                     burst=settings.device_rate_burst),
            gateway_rates=DeviceRates(per_second=settings.mqtt_gateway_rate_per_s,
                                      burst=settings.mqtt_gateway_rate_per_s * 2),
            serials=DeviceSerials(),
            limits=Limits(settings.mqtt_max_packet_bytes, settings.mqtt_receive_maximum,
                          settings.device_rate_per_s),
        )  # fmt: skip

    def admit(self, session: Session, device: Device) -> bool:
        """Whether a connected device may stay; a second connection of the same device takes
        over (the older one is told so), as in ThingsBoard."""
        if len(self.by_device) >= self.max_connections and device.device_id not in self.by_device:
            self.counters["over_capacity"] += 1
            return False
        earlier = self.by_device.get(device.device_id)
        if earlier is not None and earlier is not session:
            earlier.disconnect(SESSION_TAKEN_OVER, "the same device connected again")
        self.by_device[device.device_id] = session
        self.counters["connected"] += 1
        return True

    def forget(self, session: Session) -> None:
        self.sessions.discard(session)
        if session.device is not None and self.by_device.get(session.device.device_id) is session:
            del self.by_device[session.device.device_id]

    def keepalive_for(self, asked_s: int) -> int:
        """The client's keep-alive, within the server's bounds (MQTT 5 clients are told)."""
        ceiling = self.settings.mqtt_max_keepalive_s
        return ceiling if asked_s == 0 or asked_s > ceiling else asked_s

    def sweep(self) -> None:
        """Close connections silent for 1.5 × their keep-alive (MQTT's rule)."""
        now = self.clock()
        for session in [s for s in self.sessions if now - s.last_seen > 1.5 * s.keepalive_s]:
            self.counters["timed_out"] += 1
            session.disconnect(0x8D, "keep alive timeout")

    async def serve(self, host: str, port: int, *, stop: asyncio.Event) -> None:
        """Accept connections until ``stop`` is set; then close them and flush the sink."""
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: Session(self), host, port, backlog=4096,
                                          reuse_address=True)  # fmt: skip
        sink = asyncio.create_task(self.sink.run())
        log.info("mqtt gateway on %s:%d (at most %d connections)", host, port,
                 self.max_connections)  # fmt: skip
        try:
            while not stop.is_set():
                try:
                    await asyncio.wait_for(stop.wait(), SWEEP_INTERVAL_S)
                except TimeoutError:
                    self.sweep()
        finally:
            server.close()
            for session in list(self.sessions):
                session.disconnect(SERVER_SHUTTING_DOWN, "the gateway is shutting down")
            await asyncio.sleep(0.1)  # let the last PUBACKs of stored readings leave
            sink.cancel()
            await asyncio.gather(sink, return_exceptions=True)
            await server.wait_closed()


def _descriptor_budget() -> int:
    """Connections the process can hold: its open-file limit, raised to the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return max(1, soft - FD_RESERVE)


async def run_gateway(settings: Settings, *, host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    pool = await create_pool(settings.dsn, min_size=1, max_size=4)
    bus = EventBus(settings.bootstrap, send_timeout_s=settings.kafka_send_timeout_s, linger_ms=1)
    await bus.start()
    try:
        gateway = Gateway(settings, pool=pool, bus=bus)
        await gateway.serve(host, port, stop=stop)
        log.info("mqtt gateway stopped: %s", dict(gateway.counters))
    finally:
        await bus.stop()
        await pool.close()
