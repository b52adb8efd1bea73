"""A merchant logs in through a real browser and sees the dashboard (promise 31: no CSP violations)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import assert_no_csp_violations
from webapp.cli import DEMO_MERCHANT

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_demo_merchant_logs_in_and_sees_the_dashboard(page):
    """Promise 31: a real browser run reports no CSP violations."""
    page.goto("/")
    assert page.url.endswith("/login?next=/")
    page.get_by_label("Email").fill(DEMO_MERCHANT["email"])
    page.get_by_label("Password").fill(DEMO_MERCHANT["password"])
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/")
    assert page.get_by_role("heading", level=1).inner_text() == "Bloom & Stem Flowers"
    expect(page.get_by_role("cell", name=DEMO_MERCHANT["email"])).to_be_visible()
    # htmx arrived (from the CDN or, offline, from the local fallback copy).
    page.wait_for_function("window.htmx !== undefined", timeout=10_000)
    assert_no_csp_violations(page)


def test_wrong_password_shows_a_clear_message(page):
    page.goto("/login")
    page.get_by_label("Email").fill(DEMO_MERCHANT["email"])
    page.get_by_label("Password").fill("not-my-password")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_text("That email and password do not match an active account.")).to_be_visible()
    assert page.get_by_label("Password").get_attribute("aria-invalid") == "true"
    assert_no_csp_violations(page)
