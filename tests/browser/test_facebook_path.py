"""Issue 15's "done when", in Chromium through the sandbox: Facebook Login for Business end to end.

The demo merchant connects through Facebook and picks one of two Pages linked to Instagram; then
each of this path's causes is made in the sandbox's Facebook panel, and the card, the "What
happened" panel and the mail name it, and one click (Reconnect, or Renew access) restores it.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from testbed import servers
from testbed.servers import ARTIFACTS
from tests.browser.conftest import CSP_LISTENER, assert_no_csp_violations, log_in
from webapp.cli import DEMO_MERCHANT, DEMO_SUPPORT

pytestmark = [pytest.mark.browser, pytest.mark.slow]

DASHBOARD = re.compile(r"/(#_=_)?$")
PAGE_UNLINKED = "The Instagram account is no longer linked to your Facebook Page"
ROLE_GONE = "A permission or Page role was removed"

# the sandbox button (a user's or a Page's), the "What happened" panel's title, and whether the
# merchant must first undo it on Facebook (the sandbox's "Clear every problem") before reconnecting
CAUSES = [
    ("user", "Change the Facebook password", "The Facebook password was changed", False),
    ("user", "Put the user in a checkpoint", "Facebook wants you to confirm the account", False),
    ("user", "Remove the app (sends a signed deauthorize)", "Our app was removed from the Facebook account", False),
    ("user", "Let data access lapse (90 days)", "Access lapsed after 90 days without use", False),
    ("page", "Lower the role to Analyst (ANALYZE only)", ROLE_GONE, True),
    ("page", "Remove the user's role on the Page", ROLE_GONE, True),
    ("page", "Unlink Instagram from the Page", PAGE_UNLINKED, True),
    ("page", "Unpublish the Page", PAGE_UNLINKED, True),
    ("page", "Delete the Page", PAGE_UNLINKED, True),
]


@pytest.fixture(scope="module")
def live_dashboard(tmp_path_factory):
    """A server of this module's own that mails every break at once (see test_each_cause.py)."""
    with servers.live_dashboard_server(tmp_path_factory.mktemp("facebook"), NOTICE_QUIET_MINUTES="0") as (base, _):
        yield base


def new_page(browser, live_dashboard, who=DEMO_MERCHANT):
    context = browser.new_context(base_url=live_dashboard, viewport={"width": 1280, "height": 900})
    context.add_init_script(CSP_LISTENER)
    page = context.new_page()
    page.csp_console_messages = []
    log_in(page, who)
    return page


def assert_no_raw_token(page) -> None:
    """Promise 16: the sandbox's Facebook tokens start EAA; no page may show one."""
    assert "EAA" not in page.content()


def press(page, kind: str, button: str) -> None:
    page.goto("/sandbox/facebook/")
    user = page.locator("article.sandbox-account", has_text="Demo Merchant")
    scope = user.locator("section.sandbox-page", has=page.get_by_role("heading", name="Tea House", exact=True))
    (scope if kind == "page" else user.locator(".sandbox-actions").first).get_by_role("button", name=button).click()
    expect(page.locator(".flash").first).to_be_visible()


def continue_in_dialog(page) -> None:
    page.get_by_role("radio", name="Demo Merchant").check()
    page.get_by_role("button", name="Continue").click()


def ensure_connected_on_tea_house(page) -> None:
    page.goto("/")
    card = page.locator("#instagram-card")
    if "Connected" in card.locator(".state-badge").inner_text():
        return
    press(page, "user", "Clear every problem")
    page.goto("/")
    card.get_by_role("button", name=re.compile("^(Reconnect|Connect through Facebook)$")).first.click()
    continue_in_dialog(page)
    if "/facebook/pages" in page.url:
        page.get_by_role("radio", name=re.compile(r"^Tea House · ")).check()
        page.get_by_role("button", name="Connect the Instagram account of this Page").click()
    page.wait_for_url(DASHBOARD)
    expect(card.locator(".state-badge")).to_have_text(re.compile("Connected"))


