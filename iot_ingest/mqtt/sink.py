"""Readings from every MQTT session to ``iot.telemetry``, in batches.

A session hands over a device's readings and gets a future; the sink sends everything that
arrived since its last send as one ``send_many`` (one record per device, its readings in
arrival order) and settles the futures when Kafka has acknowledged, so a PUBACK means durable.
One send at a time keeps each device's records in order on its partition; under load the
batches simply grow while the previous send is in flight.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field

from hub.bus import BusUnavailable, EventBus
from iot_ingest.payloads import Reading
from schemas.codec import dumps
from schemas.telemetry import ReadingV1, TelemetryV1

log = logging.getLogger(__name__)


@dataclass
class _Batch:
    done: asyncio.Future[None]  # one for everyone in the batch: it succeeds or fails as a whole
    records: dict[uuid.UUID, TelemetryV1] = field(default_factory=dict)


class TelemetrySink:
    def __init__(self, bus: EventBus, topic: str) -> None:
        self._bus = bus
        self._topic = topic
        self._batch = self._new_batch()
        self._ready = asyncio.Event()
        self.sent_records = 0
        self.sent_readings = 0

    def submit(
        self, device_id: uuid.UUID, profile: str, via: str, readings: list[Reading]
    ) -> asyncio.Future[None]:
        """Queue a device's readings; the future resolves once Kafka has them (or raises
        BusUnavailable)."""
        packed = [ReadingV1(ts=r.ts_ms, values=r.values, clamped=r.clamped) for r in readings]
        records = self._batch.records
        earlier = records.get(device_id)
        if earlier is not None:
            packed = [*earlier.readings, *packed]
        records[device_id] = TelemetryV1.model_construct(
            device_id=device_id, profile=profile, received_at=int(time.time() * 1000), via=via,
            readings=packed, schema_version=1,
        )  # fmt: skip
        self._ready.set()
        return self._batch.done

    @staticmethod
    def _new_batch() -> _Batch:
        return _Batch(done=asyncio.get_running_loop().create_future())

    async def run(self) -> None:
        """Send batches until cancelled; a cancelled sink still sends what it holds."""
        try:
            while True:
                await self._ready.wait()
                await self._send_one_batch()
        finally:
            if self._batch.records:
                await self._send_one_batch()

    async def _send_one_batch(self) -> None:
        batch, self._batch = self._batch, self._new_batch()
        self._ready.clear()
        records = [(device_id.bytes, dumps(record)) for device_id, record in batch.records.items()]
        try:
            await self._bus.send_many(self._topic, records)
        except BusUnavailable as exc:
            log.warning("telemetry batch of %d records not stored: %s", len(records), exc)
            batch.done.set_exception(exc)
            return
        self.sent_records += len(records)
        self.sent_readings += sum(len(r.readings) for r in batch.records.values())
        batch.done.set_result(None)
