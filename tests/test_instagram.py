"""Connecting Instagram: the OAuth flow end to end (promises 17, 18, 22)."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from tests.factories import make_user
from tests.instagram_helpers import FakeInstagram, connect, start_connect
from webapp.models import ConnectionEvent, InstagramConnection, PendingConnection


@pytest.fixture
def meta(requests_mock):
    return FakeInstagram(requests_mock).install()


def connection_of(db, user) -> InstagramConnection:
    db.session.expire_all()
    return db.session.scalar(select(InstagramConnection).where(InstagramConnection.shop_id == user.shop_id))


def nothing_connected(db, user) -> bool:
    """No token and no link: a refused login may only have left its record (a not-connected row and an event)."""
    connection = connection_of(db, user)
    return connection is None or (
        connection.token_ciphertext is None
        and connection.state == "not_connected"
        and connection.instagram_user_id is None
        and connection.connected_at is None
    )


def test_connect_starts_with_a_post_and_redirects_to_instagram(client, auth, merchant):
    response, state, query = start_connect(client, auth.csrf_token("/"))
    assert response.status_code == 302
    location = urlsplit(response.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == "https://www.instagram.com/oauth/authorize"
    assert query["client_id"] == ["990011223344"]
    assert query["response_type"] == ["code"]
    assert query["scope"] == ["instagram_business_basic"]
    assert query["redirect_uri"] == ["http://localhost/instagram/callback"]
    assert len(state) >= 20
    with client.session_transaction() as session:
        assert f"_state_instagram_{state}" in session


def test_connect_refuses_get(client, merchant):
    """Promise 18: connect starts with POST + CSRF only."""
    assert client.get("/instagram/connect").status_code == 405


def test_full_flow_stores_an_encrypted_token(client, auth, merchant, meta, db):
    response = connect(client, auth)
    assert response.status_code == 302 and response.headers["Location"] == "/"
    connection = connection_of(db, merchant)
    assert connection.state == "healthy"
    assert connection.username == "bloom_and_stem" and connection.account_type == "BUSINESS"
    assert connection.permissions == ["instagram_business_basic"]
    assert meta.long_token not in connection.token_ciphertext
    assert connection.token_expires_at - connection.token_issued_at > __import__("datetime").timedelta(days=59)
    assert meta.exchanged_codes == [("code-123", "http://localhost/instagram/callback")]
    event = db.session.scalar(select(ConnectionEvent))
    assert (event.kind, event.actor_kind, event.actor_id) == ("connected", "merchant", merchant.id)
    assert event.ip_prefix == "127.0.0.0/24" and event.user_agent_family
    page = client.get("/").get_data(as_text=True)
    assert "Instagram connected: @bloom_and_stem." in page and "@bloom_and_stem" in page


def test_meta_fragment_suffix_on_the_code_is_harmless(client, auth, merchant, meta):
    """Promise 18: the '#_' Meta appends never reaches the exchange."""
    _, state, _ = start_connect(client, auth.csrf_token("/"))
    client.get(f"/instagram/callback?code=abc%23_&state={state}")
    assert meta.exchanged_codes == [("abc", "http://localhost/instagram/callback")]


def test_redirect_uri_is_https_and_identical_behind_the_proxy(app_config, merchant, meta):
    """Promise 18: behind one proxy hop the redirect_uri is https and byte-identical at both steps."""
    from testbed.client import AuthActions, IsolatedClient
    from webapp import create_app

    # One trusted hop, as in production on Heroku (local runs trust no X-Forwarded-* at all).
    # Heroku's router passes the browser's Host through and sets no X-Forwarded-Host.
    behind_proxy = create_app({**app_config, "PROXY_FIX_HOPS": 1, "SERVER_NAME": "shop.example.com"})
    behind_proxy.test_client_class = IsolatedClient
    client = behind_proxy.test_client()
    auth = AuthActions(client)
    auth.login_as(merchant)
    headers = {
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "evil.example",  # the client's invention: ignored
        "X-Forwarded-For": "203.0.113.5",
        # Over https Flask-WTF also checks that the Referer is our own origin, as browsers send it.
        "Referer": "https://shop.example.com/",
    }
    token = auth.csrf_token("/")
    response = client.post("/instagram/connect", data={"csrf_token": token}, headers=headers)
    from urllib.parse import parse_qs

    query = parse_qs(urlsplit(response.headers["Location"]).query)
    assert query["redirect_uri"] == ["https://shop.example.com/instagram/callback"]
    client.get(f"/instagram/callback?code=c1&state={query['state'][0]}", headers=headers)
    assert meta.exchanged_codes == [("c1", "https://shop.example.com/instagram/callback")]


@pytest.mark.options(PUBLIC_BASE_URL="https://dash.example.com")
def test_public_base_url_wins(app, client, auth, merchant, meta):
    _, state, query = start_connect(client, auth.csrf_token("/"))
    assert query["redirect_uri"] == ["https://dash.example.com/instagram/callback"]
    client.get(f"/instagram/callback?code=c2&state={state}")
    assert meta.exchanged_codes == [("c2", "https://dash.example.com/instagram/callback")]


@pytest.mark.parametrize("bad_state", ["missing", "wrong", "replayed", "other-session", "expired"])
def test_bad_state_is_refused_and_nothing_is_stored(app, client, auth, merchant, meta, db, bad_state):
    """Promise 17: state is random, single-use, bound to the session and expiring."""
    _, state, _ = start_connect(client, auth.csrf_token("/"))
    if bad_state == "missing":
        url = "/instagram/callback?code=c"
    elif bad_state == "wrong":
        url = "/instagram/callback?code=c&state=not-the-state"
    elif bad_state == "replayed":
        assert client.get(f"/instagram/callback?code=c&state={state}").status_code == 302
        db.session.execute(db.delete(ConnectionEvent))
        db.session.execute(db.delete(InstagramConnection))
        db.session.commit()
        url = f"/instagram/callback?code=c&state={state}"
    elif bad_state == "other-session":
        other = app.test_client()
        from testbed.client import AuthActions

        AuthActions(other).login_as(merchant)
        response = other.get(f"/instagram/callback?code=c&state={state}")
        assert response.status_code == 400
        assert nothing_connected(db, merchant)
        return
    else:
        with client.session_transaction() as session:
            session[f"_state_instagram_{state}"]["exp"] = time.time() - 1
            session.modified = True  # a nested change; the cookie goes out only when the session says it changed
        url = f"/instagram/callback?code=c&state={state}"
    response = client.get(url)
    assert response.status_code == 400
    assert "Nothing was changed" in response.get_data(as_text=True)
    assert nothing_connected(db, merchant)
    calls = 1 if bad_state == "replayed" else 0
    assert len(meta.exchanged_codes) == calls


def test_cancel_changes_nothing(client, auth, merchant, meta, db):
    _, state, _ = start_connect(client, auth.csrf_token("/"))
    response = client.get(
        f"/instagram/callback?error=access_denied&error_reason=user_denied&error_description=The+user+denied+your+request&state={state}"
    )
    assert response.status_code == 302
    assert "You cancelled the Instagram login. Nothing was changed." in client.get("/").get_data(as_text=True)
    assert nothing_connected(db, merchant) and meta.exchanged_codes == []


def test_reused_code_gets_a_clear_message(client, auth, merchant, requests_mock, db):
    requests_mock.post(
        "https://api.instagram.com/oauth/access_token",
        status_code=400,
        json={
            "error_type": "OAuthException",
            "code": 400,
            "error_message": "Matching code was not found or was already used",
        },
    )
    response = connect(client, auth)
    assert response.status_code == 302
    assert "the link was already used or has expired" in client.get("/").get_data(as_text=True)
    assert nothing_connected(db, merchant)


def test_a_personal_account_is_told_plainly_to_switch_to_a_professional_one(client, auth, merchant, meta, db):
    """Issue 14: account_type from /me not professional is account_not_professional, said at connect."""
    meta.account_type = "PERSONAL"
    meta.install()
    response = connect(client, auth)
    assert response.status_code == 302 and response.headers["Location"] == "/"
    page = client.get("/").get_data(as_text=True)
    assert "This Instagram account is a personal account" in page
    assert "switch to a professional account. Then connect again. Nothing was changed." in page
    connection = connection_of(db, merchant)
    assert connection is None or (connection.state == "not_connected" and not connection.has_token)


def test_reconnect_same_account_updates_in_place_and_keeps_history(client, auth, merchant, meta, db):
    connect(client, auth)
    first = connection_of(db, merchant)
    first_id, first_fingerprint = first.id, first.token_fingerprint
    first.state, first.cause = "needs_reconnect", "password_changed"
    db.session.commit()
    meta.long_token = "IGAAsecond-long-lived-token"
    meta.install()
    connect(client, auth, code="code-2")
    again = connection_of(db, merchant)
    assert again.id == first_id and again.state == "healthy" and again.cause is None
    assert again.token_fingerprint != first_fingerprint
    kinds = [e.kind for e in db.session.scalars(select(ConnectionEvent).order_by(ConnectionEvent.id))]
    assert kinds == ["connected", "reconnected"]
    assert "Connection restored: @bloom_and_stem is connected again." in client.get("/").get_data(as_text=True)


def test_empty_fields_from_meta_never_overwrite_stored_ones(client, auth, merchant, meta, db):
    """Promise 22: a reconnect whose /me lacks fields keeps the stored username and picture."""
    connect(client, auth)
    meta.username = meta.picture = meta.account_type = None
    meta.permissions = ""
    meta.install()
    connect(client, auth, code="code-2")
    connection = connection_of(db, merchant)
    assert connection.username == "bloom_and_stem"
    assert connection.profile_picture_url == "https://scontent.cdninstagram.com/bloom.jpg"
    assert connection.account_type == "BUSINESS"
    assert connection.permissions == ["instagram_business_basic"]


def test_different_account_needs_an_explicit_switch(client, auth, merchant, meta, db):
    """Promise 22: reconnecting with another account never silently swaps it."""
    connect(client, auth)
    meta.user_id, meta.username, meta.long_token = "17841499999999999", "other_shop", "IGAAother-account-token"
    meta.install()
    response = connect(client, auth, code="code-2")
    assert response.headers["Location"] == "/instagram/switch"
    connection = connection_of(db, merchant)
    assert connection.username == "bloom_and_stem"  # unchanged until confirmed
    pending = db.session.scalar(select(PendingConnection))
    assert "IGAAother" not in pending.token_ciphertext
    page = client.get("/instagram/switch").get_data(as_text=True)
    assert "Switch to @other_shop" in page and "Keep @bloom_and_stem" in page
    response = client.post("/instagram/switch", data={"csrf_token": auth.csrf_token("/instagram/switch")})
    assert response.status_code == 302
    connection = connection_of(db, merchant)
    assert (connection.username, connection.instagram_user_id) == ("other_shop", "17841499999999999")
    assert db.session.scalar(select(PendingConnection)) is None
    kinds = [e.kind for e in db.session.scalars(select(ConnectionEvent).order_by(ConnectionEvent.id))]
    assert kinds == ["connected", "switched_account"]
    assert "Switched: your shop is now connected to @other_shop." in client.get("/").get_data(as_text=True)


def test_keeping_the_current_account_discards_the_other(client, auth, merchant, meta, db):
    connect(client, auth)
    meta.user_id, meta.username = "17841499999999999", "other_shop"
    meta.install()
    connect(client, auth, code="code-2")
    client.post("/instagram/switch/cancel", data={"csrf_token": auth.csrf_token("/")})
    assert connection_of(db, merchant).username == "bloom_and_stem"
    assert db.session.scalar(select(PendingConnection)) is None
    assert client.get("/instagram/switch").headers["Location"] == "/"


def test_disconnect_needs_confirmation_then_deletes_the_token(client, auth, merchant, meta, db):
    connect(client, auth)
    token = auth.csrf_token("/instagram/disconnect")
    refused = client.post("/instagram/disconnect", data={"csrf_token": token})
    assert refused.status_code == 400 and "Tick the box to confirm." in refused.get_data(as_text=True)
    assert connection_of(db, merchant).has_token
    client.post("/instagram/disconnect", data={"csrf_token": token, "confirm": "y"})
    connection = connection_of(db, merchant)
    assert connection.state == "not_connected" and connection.token_ciphertext is None
    assert connection.token_fingerprint is None
    kinds = [e.kind for e in db.session.scalars(select(ConnectionEvent).order_by(ConnectionEvent.id))]
    assert kinds == ["connected", "disconnected"]
    assert "Connect Instagram" in client.get("/").get_data(as_text=True)


def test_staff_cannot_connect_for_a_shop(client, auth, meta):
    auth.login_as(make_user(role="support"))
    response = client.post("/instagram/connect", data={"csrf_token": auth.csrf_token("/")})
    assert response.status_code == 403


def test_a_disconnect_that_keeps_losing_races_answers_409_and_keeps_the_token(
    client, auth, merchant, meta, db, monkeypatch
):
    """Promise 33/39: a writer that loses every race says so in words; nothing is half-written, no 500."""
    from sqlalchemy.orm.exc import StaleDataError

    from webapp.services.connections import linking

    connect(client, auth)
    token = auth.csrf_token("/instagram/disconnect")

    def always_beaten(connection):
        raise StaleDataError("another writer moved the version")

    monkeypatch.setattr(linking, "forget_token", always_beaten)
    response = client.post("/instagram/disconnect", data={"csrf_token": token, "confirm": "y"})
    assert response.status_code == 409
    assert "Your Instagram connection changed meanwhile" in response.get_data(as_text=True)
    db.session.expire_all()
    assert connection_of(db, merchant).has_token


def test_no_database_transaction_is_open_while_meta_answers_the_login(client, auth, merchant, db, requests_mock):
    """Promise 3 on the web side: the code exchange, the long-lived exchange and /me run with no transaction open."""
    seen = []
    FakeInstagram(requests_mock, on_call=lambda: seen.append(db.session().in_transaction())).install()
    assert connect(client, auth).status_code == 302
    assert seen == [False, False, False]
