"""Playwright driving Debian's Chromium against the real server (gunicorn, SQLite, the sandbox)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from testbed.servers import ARTIFACTS

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]
# Collects CSP violations in the page; Playwright injects it without going through the page's CSP.
CSP_LISTENER = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', e => {
  window.__cspViolations.push(e.violatedDirective + ' ' + e.blockedURI);
});
"""


def _browser_missing_reason() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"Chromium not found at {CHROMIUM} (apt-get install -y chromium; CI installs it)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -r requirements-dev.txt)"
    return None


@pytest.fixture(scope="session")
def browser():
    reason = _browser_missing_reason()
    if reason:
        if os.environ.get("REQUIRE_BROWSER"):
            pytest.fail(f"REQUIRE_BROWSER is set but {reason}")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, live_dashboard, request):
    context = browser.new_context(base_url=live_dashboard, java_script_enabled=True)
    context.add_init_script(CSP_LISTENER)
    page = context.new_page()
    console_csp = []
    page.on("console", lambda message: "Content Security Policy" in message.text and console_csp.append(message.text))
    page.csp_console_messages = console_csp
    yield page
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    context.close()


def assert_no_csp_violations(page) -> None:
    violations = page.evaluate("window.__cspViolations")
    assert violations == [], violations
    assert page.csp_console_messages == [], page.csp_console_messages


def log_in(page, who: dict) -> None:
    """Log in through the real form as one of the demo logins (DEMO_MERCHANT, DEMO_SUPPORT, ...)."""
    page.goto("/login")
    page.get_by_label("Email").fill(who["email"])
    page.get_by_label("Password").fill(who["password"])
    page.get_by_role("button", name="Log in").click()
    page.wait_for_load_state()
