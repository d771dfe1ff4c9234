"""The front end in a real headless Chromium (Debian's, `make browser`) against the real API,
worker, Kafka and PostgreSQL: on the dashboard, a report posted to the hotline intake appears
live as an incident and as hexagons on the map; in the workbench, the department it was routed
to accepts and resolves its ticket. Screenshots go to test-artifacts/."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import async_playwright

from hub.auth import create_api_key
from tests.integration.helpers import eventually
from tests.integration.test_ops_feed import report

pytestmark = pytest.mark.integration
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
# Software WebGL: the map and deck.gl's layers need WebGL2, and CI machines have no GPU.
CHROMIUM_ARGS = ["--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
                 "--ignore-gpu-blocklist"]  # fmt: skip


async def test_a_report_appears_live_and_its_department_resolves_it_in_the_workbench(
    api_url: str, worker: Any, keys: dict[str, str], pool: Any
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
        assert errors == [], errors

        ticket_id, department = await ticket_of(api_url, keys["ops"], event_id)
        async with pool.acquire() as conn:
            department_key = await create_api_key(conn, role="department", scope=department)
        await page.goto(f"{api_url}/workbench?key={department_key}")
        await page.locator(f'[data-testid="queue-item"][data-ticket-id="{ticket_id}"]').click()
        ticket_status = page.get_by_test_id("ticket-status")
        await ticket_status.filter(has_text="dispatched").wait_for(timeout=30_000)
        for action, after in (("accept", "accepted"), ("resolve", "resolved")):
            await page.get_by_test_id(f"action-{action}").click()
            if action == "resolve":
                await page.get_by_test_id("action-note").fill("已修复人行道，现场已清理")
            await page.get_by_test_id("action-submit").click()
            await ticket_status.filter(has_text=after).wait_for(timeout=30_000)
        await page.screenshot(path=ARTIFACTS / "workbench-resolved.png")
        async with httpx.AsyncClient(base_url=api_url) as client:
            stored = await client.get(f"/api/v1/tickets/{ticket_id}",
                                      headers={"X-API-Key": department_key})  # fmt: skip
        assert stored.json()["status"] == "resolved"
        assert [h["action"] for h in stored.json()["history"]][-2:] == ["accept", "resolve"]
        assert errors == [], errors
        await browser.close()


async def ticket_of(api_url: str, ops_key: str, event_id: str) -> tuple[str, str]:
    """The ticket the report became, and its department."""
    async with httpx.AsyncClient(base_url=api_url) as client:

        async def ticketed() -> Any:
            status = await client.get(f"/api/v1/events/{event_id}",
                                      headers={"X-API-Key": ops_key})  # fmt: skip
            return status.status_code == 200 and status.json()["ticket"]

        ticket = await eventually(ticketed, seconds=60)
    return ticket["ticket_id"], ticket["department_code"]
