"""The device registry: bulk import of devices from CSV, and their access tokens.

A device authenticates with its access token (the ThingsBoard device API's credential). Only
the token's SHA-256 is stored: tokens are 120 random bits when the hub makes them, and a vendor
may bring the ones already flashed into its firmware. Import is idempotent per (vendor, serial):
a second import updates the device and keeps its token unless the file names a new one.

100,000 devices import in seconds: rows are checked and placed (H3 cell, district) in Python,
copied into a temporary table in one COPY, and merged with one INSERT … ON CONFLICT.
"""

from __future__ import annotations

import csv
import hashlib
import math
import secrets
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from geo.h3cells import cell_of

# Fixed, never changed: a device's id derives from (vendor, serial), so a re-import is an update.
DEVICE_ID_NAMESPACE = uuid.UUID("5b0f2b9e-6f0a-4d58-9a51-3c7e1f2d8a44")
COLUMNS = ("serial", "vendor", "profile", "department", "name", "lon", "lat",
           "reporting_interval_s", "inactivity_timeout_s", "token")  # fmt: skip
REQUIRED = ("serial", "vendor", "profile", "lon", "lat")
TOKEN_MIN, TOKEN_MAX = 8, 128


class RegistryError(ValueError):
    """Input the registry refuses; the message names the line and the problem."""


@dataclass(frozen=True)
class Profile:
    code: str
    department_code: str | None
    reporting_interval_s: int
    inactivity_timeout_s: int


def new_token() -> str:
    return secrets.token_urlsafe(15)  # 20 characters, like ThingsBoard's generated tokens


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def device_id_for(vendor: str, serial: str) -> uuid.UUID:
    return uuid.uuid5(DEVICE_ID_NAMESPACE, f"{vendor}\x1f{serial}")


def _number(row: dict[str, str], column: str, line: int) -> float:
    try:
        value = float(row[column])
    except (TypeError, ValueError):
        raise RegistryError(f"line {line}: {column} is not a number: {row.get(column)!r}") from None
    if not math.isfinite(value):
        raise RegistryError(f"line {line}: {column} must be finite")
    return value


def _seconds(row: dict[str, str], column: str, default: int, line: int) -> int:
    text = (row.get(column) or "").strip()
    if not text:
        return default
    if not text.isdigit() or int(text) <= 0:
        raise RegistryError(f"line {line}: {column} must be a positive whole number of seconds")
    return int(text)


def prepare_rows(
    rows: Iterable[dict[str, str]],
    *,
    profiles: dict[str, Profile],
    departments: set[str],
    vendors: set[str],
    district_of: Callable[[float, float], str | None],
    contains: Callable[[float, float], bool],
) -> tuple[list[tuple[Any, ...]], dict[tuple[str, str], str]]:
    """Check and place every row; return the records to copy and the tokens made here
    ((vendor, serial) → token; shown once, never stored). Raises RegistryError at the first bad
    row."""
    records: list[tuple[Any, ...]] = []
    made: dict[tuple[str, str], str] = {}
    seen: set[tuple[str, str]] = set()
    for line, row in enumerate(rows, start=2):  # line 1 is the header
        missing = [c for c in REQUIRED if not (row.get(c) or "").strip()]
        if missing:
            raise RegistryError(f"line {line}: missing {', '.join(missing)}")
        serial, vendor = row["serial"].strip(), row["vendor"].strip()
        if len(serial) > 128 or (vendor, serial) in seen:
            raise RegistryError(f"line {line}: serial {serial[:40]!r} too long or repeated")
        seen.add((vendor, serial))
        if vendor not in vendors:
            raise RegistryError(f"line {line}: unknown vendor {vendor!r}")
        profile = profiles.get(row["profile"].strip())
        if profile is None:
            raise RegistryError(f"line {line}: unknown profile {row['profile']!r}")
        department = (row.get("department") or "").strip() or profile.department_code
        if department not in departments:
            raise RegistryError(f"line {line}: unknown or missing department {department!r}")
        lon, lat = _number(row, "lon", line), _number(row, "lat", line)
        if not contains(lon, lat):
            raise RegistryError(f"line {line}: ({lon}, {lat}) is outside the city (WGS-84)")
        token = (row.get("token") or "").strip()
        if token and not (TOKEN_MIN <= len(token) <= TOKEN_MAX and token.isprintable()):
            raise RegistryError(f"line {line}: a token must be {TOKEN_MIN}–{TOKEN_MAX} characters")
        if not token:
            token = made[vendor, serial] = new_token()
        records.append((
            device_id_for(vendor, serial), vendor, serial, profile.code, department,
            (row.get("name") or "").strip()[:200], lon, lat, cell_of(lon, lat),
            district_of(lon, lat),
            _seconds(row, "reporting_interval_s", profile.reporting_interval_s, line),
            _seconds(row, "inactivity_timeout_s", profile.inactivity_timeout_s, line),
            hash_token(token), bool((row.get("token") or "").strip()),
        ))  # fmt: skip
    return records, made


