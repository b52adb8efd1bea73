"""No plaintext token anywhere: database, pages, fragments, logs (promises 12-16)."""

from __future__ import annotations

import contextvars
import logging
import shutil
import subprocess
from datetime import timedelta

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select

from testbed.client import AuthActions, IsolatedClient
from tests.conftest import TEST_DATABASE_URL, TEST_TOKEN_KEY
from tests.factories import DEFAULT_PASSWORD, make_user
from tests.instagram_helpers import GRAPH, FakeInstagram, connect
from webapp import create_app
from webapp.extensions import db as _db
from webapp.models import InstagramConnection

CANARY = "IGAAcanary-token-7f3e9b1c5d"


@pytest.fixture
def instagram_account() -> dict:
    """`connected` gets CANARY from Meta, so every test can look for it where it must never be."""
    return {"long_token": CANARY, "short_token": CANARY + "-short"}


def run_cli(app, *args):
    """Invoke a command of `app` outside the test's own app context (as a separate process would)."""
    return contextvars.Context().run(app.test_cli_runner().invoke, args=list(args))


def database_dump(app) -> str:
    """Every row of every table as text (plus the raw file on SQLite, plus pg_dump on PostgreSQL)."""
    parts = []
    with app.app_context():
        for table in _db.metadata.sorted_tables:
            parts += [repr(tuple(row)) for row in _db.session.execute(select(table))]
        uri = app.config["SQLALCHEMY_DATABASE_URI"]
        if uri.startswith("sqlite:///"):
            with open(uri.removeprefix("sqlite:///"), "rb") as handle:
                parts.append(handle.read().decode("latin-1"))
    if TEST_DATABASE_URL and shutil.which("pg_dump"):
        parts.append(subprocess.run(["pg_dump", TEST_DATABASE_URL], capture_output=True, text=True, check=True).stdout)
    return "\n".join(parts)


def test_canary_token_never_in_a_database_dump(app, connected):
    """Promise 12: no plaintext token in the database."""
    dump = database_dump(app)
    assert "bloom_and_stem" in dump  # the dump really holds the connection
    assert CANARY not in dump and CANARY[4:20] not in dump


def test_no_role_ever_sees_the_raw_token(app, client, connected, db):
    """Promise 16: merchant pages and fragments show only a short fingerprint; staff pages show nothing."""
    row = db.session.scalar(select(InstagramConnection))
    pages = [client.get(path).get_data(as_text=True) for path in ("/", "/instagram/disconnect")]
    pages.append(client.get("/", headers={"HX-Request": "true"}).get_data(as_text=True))
    for page in pages:
        assert CANARY not in page and row.token_ciphertext not in page
    assert row.token_fingerprint in pages[0]
    staff = app.test_client()
    AuthActions(staff).login_as(make_user(role="support"))
    for path in ("/", "/shops"):
        assert CANARY not in staff.get(path).get_data(as_text=True)


