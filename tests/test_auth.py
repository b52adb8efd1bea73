"""Login, logout, sessions and password change (promises 19 and 20)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from testbed.client import csrf_token_from
from tests.factories import DEFAULT_PASSWORD, make_user
from webapp.models import LoginSession


def test_login_page_renders(client):
    response = client.get("/login")
    assert response.status_code == 200
    assert b"<h1>Log in</h1>" in response.data


def test_merchant_logs_in_and_sees_their_shop(client, auth):
    merchant = make_user(name="Maya")
    response = auth.login_as(merchant)
    assert response.headers["Location"] == "/"
    page = client.get("/").get_data(as_text=True)
    assert merchant.shop.name in page
    assert merchant.email in page


def test_email_is_case_insensitive(client, auth, db):
    merchant = make_user(email="owner@shop.example")
    response = auth.login("  OWNER@Shop.Example ", DEFAULT_PASSWORD)
    assert response.status_code == 302
    assert client.get("/").status_code == 200
    db.session.refresh(merchant)
    assert merchant.last_login_at is not None


@pytest.mark.parametrize(
    "email,password", [("owner@shop.example", "wrong-password!"), ("nobody@shop.example", DEFAULT_PASSWORD)]
)
def test_wrong_credentials_get_one_clear_message(client, auth, email, password):
    make_user(email="owner@shop.example")
    response = auth.login(email, password)
    assert response.status_code == 400
    assert "That email and password do not match an active account." in response.get_data(as_text=True)


def test_inactive_user_cannot_log_in(auth):
    user = make_user(active=False)
    assert auth.login(user.email).status_code == 400


def test_empty_form_gets_field_errors(client, auth):
    token = auth.csrf_token()
    response = client.post("/login", data={"csrf_token": token})
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "Enter your email." in page and "Enter your password." in page


def test_login_clears_the_previous_session(client, auth):
    """Promise 20: the session is cleared on login (no fixation)."""
    user = make_user()
    with client.session_transaction() as session:
        session["planted"] = "by an attacker"
    auth.login_as(user)
    with client.session_transaction() as session:
        assert "planted" not in session
        assert session["sid"]


@pytest.mark.parametrize(
    "next_url",
    [
        "//evil.com",
        "////evil.com",
        "/\\evil.com",
        "/\t/evil.com",
        "https:\\evil.com",
        "https://evil.com/",
        "javascript:alert(1)",
        "JaVaScRiPt:alert(1)",
        " //evil.com",
        "http:/evil.com",
        "evil.com",
    ],
)
def test_next_never_leaves_our_origin(auth, next_url):
    """Promise 19: `next` never leaves our origin."""
    user = make_user()
    response = auth.login(user.email, next_url=next_url)
    assert response.status_code == 302
    assert response.headers["Location"] == "/"


def test_next_with_a_nul_byte_is_refused_outright(auth):
    """Promise 19 and 32: a NUL byte in any field is a 400, never a redirect."""
    user = make_user()
    response = auth.login(user.email, next_url="\x00/evil.com")
    assert response.status_code == 400
    assert "Location" not in response.headers


def test_next_keeps_our_own_paths(auth):
    user = make_user()
    response = auth.login(user.email, next_url="/account/password?x=1")
    assert response.headers["Location"] == "/account/password?x=1"


def test_anonymous_visitor_is_sent_to_login_with_next(client):
    response = client.get("/account/password")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=/account/password")


def test_htmx_request_without_session_gets_hx_redirect(client):
    response = client.get("/", headers={"HX-Request": "true"})
    assert response.status_code == 401
    assert response.headers["HX-Redirect"].startswith("/login")
    assert "Location" not in response.headers


def test_logout_kills_a_copied_cookie(app, client, auth):
    """Promise 20: after logout, a copy of the old cookie is worthless."""
    user = make_user()
    auth.login_as(user)
    with client.session_transaction() as session:
        stolen = dict(session)
    assert auth.logout().status_code == 302
    with client.session_transaction() as session:
        session.update(stolen)
    response = client.get("/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")


def test_logout_requires_post(client, auth):
    auth.login_as(make_user())
    assert client.get("/logout").status_code == 405
    assert client.get("/").status_code == 200


def test_password_change_ends_other_sessions_but_keeps_this_one(app, auth, db):
    """Promise 20: a password change invalidates the user's other sessions."""
    user = make_user()
    other = app.test_client()
    from testbed.client import AuthActions

    AuthActions(other).login_as(user)
    auth.login_as(user)
    token = auth.csrf_token("/account/password")
    response = auth.client.post(
        "/account/password",
        data={
            "csrf_token": token,
            "current_password": DEFAULT_PASSWORD,
            "new_password": "a-much-better-phrase-42",
            "confirm_password": "a-much-better-phrase-42",
        },
    )
    assert response.status_code == 302
    assert auth.client.get("/").status_code == 200
    assert other.get("/").status_code == 302
    db.session.refresh(user)
    assert user.check_password("a-much-better-phrase-42")


