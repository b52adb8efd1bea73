"""Login throttling cannot be dodged and does not lock the owner out (promises 30 and 38)."""

from __future__ import annotations

import os
import re
import subprocess
import uuid

import pytest
from sqlalchemy import select

from testbed import servers
from testbed.client import IsolatedClient, csrf_token_from
from tests.factories import DEFAULT_PASSWORD, make_user
from webapp import create_app
from webapp.extensions import db
from webapp.models import LoginSession


@pytest.fixture
def app_with(app_config):
    """Build the app with these settings and hold its context (for factories) until the test ends."""
    contexts = []

    def build(**settings):
        app = create_app({**app_config, **settings})
        app.test_client_class = IsolatedClient
        contexts.append(app.app_context())
        contexts[-1].push()
        return app

    yield build
    for context in reversed(contexts):
        db.session.remove()
        db.engine.dispose()
        context.pop()


def post_login(client, email, password="not-the-password", address=None):
    token = csrf_token_from(client.get("/login").get_data(as_text=True))
    headers = {"X-Forwarded-For": address} if address else {}
    return client.post("/login", data={"email": email, "password": password, "csrf_token": token}, headers=headers)


def session_prefix() -> str:
    db.session.expire_all()
    return db.session.scalars(select(LoginSession.ip_prefix).order_by(LoginSession.created_at.desc())).first()


def test_without_a_proxy_forwarded_for_is_the_clients_invention(app_with):
    """Promise 38: reached directly (0 hops, the local default) X-Forwarded-For changes nothing."""
    app = app_with(LOGIN_RATE_LIMIT="3 per minute")
    assert app.config["PROXY_FIX_HOPS"] == 0
    client = app.test_client()
    statuses = [post_login(client, f"u{n}@example.com", address=f"198.51.100.{n}").status_code for n in range(5)]
    assert statuses == [400, 400, 400, 429, 429]

    user = make_user()
    fresh = app_with()  # a fresh limiter: the address above is spent
    response = post_login(fresh.test_client(), user.email, DEFAULT_PASSWORD, address="203.0.113.9")
    assert response.status_code == 302
    assert session_prefix() == "127.0.0.0/24"


def test_with_one_hop_only_the_routers_entry_counts(app_with):
    """Promise 38: behind one proxy only the last X-Forwarded-For entry (the router's) is believed."""
    app = app_with(PROXY_FIX_HOPS=1)
    user = make_user()
    response = post_login(app.test_client(), user.email, DEFAULT_PASSWORD, address="10.9.9.9, 203.0.113.9")
    assert response.status_code == 302
    assert session_prefix() == "203.0.113.0/24"


def hammer(app, email, attempts):
    """Wrong passwords for one account, each from another address (a botnet)."""
    client = app.test_client()
    return [post_login(client, email, address=f"198.51.100.{n}").status_code for n in range(attempts)]


def test_hammering_an_account_does_not_lock_out_its_owners_browser(app_with):
    """Promise 38: the owner's own browser still gets in while strangers exhaust the account's limit."""
    app = app_with(PROXY_FIX_HOPS=1, LOGIN_RATE_LIMIT="100 per minute", LOGIN_ACCOUNT_RATE_LIMIT="3 per 15 minutes")
    owner = make_user(email="owner@bloom.example")
    owners_browser = app.test_client()
    assert post_login(owners_browser, owner.email, DEFAULT_PASSWORD, address="203.0.113.5").status_code == 302
    owners_browser.post("/logout", data={"csrf_token": csrf_token_from(owners_browser.get("/").get_data(True))})

    # The owner's first login (from a browser then unknown) counted in the account's budget too.
    assert hammer(app, owner.email, 5) == [400, 400, 429, 429, 429]

    again = post_login(owners_browser, owner.email, DEFAULT_PASSWORD, address="203.0.113.5")
    assert again.status_code == 302 and again.headers["Location"] == "/"


def test_a_new_browser_is_told_the_true_wait_and_never_learns_the_password_was_right(app_with):
    """Promise 38: a stranger's browser gets the account's wait in words and in Retry-After."""
    app = app_with(PROXY_FIX_HOPS=1, LOGIN_RATE_LIMIT="100 per minute", LOGIN_ACCOUNT_RATE_LIMIT="3 per 15 minutes")
    owner = make_user(email="owner@bloom.example")
    hammer(app, owner.email, 3)
    refused = post_login(app.test_client(), owner.email, DEFAULT_PASSWORD, address="203.0.113.77")
    assert refused.status_code == 429  # the right password does not slip past (no oracle)
    page = refused.get_data(as_text=True)
    minutes = int(re.search(r"Try again in (\d+) minutes", page).group(1))
    assert 14 <= minutes <= 15
    assert "a browser you have logged in with before" in page
    assert 13 * 60 <= int(refused.headers["Retry-After"]) <= 15 * 60 + 1


