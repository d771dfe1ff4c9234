"""Jurisdiction packs: a city's data (bounds, departments, taxonomy), read from ``packs/``.

Another city is another folder, not a code change. National tables live in ``packs/national``.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Department:
    code: str
    name: str
    is_triage: bool


@dataclass(frozen=True)
class Category:
    code: str
    name: str
    group: str
    department_code: str
    priority: str
    description: str
    attributes: tuple[dict[str, Any], ...]
    # Correlation: reports of this category within radius_m and window_min of each other are
    # one incident; 0 means every report is its own incident.
    radius_m: float = 300.0
    window_min: float = 120.0


@dataclass(frozen=True)
class Pack:
    name: str
    # WGS-84 [west, south, east, north]: coordinates outside it are refused at the edge.
    bbox: tuple[float, float, float, float]
    departments: tuple[Department, ...]
    categories: tuple[Category, ...]
    # (kind, 5-digit code) → category, for urban-management cases (urban-codes.csv).
    urban_code_categories: dict[tuple[str, str], str]
    # (source, the source's own category or "*") → category (source-categories.csv).
    source_categories: dict[tuple[str, str], str]

    def category(self, code: str) -> Category | None:
        return next((c for c in self.categories if c.code == code), None)

    def category_of_source(self, source: str, source_category: str | None) -> str | None:
        """The category a source's own classification maps to, if the pack says."""
        if source_category is None:
            return self.source_categories.get((source, "*"))
        if source == "urban-inspection":
            kind, _, code = source_category.partition(":")
            return self.urban_code_categories.get((kind, code))
        return self.source_categories.get(
            (source, source_category), self.source_categories.get((source, "*"))
        )

    def contains(self, lon: float, lat: float) -> bool:
        west, south, east, north = self.bbox
        return west <= lon <= east and south <= lat <= north


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@lru_cache
def load_pack(pack_dir: Path) -> Pack:
    """Read and check a pack; raises ValueError naming what is wrong."""
    if not pack_dir.is_dir():
        raise FileNotFoundError(f"no jurisdiction pack at {pack_dir}")
    meta = json.loads((pack_dir / "pack.json").read_text(encoding="utf-8"))
    departments = tuple(
        Department(row["code"], row["name"], row["is_triage"].strip().lower() == "true")
        for row in _rows(pack_dir / "departments.csv")
    )
    if sum(d.is_triage for d in departments) != 1:
        raise ValueError(f"{pack_dir}/departments.csv must mark exactly one triage department")
    attributes_path = pack_dir / "service-attributes.json"
    attributes = json.loads(attributes_path.read_text("utf-8")) if attributes_path.exists() else {}
    categories = tuple(
        Category(
            code=row["code"],
            name=row["name"],
            group=row["group"],
            department_code=row["department"],
            priority=row["priority"],
            description=row["description"],
            attributes=tuple(attributes.get(row["code"], ())),
            radius_m=float(row.get("radius_m") or 300),
            window_min=float(row.get("window_min") or 120),
        )
        for row in _rows(pack_dir / "taxonomy.csv")
    )
    known = {d.code for d in departments}
    for category in categories:
        if category.department_code not in known:
            raise ValueError(
                f"category {category.code}: unknown department {category.department_code}"
            )
    bbox = [float(v) for v in meta["bbox"]]
    if len(bbox) != 4:
        raise ValueError(f"{pack_dir}/pack.json: bbox needs 4 numbers")
    codes = {c.code for c in categories}
    urban = {(r["kind"], r["code"]): r["category"] for r in _rows(pack_dir / "urban-codes.csv")}
    by_source = {
        (r["source"], r["source_category"]): r["category"]
        for r in _rows(pack_dir / "source-categories.csv")
    }
    for where, mapped in (("urban-codes.csv", urban), ("source-categories.csv", by_source)):
        unknown = set(mapped.values()) - codes
        if unknown:
            raise ValueError(f"{pack_dir}/{where}: unknown categories {sorted(unknown)}")
    west, south, east, north = bbox
    return Pack(meta["name"], (west, south, east, north), departments, categories, urban, by_source)


@lru_cache
def load_urban_management_codes(packs_dir: Path) -> dict[tuple[str, str], str]:
    """(kind, 5-digit code) → name, from the national table."""
    rows = _rows(packs_dir / "national" / "urban-management-codes.csv")
    return {(row["kind"], row["code"]): row["name"] for row in rows}
