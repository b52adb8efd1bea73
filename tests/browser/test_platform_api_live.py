"""The Platform API on a real server: an admin makes a key in the browser, a service uses it, no log line shows secrets.

gunicorn runs the app at LOG_LEVEL=DEBUG with its access log on; everything it wrote is read back
at the end and must not hold the token or the key's secret (promise 15).
"""

from __future__ import annotations

import re
import uuid

import pytest
import requests
from playwright.sync_api import expect

from testbed import servers
from tests.browser.conftest import CSP_LISTENER, assert_no_csp_violations, log_in
from tests.browser.test_connect_flow import DASHBOARD
from webapp.cli import DEMO_ADMIN, DEMO_MERCHANT

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("platform-api")
    with servers.live_dashboard_server(folder, LOG_LEVEL="DEBUG") as (base_url, _env):
        yield base_url, folder / "server.log"


def _page(browser, base_url):
    context = browser.new_context(base_url=base_url)
    context.add_init_script(CSP_LISTENER)
    page = context.new_page()
    page.csp_console_messages = []
    page.on("console", lambda m: "Content Security Policy" in m.text and page.csp_console_messages.append(m.text))
    return page


def test_a_key_made_in_the_browser_reads_the_token_and_no_log_line_holds_a_secret(browser, server):
    base_url, server_log = server
    merchant = _page(browser, base_url)
    log_in(merchant, DEMO_MERCHANT)
    if merchant.get_by_role("button", name="Connect Instagram").count():
        merchant.get_by_role("button", name="Connect Instagram").click()
        merchant.get_by_label("Create a sandbox account").fill("bloom_and_stem")
        merchant.get_by_role("button", name="Allow").click()
        merchant.wait_for_url(DASHBOARD)

    admin = _page(browser, base_url)
    log_in(admin, DEMO_ADMIN)
    admin.locator("details.admin-menu > summary").click()
    admin.get_by_role("link", name="API keys").click()
    admin.get_by_label("Name").fill("product sync")
    admin.get_by_role("checkbox", name=re.compile("status:read")).check()
    admin.get_by_role("checkbox", name=re.compile("token:read")).check()
    admin.get_by_role("checkbox", name=re.compile("errors:write")).check()
    admin.get_by_role("button", name="Create API key").click()
    full_key = admin.get_by_label("The key").input_value()
    assert re.fullmatch(r"ihk_[0-9a-f]{12}_[A-Za-z0-9_\-]{43}", full_key)
    assert_no_csp_violations(admin)
    headers = {"Authorization": f"Bearer {full_key}"}

    listed = requests.get(f"{base_url}/api/v1/connections", headers=headers, timeout=10).json()
    (shop,) = [item for item in listed["connections"] if item["account"]["username"] == "bloom_and_stem"]
    answer = requests.get(f"{base_url}/api/v1/shops/{shop['shop_id']}/token", headers=headers, timeout=10)
    assert answer.status_code == 200 and answer.headers["Cache-Control"] == "no-store"
    token = answer.json()["access_token"]
    reported = requests.post(
        f"{base_url}/api/v1/shops/{shop['shop_id']}/errors",
        headers={**headers, "Idempotency-Key": str(uuid.uuid4())},
        json={"code": 4, "message": f"Application request limit reached (token {token})"},
        timeout=10,
    )
    assert reported.json()["action"] == "recorded_transient"

    admin.goto("/admin/api-keys")
    expect(admin.get_by_label("The key")).to_have_count(0)  # shown once, never again
    admin.get_by_role("button", name=re.compile("Revoke API key")).click()
    expect(admin.get_by_text("its next request is refused")).to_be_visible()
    refused = requests.get(f"{base_url}/api/v1/connections", headers=headers, timeout=10)
    assert refused.status_code == 401 and refused.headers["Content-Type"] == "application/problem+json"

    logged = server_log.read_text()
    assert "GET /api/v1/shops/" in logged  # the access log is on: the check below means something
    assert token not in logged
    assert full_key.split("_", 2)[2] not in logged
