"""With the dashboard open and no reload, a break shows its cause, checklist, activity and notice by itself.

Issue 13, item 1: the badge used to turn red at the next poll while "What happened", the checklist,
the recent activity and the notification count stayed as they were until a reload.
"""

from __future__ import annotations

import re
import sqlite3
from datetime import UTC, datetime

import pytest
from playwright.sync_api import expect

from testbed import servers
from tests.browser.conftest import CSP_LISTENER, assert_no_csp_violations, log_in
from tests.browser.test_connect_flow import DASHBOARD
from webapp.cli import DEMO_MERCHANT

pytestmark = [pytest.mark.browser, pytest.mark.slow]
POLL_SECONDS = 2


@pytest.fixture(scope="module")
def fast_polling_dashboard(tmp_path_factory):
    """Its own server: the open page polls every 2 s instead of 30 (STATUS_POLL_SECONDS)."""
    folder = tmp_path_factory.mktemp("live-updates")
    with servers.live_dashboard_server(folder, STATUS_POLL_SECONDS=str(POLL_SECONDS)) as (base_url, env):
        yield base_url, env, folder / "db.sqlite3"


def open_connected_dashboard(browser, base_url: str, username: str):
    context = browser.new_context(base_url=base_url)
    context.add_init_script(CSP_LISTENER)
    page = context.new_page()
    page.csp_console_messages = []
    log_in(page, DEMO_MERCHANT)
    page.goto("/")
    if page.get_by_role("button", name="Connect Instagram").count():
        page.get_by_role("button", name="Connect Instagram").click()
    else:
        page.get_by_role("button", name="Reconnect", exact=True).click()
    page.get_by_label(re.compile("(Create|Or create) a sandbox account")).fill(username)
    page.get_by_role("button", name="Allow").click()
    page.wait_for_url(DASHBOARD)
    expect(page.locator("#instagram-card .state-badge")).to_have_text(re.compile("Connected"))
    expect(page.locator("#recent-activity")).to_contain_text("Connected")
    expect(page.locator("section.flashes")).to_contain_text(f"@{username}")  # the message from connecting
    return page


def press_in_another_tab(page, username: str, button: str) -> None:
    """The sandbox in a second tab of the same browser: the dashboard tab stays open, untouched."""
    sandbox = page.context.new_page()
    sandbox.goto("/sandbox/")
    sandbox.locator("article", has_text=f"@{username}").get_by_role("button", name=button).click()
    sandbox.close()


def assert_the_open_page_shows_the_break(page, cause_title: str, activity_title: str) -> None:
    # A few polls' worth, with room for a loaded CI machine (four test processes and their browsers).
    timeout = 30_000
    card = page.locator("#instagram-card")
    expect(card.locator(".state-badge")).to_have_text(re.compile("Disconnected by Instagram"), timeout=timeout)
    expect(card.locator(".flash")).to_contain_text("Instagram just ended the connection", timeout=timeout)
    panel = page.locator("#diagnosis-panel")
    expect(panel).to_contain_text(cause_title, timeout=timeout)
    expect(panel.locator("ol.checklist li").first).to_be_visible(timeout=timeout)
    expect(page.locator("#recent-activity")).to_contain_text(activity_title, timeout=timeout)
    expect(page.locator("#notification-count .badge")).to_have_text(re.compile(r"[1-9]"), timeout=timeout)
    # "Connected" from before the break no longer stands above the red card.
    expect(page.locator("section.flashes")).to_have_count(0)
    expect(card).not_to_contain_text("Connected since")
    assert_no_csp_violations(page)


def test_a_deauthorize_from_meta_reaches_the_open_page(browser, fast_polling_dashboard):
    base_url, _env, _database = fast_polling_dashboard
    page = open_connected_dashboard(browser, base_url, "live_shop")
    page.evaluate("window.__loads = performance.getEntriesByType('navigation').length")
    press_in_another_tab(page, "live_shop", "Remove the app (sends a deauthorize callback)")
    assert_the_open_page_shows_the_break(
        page, "Our app was removed from the Instagram account", "App removed on Instagram"
    )
    assert page.evaluate("performance.getEntriesByType('navigation').length") == 1  # never reloaded
    page.context.close()


def test_a_break_the_worker_notices_reaches_the_open_page(browser, fast_polling_dashboard):
    base_url, env, database = fast_polling_dashboard
    page = open_connected_dashboard(browser, base_url, "live_shop")
    press_in_another_tab(page, "live_shop", "Change password")
    # The next scheduled health check is hours away; make it due now, as time passing would.
    with sqlite3.connect(database) as connection:
        now = datetime.now(UTC).replace(tzinfo=None).isoformat(sep=" ")
        connection.execute(
            "UPDATE instagram_connections SET check_due_at = ?, due_at = ? WHERE username = 'live_shop'",
            (now, now),
        )
    servers.run_worker_cycle(env)
    assert_the_open_page_shows_the_break(page, "password was changed", "Health check failed")
    page.context.close()
