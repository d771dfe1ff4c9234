"""Alarms in PostgreSQL, from the rules' changes on iot.alarms. Idempotent: a replayed change
finds its alarm already in that state (raise: ON CONFLICT; others: the same values again) and
its history row already there."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from schemas.alarm import AlarmChangeV1


def _time(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


async def store_alarm_changes(pool: Any, changes: Sequence[AlarmChangeV1]) -> None:
    """Apply changes in order (one device's are in order on its partition)."""
    async with pool.acquire() as conn, conn.transaction():
        for change in changes:
            if change.kind == "raised":
                # ON CONFLICT without a target: a replay (same alarm id) and, should it ever
                # happen, a second active alarm of the device and type are both refused.
                await conn.execute(
                    """INSERT INTO alarms (alarm_id, device_id, alarm_type, severity, raised_at,
                                           changed_at, value, reason)
                       VALUES ($1, $2, $3, $4, $5, $5, $6, $7) ON CONFLICT DO NOTHING""",
                    change.alarm_id, change.device_id, change.alarm_type, change.severity,
                    _time(change.at), change.value, change.reason,
                )  # fmt: skip
            elif change.kind == "cleared":
                await conn.execute(
                    "UPDATE alarms SET cleared_at = $2, changed_at = $2 WHERE alarm_id = $1",
                    change.alarm_id,
                    _time(change.at),
                )
            else:
                await conn.execute(
                    """UPDATE alarms SET severity = $2, changed_at = $3, value = $4,
                                         reason = $5
                       WHERE alarm_id = $1 AND cleared_at IS NULL""",
                    change.alarm_id, change.severity, _time(change.at), change.value,
                    change.reason,
                )  # fmt: skip
            await conn.execute(
                """INSERT INTO alarm_history (alarm_id, kind, severity, at, value, reason)
                   SELECT $1, $2, $3, $4, $5, $6
                   WHERE EXISTS (SELECT 1 FROM alarms WHERE alarm_id = $1)
                   ON CONFLICT DO NOTHING""",
                change.alarm_id, change.kind, change.severity, _time(change.at), change.value,
                change.reason,
            )  # fmt: skip
