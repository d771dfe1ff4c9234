"""Dead letters kept in PostgreSQL, listed for operators, replayed after a fix."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from hub.sql import load_queries

Q = load_queries(Path(__file__).with_name("queries.sql"))


def parse_record(value: bytes) -> tuple[Any, ...]:
    """A dead-letter topic record as a row for the ``store`` query. Raises ValueError."""
    letter = orjson.loads(value)
    return (
        letter["topic"],
        int(letter["partition"]),
        int(letter["offset"]),
        letter.get("source"),
        letter["stage"],
        letter["reason"],
        base64.b64decode(letter.get("key_b64", "")),
        base64.b64decode(letter["value_b64"]),
        datetime.fromisoformat(letter["failed_at"]),
    )


async def store(conn: Any, rows: Sequence[tuple[Any, ...]]) -> None:
    columns = list(zip(*rows, strict=True))
    await conn.execute(Q["store"], *[list(column) for column in columns])


async def list_letters(
    conn: Any, *, source: str | None, stage: str | None, include_replayed: bool, limit: int
) -> list[dict[str, Any]]:
    rows = await conn.fetch(Q["list"], source, stage, include_replayed, limit)
    # Dead letters are often not valid UTF-8: shown with replacement characters, never refused.
    return [
        {**dict(row), "value_text": row["value"].decode("utf-8", errors="replace")} for row in rows
    ]


async def get_letter(conn: Any, *, letter_id: int) -> dict[str, Any] | None:
    row = await conn.fetchrow(Q["get"], letter_id)
    return dict(row) if row else None


async def mark_replayed(conn: Any, *, letter_id: int) -> dict[str, Any]:
    return dict(await conn.fetchrow(Q["mark_replayed"], letter_id))
