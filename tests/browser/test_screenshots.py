"""`make screenshots`: the README's pictures, taken from a real browser run (skipped otherwise)."""

from __future__ import annotations

import os
import re
import sqlite3
from pathlib import Path

import pytest
from playwright.sync_api import expect

from testbed import servers
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
    taken = {p.name for p in folder.glob("*.png")}
    assert taken >= {"dashboard-connected.png", "dashboard-disconnected.png", "sandbox-panel.png", "support-fleet.png"}


# The card in each state a merchant can meet, set on the row as the worker or Meta would leave it.
CARD_STATES = {
    "healthy": {},
    "expiring": {
        "state": "expiring",
        "cause": "provider_error",
        "expires_in_days": 6,
        "last_check_ok": 0,
        "retry_in_minutes": 40,
    },
    "degraded": {"state": "degraded", "cause": "provider_error", "last_check_ok": 0, "retry_in_minutes": 12},
    "rate-limited-pause": {"paused_minutes": 25},
    "needs-reconnect": {"state": "needs_reconnect", "cause": "password_changed", "last_check_ok": 0},
    "expired": {"state": "needs_reconnect", "cause": "token_expired", "expires_in_days": -1},
    "not-connected": {"state": "not_connected", "no_token": True},
}


def _set_card_state(database: Path, settings: dict) -> None:
    from datetime import UTC, datetime, timedelta

    now = datetime.now(UTC).replace(tzinfo=None)
    columns = {
        "state": settings.get("state", "healthy"),
        "cause": settings.get("cause"),
        "last_check_ok": settings.get("last_check_ok", 1),
        "token_expires_at": now + timedelta(days=settings.get("expires_in_days", 53)),
        "paused_until": now + timedelta(minutes=settings["paused_minutes"]) if "paused_minutes" in settings else None,
        "retry_at": now + timedelta(minutes=settings["retry_in_minutes"]) if "retry_in_minutes" in settings else None,
    }
    if settings.get("no_token"):
        columns.update(token_ciphertext=None, token_fingerprint=None)
    assignments = ", ".join(f"{name} = ?" for name in columns)
    with sqlite3.connect(database) as connection:
        connection.execute(
            f"UPDATE instagram_connections SET {assignments}, version = version + 1",  # noqa: S608 (names are ours)
            [value.isoformat(sep=" ") if isinstance(value, datetime) else value for value in columns.values()],
        )


def test_the_card_in_every_state_on_desktop_and_phone(browser, tmp_path_factory):
    folder = Path(os.environ["SCREENSHOTS_DIR"]) / "cards"
    folder.mkdir(parents=True, exist_ok=True)
    with servers.live_dashboard_server(tmp_path_factory.mktemp("card-states")) as (base_url, _env):
        page = browser.new_context(base_url=base_url, viewport={"width": 1280, "height": 900}).new_page()
        log_in(page, DEMO_MERCHANT)
        page.get_by_role("button", name="Connect Instagram").click()
        page.get_by_label("Create a sandbox account").fill("bloom_and_stem")
        page.get_by_role("button", name="Allow").click()
        page.wait_for_url(DASHBOARD)
        database = next(Path(tmp_path_factory.getbasetemp()).glob("card-states*/db.sqlite3"))
        for name, settings in CARD_STATES.items():
            _set_card_state(database, settings)
            for device, viewport in (
                ("desktop", {"width": 1280, "height": 900}),
                ("phone", {"width": 390, "height": 844}),
            ):
                page.set_viewport_size(viewport)
                page.goto("/")
                card = page.locator("#instagram-card")
                expect(card).to_be_visible()
                card.screenshot(path=str(folder / f"{name}-{device}.png"))
                assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), (name, device)
    assert len(list(folder.glob("*.png"))) == 2 * len(CARD_STATES)


def test_take_the_facebook_login_screenshots(browser, tmp_path_factory):
    """The Facebook Login path: the Page picker, its connected card and a Page unlinked from Instagram."""
    folder = Path(os.environ["SCREENSHOTS_DIR"])
    folder.mkdir(parents=True, exist_ok=True)
    with servers.live_dashboard_server(tmp_path_factory.mktemp("facebook-shots")) as (base_url, _env):
        page = browser.new_context(base_url=base_url, viewport={"width": 1280, "height": 900}).new_page()
        log_in(page, DEMO_MERCHANT)
        page.locator("#instagram-card").screenshot(path=str(folder / "card-choose-path.png"))
        page.get_by_role("button", name="Connect through Facebook").click()
        page.get_by_role("radio", name="Demo Merchant").check()
        page.get_by_role("button", name="Continue").click()
        expect(page).to_have_url(re.compile(r"/facebook/pages"))
        page.screenshot(path=str(folder / "facebook-page-picker.png"), full_page=True)
        page.get_by_role("radio", name=re.compile(r"^Tea House · ")).check()
        page.get_by_role("button", name="Connect the Instagram account of this Page").click()
        page.wait_for_url(re.compile(r"/(#_=_)?$"))
        card = page.locator("#instagram-card")
        expect(card).to_contain_text("Connected through Facebook")
        card.screenshot(path=str(folder / "card-facebook-connected.png"))

        page.goto("/sandbox/facebook/")
        user = page.locator("article.sandbox-account", has_text="Demo Merchant")
        tea_house = user.locator("section.sandbox-page", has=page.get_by_role("heading", name="Tea House", exact=True))
        tea_house.get_by_role("button", name="Unlink Instagram from the Page").click()
        page.goto("/")
        card.get_by_role("button", name="Test connection now").click()
        expect(page.locator("#diagnosis-panel")).to_contain_text("no longer linked to your Facebook Page")
        page.screenshot(path=str(folder / "dashboard-facebook-disconnected.png"), full_page=True)
