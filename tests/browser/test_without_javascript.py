"""The core merchant flow works with JavaScript switched off (progressive enhancement)."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.test_connect_flow import DASHBOARD
from webapp.cli import DEMO_MERCHANT

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_merchant_flow_without_javascript(browser, live_dashboard):
    context = browser.new_context(base_url=live_dashboard, java_script_enabled=False)
    page = context.new_page()
    page.goto("/login")
    page.get_by_label("Email").fill(DEMO_MERCHANT["email"])
    page.get_by_label("Password").fill(DEMO_MERCHANT["password"])
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(DASHBOARD)
    card = page.locator("#instagram-card")
    if page.get_by_role("button", name="Connect Instagram").count():
        page.get_by_role("button", name="Connect Instagram").click()
        page.get_by_label("Create a sandbox account").fill("bloom_and_stem")
        page.get_by_role("button", name="Allow").click()
        page.wait_for_url(DASHBOARD)
    if "Disconnected by Instagram" in card.inner_text():
        page.get_by_role("button", name="Reconnect", exact=True).click()
        page.get_by_role("button", name="Allow").click()
        page.wait_for_url(DASHBOARD)
    expect(card.locator(".state-badge")).to_have_text(re.compile("Connected"))

    # Forms post and come back to the page with a message.
    page.get_by_role("button", name="Test connection now").click()
    expect(page.get_by_text("Connection tested: Instagram answered and everything works.")).to_be_visible()

    page.goto("/sandbox/")
    page.locator("article", has_text="@bloom_and_stem").get_by_role(
        "button", name="Put the account in a checkpoint"
    ).click()
    page.goto("/")
    page.get_by_role("button", name="Test connection now").click()
    expect(card.locator(".state-badge")).to_have_text(re.compile("Disconnected by Instagram"))
    panel = page.locator("#diagnosis-panel")
    expect(panel).to_contain_text("Instagram wants you to confirm the account")
    panel.get_by_role("button", name=re.compile("^Mark as done: Open the Instagram app")).click()
    expect(page.locator("#diagnosis-panel .checklist li.done")).to_have_count(1)
    page.get_by_role("link", name="See the connection's history").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Instagram connection history")
    page.goto("/")
    page.get_by_role("button", name="Reconnect Instagram").click()
    page.get_by_role("button", name="Allow").click()
    page.wait_for_url(DASHBOARD)
    expect(page.get_by_text("Connection restored: @bloom_and_stem is connected again.")).to_be_visible()
    context.close()
