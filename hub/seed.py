"""Load a jurisdiction pack (``packs/<name>/``) into the database. Idempotent: upserts."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any


def read_departments(pack_dir: Path) -> list[tuple[str, str, bool]]:
    with open(pack_dir / "departments.csv", newline="", encoding="utf-8") as handle:
        return [
            (row["code"], row["name"], row["is_triage"].strip().lower() == "true")
            for row in csv.DictReader(handle)
        ]


def read_departments_checked(pack_dir: Path) -> list[tuple[str, str, bool]]:
    if not pack_dir.is_dir():
        raise FileNotFoundError(f"no jurisdiction pack at {pack_dir}")
    departments = read_departments(pack_dir)
    if sum(is_triage for _, _, is_triage in departments) != 1:
        raise ValueError(f"{pack_dir}/departments.csv must mark exactly one triage department")
    return departments


async def seed(conn: Any, pack_dir: Path) -> int:
    """Upsert the pack's departments; return how many the pack has."""
    departments = read_departments_checked(pack_dir)  # small CSV files: reading blocks briefly
    async with conn.transaction():
        await conn.executemany(
            """INSERT INTO departments (code, name, is_triage) VALUES ($1, $2, $3)
               ON CONFLICT (code) DO UPDATE SET name = excluded.name,
                                                is_triage = excluded.is_triage""",
            departments,
        )
    return len(departments)
