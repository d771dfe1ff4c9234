"""The device registry over HTTP.

Read (a department sees its own devices, the operations centre all): ``GET /api/v1/devices``
and ``/api/v1/devices/{id}``. Administer (operations centre): vendors, devices one at a time or
as CSV, disabling and re-keying them, and each profile's alarm rule set, which the worker picks
up within half a minute. Tokens the hub makes are in the answer once and stored only hashed; a
disabled or re-keyed token stops working within the ingest caches' 30 s.
"""

from __future__ import annotations

import csv
import io
import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request
from pydantic import BaseModel, Field

from geo.jurisdiction import DistrictIndex
from hub.deps import OpsDep, PoolDep, StaffDep
from hub.pack import load_pack
from iot_ingest.registry import (
    COLUMNS,
    RegistryError,
    hash_token,
    import_rows,
    new_token,
)
from streams.iot.rules import RuleError, parse_rule_set, rule_set_to_json

router = APIRouter(prefix="/api/v1", tags=["device registry"])
MAX_PAGE = 1000
Code = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9-]{1,63}$")]


class DeviceRead(BaseModel):
    device_id: uuid.UUID
    vendor: str
    serial: str
    profile: str
    department_code: str
    name: str
    lon: float
    lat: float
    h3_cell: str
    district_code: str | None
    reporting_interval_s: int
    inactivity_timeout_s: int
    client_attributes: dict[str, Any]
    created_at: datetime
    disabled_at: datetime | None


class NewDevice(BaseModel):
    """One device; the same fields as a CSV row (``hub devices import``)."""

    serial: str = Field(min_length=1, max_length=128)
    vendor: str = Field(min_length=2, max_length=64)
    profile: str = Field(min_length=2, max_length=64)
    lon: float
    lat: float
    department: str | None = Field(default=None, max_length=64)
    name: str = Field(default="", max_length=200)
    reporting_interval_s: int | None = Field(default=None, gt=0)
    inactivity_timeout_s: int | None = Field(default=None, gt=0)
    token: str | None = Field(
        default=None,
        min_length=8,
        max_length=128,
        description="the token already in the firmware; made if absent",
    )


class ImportResult(BaseModel):
    rows: int
    new: int
    tokens: list[dict[str, str]] = Field(description="tokens the hub made: shown only this once")


class NewToken(BaseModel):
    device_id: uuid.UUID
    token: str = Field(description="shown only this once")


class Vendor(BaseModel):
    code: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{1,63}$")
    name: str = Field(min_length=1, max_length=200)


class DeviceProfileRead(BaseModel):
    code: str
    name: str
    department_code: str | None
    reporting_interval_s: int
    inactivity_timeout_s: int
    rules: list[dict[str, Any]]
    rules_set_by: str = Field(description="'pack', or the key that edited them")


SELECT_DEVICE = """
SELECT device_id, vendor_code AS vendor, serial, profile_code AS profile, department_code, name,
       lon, lat, h3_cell, district_code, reporting_interval_s, inactivity_timeout_s,
       client_attributes, created_at, disabled_at
FROM devices
"""


def _device(row: Any) -> DeviceRead:
    return DeviceRead(**{**dict(row), "h3_cell": f"{row['h3_cell'] & (2**64 - 1):x}"})


