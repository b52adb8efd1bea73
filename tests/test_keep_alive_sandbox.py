"""The issue's end-to-end check: the real server, the sandbox and a real worker process.

A token aged past the refresh point is refreshed within one worker cycle; an outage leaves the
connection degraded; a password change flips it to needs_reconnect with cause password_changed.
"""

from __future__ import annotations

import re
import subprocess

import pytest
import requests

from tests import servers
from tests.conftest import csrf_token_from
from webapp.cli import DEMO_MERCHANT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sandbox_world(tmp_path_factory):
    """A fresh server (own SQLite) where the demo merchant has connected @keepalive_shop."""
    folder = tmp_path_factory.mktemp("keepalive")
    port = servers.free_port()
    env = servers.dev_environment(f"sqlite:///{folder / 'db.sqlite3'}", port)
    servers.flask_command("db", "upgrade", env=env)
    servers.flask_command("demo", "seed", env=env)
    base = f"http://127.0.0.1:{port}"
    command = [str(servers.BIN / "gunicorn"), "--config", "gunicorn.conf.py", "--workers", "1", "wsgi:app"]
    with servers.running(command, env, f"{base}/healthz", folder / "server.log"):
        browser = requests.Session()
        token = csrf_token_from(browser.get(f"{base}/login").text)
        browser.post(
            f"{base}/login", data={"csrf_token": token, **{k: DEMO_MERCHANT[k] for k in ("email", "password")}}
        )
        token = csrf_token_from(browser.get(f"{base}/").text)
        authorize = browser.post(f"{base}/instagram/connect", data={"csrf_token": token}, allow_redirects=False)
        page = browser.get(authorize.headers["Location"])
        done = browser.post(
            authorize.headers["Location"],
            data={"csrf_token": csrf_token_from(page.text), "new_username": "keepalive_shop", "decision": "allow"},
        )
        assert "Instagram connected: @keepalive_shop." in done.text
        yield base, browser, env


def run_worker_cycle(env: dict) -> str:
    result = subprocess.run(
        [str(servers.BIN / "flask"), "--app", "wsgi", "worker", "--until-idle"],
        cwd=servers.PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout + result.stderr


def press(base: str, browser: requests.Session, action: str, **form) -> None:
    panel = browser.get(f"{base}/sandbox/").text
    account_id = re.search(r'id="sandbox-account-(\d+)">\s*<header>\s*<h2>@keepalive_shop</h2>', panel).group(1)
    browser.post(f"{base}/sandbox/accounts/{account_id}/{action}", data={"csrf_token": csrf_token_from(panel), **form})


def card(base: str, browser: requests.Session) -> str:
    return browser.get(f"{base}/instagram/card", headers={"HX-Request": "true"}).text


def test_aged_token_is_refreshed_within_one_cycle(sandbox_world):
    base, browser, env = sandbox_world
    fingerprint_before = re.search(r"fingerprint <code>(\w+)</code>", card(base, browser)).group(1)
    press(base, browser, "age_token", days="8")
    output = run_worker_cycle(env)
    assert "refresh: refreshed" in output
    after = card(base, browser)
    assert "Connected" in after and fingerprint_before not in after


def test_outage_leaves_the_connection_degraded(sandbox_world):
    base, browser, env = sandbox_world
    press(base, browser, "outage")
    try:
        output = run_worker_cycle(env)
        assert "check: transient (code 2" in output
        assert "Having trouble, retrying" in card(base, browser)
    finally:
        press(base, browser, "outage")  # end it


def test_password_change_needs_a_reconnect(sandbox_world):
    base, browser, env = sandbox_world
    press(base, browser, "change_password")
    output = run_worker_cycle(env)
    assert "needs_reconnect (code 190, subcode 460)" in output
    assert "Disconnected by Instagram" in card(base, browser)
