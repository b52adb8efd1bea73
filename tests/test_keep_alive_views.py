"""Merchant actions: "Test connection now" and "Refresh now" (fragment and page), rate-limited per shop."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from tests.factories import make_connection
from tests.instagram_helpers import connect
from webapp.models import ConnectionEvent, InstagramConnection
from webapp.services.token_vault import fingerprint

GRAPH = "https://graph.instagram.com"


def htmx(token: str) -> dict:
    return {"HX-Request": "true", "X-CSRFToken": token}


def test_test_now_fragment_and_page(client, auth, merchant, requests_mock, db):
    connection = make_connection(merchant.shop, issued_at=datetime.now(UTC) - timedelta(days=2))
    requests_mock.get(f"{GRAPH}/v23.0/me", json={"user_id": connection.instagram_user_id, "username": "shop_account"})
    token = auth.csrf_token("/")
    fragment = client.post("/instagram/test", headers=htmx(token))
    body = fragment.get_data(as_text=True)
    assert fragment.status_code == 200 and "<html" not in body and 'id="instagram-card"' in body
    assert "Connection tested: Instagram answered and everything works." in body
    assert fragment.headers["HX-Trigger"] == "connection-changed"
    assert "HX-Request" in fragment.headers["Vary"]
    page = client.post("/instagram/test", data={"csrf_token": token})
    assert page.status_code == 302 and page.headers["Location"] == "/"
    assert "everything works" in client.get("/").get_data(as_text=True)
    event = db.session.scalar(select(ConnectionEvent).order_by(ConnectionEvent.id.desc()))
    assert (event.kind, event.actor_kind, event.actor_id) == ("checked", "merchant", merchant.id)


def test_refresh_now_refreshes(client, auth, merchant, requests_mock, db):
    connection = make_connection(merchant.shop, token="IGAAold", issued_at=datetime.now(UTC) - timedelta(days=3))
    old_fingerprint = connection.token_fingerprint
    requests_mock.get(f"{GRAPH}/refresh_access_token", json={"access_token": "IGAAnew", "expires_in": 5184000})
    response = client.post("/instagram/refresh", headers=htmx(auth.csrf_token("/")))
    assert "Token refreshed. It is valid for another 60 days." in response.get_data(as_text=True)
    db.session.expire_all()
    row = db.session.get(InstagramConnection, connection.id)
    assert row.token_fingerprint != old_fingerprint
    assert row.token_fingerprint == fingerprint("IGAAnew")


def test_refresh_now_respects_the_24_hour_rule(client, auth, merchant, requests_mock):
    make_connection(merchant.shop, issued_at=datetime.now(UTC) - timedelta(hours=3))
    response = client.post("/instagram/refresh", headers=htmx(auth.csrf_token("/")))
    assert "less than a day old" in response.get_data(as_text=True)
    assert requests_mock.call_count == 0


def test_test_now_reports_a_revocation(client, auth, merchant, requests_mock, db):
    make_connection(merchant.shop, issued_at=datetime.now(UTC) - timedelta(days=2))
    requests_mock.get(
        f"{GRAPH}/v23.0/me",
        status_code=400,
        json={
            "error": {
                "message": "Error validating access token: The session is invalid because the user logged out.",
                "type": "OAuthException",
                "code": 190,
                "error_subcode": 467,
            }
        },
    )
    response = client.post("/instagram/test", headers=htmx(auth.csrf_token("/")))
    body = response.get_data(as_text=True)
    assert "Instagram refused the connection. Reconnect to fix it." in body
    assert "Disconnected by Instagram" in body
    row = db.session.scalar(select(InstagramConnection))
    assert (row.state, row.cause) == ("needs_reconnect", "session_invalidated")


def test_test_now_can_recover_a_cleared_checkpoint(client, auth, merchant, requests_mock, db):
    connection = make_connection(
        merchant.shop, issued_at=datetime.now(UTC) - timedelta(days=2), state="needs_reconnect"
    )
    connection.cause = "account_checkpoint"
    db.session.commit()
    requests_mock.get(f"{GRAPH}/v23.0/me", json={"user_id": connection.instagram_user_id})
    body = client.post("/instagram/test", headers=htmx(auth.csrf_token("/"))).get_data(as_text=True)
    assert "it works again" in body
    db.session.expire_all()
    assert db.session.get(InstagramConnection, connection.id).state == "healthy"


def test_busy_connection_says_so(client, auth, merchant, requests_mock, db):
    connection = make_connection(merchant.shop, issued_at=datetime.now(UTC) - timedelta(days=2))
    connection.lease_owner = "some-worker"
    connection.lease_expires_at = datetime.now(UTC) + timedelta(minutes=1)
    db.session.commit()
    body = client.post("/instagram/test", headers=htmx(auth.csrf_token("/"))).get_data(as_text=True)
    assert "An automatic check is running right now" in body and requests_mock.call_count == 0


@pytest.mark.options(MANUAL_ACTION_RATE_LIMIT="2 per minute")
def test_manual_actions_are_rate_limited_per_shop(app, client, auth, merchant, requests_mock):
    connection = make_connection(merchant.shop, issued_at=datetime.now(UTC) - timedelta(days=2))
    requests_mock.get(f"{GRAPH}/v23.0/me", json={"user_id": connection.instagram_user_id})
    token = auth.csrf_token("/")
    responses = [client.post("/instagram/test", headers=htmx(token)) for _ in range(3)]
    assert [r.status_code for r in responses] == [200, 200, 429]
    # The refusal is shown in the page's error slot, not swapped into the card.
    assert responses[2].headers["HX-Retarget"] == "#htmx-errors"
    assert "Too many attempts" in responses[2].get_data(as_text=True)
    assert requests_mock.call_count == 2


def test_card_fragment_and_page_pair(client, auth, merchant):
    fragment = client.get("/card", headers={"HX-Request": "true"})
    assert fragment.status_code == 200 and "<html" not in fragment.get_data(as_text=True)
    page = client.get("/card")
    assert page.status_code == 302 and page.headers["Location"] == "/"


@pytest.mark.parametrize("pause", ["connection", "app"])
def test_a_rate_limit_pause_is_shown_and_test_now_does_not_extend_it(client, auth, merchant, requests_mock, db, pause):
    """Issue 13, item 6: the pause was invisible ('Everything is working', a renewal date in the past)
    and "Test connection now" still called Meta during it, which extends the pause Meta asked for."""
    from webapp.models import RateLimitPause

    now = datetime.now(UTC)
    connection = make_connection(
        merchant.shop, issued_at=now - timedelta(days=8), refresh_due_at=now - timedelta(hours=1)
    )
    until = now + timedelta(minutes=20)
    if pause == "connection":
        connection.paused_until = until
    else:
        db.session.add(RateLimitPause(scope="app", until=until, reason="X-App-Usage at 97%"))
    db.session.commit()
    me = requests_mock.get(f"{GRAPH}/v23.0/me", json={"user_id": connection.instagram_user_id})

    card = client.get("/card", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "Instagram asked us to slow down, so our calls are paused for a while." in card
    assert "Everything is working" not in card
    assert "Paused until" in card
    next_renewal = re.search(r"<dt>Next renewal</dt><dd>(.*?)</dd>", card).group(1)
    assert f"{until:%H:%M}" in next_renewal  # right after the pause, not an hour ago

    body = client.post("/instagram/test", headers=htmx(auth.csrf_token("/"))).get_data(as_text=True)
    assert re.search(r"calls are paused for (19|20) more minutes", body) and "would only make the pause longer" in body
    assert me.call_count == 0


def test_reconnecting_a_working_connection_does_not_claim_a_restore(client, auth, connected):
    """Issue 13, item 6: "Connection restored" appeared after reconnecting a connection that worked."""
    connect(client, auth)
    page = client.get("/").get_data(as_text=True)
    assert "Connection restored" not in page
    assert "It was already working" in page
