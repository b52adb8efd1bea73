"""One diagnosis per incident: worked out where the trouble is recorded, kept, and read by every reader (issue 14)."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from tests.conftest import TEST_CLIENT_SECRET
from tests.factories import make_user
from webapp.models import ConnectionEvent, InstagramConnection
from webapp.services.connections import diagnosis as diagnosis_module
from webapp.services.connections.diagnosis import current_diagnosis, from_record
from webapp.services.connections.state import read_token
from webapp.services.meta.signed_request import sign
from webapp.services.notify.compose import compose_notice
from webapp.services.notify.planning import Notice

GRAPH = "https://graph.instagram.com"
USER_ID = "17841400000000001"

# Meta's envelope with its words for the account owner (fields documented on Graph API errors).
CHECKPOINT_WITH_USER_WORDS = {
    "error": {
        "message": "Error validating access token: The user is enrolled in a blocking, logged-in checkpoint",
        "type": "OAuthException",
        "code": 190,
        "error_subcode": 490,
        "error_user_title": "Confirm your identity",
        "error_user_msg": "Log in to Instagram and follow the steps to secure your account.",
        "fbtrace_id": "AbCdEf",
    }
}


@pytest.fixture
def instagram_account() -> dict:
    return {"user_id": USER_ID}


def the_connection(db) -> InstagramConnection:
    db.session.expire_all()
    return db.session.scalar(select(InstagramConnection))


def break_through_the_worker(client, auth, requests_mock, body=CHECKPOINT_WITH_USER_WORDS, status=400):
    """The merchant's "Test now": the keep-alive's own path, which records the failure and its diagnosis."""
    requests_mock.get(f"{GRAPH}/v23.0/me", status_code=status, json=body)
    requests_mock.get(f"{GRAPH}/me", status_code=status, json=body)
    response = client.post("/instagram/test", data={"csrf_token": auth.csrf_token("/")})
    assert response.status_code in (200, 302)


def test_the_worker_stores_the_diagnosis_with_the_failure(client, auth, connected, requests_mock, db):
    break_through_the_worker(client, auth, requests_mock)
    connection = the_connection(db)
    assert connection.state == "needs_reconnect" and connection.cause == "account_checkpoint"
    stored = connection.diagnosis
    assert stored["cause"] == "account_checkpoint" and stored["state"] == "needs_reconnect"
    assert stored["causes"][0]["cause"] == "account_checkpoint"
    assert connection.diagnosed_at is not None
    assert stored["meta_user_title"] == "Confirm your identity"


def test_the_page_reads_the_stored_diagnosis_and_does_not_work_it_out(
    client, auth, connected, requests_mock, db, monkeypatch
):
    break_through_the_worker(client, auth, requests_mock)

    def refuse(*args, **kwargs):
        raise AssertionError("the page worked the diagnosis out again")

    monkeypatch.setattr(diagnosis_module, "diagnose_connection", refuse)
    page = client.get("/").get_data(as_text=True)
    assert "Instagram wants you to confirm the account" in page
    fragment = client.get("/what-happened", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert 'id="diagnosis-panel"' in fragment and "diagnosis-empty" not in fragment


def test_page_mail_and_support_say_the_same_thing(app, client, auth, connected, requests_mock, db):
    break_through_the_worker(client, auth, requests_mock)
    connection = the_connection(db)
    stored = from_record(connection.diagnosis, connection)
    primary = stored.primary
    page = client.get("/").get_data(as_text=True)
    assert primary.cause.title in page
    assert "Instagram answered with error 190, subcode 490" in primary.evidence[0]
    assert primary.evidence[0] in page
    notice = Notice(kind="disconnected", key="test")
    mail = compose_notice(app, notice, connection, connected, connection.state_changed_at)
    assert primary.cause.title in mail["text"] and primary.cause.explanation in mail["text"]
    assert "Confirm your identity" in mail["text"] and "Confirm your identity" in mail["html"]
    auth.logout()
    auth.login_as(make_user(role="support", email="sam@support.example"))
    support = client.get(f"/support/shops/{connection.shop_id}").get_data(as_text=True)
    assert primary.cause.title in support, support[:3000]
    assert primary.evidence[0] in support


def test_metas_words_for_the_account_owner_are_shown_without_a_quoted_token(
    app, client, auth, connected, requests_mock, db
):
    """Promise 34: Meta quoting the token in error_user_title or error_user_msg: neither stored nor shown."""
    token = read_token(the_connection(db), app.extensions["token_vault"])
    body = {
        "error": {
            **CHECKPOINT_WITH_USER_WORDS["error"],
            "error_user_title": f"Token {token} paused",
            "error_user_msg": f"The token {token} can no longer be used. Log in to Instagram.",
        }
    }
    break_through_the_worker(client, auth, requests_mock, body=body)
    page = client.get("/").get_data(as_text=True)
    assert "message to you" in page and "can no longer be used. Log in to Instagram." in page
    assert token not in page
    event = db.session.scalar(select(ConnectionEvent).where(ConnectionEvent.kind == "check_failed"))
    assert token not in event.meta_user_message and token not in event.meta_user_title
    assert token not in str(the_connection(db).diagnosis)


def test_a_deauthorize_callback_stores_app_removed(client, connected, db):
    payload = {"user_id": USER_ID, "algorithm": "HMAC-SHA256", "issued_at": int(time.time())}
    response = client.post("/instagram/deauthorize", data={"signed_request": sign(payload, TEST_CLIENT_SECRET)})
    assert response.status_code == 200
    connection = the_connection(db)
    assert connection.diagnosis["causes"][0]["cause"] == "app_removed"
    assert connection.diagnosis["causes"][0]["confidence"] == "certain"


def test_a_reconnect_clears_the_stored_diagnosis(client, auth, connected, requests_mock, db):
    from tests.instagram_helpers import FakeInstagram, connect

    break_through_the_worker(client, auth, requests_mock)
    assert the_connection(db).diagnosis is not None
    FakeInstagram(requests_mock, user_id=USER_ID).install()
    connect(client, auth, code="code-456")
    connection = the_connection(db)
    assert connection.state == "healthy"
    assert connection.diagnosis is None and connection.diagnosed_at is None


def test_a_stored_diagnosis_that_no_longer_fits_the_row_is_worked_out_again(client, auth, connected, requests_mock, db):
    break_through_the_worker(client, auth, requests_mock)
    connection = the_connection(db)
    connection.cause = "password_changed"  # a writer that forgot to store its diagnosis
    db.session.commit()
    assert from_record(connection.diagnosis, connection) is None
    assert current_diagnosis(connection, connection.state_changed_at).primary.cause.id == "password_changed"


@pytest.mark.parametrize(
    "record",
    [None, {}, {"format": 99}, {"format": 1, "state": "needs_reconnect", "cause": "x", "causes": [{"cause": "gone"}]}],
)
def test_an_unreadable_record_is_not_trusted(record, db):
    connection = InstagramConnection(state="needs_reconnect", cause="x")
    assert from_record(record, connection) is None
