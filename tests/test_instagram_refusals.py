"""Refused Instagram logins (issue 14, part 4): each class says who can fix it, records it, leaks nothing."""

from __future__ import annotations

import html

import pytest
from sqlalchemy import select

from tests.instagram_helpers import API, GRAPH, FakeInstagram, connect, start_connect
from webapp.models import ConnectionEvent
from webapp.services.connections import connect_errors
from webapp.services.connections.connect_errors import Fixer, Step

CODE = "AQsecret-login-code-0042"
OAUTH_ERROR = {"error_type": "OAuthException", "code": 400}


def page_text(client) -> str:
    return html.unescape(client.get("/").get_data(as_text=True))


def refusals(db) -> list[ConnectionEvent]:
    db.session.expire_all()
    kinds = connect_errors.REFUSAL_KINDS.values()
    return list(db.session.scalars(select(ConnectionEvent).where(ConnectionEvent.kind.in_(kinds))))


def refuse_exchange(requests_mock, message: str, status: int = 400, **extra) -> None:
    requests_mock.post(f"{API}/oauth/access_token", status_code=status, json={**OAUTH_ERROR, "error_message": message})


CODE_EXCHANGE_CASES = [
    # (Meta's words, the merchant's message, who can fix it, cause)
    ("Matching code was not found or was already used", connect_errors.CODE_USED, Fixer.MERCHANT, "request_error"),
    ("This authorization code has been used", connect_errors.CODE_USED, Fixer.MERCHANT, "request_error"),
    ("Invalid platform app", connect_errors.APP_SETTINGS, Fixer.OPERATOR, "app_misconfigured"),
    ("Invalid redirect_uri", connect_errors.APP_SETTINGS, Fixer.OPERATOR, "app_misconfigured"),
    ("Error validating client secret.", connect_errors.APP_SETTINGS, Fixer.OPERATOR, "app_misconfigured"),
    ("Insufficient developer role", connect_errors.TEST_MODE, Fixer.OPERATOR, "app_misconfigured"),
    (
        "Invalid Request: The app is in development mode and the user doesn't have a role on the app",
        connect_errors.TEST_MODE,
        Fixer.OPERATOR,
        "app_misconfigured",
    ),
]


@pytest.mark.parametrize(("meta_says", "message", "fixer", "cause"), CODE_EXCHANGE_CASES)
def test_code_exchange_refusals_say_who_can_fix_them(
    client, auth, merchant, requests_mock, db, meta_says, message, fixer, cause
):
    refuse_exchange(requests_mock, meta_says)
    response = connect(client, auth, code=CODE)
    assert response.status_code == 302 and response.headers["Location"].endswith("/")
    page = page_text(client)
    assert message in page
    assert meta_says not in page  # Meta's words are for operators
    [event] = refusals(db)
    assert (event.kind, event.cause) == (connect_errors.REFUSAL_KINDS[Step.CODE_EXCHANGE], cause)
    assert connect_errors.fixer_for(Step.CODE_EXCHANGE, event.cause) == fixer
    assert event.message == meta_says and event.actor_kind == "merchant"


def test_operator_refusals_tell_the_merchant_it_is_not_their_fault(client, auth, merchant, requests_mock):
    refuse_exchange(requests_mock, "Invalid platform app")
    connect(client, auth)
    page = page_text(client)
    assert "not because of anything you did" in page
    assert "We have recorded the details for our support team." in page


@pytest.mark.parametrize(
    ("reply", "message", "cause"),
    [
        ({"status_code": 500, "text": "<html>Bad Gateway</html>"}, connect_errors.META_TROUBLE, "provider_error"),
        (
            {"status_code": 400, "json": {"error": {"message": "(#4) Application request limit reached", "code": 4}}},
            connect_errors.RATE_LIMITED,
            "rate_limited",
        ),
    ],
    ids=["meta-trouble", "app-rate-limit"],
)
def test_passing_trouble_at_the_code_exchange_asks_to_try_later(
    client, auth, merchant, requests_mock, db, reply, message, cause
):
    requests_mock.post(f"{API}/oauth/access_token", **reply)
    connect(client, auth)
    assert message in page_text(client)
    [event] = refusals(db)
    assert event.cause == cause
    assert connect_errors.fixer_for(Step.CODE_EXCHANGE, cause) == Fixer.NOBODY


