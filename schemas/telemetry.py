"""What device ingest puts on ``iot.telemetry``: one record per device and request (or MQTT
message), keyed by device id, carrying all its readings; the rules read it in order per device.

Packing a request's readings into one record keeps the per-record cost of Kafka and of the
rule engine's consumer off each reading (a device's readings stay in order and in one place).
"""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict

Value = float | int | bool | str


class ReadingV1(BaseModel):
    model_config = ConfigDict(frozen=True)

    ts: int  # epoch milliseconds, the device's time (clamped if it was absurdly ahead)
    values: dict[str, Value]
    clamped: bool = False


class TelemetryV1(BaseModel):
    model_config = ConfigDict(frozen=True)

    schema_version: Literal[1] = 1
    device_id: uuid.UUID
    profile: str
    received_at: int  # epoch milliseconds, when the hub accepted it
    via: Literal["http", "mqtt", "gateway", "vendor"]
    readings: list[ReadingV1]