@router.get("/devices", response_model=list[DeviceRead])
async def list_devices(
    pool: PoolDep,
    principal: StaffDep,
    profile: Annotated[str | None, Query(max_length=64)] = None,
    district: Annotated[str | None, Query(max_length=12)] = None,
    vendor: Annotated[str | None, Query(max_length=64)] = None,
    disabled: bool = False,
    after: Annotated[
        uuid.UUID | None, Query(description="last device_id of the page before")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> list[DeviceRead]:
    """Devices in device_id order, a page at a time (pass the last one's id as ``after``)."""
    department = principal.scope if principal.role == "department" else None
    rows = await pool.fetch(
        SELECT_DEVICE
        + """WHERE ($1::text IS NULL OR department_code = $1)
               AND ($2::text IS NULL OR profile_code = $2)
               AND ($3::text IS NULL OR district_code = $3)
               AND ($4::text IS NULL OR vendor_code = $4)
               AND (disabled_at IS NOT NULL) = $5
               AND ($6::uuid IS NULL OR device_id > $6)
             ORDER BY device_id LIMIT $7""",
        department,
        profile,
        district,
        vendor,
        disabled,
        after,
        limit,
    )
    return [_device(row) for row in rows]


@router.get("/devices/{device_id}", response_model=DeviceRead)
async def read_device(device_id: uuid.UUID, pool: PoolDep, principal: StaffDep) -> DeviceRead:
    row = await pool.fetchrow(SELECT_DEVICE + "WHERE device_id = $1", device_id)
    others = (
        principal.role == "department"
        and row is not None
        and (row["department_code"] != principal.scope)
    )
    if row is None or others:
        raise HTTPException(404, detail="no such device")  # another's is not even confirmed
    return _device(row)


# --- administration (operations centre) ----------------------------------------------------


@router.get("/admin/vendors", response_model=list[Vendor], tags=["admin"])
async def list_vendors(pool: PoolDep, _: OpsDep) -> list[Vendor]:
    rows = await pool.fetch("SELECT code, name FROM vendors ORDER BY code")
    return [Vendor(**dict(row)) for row in rows]


@router.put("/admin/vendors/{code}", response_model=Vendor, tags=["admin"])
async def put_vendor(code: Code, body: Vendor, pool: PoolDep, _: OpsDep) -> Vendor:
    """Add or rename a vendor; its systems then need a key: ``hub keys create --role vendor``."""
    if body.code != code:
        raise HTTPException(400, detail="the body's code must be the path's")
    await pool.execute(
        """INSERT INTO vendors (code, name) VALUES ($1, $2)
           ON CONFLICT (code) DO UPDATE SET name = excluded.name""",
        code,
        body.name,
    )
    return body


def _placement(request: Request) -> tuple[Any, Any]:
    """(district_of, contains) for the pack's city, built once per app."""
    cached = getattr(request.app.state, "placement", None)
    if cached is None:
        pack_dir = request.app.state.settings.pack_dir
        index = DistrictIndex.from_geojson(pack_dir / "districts.geojson")

        def district_of(lon: float, lat: float) -> str | None:
            district = index.district_of(lon, lat)
            return district.code if district else None

        cached = request.app.state.placement = (district_of, load_pack(pack_dir).contains)
    return cached


async def _import(request: Request, pool: Any, rows: list[dict[str, str]]) -> ImportResult:
    district_of, contains = _placement(request)
    async with pool.acquire() as conn:
        try:
            report = await import_rows(conn, rows, district_of=district_of, contains=contains)
        except RegistryError as exc:
            raise HTTPException(400, detail=str(exc)) from None
    tokens = [{"vendor": v, "serial": s, "token": t} for v, s, t in report.tokens]
    return ImportResult(rows=report.rows, new=report.new, tokens=tokens)


@router.post("/admin/devices", response_model=ImportResult, status_code=201, tags=["admin"])
async def add_device(body: NewDevice, request: Request, pool: PoolDep, _: OpsDep) -> ImportResult:
    """Register one device (or update it: (vendor, serial) is its identity)."""
    row = {key: "" if value is None else str(value) for key, value in body.model_dump().items()}
    return await _import(request, pool, [row])


@router.post(
    "/admin/devices/import",
    response_model=ImportResult,
    tags=["admin"],
    openapi_extra={
        "requestBody": {"content": {"text/csv": {"schema": {"type": "string"}}}, "required": True}
    },
)
async def import_devices_csv(request: Request, pool: PoolDep, _: OpsDep) -> ImportResult:
    """A devices CSV (the columns of ``hub devices import``) as the body, up to the API's body
    limit (about 10,000 rows); all or nothing, and a bad row is named by its line."""
    try:
        text = (await request.body()).decode("utf-8-sig")
    except UnicodeDecodeError:
        raise HTTPException(400, detail="the CSV must be UTF-8") from None
    reader = csv.DictReader(io.StringIO(text))
    unknown = set(reader.fieldnames or ()) - set(COLUMNS)
    if unknown or not reader.fieldnames:
        raise HTTPException(400, detail=f"unknown columns {sorted(unknown)}; known: {COLUMNS}")
    try:
        rows = list(reader)
    except csv.Error as exc:
        raise HTTPException(400, detail=f"not CSV: {exc}") from None
    if not rows:
        raise HTTPException(400, detail="no rows")
    return await _import(request, pool, rows)


@router.post("/admin/devices/{device_id}/disable", response_model=DeviceRead, tags=["admin"])
async def disable_device(device_id: uuid.UUID, pool: PoolDep, _: OpsDep) -> DeviceRead:
    return await _set_disabled(pool, device_id, True)


@router.post("/admin/devices/{device_id}/enable", response_model=DeviceRead, tags=["admin"])
async def enable_device(device_id: uuid.UUID, pool: PoolDep, _: OpsDep) -> DeviceRead:
    return await _set_disabled(pool, device_id, False)


async def _set_disabled(pool: Any, device_id: uuid.UUID, disabled: bool) -> DeviceRead:
    row = await pool.fetchrow(
        """UPDATE devices SET disabled_at = CASE WHEN $2 THEN coalesce(disabled_at, now()) END
           WHERE device_id = $1 RETURNING device_id""",
        device_id,
        disabled,
    )
    if row is None:
        raise HTTPException(404, detail="no such device")
    found = await pool.fetchrow(SELECT_DEVICE + "WHERE device_id = $1", device_id)
    return _device(found)


@router.post("/admin/devices/{device_id}/token", response_model=NewToken, tags=["admin"])
async def rekey_device(device_id: uuid.UUID, pool: PoolDep, _: OpsDep) -> NewToken:
    """A new access token for the device; the old one stops working."""
    token = new_token()
    found = await pool.fetchval(
        "UPDATE devices SET token_hash = $2 WHERE device_id = $1 RETURNING device_id",
        device_id,
        hash_token(token),
    )
    if found is None:
        raise HTTPException(404, detail="no such device")
    return NewToken(device_id=device_id, token=token)


@router.get("/admin/device-profiles", response_model=list[DeviceProfileRead], tags=["admin"])
async def list_profiles(pool: PoolDep, _: OpsDep) -> list[DeviceProfileRead]:
    rows = await pool.fetch(
        """SELECT code, name, department_code, reporting_interval_s, inactivity_timeout_s, rules,
                  rules_set_by
           FROM device_profiles ORDER BY code"""
    )
    return [DeviceProfileRead(**dict(row)) for row in rows]


@router.put("/admin/device-profiles/{code}/rules", response_model=DeviceProfileRead, tags=["admin"])
async def put_profile_rules(
    code: Code, rules: list[dict[str, Any]], pool: PoolDep, principal: OpsDep
) -> DeviceProfileRead:
    """Replace the profile's alarm rules (the shape of the pack's ``device-rules.json``); the
    worker applies them within 30 s. Active alarms keep their state by alarm type; one whose
    rule is gone clears at the device's next reading. Re-seeding the pack keeps this edit."""
    try:
        parsed = parse_rule_set(rules)
    except RuleError as exc:
        raise HTTPException(400, detail=str(exc)) from None
    row = await pool.fetchrow(
        """UPDATE device_profiles SET rules = $2, rules_set_by = $3 WHERE code = $1
           RETURNING code, name, department_code, reporting_interval_s, inactivity_timeout_s,
                     rules, rules_set_by""",
        code,
        rule_set_to_json(parsed),
        principal.actor,
    )
    if row is None:
        raise HTTPException(404, detail="no such device profile")
    return DeviceProfileRead(**dict(row))
