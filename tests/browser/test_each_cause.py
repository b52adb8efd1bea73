"""For each sandbox cause, the card, the panel and the mail name the right cause; one click restores."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from testbed import servers
from tests.browser.conftest import CSP_LISTENER, assert_no_csp_violations, log_in
from tests.browser.test_connect_flow import DASHBOARD
from webapp.cli import DEMO_MERCHANT, DEMO_SUPPORT

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def live_dashboard(tmp_path_factory):
    """A server of this module's own that mails every break at once (NOTICE_QUIET_MINUTES=0).

    These causes follow each other within seconds: with the quiet period, every break after the first
    would wait for one summary 10 minutes later (flapping, tests/test_notifications.py). Here each
    cause's own mail is what is checked.
    """
    with servers.live_dashboard_server(tmp_path_factory.mktemp("causes"), NOTICE_QUIET_MINUTES="0") as (base, _env):
        yield base


# sandbox button, what the card says, the panel's title, whether reconnecting fixes it
CAUSES = [
    ("Change password", "Disconnected by Instagram", "The Instagram password was changed", True),
    (
        "Put the account in a checkpoint",
        "Disconnected by Instagram",
        "Instagram wants you to confirm the account",
        True,
    ),
    ("Log out everywhere", "Disconnected by Instagram", "Instagram ended the login session", True),
    ("Remove a permission", "Disconnected by Instagram", "A permission was removed", True),
    (
        "Data access expired (90 days unused)",
        "Disconnected by Instagram",
        "Access lapsed after 90 days without use",
        True,
    ),
    ("Start or end an outage", "Having trouble, retrying", "Instagram is having trouble", False),
]

# The mail's lead follows the panel's confidence: Meta's 90-day code on a minutes-old connection does not fit.
MAIL_LEADS = {"Data access expired (90 days unused)": "Possible reason"}


def assert_no_raw_token(page) -> None:
    """Promise 16: sandbox tokens start IGAA (long-lived) or IGQV (short-lived); no page may show one."""
    html = page.content()
    assert "IGAA" not in html and "IGQV" not in html


def press(page, button: str) -> None:
    page.goto("/sandbox/")
    page.locator("article", has_text="@bloom_and_stem").get_by_role("button", name=button).click()


def ensure_connected(page) -> None:
    page.goto("/")
    card = page.locator("#instagram-card")
    if page.get_by_role("button", name="Connect Instagram").count():
        page.get_by_role("button", name="Connect Instagram").click()
        page.get_by_label("Create a sandbox account").fill("bloom_and_stem")
        page.get_by_role("button", name="Allow").click()
        page.wait_for_url(DASHBOARD)
    elif "Connected" not in card.locator(".state-badge").inner_text():
        press(page, "Clear every problem")
        page.goto("/")
        page.get_by_role("button", name="Reconnect", exact=True).click()
        page.get_by_role("button", name="Allow").click()
        page.wait_for_url(DASHBOARD)
    expect(card.locator(".state-badge")).to_have_text(re.compile("Connected"))


@pytest.mark.parametrize("button,card_words,title,reconnect", CAUSES, ids=[c[0] for c in CAUSES])
def test_each_cause_end_to_end(browser, live_dashboard, button, card_words, title, reconnect):
    context = browser.new_context(base_url=live_dashboard)
    context.add_init_script(CSP_LISTENER)
    page = context.new_page()
    page.csp_console_messages = []
    log_in(page, DEMO_MERCHANT)
    ensure_connected(page)

    press(page, button)
    page.goto("/")
    page.get_by_role("button", name="Test connection now").click()
    card = page.locator("#instagram-card")
    expect(card.locator(".state-badge")).to_have_text(re.compile(card_words))
    expect(page.locator("#diagnosis-panel")).to_contain_text(title)
    assert_no_csp_violations(page)
    assert_no_raw_token(page)

    if reconnect:
        # The mail (kept in the outbox: this server has no MAIL_URL) names the same cause.
        support = browser.new_context(base_url=live_dashboard).new_page()
        log_in(support, DEMO_SUPPORT)
        support.goto("/support/outbox")
        support.get_by_role(
            "link", name=re.compile("Instagram is disconnected from Bloom & Stem Flowers")
        ).first.click()
        lead = MAIL_LEADS.get(button, "Most likely reason")
        expect(support.locator(".mail-text")).to_contain_text(f"{lead}: {title}.")
        support.context.close()
        page.locator("#diagnosis-panel").get_by_role("button", name="Reconnect Instagram").click()
        page.get_by_role("button", name="Allow").click()
        page.wait_for_url(DASHBOARD)
        expect(page.get_by_text("Connection restored: @bloom_and_stem is connected again.")).to_be_visible()
    else:
        press(page, "Clear every problem")
        page.goto("/")
        page.get_by_role("button", name="Test connection now").click()
        expect(card.locator(".state-badge")).to_have_text(re.compile("Connected"))
    expect(card.locator(".state-badge")).to_have_text(re.compile("Connected"))
    card.get_by_text("Technical details").click()  # the disclosure shows a fingerprint, never the token
    expect(card).to_contain_text("fingerprint")
    assert_no_raw_token(page)
    context.close()


def test_a_rate_limit_pauses_calls_and_test_now_waits_for_the_pause(browser, tmp_path_factory):
    """Its own server: Meta's rate limit pauses every call of the app for a while, the other causes' too."""
    with servers.live_dashboard_server(tmp_path_factory.mktemp("rate-limit")) as (base_url, _env):
        context = browser.new_context(base_url=base_url)
        context.add_init_script(CSP_LISTENER)
        page = context.new_page()
        page.csp_console_messages = []
        log_in(page, DEMO_MERCHANT)
        ensure_connected(page)
        press(page, "Rate-limit the next 5 calls")
        page.goto("/")
        page.get_by_role("button", name="Test connection now").click()
        card = page.locator("#instagram-card")
        expect(card.locator(".state-badge")).to_have_text(re.compile("Having trouble, retrying"))
        expect(card).to_contain_text("Paused until")
        panel = page.locator("#diagnosis-panel")
        expect(panel).to_contain_text("Instagram asked us to slow down")
        expect(panel).to_contain_text("Nothing to do.")
        # Calling Meta during the pause would only extend it: the button says so instead of calling.
        page.get_by_role("button", name="Test connection now").click()
        expect(card.locator(".flash")).to_contain_text("Testing now would only make the pause longer")
        assert_no_csp_violations(page)
        assert_no_raw_token(page)
        context.close()


def test_a_personal_account_is_named_and_reconnecting_asks_for_a_professional_one(browser, live_dashboard):
    """Issue 14: account_type PERSONAL is account_not_professional; reconnecting works once it is professional."""
    context = browser.new_context(base_url=live_dashboard)
    context.add_init_script(CSP_LISTENER)
    page = context.new_page()
    page.csp_console_messages = []
    log_in(page, DEMO_MERCHANT)
    ensure_connected(page)

    press(page, "Switch to a personal account")
    page.goto("/")
    page.get_by_role("button", name="Test connection now").click()
    card = page.locator("#instagram-card")
    expect(card.locator(".state-badge")).to_have_text(re.compile("Disconnected by Instagram"))
    expect(page.locator("#diagnosis-panel")).to_contain_text(
        "The Instagram account is no longer a professional account"
    )

    # Still personal: the login is refused in plain words and nothing changes.
    page.locator("#diagnosis-panel").get_by_role("button", name="Reconnect Instagram").click()
    page.get_by_role("button", name="Allow").click()
    page.wait_for_url(DASHBOARD)
    expect(page.get_by_text("This Instagram account is a personal account")).to_be_visible()
    expect(card.locator(".state-badge")).to_have_text(re.compile("Disconnected by Instagram"))

    press(page, "Clear every problem")  # back to a Business account
    page.goto("/")
    page.locator("#diagnosis-panel").get_by_role("button", name="Reconnect Instagram").click()
    page.get_by_role("button", name="Allow").click()
    page.wait_for_url(DASHBOARD)
    expect(page.get_by_text("Connection restored: @bloom_and_stem is connected again.")).to_be_visible()
    assert_no_csp_violations(page)
    assert_no_raw_token(page)
    context.close()
