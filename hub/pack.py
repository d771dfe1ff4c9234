"""Jurisdiction packs: a city's data (bounds, departments, taxonomy), read from ``packs/``.

Another city is another folder, not a code change. National tables live in ``packs/national``.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from dispatch.routing.rules import Rule, parse_rules, validate_rules
from streams.iot.rules import RuleError, parse_rule_set, rule_set_to_json

LEVELS = ("city", "district")
ROLES = ("handler", "supervisor", "leader")


@dataclass(frozen=True)
class Department:
    code: str
    name: str
    is_triage: bool
    level: str = "city"
    # The county-level division a district department serves (GB/T 2260, ``330302``).
    district_code: str | None = None
    # A district department's municipal counterpart: escalations go there.
    parent_code: str | None = None
    phone: str = ""
    email: str = ""


@dataclass(frozen=True)
class Person:
    """A department's role account (duty handler, supervisor, leader), not a named person."""

    department_code: str
    person: str
    role: str
    phone: str = ""


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
class DeviceProfile:
    code: str
    name: str
    department_code: str
    reporting_interval_s: int
    inactivity_timeout_s: int


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
    people: tuple[Person, ...] = ()
    # The pack's starting routing rules (routing-rules.csv), in position order.
    routing_rules: tuple[Rule, ...] = ()
    # The folder it was read from, for files other modules read themselves (sla-policies.csv).
    directory: Path = Path()
    # The division codes of districts.geojson.
    district_codes: frozenset[str] = frozenset()
    # Kinds of IoT device (device-profiles.csv): the owning department and default intervals.
    device_profiles: tuple[DeviceProfile, ...] = ()
    # Each profile's starting alarm rules (device-rules.json) as JSON, checked; `hub seed` puts
    # them in device_profiles.rules, where operations admins edit them. [] when it has none.
    device_rules: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

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
    districts = _district_codes(pack_dir / "districts.geojson")
    departments = tuple(_department(row) for row in _rows(pack_dir / "departments.csv"))
    if sum(d.is_triage for d in departments) != 1:
        raise ValueError(f"{pack_dir}/departments.csv must mark exactly one triage department")
    _check_departments(departments, districts, where=pack_dir / "departments.csv")
    people = _load_people(pack_dir / "department-people.csv", departments)
    device_profiles = _load_device_profiles(pack_dir / "device-profiles.csv", departments)
    device_rules = _load_device_rules(pack_dir / "device-rules.json", device_profiles)
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
    rules = _load_routing_rules(
        pack_dir / "routing-rules.csv",
        departments={d.code for d in departments},
        categories=codes,
        districts=districts,
    )
    west, south, east, north = bbox
    return Pack(
        meta["name"],
        (west, south, east, north),
        departments,
        categories,
        urban,
        by_source,
        people=people,
        routing_rules=rules,
        directory=pack_dir,
        district_codes=frozenset(districts),
        device_profiles=device_profiles,
        device_rules=device_rules,
    )


def _district_codes(path: Path) -> set[str]:
    """The division codes of the pack's districts.geojson (empty if the pack has none)."""
    if not path.exists():
        return set()
    collection = json.loads(path.read_text(encoding="utf-8"))
    return {str(feature["properties"]["code"]) for feature in collection["features"]}


def _department(row: dict[str, str]) -> Department:
    # The columns after is_triage are optional, so a pack with only code,name,is_triage loads.
    return Department(
        code=row["code"],
        name=row["name"],
        is_triage=row["is_triage"].strip().lower() == "true",
        level=(row.get("level") or "city").strip(),
        district_code=(row.get("district_code") or "").strip() or None,
        parent_code=(row.get("parent") or "").strip() or None,
        phone=(row.get("phone") or "").strip(),
        email=(row.get("email") or "").strip(),
    )


