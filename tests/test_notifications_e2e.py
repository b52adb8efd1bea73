"""The issue's end-to-end check: sandbox + server + worker process + a real SMTP server.

Breaking a sandbox connection produces one mail with the right cause and a working reconnect link;
repeating the worker cycle sends nothing more; reconnecting sends one "restored" mail.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
import requests
from aiosmtpd.controller import Controller

from testbed import servers
from testbed.client import csrf_token_from
from tests.test_notifications import Inbox
from webapp.cli import DEMO_MERCHANT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=servers.free_port())
    controller.start()
    try:
        # No quiet period: "connected again" goes on the worker's next run instead of 10 minutes later
        # (the quiet period has its own tests in test_notifications.py).
        with servers.live_dashboard_server(
            tmp_path_factory.mktemp("mail-e2e"),
            MAIL_URL=f"smtp://127.0.0.1:{controller.port}?tls=none",
            NOTICE_QUIET_MINUTES="0",
        ) as (base, env):
            yield base, env, inbox
    finally:
        controller.stop()


def login(base: str) -> requests.Session:
    browser = requests.Session()
    token = csrf_token_from(browser.get(f"{base}/login").text)
    browser.post(
        f"{base}/login",
        data={"csrf_token": token, "email": DEMO_MERCHANT["email"], "password": DEMO_MERCHANT["password"]},
    )
    return browser


def authorize(browser: requests.Session, start: requests.Response, **form) -> requests.Response:
    location = start.headers["Location"]
    page = browser.get(location)
    return browser.post(location, data={"csrf_token": csrf_token_from(page.text), "decision": "allow", **form})


def test_break_mail_once_reconnect_restored(world):
    base, env, inbox = world
    browser = login(base)
    start = browser.post(
        f"{base}/instagram/connect", data={"csrf_token": csrf_token_from(browser.get(base).text)}, allow_redirects=False
    )
    assert "Instagram connected: @mail_shop." in authorize(browser, start, new_username="mail_shop").text

    panel = browser.get(f"{base}/sandbox/").text
    account_id = re.search(r'id="sandbox-account-(\d+)">\s*<header>\s*<h2>@mail_shop</h2>', panel).group(1)
    browser.post(f"{base}/sandbox/accounts/{account_id}/change_password", data={"csrf_token": csrf_token_from(panel)})
    servers.run_worker_cycle(env)
    assert len(inbox.messages) == 1
    mail = inbox.messages[0]
    assert mail["To"] == DEMO_MERCHANT["email"]
    text = mail.get_body(("plain",)).get_content()
    assert "Most likely reason: The Instagram password was changed." in text

    servers.run_worker_cycle(env)
    servers.run_worker_cycle(env)
    assert len(inbox.messages) == 1  # repeating the cycle sends nothing more

    link = re.search(r"(http://127\.0\.0\.1:\d+/instagram/reconnect/[\w.\-]+)", text).group(1)
    opened = browser.get(link)
    assert opened.status_code == 200 and "Reconnect Instagram" in opened.text
    start = browser.post(link, data={"csrf_token": csrf_token_from(opened.text)}, allow_redirects=False)
    assert urlsplit(start.headers["Location"]).path == "/sandbox/oauth/authorize"
    done = authorize(browser, start, account_id=account_id)
    assert "Connection restored: @mail_shop is connected again." in done.text
    servers.run_worker_cycle(env)
    subjects = [m["Subject"] for m in inbox.messages]
    assert subjects == [
        "Instagram is disconnected from Bloom & Stem Flowers: please reconnect",
        "Instagram is connected again for Bloom & Stem Flowers",
    ]
