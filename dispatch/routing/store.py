"""Routing rule sets in PostgreSQL: every edit is a new version; the newest one routes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dispatch.routing.rules import Rule, parse_rules, rules_to_rows

# The rules as CSV-like rows, the shape parse_rules reads.
READ_RULES = """SELECT position, name, array_to_string(categories, '|') AS category,
                       array_to_string(districts, '|') AS district,
                       array_to_string(priorities, '|') AS priority, hours,
                       department_code AS department
                FROM routing_rules WHERE version = $1 ORDER BY position"""


class StaleVersion(Exception):
    """Someone installed another version since the editor read theirs."""


async def current_version(conn: Any) -> int | None:
    version: int | None = await conn.fetchval("SELECT max(version) FROM routing_rule_sets")
    return version


async def read_rules(conn: Any, version: int | None) -> list[Rule]:
    rows = await conn.fetch(READ_RULES, version)
    return parse_rules({key: str(value) for key, value in dict(row).items()} for row in rows)


async def list_versions(conn: Any) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """SELECT s.version, s.created_at, s.created_by, s.note, count(r.position) AS rules
           FROM routing_rule_sets s LEFT JOIN routing_rules r USING (version)
           GROUP BY s.version ORDER BY s.version DESC"""
    )
    return [dict(row) for row in rows]


async def install_rules(
    conn: Any,
    rules: Sequence[Rule],
    *,
    created_by: str,
    note: str,
    base_version: int | None,
) -> int:
    """Store ``rules`` as the next version, if the newest is still ``base_version``."""
    async with conn.transaction():
        # Serialise editors: two saves from the same base must not both win.
        await conn.execute("LOCK TABLE routing_rule_sets IN SHARE ROW EXCLUSIVE MODE")
        current = await current_version(conn)
        if current != base_version:
            raise StaleVersion(
                f"the rules are at version {current}, not {base_version}: read them again"
            )
        version = (current or 0) + 1
        await conn.execute(
            "INSERT INTO routing_rule_sets (version, created_by, note) VALUES ($1, $2, $3)",
            version,
            created_by,
            note,
        )
        rows = rules_to_rows(rules)
        await conn.executemany(
            """INSERT INTO routing_rules (version, position, name, categories, districts,
                                          priorities, hours, department_code)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
            [
                (version, int(row["position"]), row["name"], _split(row["category"]),
                 _split(row["district"]), _split(row["priority"]), row["hours"],
                 row["department"])
                for row in rows
            ],
        )  # fmt: skip
    return version


def _split(cell: str) -> list[str]:
    return [part for part in cell.split("|") if part]
