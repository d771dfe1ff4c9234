"""One asyncpg pool per process, with jsonb as Python objects via orjson."""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec(
        "jsonb",
        encoder=lambda value: orjson.dumps(value).decode(),
        decoder=orjson.loads,
        schema="pg_catalog",
    )


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Skip asyncpg's reset query on release: the hub keeps no session state (no LISTEN, no
    session advisory locks, no temp tables, transactions always closed), and the reset was a
    round trip on every request."""


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10) -> Any:
    """A pool whose connections speak jsonb as dicts and lists."""
    return await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        reset=_keep_session,
        command_timeout=30,
    )
