"""The admins' app health page (issue 14, part 4): app-wide errors, rate limits, settings, "Check the app"."""

from __future__ import annotations

import html
from datetime import timedelta
from urllib.parse import parse_qs

import pytest
from sqlalchemy import select

from tests.factories import make_shop, make_user
from tests.instagram_helpers import API, connect
from webapp.models import AuditEntry, RateLimitPause
from webapp.services.app_health import CHECK_CODE
from webapp.services.connections.causes import CauseId
from webapp.services.connections.state import SYSTEM, connection_for, record_event

CODE = "AQsecret-login-code-0042"


def text_of(response) -> str:
    return html.unescape(response.get_data(as_text=True))


@pytest.fixture
def admin(auth):
    user = make_user(role="admin", email="boss@support.example")
    auth.login_as(user)
    return user


def test_a_refused_login_appears_on_the_app_health_page(client, app, auth, merchant, requests_mock):
    requests_mock.post(
        f"{API}/oauth/access_token",
        status_code=400,
        json={"error_type": "OAuthException", "code": 400, "error_message": f"Invalid platform app ({CODE})"},
    )
    connect(client, auth, code=CODE)
    auth.logout()
    auth.login_as(make_user(role="admin", email="boss@support.example"))
    page = text_of(client.get("/admin/app-health"))
    assert "Invalid platform app ([redacted])" in page
    assert CODE not in page
    assert "connecting: exchanging the login code" in page
    assert "Us (the app's settings at Meta)" in page
    assert "Tea House" in page


def test_keep_alive_failures_show_only_when_they_are_the_apps(client, db, admin, now):
    shop = make_shop(name="Rose Garden")
    connection = connection_for(shop)
    recent = now - timedelta(hours=1)
    failures = [
        (CauseId.APP_MISCONFIGURED, 3, "(#3) Application does not have the capability"),
        (CauseId.RATE_LIMITED, 4, "(#4) Application request limit reached"),
        (CauseId.RATE_LIMITED, 80002, "There have been too many calls to this Instagram account."),
        (CauseId.PASSWORD_CHANGED, 190, "The session has been invalidated because the user changed their password"),
    ]
    for cause, code, message in failures:
        record_event(connection, "check_failed", recent, SYSTEM, cause=cause, meta_code=code, message=message)
    db.session.commit()
    page = text_of(client.get("/admin/app-health"))
    assert "Application does not have the capability" in page
    assert "Application request limit reached" in page  # code 4: the whole app's limit
    assert "too many calls to this Instagram account" not in page  # one account's limit
    assert "changed their password" not in page  # one merchant's


def test_rate_limits_show_the_app_pause_and_paused_accounts(client, db, admin, pinned_clock):
    db.session.add(RateLimitPause(scope="app", until=pinned_clock + timedelta(minutes=12), reason="X-App-Usage at 97%"))
    connection = connection_for(make_shop(name="Rose Garden"))
    connection.username, connection.paused_until = "rose_garden", pinned_clock + timedelta(minutes=20)
    db.session.commit()
    page = text_of(client.get("/admin/app-health"))
    assert "Paused app-wide until" in page and "X-App-Usage at 97%" in page
    assert "1 account paused by its own limit now" in page and "@rose_garden" in page


def test_settings_show_what_meta_sees_but_never_the_secret(client, admin):
    page = text_of(client.get("/admin/app-health"))
    assert "http://localhost/instagram/callback" in page
    assert "test-instagram-app-id" in page or "INSTAGRAM_CLIENT_ID" in page
    assert "test-instagram-app-secret" not in page
    assert "real Meta" in page and "v23.0" in page


@pytest.mark.parametrize("role", ["merchant", "support"])
def test_only_admins_may_open_it_or_press_check(client, auth, role):
    user = make_user(role=role, shop=make_shop() if role == "merchant" else None)
    auth.login_as(user)
    assert client.get("/admin/app-health").status_code == 403
    assert client.post("/admin/app-health/check", data={"csrf_token": auth.csrf_token("/")}).status_code == 403


def test_the_nav_links_admins_to_it(client, admin):
    assert 'href="/admin/app-health"' in client.get("/admin/staff").get_data(as_text=True)


def test_check_needs_a_post_with_csrf(client, admin, requests_mock):
    assert client.get("/admin/app-health/check").status_code == 405
    assert client.post("/admin/app-health/check").status_code == 400
    assert requests_mock.call_count == 0


def refuse(requests_mock, message: str, status: int = 400) -> None:
    body = {"error_type": "OAuthException", "code": 400, "error_message": message}
    requests_mock.post(f"{API}/oauth/access_token", status_code=status, json=body)


def press_check(client, auth, htmx: bool = False):
    headers = {"HX-Request": "true"} if htmx else {}
    token = auth.csrf_token("/admin/app-health")
    return client.post("/admin/app-health/check", data={"csrf_token": token}, headers=headers)


def test_check_reports_a_refusal_in_words(client, auth, admin, requests_mock, db):
    refuse(requests_mock, "Invalid platform app")
    response = press_check(client, auth)
    page = text_of(response)
    assert response.status_code == 200 and "<html" in page
    assert "Failed: Meta refused the app's own settings." in page
    assert "INSTAGRAM_CLIENT_SECRET" in page and "Invalid platform app" in page
    sent = parse_qs(requests_mock.last_request.text)
    assert sent["code"] == [CHECK_CODE] and sent["redirect_uri"] == ["http://localhost/instagram/callback"]
    [entry] = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "app.checked"))
    assert entry.actor_id == admin.id and entry.details.startswith("failed")


