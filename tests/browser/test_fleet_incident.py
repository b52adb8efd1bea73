"""During a stubbed Meta outage across the fleet, the open dashboard shows one calm banner, and loses it after.

The sandbox is the stub: its outage makes every call about the account answer HTTP 500 (code 2).
Four shops share that account's connection, so the outage reaches the fleet (INCIDENT_MIN_CONNECTIONS
is 3 on this server); the real worker notices, opens the incident, and closes it once Meta answers.
"""

from __future__ import annotations

import re
import sqlite3

import pytest
from playwright.sync_api import expect

from testbed import servers
from tests.browser.conftest import assert_no_csp_violations, log_in
from tests.browser.test_live_updates import open_connected_dashboard, press_in_another_tab
from webapp.cli import DEMO_SUPPORT
from webapp.dashboard.presenter import INCIDENT_BANNER

pytestmark = [pytest.mark.browser, pytest.mark.slow]
USERNAME = "outage_shop"
OTHER_SHOPS = 3
OUTAGE_BUTTON = "Start or end an outage"


@pytest.fixture(scope="module")
def incident_dashboard(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fleet-incident")
    with servers.live_dashboard_server(
        folder, STATUS_POLL_SECONDS="2", INCIDENT_MIN_CONNECTIONS="3", INCIDENT_CLOSE_MINUTES="0"
    ) as (base_url, env):
        yield base_url, env, folder / "db.sqlite3"


def more_shops_on_the_same_account(database, count: int) -> None:
    """Other shops connected to the same sandbox account (a copy of the merchant's connection row)."""
    with sqlite3.connect(database) as connection:
        columns = [row[1] for row in connection.execute("PRAGMA table_info(instagram_connections)")]
        copied = [column for column in columns if column not in ("id", "shop_id")]
        [source] = connection.execute("SELECT id FROM instagram_connections WHERE username = ?", (USERNAME,)).fetchall()
        for number in range(count):
            shop = connection.execute(
                "INSERT INTO shops (name, domain, created_at) VALUES (?, ?, datetime('now'))",
                (f"Outage Shop {number}", f"outage-{number}.example"),
            ).lastrowid
            connection.execute(
                f"INSERT INTO instagram_connections (shop_id, {', '.join(copied)}) "
                f"SELECT ?, {', '.join(copied)} FROM instagram_connections WHERE id = ?",
                (shop, source[0]),
            )


def test_the_open_dashboard_shows_the_incident_banner_during_an_outage(browser, incident_dashboard):
    base_url, env, database = incident_dashboard
    page = open_connected_dashboard(browser, base_url, USERNAME)
    more_shops_on_the_same_account(database, OTHER_SHOPS)
    card = page.locator("#instagram-card")
    expect(card.locator(".incident-banner")).to_have_count(0)

    press_in_another_tab(page, USERNAME, OUTAGE_BUTTON)  # every connection of the account is due now
    output = servers.run_worker_cycle(env)
    assert "fleet incident" in output and "opened" in output, output[-3000:]

    timeout = 30_000  # a few polls, with room for a loaded machine
    expect(card.locator(".incident-banner")).to_contain_text(INCIDENT_BANNER, timeout=timeout)
    expect(card.locator(".state-badge")).to_have_text(re.compile("Instagram is having trouble"), timeout=timeout)
    expect(card.locator(".flash")).to_contain_text("nothing for you to do", timeout=timeout)
    panel = page.locator("#diagnosis-panel")
    expect(panel).to_contain_text("not because of anything in your shop", timeout=timeout)
    expect(panel.locator("ol.checklist")).to_have_count(0)
    assert_no_csp_violations(page)
    servers.ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(servers.ARTIFACTS / "fleet-incident-banner.png"), full_page=True)

    support = page.context.browser.new_context(base_url=base_url).new_page()
    log_in(support, DEMO_SUPPORT)
    support.goto("/support/")
    expect(support.locator("#fleet-incident")).to_contain_text("Meta is failing for much of the fleet")
    support.locator("#fleet-incident").get_by_role("link", name="Timeline and shops touched").click()
    expect(support.locator("#incident-shops tbody tr")).to_have_count(1 + OTHER_SHOPS)
    expect(support.locator("#incident-timeline")).to_contain_text("opened")

    # Meta answers again: the retries succeed and the incident closes (INCIDENT_CLOSE_MINUTES=0).
    press_in_another_tab(page, USERNAME, OUTAGE_BUTTON)
    output = servers.run_worker_cycle(env)
    assert "closed" in output, output[-3000:]
    expect(card.locator(".incident-banner")).to_have_count(0, timeout=timeout)
    expect(card.locator(".state-badge")).to_have_text(re.compile("Connected"), timeout=timeout)
    support.goto("/support/incidents")
    expect(support.locator("tbody")).not_to_contain_text("open")
    support.context.close()
    page.context.close()