def test_the_address_limit_states_its_own_wait(app_with):
    """Promise 38: an hourly limit says about an hour, not "a minute"."""
    app = app_with(LOGIN_RATE_LIMIT="2 per hour")
    client = app.test_client()
    statuses = [post_login(client, f"u{n}@example.com").status_code for n in range(3)]
    assert statuses == [400, 400, 429]
    refused = post_login(client, "u9@example.com")
    minutes = int(re.search(r"Try again in (\d+) minutes", refused.get_data(as_text=True)).group(1))
    assert 59 <= minutes <= 60


def test_a_known_browser_cookie_cannot_be_forged_or_moved_to_another_account(app_with):
    """Promise 38: only a browser that signed in to that very account gets a budget of its own."""
    app = app_with(PROXY_FIX_HOPS=1, LOGIN_RATE_LIMIT="100 per minute", LOGIN_ACCOUNT_RATE_LIMIT="2 per 15 minutes")
    mine, target = make_user(email="attacker@example.com"), make_user(email="target@example.com")
    browser = app.test_client()
    assert post_login(browser, mine.email, DEFAULT_PASSWORD).status_code == 302
    browser.post("/logout", data={"csrf_token": csrf_token_from(browser.get("/").get_data(True))})
    hammer(app, target.email, 2)
    assert post_login(browser, target.email).status_code == 429  # known for another account only

    forged = app.test_client()
    forged.set_cookie("known_browser", "eyJicm93c2VyIjoieCIsImFjY291bnRzIjpbXX0.forged.sig", path="/login")
    assert post_login(forged, target.email).status_code == 429


# ---- real processes ---------------------------------------------------------------------------


def production_env(tmp_path, port: int, **extra: str) -> dict:
    env = servers.dev_environment(f"sqlite:///{tmp_path / 'db.sqlite3'}", port)
    env.update(
        {
            "APP_ENV": "production",
            "SECRET_KEY": "throttle-test-" + "k" * 32,
            "INSTAGRAM_CLIENT_ID": "1234567890",
            "INSTAGRAM_CLIENT_SECRET": "throttle-test-client-secret",
            "PUBLIC_BASE_URL": "https://dashboard.example.com",
            "LOGIN_RATE_LIMIT": "1000 per minute",
            "LOGIN_ACCOUNT_RATE_LIMIT": "5 per 15 minutes",
            "WEB_CONCURRENCY": "3",
            "GUNICORN_THREADS": "1",
            # Reached directly in this test, with no router in front.
            "PROXY_FIX_HOPS": "0",
        }
    )
    env.pop("LOCAL_BASE_URL")
    env.update(extra)
    return env


def test_production_without_shared_throttle_storage_does_not_start(tmp_path):
    """Promise 38: gunicorn in production without REDIS_URL stops at once with a one-line reason."""
    env = production_env(tmp_path, servers.free_port())
    env.pop("REDIS_URL", None)
    result = subprocess.run(
        [str(servers.BIN / "gunicorn"), "--config", "gunicorn.conf.py", "wsgi:app"],
        cwd=servers.PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "Production start refused: set REDIS_URL as config vars" in result.stdout + result.stderr


def raw_login(base_url: str, email: str) -> int:
    """One attempt on a fresh connection (so gunicorn may hand it to any process), cookies by hand."""
    import requests

    page = requests.get(f"{base_url}/login", timeout=10)
    cookie = page.headers["Set-Cookie"].split(";", 1)[0]
    token = csrf_token_from(page.text)
    response = requests.post(
        f"{base_url}/login",
        data={"email": email, "password": "not-the-password", "csrf_token": token},
        headers={"Cookie": cookie, "Connection": "close"},
        allow_redirects=False,
        timeout=10,
    )
    return response.status_code


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("TEST_REDIS_URL"), reason="TEST_REDIS_URL is not set (CI sets it)")
def test_three_gunicorn_processes_share_one_account_limit(tmp_path):
    """Promise 38: with REDIS_URL every process counts in one place: attempt 6 is refused, whichever process."""
    port = servers.free_port()
    env = production_env(tmp_path, port, REDIS_URL=os.environ["TEST_REDIS_URL"])
    servers.flask_command("db", "upgrade", env=env)
    base_url = f"http://127.0.0.1:{port}"
    command = [str(servers.BIN / "gunicorn"), "--config", "gunicorn.conf.py", "wsgi:app"]
    with servers.running(command, env, f"{base_url}/healthz", tmp_path / "server.log"):
        email = f"target-{uuid.uuid4().hex}@example.com"
        statuses = [raw_login(base_url, email) for _ in range(12)]
    workers = set(re.findall(r"Booting worker with pid: (\d+)", (tmp_path / "server.log").read_text()))
    assert len(workers) == 3
    assert statuses == [400] * 5 + [429] * 7
