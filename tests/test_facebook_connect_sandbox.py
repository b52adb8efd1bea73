"""Facebook Login end to end on a real server: the dashboard's connect button, the sandbox's dialog, the callback.

The sandbox checks what real Facebook would (the app id, the redirect URI, `appsecret_proof` on every
token call, `debug_token` with the app token), so this is the whole path the demo runs.
"""

from __future__ import annotations

import html
import re

import pytest
import requests

from testbed import servers
from testbed.client import csrf_token_from
from webapp.cli import DEMO_MERCHANT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def merchant_browser(tmp_path_factory):
    """A fresh server (own SQLite, the demo data) and the demo merchant logged in to it."""
    with servers.live_dashboard_server(tmp_path_factory.mktemp("facebook-connect")) as (base, _env):
        browser = requests.Session()
        token = csrf_token_from(browser.get(f"{base}/login").text)
        login = {key: DEMO_MERCHANT[key] for key in ("email", "password")}
        browser.post(f"{base}/login", data={"csrf_token": token, **login})
        yield base, browser


def words(text: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", text)).split())


def test_the_demo_merchant_connects_tea_house_through_the_sandbox_dialog(merchant_browser):
    base, browser = merchant_browser
    token = csrf_token_from(browser.get(f"{base}/").text)
    start = browser.post(f"{base}/facebook/connect", data={"csrf_token": token}, allow_redirects=False)
    dialog_url = start.headers["Location"]
    assert dialog_url.startswith(f"{base}/sandbox/facebook/")
    dialog = browser.get(dialog_url).text
    user_id = re.search(r'name="user_id" value="(\d+)"[^>]*> Demo Merchant', dialog).group(1)
    page_ids = re.findall(rf'name="pages_{user_id}" value="(\d+)"', dialog)
    # Tea House (@tea_house), Tea House Outlet (@tea_house_outlet), Tea House Events (no Instagram).
    assert len(page_ids) == 3
    picker = browser.post(
        dialog_url,
        data={
            "csrf_token": csrf_token_from(dialog),
            "user_id": user_id,
            f"pages_{user_id}": page_ids,
            "decision": "allow",
        },
    )
    # Two Pages with an Instagram account: the merchant chooses; the third is shown with how to link one.
    assert picker.url.removesuffix("#_=_") == f"{base}/facebook/pages"
    shown = words(picker.text)
    assert "@tea_house " in shown + " " and "@tea_house_outlet" in shown and "Tea House Events" in shown
    # Pick the second of the two: Tea House Outlet.
    outlet = re.search(r'name="page_id" value="(\d+)"[^>]*>\s*<strong>Tea House Outlet</strong>', picker.text)
    done = browser.post(
        f"{base}/facebook/pages", data={"csrf_token": csrf_token_from(picker.text), "page_id": outlet.group(1)}
    )
    assert done.url == f"{base}/"
    assert "Instagram connected: @tea_house_outlet, through your Facebook Page “Tea House Outlet”." in words(done.text)
    card = words(browser.get(f"{base}/card", headers={"HX-Request": "true"}).text)
    assert "Connected through Facebook" in card and "your role: Admin" in card
