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
    profile: str  # "" for a gateway
    vendor: str
    # A gateway speaks for its vendor's devices (MQTT `v1/gateway/...`), never for itself.
    gateway: bool = False


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
            """SELECT device_id, profile_code, vendor_code, false AS gateway FROM devices
               WHERE token_hash = $1 AND disabled_at IS NULL
               UNION ALL
               SELECT gateway_id, '', vendor_code, true FROM gateways
               WHERE token_hash = $1 AND disabled_at IS NULL""",
            hash_token(token),
        )
        device = None
        if row is not None:  # a plain uuid.UUID: asyncpg's own type does not serialise
            device_id = uuid.UUID(bytes=row["device_id"].bytes)
            device = Device(device_id, row["profile_code"], row["vendor_code"], row["gateway"])
        if len(self._cache) >= self._max_entries:
            self._cache.clear()  # crude but bounded: a guessing attacker cannot grow it
        self._cache[token] = (now, device)
        return device


class DeviceSerials:
    """A vendor's devices by serial (how a gateway names them), cached like tokens."""

    def __init__(self, *, ttl_s: float = 30.0, max_entries: int = 200_000) -> None:
        self._ttl_s = ttl_s
        self._max_entries = max_entries
        self._cache: dict[tuple[str, str], tuple[float, Device | None]] = {}

    def cached(self, vendor: str, serials: list[str]) -> dict[str, Device | None] | None:
        """Every serial's device (None: unknown) if all are fresh in the cache, else None."""
        now = time.monotonic()
        found: dict[str, Device | None] = {}
        for serial in serials:
            hit = self._cache.get((vendor, serial))
            if hit is None or now - hit[0] >= self._ttl_s:
                return None
            found[serial] = hit[1]
        return found

    async def resolve(self, pool: Any, vendor: str, serials: list[str]) -> dict[str, Device | None]:
        found = self.cached(vendor, serials)
        if found is not None:
            return found
        rows = await pool.fetch(
            """SELECT serial, device_id, profile_code FROM devices
               WHERE vendor_code = $1 AND serial = ANY($2::text[]) AND disabled_at IS NULL""",
            vendor,
            serials,
        )
        now = time.monotonic()
        known = {
            row["serial"]: Device(uuid.UUID(bytes=row["device_id"].bytes), row["profile_code"],
                                  vendor)
            for row in rows
        }  # fmt: skip
        if len(self._cache) + len(serials) >= self._max_entries:
            self._cache.clear()
        for serial in serials:
            self._cache[vendor, serial] = (now, known.get(serial))
        return {serial: known.get(serial) for serial in serials}


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
