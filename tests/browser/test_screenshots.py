"""`make screenshots`: the README's pictures, taken from a real browser run (skipped otherwise)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import log_in
from tests.browser.test_connect_flow import DASHBOARD
from webapp.cli import DEMO_MERCHANT, DEMO_SUPPORT

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(
        not os.environ.get("SCREENSHOTS_DIR"), reason="set SCREENSHOTS_DIR (make screenshots) to take them"
    ),
]


def test_take_the_readme_screenshots(browser, live_dashboard):
    folder = Path(os.environ["SCREENSHOTS_DIR"])
    folder.mkdir(parents=True, exist_ok=True)
    page = browser.new_context(base_url=live_dashboard, viewport={"width": 1280, "height": 900}).new_page()
    log_in(page, DEMO_MERCHANT)
    if page.get_by_role("button", name="Connect Instagram").count():
        page.get_by_role("button", name="Connect Instagram").click()
        page.screenshot(path=str(folder / "sandbox-login.png"))
        page.get_by_label("Create a sandbox account").fill("bloom_and_stem")
        page.get_by_role("button", name="Allow").click()
        page.wait_for_url(DASHBOARD)
    page.wait_for_selector("#recent-activity .health-strip")
    page.screenshot(path=str(folder / "dashboard-connected.png"), full_page=True)

    page.goto("/sandbox/")
    page.screenshot(path=str(folder / "sandbox-panel.png"), full_page=True)
    page.locator("article", has_text="@bloom_and_stem").get_by_role("button", name="Change password").click()
    page.goto("/")
    page.get_by_role("button", name="Test connection now").click()
    expect(page.locator("#diagnosis-panel")).to_contain_text("password was changed")
    page.wait_for_selector("#recent-activity .health-strip")
    page.screenshot(path=str(folder / "dashboard-disconnected.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    page.screenshot(path=str(folder / "dashboard-mobile.png"), full_page=False)

    support = browser.new_context(base_url=live_dashboard, viewport={"width": 1280, "height": 900}).new_page()
    log_in(support, DEMO_SUPPORT)
    expect(support.get_by_role("heading", level=1)).to_have_text(re.compile("Fleet"))
    support.screenshot(path=str(folder / "support-fleet.png"), full_page=True)
    assert sorted(p.name for p in folder.glob("*.png")) >= ["dashboard-connected.png", "dashboard-disconnected.png"]