FINISH_CASES = [
    # (which call fails, Meta's error body, the merchant's message, cause, who can fix it)
    (
        "me",
        {"message": "(#10) The user is not an Instagram Business", "type": "IGApiException", "code": 10},
        connect_errors.NOT_PROFESSIONAL,
        "account_not_professional",
        Fixer.MERCHANT,
    ),
    (
        "me",
        {"message": "(#100) Unsupported request - method type: get", "type": "IGApiException", "code": 100},
        connect_errors.APP_SETTINGS,
        "app_misconfigured",
        Fixer.OPERATOR,
    ),
    (
        "me",
        {"message": "(#100) Tried accessing nonexisting field (bogus)", "type": "IGApiException", "code": 100},
        connect_errors.OUR_REQUEST,
        "request_error",
        Fixer.OPERATOR,
    ),
    (
        "long_lived",
        {"message": "Error validating access token: Session has expired", "type": "OAuthException", "code": 190},
        connect_errors.ACCESS_WITHDRAWN,
        "token_expired",
        Fixer.MERCHANT,
    ),
]


@pytest.mark.parametrize(("call", "error", "message", "cause", "fixer"), FINISH_CASES)
def test_refusals_while_finishing_say_who_can_fix_them(
    client, auth, merchant, requests_mock, db, call, error, message, cause, fixer
):
    meta = FakeInstagram(requests_mock).install()
    url = f"{GRAPH}/v23.0/me" if call == "me" else f"{GRAPH}/access_token"
    requests_mock.get(url, status_code=400, json={"error": error})
    connect(client, auth)
    page = page_text(client)
    assert message in page
    for secret in (meta.short_token, meta.long_token):
        assert secret not in page
    [event] = refusals(db)
    assert (event.kind, event.cause) == (connect_errors.REFUSAL_KINDS[Step.FINISH], cause)
    assert connect_errors.fixer_for(Step.FINISH, cause) == fixer


def test_a_cancel_is_recorded_as_the_merchants_choice(client, auth, merchant, db):
    _, state, _ = start_connect(client, auth.csrf_token("/"))
    client.get(f"/instagram/callback?error=access_denied&error_reason=user_denied&state={state}")
    assert connect_errors.CANCELLED in page_text(client)
    [event] = refusals(db)
    assert (event.kind, event.cause) == (connect_errors.REFUSAL_KINDS[Step.LOGIN_PAGE], None)
    assert state not in event.message


def test_an_error_reply_to_a_login_this_browser_never_started_is_answered_but_not_recorded(client, auth, merchant, db):
    """A forged error link is not Meta's answer: it must not fill the app health page."""
    client.get("/instagram/callback?error=access_denied&error_reason=user_denied&state=forged")
    assert connect_errors.CANCELLED in page_text(client)
    assert refusals(db) == []


def test_other_errors_from_the_login_page_are_worded_by_the_classifier(client, auth, merchant, db):
    _, state, _ = start_connect(client, auth.csrf_token("/"))
    client.get(f"/instagram/callback?error=invalid_request&error_description=Invalid+scope:+user_profile&state={state}")
    assert connect_errors.APP_SETTINGS in page_text(client)
    [event] = refusals(db)
    assert event.cause == "app_misconfigured"


def test_a_state_mismatch_is_refused_but_not_recorded(client, auth, merchant, db, requests_mock):
    """Anyone can forge a link with a made-up state: it is refused in words, and leaves no record."""
    start_connect(client, auth.csrf_token("/"))
    response = client.get(f"/instagram/callback?code={CODE}&state=not-the-state")
    assert response.status_code == 400
    assert connect_errors.REPLY_NOT_OURS in html.unescape(response.get_data(as_text=True))
    assert refusals(db) == []
    assert requests_mock.call_count == 0


def test_no_code_token_or_state_reaches_any_message(client, auth, merchant, requests_mock, db):
    """Meta may quote what it was sent; neither the merchant's page nor the record keeps it (promise 34)."""
    refuse_exchange(requests_mock, f"Invalid platform app (code {CODE}, secret test-instagram-app-secret)")
    _, state, _ = start_connect(client, auth.csrf_token("/"))
    client.get(f"/instagram/callback?code={CODE}&state={state}")
    page = page_text(client)
    [event] = refusals(db)
    for secret in (CODE, state, "test-instagram-app-secret"):
        assert secret not in page
        assert secret not in event.message
    assert "[redacted]" in event.message


def test_an_error_description_quoting_the_state_is_scrubbed(client, auth, merchant, db):
    _, state, _ = start_connect(client, auth.csrf_token("/"))
    client.get(f"/instagram/callback?error=server_error&error_description=state+{state}+rejected&state={state}")
    [event] = refusals(db)
    assert state not in event.message and "[redacted]" in event.message


def test_a_refusal_changes_nothing_and_shows_in_the_timeline(client, auth, merchant, requests_mock, db):
    refuse_exchange(requests_mock, "Invalid platform app")
    connect(client, auth)
    [event] = refusals(db)
    connection = event.connection
    assert connection.state == "not_connected" and connection.token_ciphertext is None
    history = html.unescape(client.get("/history").get_data(as_text=True))
    assert "Connecting refused by Instagram" in history
