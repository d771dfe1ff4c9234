"""API keys: random, shown once, stored as SHA-256, resolved through a short-lived cache.

Keys are 256 random bits, so a fast hash is enough: there is nothing to brute-force that a
slow password hash would protect.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Any, Literal

Role = Literal["source", "department", "ops", "vendor"]
KEY_PREFIX = "hub_"


@dataclass(frozen=True)
class Principal:
    role: Role
    scope: str  # the source for 'source', the department code for 'department'
    key_id: int

    @property
    def name(self) -> str:
        return f"{self.role}:{self.scope}" if self.scope else self.role

    @property
    def actor(self) -> str:
        """Who did it, in audit trails: the role, scope and which key."""
        return f"{self.name}#{self.key_id}"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


async def create_api_key(conn: Any, *, role: Role, scope: str = "", label: str = "") -> str:
    """Store a new key's hash and return the key itself, which is never stored."""
    key = generate_key()
    await conn.execute(
        "INSERT INTO api_keys (key_hash, role, scope, label) VALUES ($1, $2, $3, $4)",
        hash_key(key),
        role,
        scope,
        label,
    )
    return key


class KeyResolver:
    """Maps presented keys to principals; remembers answers (also 'no') for ``ttl_s``."""

    def __init__(self, *, ttl_s: float = 30.0, max_entries: int = 50_000) -> None:
        self._ttl_s = ttl_s
        self._max_entries = max_entries
        self._cache: dict[str, tuple[float, Principal | None]] = {}

    async def resolve(self, pool: Any, key: str) -> Principal | None:
        if not key.startswith(KEY_PREFIX) or len(key) > 128:
            return None
        digest = hash_key(key)
        now = time.monotonic()
        hit = self._cache.get(digest)
        if hit is not None and hit[0] > now:
            return hit[1]
        row = await pool.fetchrow(
            "SELECT id, role, scope FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
            digest,
        )
        principal = Principal(row["role"], row["scope"], row["id"]) if row else None
        if len(self._cache) >= self._max_entries:
            self._cache.clear()
        self._cache[digest] = (now + self._ttl_s, principal)
        return principal
