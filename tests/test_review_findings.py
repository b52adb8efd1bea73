"""Adversarial review of issue 14's changes: each test names the bug it shows."""

from __future__ import annotations

import json
import time

import pytest
from sqlalchemy import select

from tests.conftest import TEST_CLIENT_SECRET
from tests.instagram_helpers import FakeInstagram, connect
from webapp.models import ConnectionEvent, InstagramConnection
from webapp.services.meta.signed_request import sign

GRAPH = "https://graph.instagram.com"
USER_ID = "17841400000000001"
USERNAME = "bloom_and_stem"
REPEATS = 60  # forged refusals one merchant sends in the App health test


@pytest.fixture
def instagram_account() -> dict:
    return {"user_id": USER_ID, "username": USERNAME}


def the_connection(db) -> InstagramConnection:
    db.session.expire_all()
    return db.session.scalar(select(InstagramConnection))


def signed(user_id=USER_ID):
    return sign({"user_id": user_id, "algorithm": "HMAC-SHA256", "issued_at": int(time.time())}, TEST_CLIENT_SECRET)


def fail_check(client, auth, requests_mock, body, status=400, headers=None):
    requests_mock.get(f"{GRAPH}/v23.0/me", status_code=status, json=body, headers=headers or {})
    response = client.post("/instagram/test", data={"csrf_token": auth.csrf_token("/")})
    assert response.status_code in (200, 302)


def test_data_deletion_leaves_the_accounts_id_in_the_stored_usage_headers(client, auth, connected, requests_mock, db):
    """Bug: 0012 keeps X-Business-Use-Case-Usage on the connection, keyed by the Instagram account's id;
    a data-deletion request clears the ids and profile but not `usage`, so the account's id survives."""
    usage = {USER_ID: [{"type": "instagram", "call_count": 100, "estimated_time_to_regain_access": 5}]}
    body = {"error": {"message": "Too many calls", "type": "OAuthException", "code": 80002, "is_transient": True}}
    fail_check(client, auth, requests_mock, body, headers={"X-Business-Use-Case-Usage": json.dumps(usage)})
    assert USER_ID in json.dumps(the_connection(db).usage)  # kept, as 0012 intends
    response = client.post("/instagram/data-deletion", data={"signed_request": signed()})
    assert response.status_code == 200
    row = the_connection(db)
    assert row.instagram_user_id is None  # the ids are gone...
    assert USER_ID not in json.dumps(row.usage)  # ...but not from the usage headers


def test_data_deletion_leaves_metas_words_for_the_owner_on_the_events(client, auth, connected, requests_mock, db):
    """Bug: 0011 keeps error_user_title/error_user_msg on connection_events; a data-deletion request
    replaces each event's message and id but leaves these two columns (Meta's words to that account owner)."""
    body = {
        "error": {
            "message": "Error validating access token: The user is enrolled in a blocking, logged-in checkpoint",
            "type": "OAuthException",
            "code": 190,
            "error_subcode": 490,
            "error_user_title": f"@{USERNAME}, confirm your identity",
            "error_user_msg": f"Log in to Instagram as @{USERNAME} and follow the steps.",
        }
    }
    fail_check(client, auth, requests_mock, body)
    assert client.post("/instagram/data-deletion", data={"signed_request": signed()}).status_code == 200
    db.session.expire_all()
    leftovers = [
        (e.kind, e.meta_user_title, e.meta_user_message)
        for e in db.session.scalars(select(ConnectionEvent))
        if USERNAME in (e.meta_user_title or "") + (e.meta_user_message or "")
    ]
    assert leftovers == []


def test_data_deletion_misses_the_accounts_events_on_a_shop_that_switched_away(
    client, auth, connected, requests_mock, db
):
    """Bug: request_data_deletion scrubs only the events of connections still linked to the account;
    a shop that switched to another account keeps the first account's id and name in its history."""
    other = FakeInstagram(
        requests_mock,
        user_id="17841400000000999",
        scoped_id="9170000000000999",
        login_user_id="2710000000000999",
        username="other_account",
        long_token="IGAAlong-lived-token-0999",
    ).install()
    connect(client, auth, code="code-999")
    client.post("/instagram/switch", data={"csrf_token": auth.csrf_token("/instagram/switch")})
    row = the_connection(db)
    assert row.instagram_user_id == other.user_id, "the switch did not go through"
    assert client.post("/instagram/data-deletion", data={"signed_request": signed()}).status_code == 200
    db.session.expire_all()
    mentions = [
        (e.kind, e.instagram_user_id, e.message)
        for e in db.session.scalars(select(ConnectionEvent))
        if e.instagram_user_id == USER_ID or USERNAME in (e.message or "")
    ]
    assert mentions == []


def test_a_forged_callback_link_with_a_made_up_state_records_no_refusal(client, merchant, db):
    """Bug: a link to /instagram/callback?code=..&state=<made up>, opened by a logged-in merchant (SameSite=Lax
    lets a top-level navigation from any site carry the cookie), records a connect_refused_reply_check event
    in the shop's history and on the admins' App health page. The error-reply branch checks the state
    first ("a forged error link is not Meta's answer", take_reply_state); the code-reply branch records anyway."""
    for attempt in range(3):
        client.get(f"/instagram/callback?code=anything&state=forged-{attempt}")
    kinds = db.session.scalars(select(ConnectionEvent.kind)).all()
    assert kinds == []


