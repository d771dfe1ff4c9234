"""The device registry on real PostgreSQL through the real `hub` command: vendors, bulk import
with tokens shown once and stored hashed, idempotent re-import, refusals naming the line."""

from __future__ import annotations

import csv
import hashlib
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from geo.h3cells import cell_of
from schemas import topics
from tests.integration.helpers import end_offsets

pytestmark = pytest.mark.integration
PROFILES = ["water-level", "rainfall", "smoke", "combustible-gas", "building-tilt",
            "manhole-cover", "hydrant-pressure"]  # fmt: skip


def hub(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hub.cli", *args], capture_output=True, text=True, timeout=120
    )


def write_devices(path: Path, rows: list[dict[str, Any]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, ["serial", "vendor", "profile", "name", "lon", "lat",
                                         "token"])  # fmt: skip
        writer.writeheader()
        writer.writerows(rows)


def read_tokens(path: Path) -> dict[str, str]:
    with open(path, encoding="utf-8") as handle:
        return {row["serial"]: row["token"] for row in csv.DictReader(handle)}


def devices(n: int, vendor: str) -> list[dict[str, Any]]:
    rng = random.Random(7)
    return [
        {"serial": f"SN-{i:06d}", "vendor": vendor, "profile": PROFILES[i % len(PROFILES)],
         "name": f"设备{i}", "lon": round(rng.uniform(120.60, 120.72), 6),
         "lat": round(rng.uniform(27.98, 28.03), 6), "token": ""}
        for i in range(n)
    ]  # fmt: skip


async def test_bulk_import_makes_tokens_once_and_reimport_keeps_them(
    prepared: Any, pool: Any, tmp_path: Path
) -> None:
    vendor = f"acme-{tmp_path.name[-8:].lower().replace('_', '-')}"
    added = hub("vendors", "add", vendor, "--name", "某某物联")
    assert added.returncode == 0, added.stderr
    rows = devices(2000, vendor)
    rows[5]["token"] = "vendor-flashed-token-0005"  # a token already in the firmware
    source, tokens = tmp_path / "devices.csv", tmp_path / "tokens.csv"
    write_devices(source, rows)

    first = hub("devices", "import", str(source), "--tokens-out", str(tokens))
    assert first.returncode == 0, first.stderr
    assert "2000 devices read, 2000 new" in first.stdout
    made = read_tokens(tokens)
    assert len(made) == 1999 and "SN-000005" not in made  # the vendor's own token is not echoed
    stored = {
        r["serial"]: r
        for r in await pool.fetch(
            "SELECT serial, token_hash, h3_cell, district_code, department_code,"
            " reporting_interval_s FROM devices WHERE vendor_code = $1",
            vendor,
        )
    }
    assert len(stored) == 2000
    one = stored["SN-000001"]
    assert one["token_hash"] == hashlib.sha256(made["SN-000001"].encode()).hexdigest()
    assert made["SN-000001"] not in str(dict(one))  # only the hash is kept
    assert (
        stored["SN-000005"]["token_hash"]
        == hashlib.sha256(b"vendor-flashed-token-0005").hexdigest()
    )
    assert one["h3_cell"] == cell_of(rows[1]["lon"], rows[1]["lat"])
    assert {r["district_code"] for r in stored.values()} <= {"330302", "330303", "330304", "330324"}
    assert all(r["district_code"] for r in stored.values())  # every point placed
    # rainfall (row 1) belongs to the water department and reports every 300 s (the pack)
    assert (one["department_code"], one["reporting_interval_s"]) == ("water", 300)

    rows[1]["name"] = "改名的雨量计"
    write_devices(source, rows)
    again = hub("devices", "import", str(source), "--tokens-out", str(tmp_path / "t2.csv"))
    assert again.returncode == 0, again.stderr
    assert "2000 devices read, 0 new" in again.stdout and not (tmp_path / "t2.csv").exists()
    after = await pool.fetchrow(
        "SELECT name, token_hash FROM devices WHERE vendor_code = $1 AND serial = 'SN-000001'",
        vendor,
    )
    assert after["name"] == "改名的雨量计" and after["token_hash"] == one["token_hash"]


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"profile": "teapot"}, "line 4: unknown profile"),
        ({"lon": "121.9"}, "line 4: (121.9, "),
        ({"lat": "nan"}, "line 4: lat must be finite"),
        ({"vendor": "nobody"}, "line 4: unknown vendor"),
        ({"serial": "SN-000000"}, "line 4: serial 'SN-000000' too long or repeated"),
        ({"token": "short"}, "line 4: a token must be"),
    ],
)
async def test_a_bad_row_is_named_and_nothing_is_imported(
    prepared: Any, pool: Any, tmp_path: Path, change: dict[str, str], words: str
) -> None:
    vendor = "bad-rows-vendor"
    assert hub("vendors", "add", vendor).returncode == 0
    rows = devices(5, vendor)
    for row in rows:
        row["serial"] = f"{tmp_path.name[-6:]}-{row['serial']}"
    rows[2].update(change)
    if change.get("serial"):
        rows[2]["serial"] = rows[0]["serial"]
        words = f"line 4: serial {rows[0]['serial']!r} too long or repeated"
    source = tmp_path / "devices.csv"
    write_devices(source, rows)
    result = hub("devices", "import", str(source), "--tokens-out", str(tmp_path / "t.csv"))
    assert result.returncode == 1 and words in result.stderr, result.stderr
    count = await pool.fetchval(
        "SELECT count(*) FROM devices WHERE serial LIKE $1", f"{tmp_path.name[-6:]}-%"
    )
    assert count == 0


async def test_hub_simulate_registers_devices_and_reports_through_the_vendor_api(
    api_url: str, prepared: Any
) -> None:
    result = hub("simulate", "--devices", "300", "--interval", "2", "--duration", "4",
                 "--api", api_url, "--scenario", "typhoon")  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "300 devices registered" in result.stdout
    # 300 devices every 2 s for 4 s: each reported twice, none refused
    assert "done: 600 accepted, 0 rejected, 0 failed requests" in result.stdout, result.stdout
    count = await end_offsets(prepared, topics.IOT_TELEMETRY)
    assert count >= 600


async def test_hub_simulate_reports_through_mqtt_gateways(gateway_port: int, prepared: Any) -> None:
    before = await end_offsets(prepared, topics.IOT_TELEMETRY)
    mqtt = f"127.0.0.1:{gateway_port}"
    result = hub("simulate", "--devices", "300", "--interval", "2", "--duration", "4",
                 "--via", "mqtt", "--mqtt", mqtt, "--gateways", "2")  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "through 2 MQTT gateways" in result.stdout
    assert "done: 600 accepted, 0 rejected, 0 failed requests" in result.stdout, result.stdout
    # one record per device and gateway batch: at least one per device and report
    assert await end_offsets(prepared, topics.IOT_TELEMETRY) - before >= 600