def test_check_reports_meta_trouble_in_words(client, auth, admin, requests_mock):
    requests_mock.post(f"{API}/oauth/access_token", status_code=502, text="<html>Bad Gateway</html>")
    page = text_of(press_check(client, auth))
    assert "Failed: Meta did not answer properly." in page


def test_check_answers_htmx_with_its_panel_only(client, auth, admin, requests_mock):
    refuse(requests_mock, "Matching code was not found or was already used")
    response = press_check(client, auth, htmx=True)
    body = text_of(response)
    assert "<html" not in body
    assert 'id="app-check"' in body and "Passed: Meta recognises the app." in body
    assert "HX-Request" in response.headers.get("Vary", "")


@pytest.fixture
def sandboxed(app_config, admin, requests_mock):
    """The app with its built-in sandbox standing in for Meta, reached in-process at the sandbox's URLs.

    Returns (client, auth) logged in as the admin, and a switch to make the sandbox see another secret.
    """
    from testbed.client import AuthActions, IsolatedClient
    from webapp import create_app

    sandbox_app = create_app(
        {
            **app_config,
            "INSTAGRAM_SANDBOX": True,
            "INSTAGRAM_CLIENT_ID": "sandbox-app-id",
            "INSTAGRAM_CLIENT_SECRET": "sandbox-app-secret",
            "INSTAGRAM_AUTHORIZE_URL": "http://sandbox.test/sandbox/oauth/authorize",
            "INSTAGRAM_API_BASE": "http://sandbox.test/sandbox",
            "INSTAGRAM_GRAPH_BASE": "http://sandbox.test/sandbox/graph",
        }
    )
    sandbox_app.test_client_class = IsolatedClient
    sent_secret = {}

    def sandbox(request, context):
        form = {**parse_qs(request.text), **sent_secret}
        answer = sandbox_app.test_client().post("/sandbox/oauth/access_token", data=form)
        context.status_code = answer.status_code
        return answer.get_json()

    requests_mock.post("http://sandbox.test/sandbox/oauth/access_token", json=sandbox)
    client = sandbox_app.test_client()
    auth = AuthActions(client)
    auth.login_as(admin)
    return client, auth, sent_secret


def test_check_passes_against_the_sandbox(sandboxed):
    """Locally, with no credentials: the sandbox answers the check as Meta would."""
    client, auth, _ = sandboxed
    page = text_of(press_check(client, auth))
    assert "Passed: Meta recognises the app." in page
    assert "Matching code was not found or was already used" in page
    assert "the built-in sandbox (no real Meta)" in page


def test_check_fails_against_the_sandbox_when_the_secret_is_not_the_apps(sandboxed):
    """The secret Meta knows was reset in the App Dashboard: the sandbox refuses as Meta does."""
    client, auth, sent_secret = sandboxed
    sent_secret["client_secret"] = "a-secret-reset-since"
    page = text_of(press_check(client, auth))
    assert "Failed: Meta refused the app's own settings." in page and "Invalid platform app" in page


def test_usage_meta_reports_is_kept_and_shown(app, client, db, admin, requests_mock, pinned_clock):
    """The keep-alive keeps the usage headers of each answer; the page shows the app's and the busiest accounts'."""
    import json
    import random

    from tests.factories import make_connection
    from webapp.services.keepalive import leases, outcomes
    from webapp.services.keepalive.policy import Policy

    connection = make_connection(
        make_shop(name="Rose Garden"),
        username="rose_garden",
        issued_at=pinned_clock - timedelta(days=2),
        refresh_due_at=pinned_clock + timedelta(days=5),
        check_due_at=pinned_clock,
    )
    usage = {connection.instagram_user_id or "1784": [{"type": "instagram", "call_count": 64, "total_time": 12}]}
    requests_mock.get(
        f"{app.config['INSTAGRAM_GRAPH_BASE']}/{app.config['INSTAGRAM_GRAPH_VERSION']}/me",
        json={"user_id": "1784", "username": "rose_garden"},
        headers={
            "X-App-Usage": json.dumps({"call_count": 41, "total_time": 7}),
            "X-Business-Use-Case-Usage": json.dumps(usage),
        },
    )
    policy, vault = Policy(), app.extensions["token_vault"]
    for claim in leases.claim_due(owner="w", now=pinned_clock, limit=10, policy=policy, vault=vault):
        outcome = outcomes.call_meta(claim, app.extensions["instagram_client"])
        outcomes.record_outcome(claim, outcome, now=pinned_clock, policy=policy, vault=vault, rng=random.Random(1))
    page = text_of(client.get("/admin/app-health"))
    assert "The app's quota: 41% used" in page and "call_count 41%" in page
    assert "Rose Garden" in page and "64%" in page


def test_no_database_transaction_is_open_while_meta_answers_the_check(client, auth, admin, requests_mock, db):
    """Promise 3: the check's call to Meta runs with the request's read transaction ended."""
    seen = []

    def answer(request, context):
        seen.append(db.session().in_transaction())
        context.status_code = 400
        return {"error_type": "OAuthException", "code": 400, "error_message": "Matching code was not found"}

    requests_mock.post(f"{API}/oauth/access_token", json=answer)
    assert press_check(client, auth).status_code == 200
    assert seen == [False]