def test_one_merchant_cannot_push_the_apps_real_errors_off_the_app_health_page(client, auth, merchant, db, now):
    """Bug: refused logins are recorded without any limit, with Meta's (here: the merchant's own) words and a
    cause classified from them; App health lists only the newest 50. A merchant who starts logins and
    answers each with ?error=...&error_description=<any text> (their own valid state) fills the list with
    operator-level alarms and hides the app's real errors."""
    from urllib.parse import quote

    from tests.factories import make_shop, make_user
    from tests.instagram_helpers import start_connect
    from webapp.services.connections.causes import CauseId
    from webapp.services.connections.state import SYSTEM, connection_for, record_event

    real = connection_for(make_shop(name="Rose Garden"))
    record_event(
        real,
        "check_failed",
        now,
        SYSTEM,
        cause=CauseId.APP_MISCONFIGURED,
        meta_code=3,
        message="(#3) Application does not have the capability to make this API call.",
    )
    db.session.commit()
    forged = quote("Error validating verification code. Please make sure your redirect_uri is identical")
    for _ in range(REPEATS):
        _, state, _ = start_connect(client, auth.csrf_token("/"))
        client.get(f"/instagram/callback?error=invalid_request&error_description={forged}&state={state}")
    auth.logout()
    auth.login_as(make_user(role="admin", email="boss@support.example"))
    page = client.get("/admin/app-health").get_data(as_text=True)
    assert "does not have the capability" in page


PASSWORD_CHANGED = {
    "error": {
        "message": "Error validating access token: The session has been invalidated because the user changed "
        "their password or Facebook has changed the session for security reasons.",
        "type": "OAuthException",
        "code": 190,
        "error_subcode": 460,
    }
}
OUTAGE = {
    "error": {
        "message": "An unexpected error has occurred. Please retry your request later.",
        "code": 2,
        "type": "OAuthException",
        "is_transient": True,
    }
}


def test_a_passing_outage_during_test_now_is_not_quoted_as_evidence_of_the_break(
    client, auth, connected, requests_mock, db
):
    """Bug: "Test now" on a broken connection that meets a passing outage keeps it broken (right) but
    overwrites last_error_message, and store_diagnosis then stores the outage's text as
    "Instagram's message" beside the password change: the page, mail and support quote the wrong error."""
    fail_check(client, auth, requests_mock, PASSWORD_CHANGED)
    row = the_connection(db)
    assert (row.state, row.cause) == ("needs_reconnect", "password_changed")
    fail_check(client, auth, requests_mock, OUTAGE, status=500)
    row = the_connection(db)
    assert (row.state, row.cause) == ("needs_reconnect", "password_changed")
    evidence = " ".join(row.diagnosis["causes"][0]["evidence"])
    assert "unexpected error" not in evidence, evidence


def test_test_now_failing_again_for_the_same_reason_keeps_the_checklist_ticks(
    client, auth, pinned_clock, connected, requests_mock, db
):
    """Bug: the incident key of checklist ticks is the newest failure event of the cause, not the incident's
    start (connection.incident_started_at). A merchant ticks a step, presses "Test now" to see whether it
    helped, Instagram refuses again for the same reason: the stored diagnosis gets a new key and the ticks vanish."""
    import re
    from datetime import timedelta

    from webapp import clock

    fail_check(client, auth, requests_mock, PASSWORD_CHANGED)
    incident = re.search(r'name="incident" value="([^"]+)"', client.get("/").get_data(as_text=True)).group(1)
    client.post("/checklist", data={"csrf_token": auth.csrf_token("/"), "item": 0, "incident": incident})
    assert 'aria-pressed="true"' in client.get("/").get_data(as_text=True)
    clock.pin(pinned_clock + timedelta(minutes=5))  # five minutes later the merchant tests again
    fail_check(client, auth, requests_mock, PASSWORD_CHANGED)
    assert 'aria-pressed="true"' in client.get("/").get_data(as_text=True)


def test_a_deauthorize_for_a_parked_accounts_id_drops_the_parked_switch(client, auth, connected, db, requests_mock):
    """Bug (claimed by 5b3c799, "Meta's deauthorize and data-deletion callbacks match a connection or a parked
    switch by any of them"): apply_deauthorize never looks at pending_connections. The account waiting for
    "switch" removes the app; confirming the switch within 15 minutes still stores its revoked token as healthy."""
    from webapp.models import PendingConnection

    parked = FakeInstagram(
        requests_mock,
        user_id="17841400000000077",
        scoped_id="9170000000000077",
        login_user_id="2710000000000077",
        username="parked_account",
        long_token="IGAAlong-lived-token-0077",
    ).install()
    assert connect(client, auth, code="code-077").headers["Location"].endswith("/instagram/switch")
    assert (
        client.post("/instagram/deauthorize", data={"signed_request": signed(parked.login_user_id)}).status_code == 200
    )
    db.session.expire_all()
    assert db.session.scalar(select(PendingConnection)) is None