def test_connect_through_facebook_picking_one_of_two_pages(browser, live_dashboard):
    page = new_page(browser, live_dashboard)
    page.goto("/")
    card = page.locator("#instagram-card")
    expect(card).to_contain_text("Choose how to connect")
    card.get_by_role("button", name="Connect through Facebook").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Allow")
    continue_in_dialog(page)

    # The picker: two Pages with an Instagram account, and one without, shown with how to link it.
    expect(page).to_have_url(re.compile(r"/facebook/pages"))
    expect(page.get_by_role("radio")).to_have_count(2)
    expect(page.get_by_text("Tea House Events")).to_be_visible()
    expect(page.locator("main")).to_contain_text("Meta Business Suite")
    page.get_by_role("radio", name=re.compile(r"^Tea House · ")).check()
    page.get_by_role("button", name="Connect the Instagram account of this Page").click()
    page.wait_for_url(DASHBOARD)
    expect(page.get_by_text("Instagram connected: @tea_house, through your Facebook Page “Tea House”.")).to_be_visible()
    expect(card.locator(".state-badge")).to_have_text(re.compile("Connected"))
    expect(card).to_contain_text("Connected through Facebook")
    expect(card).to_contain_text("Tea House")
    expect(card).to_contain_text("your role: Admin")
    expect(card).to_contain_text("Data access ends in")
    card.screenshot(path=str(ARTIFACTS / "facebook-card.png"))
    expect(card.get_by_role("button", name="Renew now")).to_have_count(0)  # nothing to refresh on this path
    assert_no_csp_violations(page)
    assert_no_raw_token(page)
    page.context.close()


@pytest.mark.parametrize("kind,button,title,undo_first", CAUSES, ids=[c[1] for c in CAUSES])
def test_each_facebook_cause_is_named_and_one_click_restores_it(
    browser, live_dashboard, kind, button, title, undo_first
):
    page = new_page(browser, live_dashboard)
    ensure_connected_on_tea_house(page)

    press(page, kind, button)
    page.goto("/")
    card = page.locator("#instagram-card")
    if "Disconnected" not in card.locator(".state-badge").inner_text():  # a deauthorize is already known
        card.get_by_role("button", name="Test connection now").click()
    expect(card.locator(".state-badge")).to_have_text(re.compile("Disconnected|Expired"))
    panel = page.locator("#diagnosis-panel")
    expect(panel).to_contain_text(title)
    expect(panel).not_to_contain_text("Instagram password")
    assert_no_csp_violations(page)
    assert_no_raw_token(page)

    # The mail (kept in the outbox: this server has no MAIL_URL) names the same cause.
    support = new_page(browser, live_dashboard, DEMO_SUPPORT)
    support.goto("/support/outbox")
    support.get_by_role("link", name=re.compile("Instagram is disconnected from")).first.click()
    expect(support.locator(".mail-text")).to_contain_text(f"reason: {title}.")
    expect(support.locator(".mail-text")).to_contain_text("Tea House")
    support.context.close()

    if undo_first:  # the merchant restores the role, the link or the Page on Facebook
        press(page, "user", "Clear every problem")
        page.goto("/")
    panel.get_by_role("button", name=re.compile("^Reconnect")).click()
    continue_in_dialog(page)  # the shop's own Page is kept: no picker
    page.wait_for_url(DASHBOARD)
    expect(page.get_by_text("Connection restored: @tea_house is connected again")).to_be_visible()
    expect(card.locator(".state-badge")).to_have_text(re.compile("Connected"))
    expect(card).to_contain_text("your role: Admin")
    assert_no_raw_token(page)
    page.context.close()


def test_renew_access_restores_a_closing_data_access_window(browser, live_dashboard):
    page = new_page(browser, live_dashboard)
    ensure_connected_on_tea_house(page)
    press(page, "user", "Bring data access's end near (5 days left)")
    page.goto("/")
    card = page.locator("#instagram-card")
    card.get_by_role("button", name="Test connection now").click()
    expect(card.locator(".state-badge")).to_have_text(re.compile("Expir"))
    expect(card).to_contain_text(re.compile(r"Data access ends in\s*4 days"))
    expect(card).to_contain_text("Data access used: 85 of 90 days")
    card.get_by_role("button", name="Renew access").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("renew access")
    continue_in_dialog(page)
    page.wait_for_url(DASHBOARD)
    expect(card.locator(".state-badge")).to_have_text(re.compile("Connected"))
    expect(card).to_contain_text(re.compile(r"Data access ends in\s*(89|90) days"))
    assert_no_csp_violations(page)
    page.context.close()
