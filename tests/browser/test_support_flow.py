"""A support agent finds the broken shop, views it as the merchant, sends a link, stops; the audit shows it all."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import assert_no_csp_violations, log_in
from tests.browser.test_connect_flow import DASHBOARD
from webapp.cli import DEMO_ADMIN, DEMO_MERCHANT, DEMO_SUPPORT

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def break_the_demo_shop(page) -> None:
    """As the merchant: make sure Instagram is connected, then let the sandbox end the session."""
    log_in(page, DEMO_MERCHANT)
    if page.get_by_role("button", name="Connect Instagram").count():
        page.get_by_role("button", name="Connect Instagram").click()
        page.get_by_label("Create a sandbox account").fill("bloom_and_stem")
        page.get_by_role("button", name="Allow").click()
        page.wait_for_url(DASHBOARD)
    page.goto("/sandbox/")
    page.locator("article", has_text="@bloom_and_stem").get_by_role("button", name="Log out everywhere").click()
    page.goto("/")
    page.get_by_role("button", name="Test connection now").click()
    expect(page.locator("#instagram-card .state-badge")).to_have_text(re.compile("Disconnected by Instagram"))


def test_support_agent_flow(browser, live_dashboard):
    merchant = browser.new_context(base_url=live_dashboard)
    break_the_demo_shop(merchant.new_page())
    merchant.close()

    context = browser.new_context(base_url=live_dashboard)
    from tests.browser.conftest import CSP_LISTENER

    context.add_init_script(CSP_LISTENER)
    page = context.new_page()
    page.csp_console_messages = []
    log_in(page, DEMO_SUPPORT)
    expect(page.get_by_role("heading", level=1)).to_have_text("Fleet")
    attention = page.locator("section", has=page.get_by_role("heading", name=re.compile("Needs attention")))
    row = attention.get_by_role("row", name=re.compile("Bloom & Stem Flowers"))
    expect(row).to_contain_text("Disconnected by Instagram")
    row.get_by_role("link", name="Bloom & Stem Flowers").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Bloom & Stem Flowers")
    expect(page.locator("#diagnosis-panel")).to_contain_text("Instagram ended the login session")

    page.get_by_label("Reason (ticket number, what the merchant asked)").fill(
        "Ticket 4411: Instagram keeps disconnecting"
    )
    page.get_by_label("Your password").fill(DEMO_SUPPORT["password"])
    page.get_by_role("button", name="View as merchant").click()
    banner = page.locator("#impersonation-banner")
    expect(banner).to_contain_text("You are viewing Bloom & Stem Flowers as Maya Jones")
    expect(page.locator("#instagram-card")).to_be_visible()
    html = page.content()
    assert "IGAA" not in html and "IGQV" not in html  # promise 16: support viewing as merchant sees no token

    card = page.locator("#instagram-card")
    expect(card.get_by_role("button", name="Reconnect")).to_be_disabled()  # the owner's actions look unavailable
    expect(card.get_by_role("button", name="Disconnect")).to_be_disabled()
    expect(card).to_contain_text("Only the shop's owner can do this; you are viewing as support.")
    page.goto("/instagram/disconnect")  # a blocked action, tried anyway
    expect(page.get_by_role("heading", level=1)).to_have_text("Not allowed")
    expect(page.locator("main")).to_contain_text("Use “Send reconnect link”")
    expect(banner).to_be_visible()

    banner.get_by_role("button", name="Send reconnect link").click()
    expect(page.get_by_text("Reconnect link sent to 1 merchant login(s) of Bloom & Stem Flowers.")).to_be_visible()
    page.locator("#impersonation-banner").get_by_role("button", name="Stop viewing as merchant").click()
    expect(page.get_by_text("Stopped viewing Bloom & Stem Flowers as its merchant.")).to_be_visible()
    expect(page.locator("#impersonation-banner")).to_have_count(0)
    assert_no_csp_violations(page)
    context.close()

    admin = browser.new_context(base_url=live_dashboard).new_page()
    log_in(admin, DEMO_ADMIN)
    admin.goto("/admin/audit?actor=agent@support.example")
    table = admin.locator("table")
    for action in (
        "impersonation.start",
        "impersonation.refused",
        "impersonation.write",
        "reconnect_link.sent",
        "impersonation.stop",
        "staff.login",
    ):
        expect(table).to_contain_text(action)
    expect(table).to_contain_text("agent@support.example (support)")
    expect(table).to_contain_text("Ticket 4411: Instagram keeps disconnecting")
    admin.screenshot(path="test-artifacts/support-audit.png", full_page=True)