@pytest.mark.parametrize(
    "current,new,confirm,message",
    [
        (
            "wrong-current-pass",
            "a-much-better-phrase-42",
            "a-much-better-phrase-42",
            "Your current password is not correct.",
        ),
        (DEFAULT_PASSWORD, "short", "short", "Use at least 10 characters."),
        (DEFAULT_PASSWORD, "password123", "password123", "too easy to guess"),
        (DEFAULT_PASSWORD, "a-much-better-phrase-42", "something-else-entirely", "The two new passwords differ."),
        (DEFAULT_PASSWORD, DEFAULT_PASSWORD, DEFAULT_PASSWORD, "must differ"),
    ],
)
def test_password_change_refuses_bad_input(auth, db, current, new, confirm, message):
    user = make_user()
    auth.login_as(user)
    token = auth.csrf_token("/account/password")
    response = auth.client.post(
        "/account/password",
        data={"csrf_token": token, "current_password": current, "new_password": new, "confirm_password": confirm},
    )
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    db.session.refresh(user)
    assert user.check_password(DEFAULT_PASSWORD)


def _age_session(client, *, login_minutes_ago: float, seen_minutes_ago: float) -> None:
    now = datetime.now(UTC)
    with client.session_transaction() as session:
        session["login_at"] = (now - timedelta(minutes=login_minutes_ago)).timestamp()
        session["seen_at"] = (now - timedelta(minutes=seen_minutes_ago)).timestamp()


def test_idle_timeout_ends_the_session(app, client, auth, db):
    """Promise 20: idle timeout is enforced."""
    user = make_user()
    auth.login_as(user)
    idle = app.config["SESSION_IDLE_MINUTES"]
    _age_session(client, login_minutes_ago=idle + 5, seen_minutes_ago=idle + 1)
    response = client.get("/")
    assert response.status_code == 302
    follow = client.get(response.headers["Location"])
    assert "Your session has ended" in follow.get_data(as_text=True)
    assert db.session.query(LoginSession).filter(LoginSession.revoked_at.is_(None)).count() == 0


def test_absolute_timeout_ends_an_active_session(app, client, auth):
    """Promise 20: the absolute timeout holds even for a session in constant use."""
    auth.login_as(make_user())
    hours = app.config["SESSION_ABSOLUTE_HOURS"]
    _age_session(client, login_minutes_ago=hours * 60 + 1, seen_minutes_ago=0)
    assert client.get("/").status_code == 302


def test_session_in_use_survives(client, auth):
    auth.login_as(make_user())
    _age_session(client, login_minutes_ago=30, seen_minutes_ago=10)
    assert client.get("/").status_code == 200


def test_deactivated_user_loses_access_on_next_request(client, auth, db):
    user = make_user()
    auth.login_as(user)
    db.session.refresh(user)
    user.active = False
    db.session.commit()
    assert client.get("/").status_code == 302


def test_login_page_redirects_a_signed_in_user(client, auth):
    auth.login_as(make_user())
    response = client.get("/login?next=//evil.com")
    assert response.headers["Location"] == "/"


def test_csrf_token_helper_reads_both_places():
    assert csrf_token_from('<input id="csrf_token" name="csrf_token" type="hidden" value="abc">') == "abc"
    assert csrf_token_from("""<body hx-headers='{"X-CSRFToken": "xyz"}'>""") == "xyz"


def test_login_refuses_an_email_with_control_characters(client, auth):
    """Finding 10: a CR/LF in the email gets a clear message, everywhere an email is typed."""
    response = auth.login("owner@bloom.example\r\nBcc: x@evil.example")
    assert response.status_code == 400
    assert "cannot contain line breaks or other control characters" in response.get_data(as_text=True)