# Existing devices are updated (their token only if the file brought one), then new ones added.
UPDATE_EXISTING = """
UPDATE devices d SET
    profile_code = i.profile_code, department_code = i.department_code, name = i.name,
    lon = i.lon, lat = i.lat, h3_cell = i.h3_cell, district_code = i.district_code,
    reporting_interval_s = i.reporting_interval_s, inactivity_timeout_s = i.inactivity_timeout_s,
    token_hash = CASE WHEN i.token_given THEN i.token_hash ELSE d.token_hash END
FROM device_import i
WHERE d.device_id = i.device_id
"""
INSERT_NEW = """
INSERT INTO devices (device_id, vendor_code, serial, profile_code, department_code, name, lon,
                     lat, h3_cell, district_code, reporting_interval_s, inactivity_timeout_s,
                     token_hash)
SELECT device_id, vendor_code, serial, profile_code, department_code, name, lon, lat, h3_cell,
       district_code, reporting_interval_s, inactivity_timeout_s, token_hash
FROM device_import
ON CONFLICT (device_id) DO NOTHING
RETURNING vendor_code, serial
"""


async def import_devices(
    conn: Any, records: list[tuple[Any, ...]]
) -> tuple[int, set[tuple[str, str]]]:
    """Copy and merge prepared records in one transaction; return how many devices are new,
    and which (vendor, serial)."""
    async with conn.transaction():
        await conn.execute(
            """CREATE TEMP TABLE device_import (
                   device_id uuid, vendor_code text, serial text, profile_code text,
                   department_code text, name text, lon float8, lat float8, h3_cell bigint,
                   district_code text, reporting_interval_s int, inactivity_timeout_s int,
                   token_hash text, token_given boolean) ON COMMIT DROP"""
        )
        await conn.copy_records_to_table("device_import", records=records)
        await conn.execute(UPDATE_EXISTING)
        rows = await conn.fetch(INSERT_NEW)
    new = {(row["vendor_code"], row["serial"]) for row in rows}
    return len(new), new


def read_csv(path: str) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        unknown = set(reader.fieldnames or ()) - set(COLUMNS)
        if unknown:
            raise RegistryError(f"{path}: unknown columns {sorted(unknown)}; known: {COLUMNS}")
        return list(reader)


@dataclass(frozen=True)
class ImportReport:
    rows: int
    new: int
    # (vendor, serial, token) of new devices whose token the hub made: shown once
    tokens: list[tuple[str, str, str]]


async def import_file(conn: Any, path: str, *, district_of: Callable[[float, float], str | None],
                      contains: Callable[[float, float], bool]) -> ImportReport:  # fmt: skip
    """Read, check and import a devices CSV (columns: COLUMNS; REQUIRED ones at least)."""
    return await import_rows(conn, read_csv(path), district_of=district_of, contains=contains)


async def import_rows(
    conn: Any,
    rows: Iterable[dict[str, str]],
    *,
    district_of: Callable[[float, float], str | None],
    contains: Callable[[float, float], bool],
) -> ImportReport:
    """Check and import device rows (the CSV's columns as strings)."""
    profiles = {
        row["code"]: Profile(row["code"], row["department_code"], row["reporting_interval_s"],
                             row["inactivity_timeout_s"])
        for row in await conn.fetch("SELECT * FROM device_profiles")
    }  # fmt: skip
    departments = {row["code"] for row in await conn.fetch("SELECT code FROM departments")}
    vendors = {row["code"] for row in await conn.fetch("SELECT code FROM vendors")}
    records, made = prepare_rows(
        rows,
        profiles=profiles,
        departments=departments,
        vendors=vendors,
        district_of=district_of,
        contains=contains,
    )
    count, new = await import_devices(conn, records)
    tokens = [(vendor, serial, token) for (vendor, serial), token in made.items()
              if (vendor, serial) in new]  # fmt: skip
    return ImportReport(rows=len(records), new=count, tokens=tokens)


def gateway_id_for(vendor: str, name: str) -> uuid.UUID:
    return uuid.uuid5(DEVICE_ID_NAMESPACE, f"gateway\x1f{vendor}\x1f{name}")


async def create_gateway(conn: Any, vendor: str, name: str) -> str:
    """Register (or re-key) a vendor's MQTT gateway; return its new access token (shown once)."""
    if not 1 <= len(name) <= 128:
        raise RegistryError("a gateway name must be 1–128 characters")
    if await conn.fetchval("SELECT 1 FROM vendors WHERE code = $1", vendor) is None:
        raise RegistryError(f"unknown vendor {vendor!r}")
    token = new_token()
    await conn.execute(
        """INSERT INTO gateways (gateway_id, vendor_code, name, token_hash) VALUES ($1, $2, $3, $4)
           ON CONFLICT (vendor_code, name)
           DO UPDATE SET token_hash = excluded.token_hash, disabled_at = NULL""",
        gateway_id_for(vendor, name),
        vendor,
        name,
        hash_token(token),
    )
    return token