def _check_departments(
    departments: tuple[Department, ...], districts: set[str], *, where: Path
) -> None:
    by_code = {d.code: d for d in departments}
    if len(by_code) != len(departments):
        raise ValueError(f"{where}: a department code is used twice")
    for d in departments:
        if d.level not in LEVELS:
            raise ValueError(f"{where}: {d.code}: level must be one of {LEVELS}, not {d.level!r}")
        if (d.level == "district") != (d.district_code is not None):
            raise ValueError(
                f"{where}: {d.code}: a district department needs a district_code, "
                "a city one has none"
            )
        if d.district_code is not None and d.district_code not in districts:
            raise ValueError(f"{where}: {d.code}: unknown district {d.district_code}")
        if d.parent_code is not None and d.parent_code not in by_code:
            raise ValueError(f"{where}: {d.code}: unknown parent {d.parent_code}")
        if d.parent_code == d.code:
            raise ValueError(f"{where}: {d.code} is its own parent")


def _load_device_profiles(
    path: Path, departments: tuple[Department, ...]
) -> tuple[DeviceProfile, ...]:
    if not path.exists():
        return ()
    known = {d.code for d in departments}
    profiles = []
    for row in _rows(path):
        if row["department"] not in known:
            raise ValueError(f"{path}: profile {row['code']}: unknown department")
        profiles.append(
            DeviceProfile(
                code=row["code"],
                name=row["name"],
                department_code=row["department"],
                reporting_interval_s=int(row["reporting_interval_s"]),
                inactivity_timeout_s=int(row["inactivity_timeout_s"]),
            )
        )
    return tuple(profiles)


def _load_device_rules(
    path: Path, profiles: tuple[DeviceProfile, ...]
) -> dict[str, list[dict[str, Any]]]:
    """profile code → its rule set, parsed (so a bad threshold fails here, not in the worker)
    and written back in full (every field, as the admin API shows them)."""
    rule_sets: dict[str, list[dict[str, Any]]] = {p.code: [] for p in profiles}
    if not path.exists():
        return rule_sets
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: must be an object of profile code → rules")
    for code, rules in data.items():
        if code not in rule_sets:
            raise ValueError(f"{path}: profile {code}: not in device-profiles.csv")
        try:
            rule_sets[code] = rule_set_to_json(parse_rule_set(rules))
        except RuleError as error:
            raise ValueError(f"{path}: profile {code}: {error}") from error
    return rule_sets


def _load_people(path: Path, departments: tuple[Department, ...]) -> tuple[Person, ...]:
    if not path.exists():
        return ()
    people = tuple(
        Person(
            department_code=row["department"].strip(),
            person=row["person"].strip(),
            role=row["role"].strip(),
            phone=(row.get("phone") or "").strip(),
        )
        for row in _rows(path)
    )
    known = {d.code for d in departments}
    for person in people:
        if person.department_code not in known:
            raise ValueError(
                f"{path}: {person.person}: unknown department {person.department_code}"
            )
        if person.role not in ROLES:
            raise ValueError(
                f"{path}: {person.department_code}/{person.person}: role must be one of {ROLES}"
            )
    # Escalation starts at a supervisor, so a department without one would strand its tickets.
    supervised = {p.department_code for p in people if p.role == "supervisor"}
    if missing := sorted(known - supervised):
        raise ValueError(f"{path}: departments without a supervisor: {missing}")
    return people


def _load_routing_rules(
    path: Path, *, departments: set[str], categories: set[str], districts: set[str]
) -> tuple[Rule, ...]:
    if not path.exists():
        return ()
    rules = parse_rules(_rows(path))
    problems = validate_rules(
        rules, departments=departments, categories=categories, districts=districts
    )
    if problems:
        raise ValueError(f"{path}: " + "; ".join(problems))
    return tuple(rules)


@lru_cache
def load_urban_management_codes(packs_dir: Path) -> dict[tuple[str, str], str]:
    """(kind, 5-digit code) → name, from the national table."""
    rows = _rows(packs_dir / "national" / "urban-management-codes.csv")
    return {(row["kind"], row["code"]): row["name"] for row in rows}
