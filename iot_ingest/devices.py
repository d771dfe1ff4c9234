"""Devices as ingest sees them: resolved from their access token through a short-lived cache
(never a database query per message), and rate-limited per device.

The cache keeps answers, "unknown" included, for ``ttl_s``: a token disabled or rotated in the
registry stops working within that time.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from iot_ingest.registry import hash_token


@dataclass(frozen=True)
class Device:
    device_id: uuid.UUID
    profile: str
    vendor: str


class DeviceTokens:
    def __init__(self, *, ttl_s: float = 30.0, max_entries: int = 200_000) -> None:
        self._ttl_s = ttl_s
        self._max_entries = max_entries
        self._cache: dict[str, tuple[float, Device | None]] = {}

    async def resolve(self, pool: Any, token: str) -> Device | None:
        if not 1 <= len(token) <= 128:
            return None
        now = time.monotonic()
        hit = self._cache.get(token)
        if hit is not None and now - hit[0] < self._ttl_s:
            return hit[1]
        row = await pool.fetchrow(
            """SELECT device_id, profile_code, vendor_code FROM devices
               WHERE token_hash = $1 AND disabled_at IS NULL""",
            hash_token(token),
        )
        device = None
        if row is not None:  # a plain uuid.UUID: asyncpg's own type does not serialise
            device_id = uuid.UUID(bytes=row["device_id"].bytes)
            device = Device(device_id, row["profile_code"], row["vendor_code"])
        if len(self._cache) >= self._max_entries:
            self._cache.clear()  # crude but bounded: a guessing attacker cannot grow it
        self._cache[token] = (now, device)
        return device


class DeviceRates:
    """A token bucket per device: ``burst`` messages at once, ``per_second`` sustained."""

    def __init__(self, *, per_second: float, burst: float, max_devices: int = 500_000) -> None:
        self._rate = per_second
        self._burst = burst
        self._max_devices = max_devices
        self._buckets: dict[uuid.UUID, tuple[float, float]] = {}

    def allow(self, device_id: uuid.UUID) -> bool:
        now = time.monotonic()
        tokens, at = self._buckets.get(device_id, (self._burst, now))
        tokens = min(self._burst, tokens + (now - at) * self._rate)
        if tokens < 1:
            self._buckets[device_id] = (tokens, now)
            return False
        if len(self._buckets) >= self._max_devices:
            self._buckets.clear()
        self._buckets[device_id] = (tokens - 1, now)
        return True
