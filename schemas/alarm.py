"""What the IoT rules put on ``iot.alarms``: one record per alarm change, keyed by device."""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict

# Fixed, never changed: an alarm's id derives from (device, type, raise time), so a replay
# names the same alarm.
ALARM_ID_NAMESPACE = uuid.UUID("d6a3f0c2-1b4e-4c8a-9f57-2e8b6c1a7d35")


def alarm_id_for(device_id: uuid.UUID, alarm_type: str, raised_at_ms: int) -> uuid.UUID:
    return uuid.uuid5(ALARM_ID_NAMESPACE, f"{device_id}|{alarm_type}|{raised_at_ms}")


class AlarmChangeV1(BaseModel):
    model_config = ConfigDict(frozen=True)

    schema_version: Literal[1] = 1
    alarm_id: uuid.UUID
    device_id: uuid.UUID
    profile: str
    alarm_type: str
    kind: Literal["raised", "escalated", "deescalated", "cleared"]
    severity: Literal["warning", "minor", "major", "critical"] | None  # None once cleared
    previous: Literal["warning", "minor", "major", "critical"] | None
    raised_at: int  # epoch ms (data time) the alarm was raised
    at: int  # epoch ms (data time) of the reading that caused this change
    value: float | None
    reason: str
