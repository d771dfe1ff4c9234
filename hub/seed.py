"""Load a jurisdiction pack into the database. Idempotent: upserts."""

from __future__ import annotations

from typing import Any

import orjson

from hub.pack import Pack


async def seed(conn: Any, pack: Pack) -> int:
    """Upsert the pack's departments and categories; return how many departments it has."""
    async with conn.transaction():
        # Clear the old triage flag first: at most one triage department may exist at a time.
        await conn.execute("UPDATE departments SET is_triage = false WHERE is_triage")
        await conn.executemany(
            """INSERT INTO departments (code, name, is_triage) VALUES ($1, $2, $3)
               ON CONFLICT (code) DO UPDATE SET name = excluded.name,
                                                is_triage = excluded.is_triage""",
            [(d.code, d.name, d.is_triage) for d in pack.departments],
        )
        await conn.executemany(
            """INSERT INTO categories (code, name, grp, department_code, priority, description,
                                       attributes)
               VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)
               ON CONFLICT (code) DO UPDATE SET
                   name = excluded.name, grp = excluded.grp,
                   department_code = excluded.department_code, priority = excluded.priority,
                   description = excluded.description, attributes = excluded.attributes""",
            [
                (c.code, c.name, c.group, c.department_code, c.priority, c.description,
                 orjson.dumps(list(c.attributes)).decode())
                for c in pack.categories
            ],
        )  # fmt: skip
    return len(pack.departments)