def test_no_token_in_logs_at_debug(app, client, auth, requests_mock, caplog, capsys):
    """Promise 15: run the connect flow with every logger at DEBUG; the canary appears nowhere."""
    caplog.set_level(logging.DEBUG)
    for name in ("urllib3", "requests", "authlib", "webapp", "werkzeug", "sqlalchemy.engine"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    merchant = make_user()
    auth.login_as(merchant)
    FakeInstagram(requests_mock, long_token=CANARY, short_token=CANARY + "-short").install()
    connect(client, auth)
    # A logger fed the URL directly, as urllib3 does for real requests:
    logging.getLogger("urllib3.connectionpool").debug(
        'https://graph.instagram.com:443 "GET /refresh_access_token?grant_type=ig_refresh_token'
        '&access_token=%s HTTP/1.1" 200 None',
        CANARY,
    )
    captured = caplog.text + "".join(r.getMessage() for r in caplog.records) + "".join(capsys.readouterr())
    assert "bloom_and_stem" in client.get("/").get_data(as_text=True)
    assert CANARY not in captured
    assert "access_token=[redacted]" in captured


def test_key_rotation_end_to_end_with_the_cli(app_config, connected, db):
    """Promise 13: write with key 1, deploy [2, 1], read, rotate, drop key 1, read again."""
    key_2 = Fernet.generate_key().decode()
    deploy = create_app({**app_config, "TOKEN_ENCRYPTION_KEYS": f"{key_2},{TEST_TOKEN_KEY}"})
    result = run_cli(deploy, "tokens", "rotate-keys")
    assert result.exit_code == 0 and "Re-encrypted 1 token(s)" in result.output
    only_new = create_app({**app_config, "TOKEN_ENCRYPTION_KEYS": key_2})
    with only_new.app_context():
        from webapp.services.connections.state import read_token
        from webapp.services.runtime import token_vault

        row = _db.session.scalar(select(InstagramConnection))
        assert read_token(row, token_vault()) == CANARY


def test_unknown_key_is_a_per_connection_error_not_a_500(app_config, connected, db):
    """Promise 13/14: a row under a key we no longer hold is reported, and pages still render."""
    stranger = create_app({**app_config, "TOKEN_ENCRYPTION_KEYS": Fernet.generate_key().decode()})
    result = run_cli(stranger, "tokens", "rotate-keys")
    assert result.exit_code == 1
    assert "could not be read with any configured key" in result.output and "connection 1" in result.output
    stranger.test_client_class = IsolatedClient
    browser = stranger.test_client()
    with stranger.app_context():
        AuthActions(browser).login_as(connected)
    assert browser.get("/").status_code == 200


def test_tampered_ciphertext_is_rejected_cleanly(app, connected, db):
    """Promise 14."""
    from webapp.services.connections.state import read_token
    from webapp.services.runtime import token_vault
    from webapp.services.token_vault import TokenVaultError

    row = db.session.scalar(select(InstagramConnection))
    row.token_ciphertext = row.token_ciphertext[:-6] + "AAAAAA"
    db.session.commit()
    with pytest.raises(TokenVaultError):
        read_token(row, token_vault())


# A token that looks like nothing in particular: only the client, which knows what it sent, can find it.
PLAIN_CANARY = "zz-plain-canary-7f3e9b"


@pytest.mark.parametrize("work", ["test", "refresh"])
def test_a_token_meta_quotes_back_is_never_stored_or_shown(app, client, auth, requests_mock, caplog, capsys, db, work):
    """Promise 34: "Malformed access token <token>" reaches no row, log, page, fragment or staff view."""
    caplog.set_level(logging.DEBUG)
    for name in ("urllib3", "requests", "webapp", "werkzeug"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    merchant = make_user()
    auth.login_as(merchant)
    FakeInstagram(requests_mock, long_token=PLAIN_CANARY, short_token=PLAIN_CANARY + "-short").install()
    connect(client, auth)
    row = db.session.scalar(select(InstagramConnection))
    if work == "refresh":  # Instagram refreshes only tokens a day old
        row.token_issued_at -= timedelta(days=2)
        db.session.commit()
    echo = {"error": {"message": f"Malformed access token {PLAIN_CANARY}", "type": "OAuthException", "code": 190}}
    requests_mock.get(f"{GRAPH}/v23.0/me", status_code=400, json=echo)
    requests_mock.get(f"{GRAPH}/refresh_access_token", status_code=400, json=echo)
    answer = client.post(
        f"/instagram/{work}", data={"csrf_token": auth.csrf_token("/")}, headers={"HX-Request": "true"}
    )
    assert answer.status_code == 200
    db.session.expire_all()
    row = db.session.scalar(select(InstagramConnection))
    assert row.state == "needs_reconnect"
    assert "Malformed access token [redacted]" in row.last_error_message  # the rest of Meta's words stay
    pages = [answer.get_data(as_text=True)]
    for path in ("/", "/history", "/card", "/what-happened", "/activity"):
        pages.append(client.get(path).get_data(as_text=True))
        pages.append(client.get(path, headers={"HX-Request": "true"}).get_data(as_text=True))
    staff = app.test_client()
    agent_auth = AuthActions(staff)
    agent_auth.login_as(make_user(role="support", email="agent@support.example"))
    pages.append(staff.get(f"/support/shops/{merchant.shop_id}").get_data(as_text=True))
    started = staff.post(
        f"/support/shops/{merchant.shop_id}/impersonate",
        data={
            "csrf_token": agent_auth.csrf_token(f"/support/shops/{merchant.shop_id}"),
            "reason": "Ticket 77: why did it break",
            "password": DEFAULT_PASSWORD,
        },
    )
    assert started.status_code == 302
    for path in ("/", "/history"):
        pages.append(staff.get(path).get_data(as_text=True))
    assert "[redacted]" in "".join(pages)  # the message really is on the pages we read
    captured = caplog.text + "".join(capsys.readouterr())
    for text in [*pages, captured, database_dump(app)]:
        assert PLAIN_CANARY not in text
