"""Times in the reader's own time zone: the server writes UTC, the browser shows local time and "ago"."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest
from playwright.sync_api import expect

from testbed.servers import ARTIFACTS
from tests.browser.conftest import CSP_LISTENER, assert_no_csp_violations, log_in
from webapp.cli import DEMO_MERCHANT

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TOKYO = timedelta(hours=9)  # Asia/Tokyo has no daylight saving time
AGO = r"\((less than a minute|\d+ (minute|hour|day)s?) ago\)"


@pytest.fixture
def tokyo_page(browser, live_dashboard, request):
    context = browser.new_context(base_url=live_dashboard, timezone_id="Asia/Tokyo")
    context.add_init_script(CSP_LISTENER)
    page = context.new_page()
    page.csp_console_messages = []
    page.on(
        "console",
        lambda message: "Content Security Policy" in message.text and page.csp_console_messages.append(message.text),
    )
    yield page
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    context.close()


def utc_of(element) -> datetime:
    return datetime.fromisoformat(element.get_attribute("datetime").replace("Z", "+00:00"))


def tokyo_time(element) -> str:
    """The element's time as Tokyo reads it; the year is left out when it is this year's."""
    local = utc_of(element) + TOKYO
    return rf"{local:%-d %b}( {local:%Y})?, {local:%H:%M} GMT\+9"


def test_times_are_local_with_how_long_ago_also_in_fragments_htmx_swaps_in(tokyo_page):
    """Issue 13 item 8: a merchant in Tokyo reads Tokyo time, and "2 hours ago" where it helps."""
    page = tokyo_page
    log_in(page, DEMO_MERCHANT)
    page.wait_for_url("**/")
    if page.get_by_role("button", name="Connect Instagram").count():
        page.get_by_role("button", name="Connect Instagram").click()
        page.get_by_label("Create a sandbox account").fill("bloom_and_stem")
        page.get_by_role("button", name="Allow").click()
        page.wait_for_url(re.compile(r"^http://[^/]+/(#_)?$"))

    # The recent activity arrives by htmx once the page is up; its times are rewritten too.
    newest = page.locator("#recent-activity .timeline time").first
    expect(newest).to_have_text(re.compile(rf"GMT\+9 {AGO}$"))
    assert re.fullmatch(rf"{tokyo_time(newest)} {AGO}", newest.inner_text())
    assert newest.get_attribute("title") == f"{utc_of(newest):%-d %b %Y, %H:%M} UTC"

    # The card replaces itself after a test: the new last check is local and says how long ago.
    page.get_by_role("button", name="Test connection now").click()
    expect(page.locator("#instagram-card .flash")).to_be_visible()
    last_check = page.locator("#instagram-card dd", has_text=re.compile("passed|failed")).locator("time")
    expect(last_check).to_have_text(re.compile(r"GMT\+9 \((less than a minute|1 minute) ago\)$"))
    assert re.fullmatch(rf"{tokyo_time(last_check)} {AGO}", last_check.inner_text())
    # A time without a phrase is local too (the people table's last login).
    login = page.locator("table time").first
    expect(login).to_have_text(re.compile(rf"^{tokyo_time(login)}$"))
    assert_no_csp_violations(page)
