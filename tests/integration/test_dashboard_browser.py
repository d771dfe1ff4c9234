"""The dashboard in a real headless Chromium (Debian's, `make browser`) against the real API,
worker, Kafka and PostgreSQL: it connects with the operations centre's key, and a report
posted to the hotline intake appears live as an incident and as hexagons on the map.
Screenshots go to test-artifacts/."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import async_playwright

from tests.integration.test_ops_feed import report

pytestmark = pytest.mark.integration
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
# Software WebGL: the map and deck.gl's layers need WebGL2, and CI machines have no GPU.
CHROMIUM_ARGS = ["--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
                 "--ignore-gpu-blocklist"]  # fmt: skip


async def test_a_new_report_appears_on_the_live_dashboard(
    api_url: str, worker: Any, keys: dict[str, str]
) -> None:
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is missing: run `make browser`"
    ARTIFACTS.mkdir(exist_ok=True)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = await browser.new_page(viewport={"width": 1600, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        await page.goto(f"{api_url}/?key={keys['ops']}")
        status = page.get_by_test_id("status")
        await status.filter(has_text="已连接").wait_for(timeout=30_000)
        await page.screenshot(path=ARTIFACTS / "dashboard-connected.png")

        event_id = await report(api_url, keys["hotline"], 120.6605, 28.0166,
                                "五马街人行道破损严重，行人容易摔倒")  # fmt: skip
        incident = page.locator('[data-testid="incident"]')
        await incident.first.wait_for(timeout=90_000)
        await page.wait_for_function("window.opsState && window.opsState.hexagons > 0",
                                     timeout=30_000)  # fmt: skip
        await page.screenshot(path=ARTIFACTS / "dashboard-incident.png")
        counts = await page.evaluate("window.opsState.counts")
        assert counts.get("events", 0) >= 1 and counts.get("incidents", 0) >= 1, counts
        assert event_id
        assert errors == [], errors
        await browser.close()
