"""Meta's deauthorize and data-deletion callbacks (promises 23 and 24)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from tests.conftest import TEST_CLIENT_SECRET
from webapp.models import ConnectionEvent, InstagramConnection, MetaCallback
from webapp.services.meta.signed_request import sign

USER_ID = "17841400000000001"


def signed(user_id=USER_ID, issued_at=None, secret=TEST_CLIENT_SECRET, **extra):
    payload = {"user_id": user_id, "algorithm": "HMAC-SHA256", "issued_at": issued_at or int(time.time()), **extra}
    return sign(payload, secret)


@pytest.fixture
def instagram_account() -> dict:
    """`connected` connects the Instagram user the signed requests below name."""
    return {"user_id": USER_ID}


def connection(db) -> InstagramConnection:
    db.session.expire_all()
    return db.session.scalar(select(InstagramConnection))


def test_deauthorize_marks_needs_reconnect_with_app_removed_and_deletes_the_token(client, connected, db):
    response = client.post("/instagram/deauthorize", data={"signed_request": signed()})
    assert response.status_code == 200
    assert response.get_json()["connections_changed"] == 1
    row = connection(db)
    assert (row.state, row.cause, row.token_ciphertext) == ("needs_reconnect", "app_removed", None)
    event = db.session.scalar(select(ConnectionEvent).where(ConnectionEvent.kind == "deauthorized"))
    assert event.actor_kind == "meta" and event.cause == "app_removed"
    card = client.get("/").get_data(as_text=True)
    assert "Disconnected by Instagram" in card and "Reconnect" in card


def test_deauthorize_for_an_unknown_user_is_accepted(client, db):
    response = client.post("/instagram/deauthorize", data={"signed_request": signed(user_id="999")})
    assert response.status_code == 200 and response.get_json()["connections_changed"] == 0


def test_deauthorize_issued_before_the_latest_connect_is_a_no_op(client, connected, db):
    """A replay cannot disconnect a merchant who has since reconnected; age alone is no reason to refuse."""
    long_ago = int((datetime.now(UTC) - timedelta(days=3)).timestamp())
    response = client.post("/instagram/deauthorize", data={"signed_request": signed(issued_at=long_ago)})
    assert response.status_code == 200
    assert connection(db).state == "healthy" and connection(db).has_token


def test_deauthorize_is_idempotent(client, connected, db):
    """Promise 24: the same request three times changes the connection once."""
    request = signed()
    for _ in range(3):
        assert client.post("/instagram/deauthorize", data={"signed_request": request}).status_code == 200
    kinds = db.session.scalars(select(ConnectionEvent.kind)).all()
    assert kinds.count("deauthorized") == 1


@pytest.mark.parametrize(
    "form",
    [
        {},
        {"signed_request": ""},
        {"signed_request": "a.b.c"},
        {"signed_request": signed(secret="wrong-secret")},
        {"signed_request": sign({"user_id": USER_ID, "algorithm": "HMAC-SHA1", "issued_at": 1}, TEST_CLIENT_SECRET)},
        {"signed_request": sign({"algorithm": "HMAC-SHA256", "issued_at": 1}, TEST_CLIENT_SECRET)},
        {"signed_request": "***.***"},
    ],
    ids=["absent", "empty", "three-segments", "bad-signature", "wrong-algorithm", "no-user-id", "bad-base64"],
)
@pytest.mark.parametrize("path", ["/instagram/deauthorize", "/instagram/data-deletion"])
def test_invalid_signed_requests_get_400_and_change_nothing(client, connected, db, path, form):
    """Promise 23: only valid signed_requests are accepted."""
    response = client.post(path, data=form)
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid signed_request"
    assert connection(db).state == "healthy" and connection(db).has_token
    assert db.session.scalar(select(func.count(MetaCallback.id))) == 0


def test_data_deletion_deletes_and_answers_url_and_code(app, client, connected, db):
    response = client.post("/instagram/data-deletion", data={"signed_request": signed()})
    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == {"url", "confirmation_code"}
    assert body["confirmation_code"].isalnum()
    assert body["url"] == f"http://localhost/instagram/data-deletion/{body['confirmation_code']}"
    row = connection(db)
    assert row.token_ciphertext is None and row.username is None and row.instagram_user_id is None
    assert row.state == "not_connected"
    events = db.session.scalars(select(ConnectionEvent)).all()
    assert all(event.instagram_user_id is None for event in events)
    status = app.test_client().get(f"/instagram/data-deletion/{body['confirmation_code']}")
    page = status.get_data(as_text=True)
    assert status.status_code == 200 and "Completed on" in page and body["confirmation_code"] in page
    # The status page shows the status and nothing else: no shop, no account.
    assert "bloom_and_stem" not in page and connected.shop.name not in page


def test_data_deletion_is_idempotent(client, connected, db):
    """Promise 24: three deliveries, one deletion, one confirmation code."""
    request = signed()
    codes = {
        client.post("/instagram/data-deletion", data={"signed_request": request}).get_json()["confirmation_code"]
        for _ in range(3)
    }
    assert len(codes) == 1
    assert db.session.scalar(select(func.count(MetaCallback.id))) == 1
    kinds = db.session.scalars(select(ConnectionEvent.kind)).all()
    assert kinds.count("instagram_data_deleted") == 1


def test_unknown_confirmation_code_is_404(client):
    response = client.get("/instagram/data-deletion/NOPE1234")
    assert response.status_code == 404
    assert "no data deletion request with that confirmation code" in response.get_data(as_text=True)


def test_callbacks_need_no_login_or_csrf(app, connected, db):
    fresh = app.test_client()
    assert fresh.post("/instagram/deauthorize", data={"signed_request": signed()}).status_code == 200


@pytest.mark.parametrize(
    "fields",
    [
        {"user_id": 17841400000000001.5},
        {"user_id": [USER_ID]},
        {"user_id": {"id": USER_ID}},
        {"user_id": None},
        {"user_id": True},
        {"user_id": "7" * 10_000},
        {"issued_at": 10**30},
        {"issued_at": 1e30},
        {"issued_at": "abc"},
        {"issued_at": [1]},
        {"algorithm": ["HMAC-SHA256"]},
        {"algorithm": 256},
    ],
    ids=lambda fields: "-".join(f"{k}={str(v)[:12]}" for k, v in fields.items()),
)
@pytest.mark.parametrize("path", ["/instagram/deauthorize", "/instagram/data-deletion"])
def test_signed_fields_of_the_wrong_type_or_length_get_400(client, connected, db, path, fields):
    """Promise 39 and 23: a correctly signed payload with a field of the wrong type or size is a clear 400."""
    payload = {"user_id": USER_ID, "algorithm": "HMAC-SHA256", "issued_at": int(time.time()), **fields}
    response = client.post(path, data={"signed_request": sign(payload, TEST_CLIENT_SECRET)})
    assert response.status_code == 400
    body = response.get_json()
    assert body["error"] == "invalid signed_request" and body["detail"]
    assert connection(db).state == "healthy" and connection(db).has_token
    assert db.session.scalar(select(func.count(MetaCallback.id))) == 0


# The three numbers Meta gives the account `connected` connects (tests/instagram_helpers.py).
ACCOUNT_IDS = {
    "me-user-id": USER_ID,
    "me-app-scoped-id": "9170000000000001",
    "code-exchange-user-id": "2710000000000001",
}


@pytest.mark.parametrize("sent", ACCOUNT_IDS.values(), ids=ACCOUNT_IDS.keys())
def test_deauthorize_finds_the_connection_by_any_of_its_ids(client, connected, db, sent):
    """Issue 14, part 5: Meta does not document which id its callback carries for Instagram Login."""
    row = connection(db)
    assert (row.instagram_user_id, row.instagram_scoped_id, row.login_user_id) == tuple(ACCOUNT_IDS.values())
    response = client.post("/instagram/deauthorize", data={"signed_request": signed(user_id=sent)})
    assert response.get_json()["connections_changed"] == 1
    assert (connection(db).state, connection(db).cause) == ("needs_reconnect", "app_removed")


@pytest.mark.parametrize("sent", ACCOUNT_IDS.values(), ids=ACCOUNT_IDS.keys())
def test_data_deletion_finds_the_connection_by_any_of_its_ids_and_deletes_them_all(client, connected, db, sent):
    response = client.post("/instagram/data-deletion", data={"signed_request": signed(user_id=sent)})
    assert response.status_code == 200
    row = connection(db)
    assert (row.instagram_user_id, row.instagram_scoped_id, row.login_user_id) == (None, None, None)
    assert row.state == "not_connected" and row.token_ciphertext is None


def test_a_callback_for_another_account_changes_nothing(client, connected, db):
    for path in ("/instagram/deauthorize", "/instagram/data-deletion"):
        assert client.post(path, data={"signed_request": signed(user_id="17841400000000002")}).status_code == 200
    assert connection(db).state == "healthy" and connection(db).login_user_id == "2710000000000001"


def test_data_deletion_removes_a_parked_switch_found_by_its_login_id(client, auth, connected, db, requests_mock):
    """The account waiting for 'switch' is deleted too, whichever of its ids Meta sends."""
    from tests.instagram_helpers import FakeInstagram, connect
    from webapp.models import PendingConnection

    FakeInstagram(
        requests_mock, user_id="17841400000000077", scoped_id="9170000000000077", login_user_id="2710000000000077"
    ).install()
    assert connect(client, auth).headers["Location"].endswith("/instagram/switch")
    pending = db.session.scalar(select(PendingConnection))
    assert (pending.instagram_scoped_id, pending.login_user_id) == ("9170000000000077", "2710000000000077")
    client.post("/instagram/data-deletion", data={"signed_request": signed(user_id="2710000000000077")})
    db.session.expire_all()
    assert db.session.scalar(select(func.count(PendingConnection.id))) == 0
    assert connection(db).state == "healthy" and connection(db).has_token  # the shop's own account stays
