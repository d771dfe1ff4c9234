"""The device registry's HTTP API on the real app and PostgreSQL: who sees which devices,
adding and importing devices, disabling and re-keying them, and editing a profile's rules."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from hub.pack import load_pack
from hub.seed import seed
from hub.settings import Settings
from tests.integration.helpers import register_device

pytestmark = pytest.mark.integration


def as_(keys: dict[str, str], who: str) -> dict[str, str]:
    return {"X-API-Key": keys[who]}


async def test_a_department_sees_its_own_devices_and_ops_sees_all(
    api: httpx.AsyncClient, pool: Any, keys: dict[str, str]
) -> None:
    device_id = await register_device(pool, f"tok-{uuid.uuid4().hex}")  # the water department's
    mine = await api.get(f"/api/v1/devices/{device_id}", headers=as_(keys, "water"))
    assert mine.status_code == 200 and mine.json()["department_code"] == "water"
    assert mine.json()["district_code"] == "330302" and "token" not in str(mine.json()).lower()
    theirs = await api.get(f"/api/v1/devices/{device_id}", headers=as_(keys, "lucheng"))
    assert theirs.status_code == 404
    listed = await api.get("/api/v1/devices", headers=as_(keys, "lucheng"))
    assert listed.status_code == 200
    assert all(d["department_code"] == "urban-management-330302" for d in listed.json())
    everything = await api.get(
        "/api/v1/devices",
        headers=as_(keys, "ops"),
        params={"profile": "water-level", "limit": 1000},
    )
    assert str(device_id) in {d["device_id"] for d in everything.json()}
    assert (await api.get("/api/v1/devices", headers=as_(keys, "hotline"))).status_code == 403


async def test_ops_adds_imports_disables_and_rekeys_devices(
    api: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    ops = as_(keys, "ops")
    assert (
        await api.put(
            "/api/v1/admin/vendors/acme-iot", headers=ops, json={"code": "acme-iot", "name": "Acme"}
        )
    ).status_code == 200
    serial = f"ACME-{uuid.uuid4().hex[:8]}"
    added = await api.post(
        "/api/v1/admin/devices",
        headers=ops,
        json={
            "serial": serial,
            "vendor": "acme-iot",
            "profile": "smoke",
            "lon": 120.66,
            "lat": 28.01,
        },
    )
    assert added.status_code == 201 and added.json()["new"] == 1
    [made] = added.json()["tokens"]
    assert made["serial"] == serial and len(made["token"]) >= 16
    posted = await api.post(f"/api/v1/{made['token']}/telemetry", json={"smoke_alarm": 0})
    assert posted.status_code == 200

    csv_body = "serial,vendor,profile,lon,lat\n" + "".join(
        f"{serial}-{i},acme-iot,manhole-cover,120.6{i},28.0{i}\n" for i in range(3)
    )
    imported = await api.post(
        "/api/v1/admin/devices/import",
        headers={**ops, "Content-Type": "text/csv"},
        content=csv_body.encode(),
    )
    assert imported.status_code == 200 and imported.json()["new"] == 3
    bad = await api.post(
        "/api/v1/admin/devices/import",
        headers={**ops, "Content-Type": "text/csv"},
        content=b"serial,vendor,profile,lon,lat\nX,acme-iot,smoke,0,0\n",
    )
    assert bad.status_code == 400 and "line 2" in bad.json()["detail"]
    assert (
        await api.post(
            "/api/v1/admin/devices/import", headers=as_(keys, "water"), content=csv_body.encode()
        )
    ).status_code == 403

    listed = await api.get("/api/v1/devices", headers=ops, params={"vendor": "acme-iot"})
    device_id = next(d["device_id"] for d in listed.json() if d["serial"] == serial)
    disabled = await api.post(f"/api/v1/admin/devices/{device_id}/disable", headers=ops)
    assert disabled.status_code == 200 and disabled.json()["disabled_at"] is not None
    rekeyed = await api.post(f"/api/v1/admin/devices/{device_id}/token", headers=ops)
    assert rekeyed.status_code == 200 and rekeyed.json()["token"] != made["token"]
    enabled = await api.post(f"/api/v1/admin/devices/{device_id}/enable", headers=ops)
    assert enabled.json()["disabled_at"] is None
    missing = await api.post(f"/api/v1/admin/devices/{uuid.uuid4()}/disable", headers=ops)
    assert missing.status_code == 404


async def test_a_profiles_rules_are_edited_as_a_whole_and_survive_reseeding(
    api: httpx.AsyncClient, keys: dict[str, str], prepared: Settings
) -> None:
    ops = as_(keys, "ops")
    url = "/api/v1/admin/device-profiles/hydrant-pressure/rules"
    pack = load_pack(prepared.pack_dir)
    # From the pack file, not the database: the OpenAPI fuzz tests edit rules too.
    original = pack.device_rules["hydrant-pressure"]
    first = original[0]
    lower = {**first["levels"][0], "value": first["levels"][0]["value"] * 0.9}
    rules = [{**first, "levels": [lower, *first["levels"][1:]]}, *original[1:]]
    saved = await api.put(url, headers=ops, json=rules)
    assert saved.status_code == 200 and saved.json()["rules"] == rules
    assert saved.json()["rules_set_by"].startswith("ops")

    broken = [{**rules[0], "levels": [{"severity": "dire", "op": ">=", "value": 1}]}]
    refused = await api.put(url, headers=ops, json=broken)
    assert refused.status_code == 400 and "severity" in refused.json()["detail"]
    unknown = await api.put("/api/v1/admin/device-profiles/no-such/rules", headers=ops, json=[])
    assert unknown.status_code == 404
    assert (await api.put(url, headers=as_(keys, "water"), json=rules)).status_code == 403

    # Re-seeding the pack keeps the admin's rules, and resets the ones the pack set.
    conn = await asyncpg.connect(prepared.dsn)
    try:
        await seed(conn, pack)
    finally:
        await conn.close()
    profiles = (await api.get("/api/v1/admin/device-profiles", headers=ops)).json()
    by_code = {profile["code"]: profile for profile in profiles}
    assert by_code["hydrant-pressure"]["rules"] == rules
    from_pack = [code for code, profile in by_code.items() if profile["rules_set_by"] == "pack"]
    assert from_pack, "the fuzz tests cannot have edited every profile"
    for code in from_pack:
        assert by_code[code]["rules"] == pack.device_rules[code], code
    assert (await api.put(url, headers=ops, json=original)).json()["rules"] == original


async def test_whoami_names_the_caller(api: httpx.AsyncClient, keys: dict[str, str]) -> None:
    water = await api.get("/api/v1/whoami", headers=as_(keys, "water"))
    assert water.status_code == 200
    assert water.json()["role"] == "department" and water.json()["scope"] == "water"
    assert water.json()["name"] != "water"  # the department's own name, from the pack
    ops = await api.get("/api/v1/whoami", headers=as_(keys, "ops"))
    assert ops.json() == {"role": "ops", "scope": "", "name": "ops"}
    assert (await api.get("/api/v1/whoami", headers={"X-API-Key": "nope"})).status_code == 401
