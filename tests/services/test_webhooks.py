"""Webhook endpoints, and events written where a connection changes, in the transaction of the change."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import func, select, text, update

from tests.conftest import TEST_TOKEN_KEY
from tests.factories import make_connection, make_facebook_connection, make_shop, make_user
from tests.instagram_helpers import FakeInstagram
from webapp.extensions import db as _db
from webapp.models import ConnectionState, WebhookDelivery, WebhookEndpoint, WebhookEvent
from webapp.services import webhooks
from webapp.services.connections import linking, meta_requests, state
from webapp.services.connections.causes import CauseId
from webapp.services.connections.key_rotation import rotate_token_keys
from webapp.services.fingerprint import ClientFingerprint
from webapp.services.keepalive.policy import Policy
from webapp.services.meta.client import Profile, TokenGrant
from webapp.services.token_vault import TokenVault

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
FINGERPRINT = ClientFingerprint("203.0.113.0/24", "Firefox on Linux")
CANARY_TOKEN = "IGAAcanary-token-that-must-never-leave-0123456789"


def endpoint(types=webhooks.EVENT_TYPES, url="https://platform.example/hooks", **fields) -> WebhookEndpoint:
    created, _secret = webhooks.create_endpoint(
        url=url, description=fields.get("description", ""), event_types=list(types), created_by="test", now=NOW
    )
    return created


def events(type: str | None = None) -> list[WebhookEvent]:
    query = select(WebhookEvent).order_by(WebhookEvent.id)
    if type:
        query = query.where(WebhookEvent.type == type)
    return list(_db.session.scalars(query))


def test_a_new_endpoint_gets_a_secret_shown_once_and_kept_encrypted(app, db):
    created, secret = webhooks.create_endpoint(
        url="https://platform.example/hooks/instagram",
        description="  Product sync  ",
        event_types=["connection.reconnected", "connection.state_changed"],
        created_by="boss@support.example (admin)",
        now=NOW,
    )
    assert secret.startswith("whsec_") and len(secret) > 40
    assert created.description == "Product sync"
    assert created.types == ["connection.state_changed", "connection.reconnected"]  # EVENT_TYPES order
    assert secret not in created.secret_ciphertext
    assert app.extensions["token_vault"].decrypt(created.secret_ciphertext) == secret
    dump = "\n".join(str(row) for row in db.session.execute(text("SELECT * FROM webhook_endpoints")))
    assert secret not in dump and secret.removeprefix("whsec_") not in dump
    _, other = webhooks.create_endpoint(
        url="https://platform.example/hooks/2",
        description="",
        event_types=["connection.expiring"],
        created_by="t",
        now=NOW,
    )
    assert other != secret


@pytest.mark.parametrize(
    "url,words",
    [
        ("", "Enter the URL"),
        ("ftp://platform.example/hooks", "must start with"),
        ("https://", "needs a host name"),
        ("https://user:pass@platform.example/hooks", "no user name or password"),
        ("https://platform.example/hooks#top", "#fragment"),
        ("https://platform.example/ho oks", "spaces or control characters"),
        ("https://platform.example:99999/hooks", "cannot be read"),
        ("https://platform.example/" + "a" * 2000, "longer than 2000"),
    ],
)
def test_an_endpoint_url_is_refused_in_words(app, db, url, words):
    with pytest.raises(ValueError, match=words):
        endpoint(url=url)
    assert db.session.scalar(select(func.count(WebhookEndpoint.id))) == 0


def test_http_is_for_the_sandbox_and_tests_and_production_wants_https(app, db):
    assert endpoint(url="http://127.0.0.1:8000/hooks").url == "http://127.0.0.1:8000/hooks"
    app.config["PRODUCTION"] = True
    with pytest.raises(webhooks.EndpointRefused, match="https:// \\(production"):
        endpoint(url="http://platform.example/hooks")
    assert endpoint(url="https://platform.example/hooks").url == "https://platform.example/hooks"


@pytest.mark.parametrize("types", [["connection.deleted"], ["connection.state_changed", "state_changed"], []])
def test_unknown_or_no_event_types_are_refused_with_a_sentence(app, db, types):
    with pytest.raises(ValueError) as refused:
        endpoint(types=types)
    message = str(refused.value)
    assert message.endswith(".") and "connection.state_changed" in message


def test_a_state_change_emits_one_event_with_its_facts_and_no_token(app, db):
    shop = make_shop(name="Tea House")
    connection = make_connection(shop, token=CANARY_TOKEN, username="tea_house")
    endpoint(types=["connection.state_changed"])
    state.set_state(connection, ConnectionState.DEGRADED, NOW, cause=CauseId.PROVIDER_ERROR)
    db.session.commit()
    [event] = events()
    assert event.type == "connection.state_changed" and event.event_id.startswith("evt_")
    assert event.shop_id == shop.id and event.connection_id == connection.id and event.occurred_at == NOW
    assert event.payload == {
        "shop_id": shop.id,
        "connection_id": connection.id,
        "username": "tea_house",
        "login_path": "instagram",
        "previous_state": "healthy",
        "state": "degraded",
        "cause": "provider_error",
        "diagnosis": None,
    }
    assert CANARY_TOKEN not in str(event.payload)


def test_a_move_to_the_same_state_emits_nothing(app, db):
    connection = make_connection()
    endpoint()
    state.set_state(connection, ConnectionState.HEALTHY, NOW)
    state.set_state(connection, ConnectionState.HEALTHY, NOW, cause=None)
    db.session.commit()
    assert events() == []


def test_a_rolled_back_state_change_emits_nothing(app, db):
    """The outbox: the event is part of the change's transaction, so it goes when the change goes."""
    connection = make_connection()
    endpoint()
    state.set_state(connection, ConnectionState.NEEDS_RECONNECT, NOW, cause=CauseId.PASSWORD_CHANGED)
    db.session.flush()  # written, not committed
    assert len(events()) == 1
    db.session.rollback()
    assert events() == [] and db.session.scalar(select(func.count(WebhookDelivery.id))) == 0
    db.session.refresh(connection)
    assert connection.state == "healthy"
    state.set_state(connection, ConnectionState.NEEDS_RECONNECT, NOW, cause=CauseId.PASSWORD_CHANGED)
    db.session.commit()
    assert [event.type for event in events()] == ["connection.state_changed"]


def test_one_delivery_per_enabled_endpoint_subscribed_to_the_type(app, db):
    connection = make_connection()
    wants_changes = endpoint(types=["connection.state_changed"], url="https://a.example/hooks")
    wants_all = endpoint(url="https://b.example/hooks")
    endpoint(types=["connection.reconnected"], url="https://c.example/hooks")
    switched_off = endpoint(types=["connection.state_changed"], url="https://d.example/hooks")
    assert webhooks.disable_endpoint(switched_off.id, NOW)
    state.set_state(connection, ConnectionState.DEGRADED, NOW, cause=CauseId.RATE_LIMITED)
    db.session.commit()
    [event] = events()
    deliveries = db.session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.endpoint_id)).all()
    assert [(d.endpoint_id, d.status, d.attempts, d.next_attempt_at) for d in deliveries] == [
        (wants_changes.id, "pending", 0, NOW),
        (wants_all.id, "pending", 0, NOW),
    ]
    assert {d.webhook_event_id for d in deliveries} == {event.id}


def test_no_endpoint_no_event(app, db):
    connection = make_connection()
    endpoint(types=["connection.reconnected"])
    state.set_state(connection, ConnectionState.DEGRADED, NOW, cause=CauseId.RATE_LIMITED)
    db.session.commit()
    assert events() == []


def test_a_disconnection_carries_the_diagnosis_stored_in_its_transaction(app, db):
    """Meta's deauthorize: state first, diagnosis after; the event holds the diagnosis committed with it."""
    connection = make_connection(instagram_user_id="17841400000000321", username="tea_house")
    endpoint()
    assert meta_requests.apply_deauthorize("17841400000000321", int(NOW.timestamp()), NOW) == 1
    [event] = events()
    assert (event.payload["previous_state"], event.payload["state"]) == ("healthy", "needs_reconnect")
    assert event.payload["cause"] == "app_removed"
    diagnosis = event.payload["diagnosis"]
    assert diagnosis["cause"] == "app_removed" and diagnosis["confidence"] == "certain"
    assert diagnosis["title"] and diagnosis["evidence"]
    assert diagnosis["diagnosed_at"] == "2026-11-26T12:00:00Z"
    db.session.refresh(connection)
    assert connection.diagnosis["causes"][0]["cause"] == "app_removed"


def test_a_connection_becoming_expiring_emits_expiring_too(app, db):
    connection = make_connection(expires_at=NOW + timedelta(days=3))
    endpoint()
    state.set_state(connection, ConnectionState.EXPIRING, NOW, cause=CauseId.PROVIDER_ERROR)
    db.session.commit()
    assert [event.type for event in events()] == ["connection.state_changed", "connection.expiring"]
    expiring = events("connection.expiring")[0]
    assert expiring.payload["token_expires_at"] == "2026-11-29T12:00:00Z"
    assert expiring.payload["state"] == "expiring" and expiring.payload["cause"] == "provider_error"


def test_a_connect_and_a_reconnect_emit_reconnected_with_their_kind(app, db, requests_mock):
    merchant = make_user(shop=make_shop(name="Bloom & Stem"))
    FakeInstagram(requests_mock).install()
    endpoint()

    def log_in(now):
        return linking.complete_connect(
            shop=merchant.shop,
            user=merchant,
            short_grant=TokenGrant(access_token="IGQVshort"),
            client=app.extensions["instagram_client"],
            vault=app.extensions["token_vault"],
            now=now,
            client_fingerprint=FINGERPRINT,
            policy=Policy(),
        )

    log_in(NOW)
    connection = state.connection_for(merchant.shop)
    state.set_state(connection, ConnectionState.NEEDS_RECONNECT, NOW, cause=CauseId.PASSWORD_CHANGED)
    db.session.commit()
    log_in(NOW + timedelta(days=1))
    assert [(e.type, e.payload.get("kind"), e.payload["previous_state"]) for e in events()] == [
        ("connection.state_changed", None, "not_connected"),
        ("connection.reconnected", "connected", "not_connected"),
        ("connection.state_changed", None, "healthy"),
        ("connection.state_changed", None, "needs_reconnect"),
        ("connection.reconnected", "reconnected", "needs_reconnect"),
    ]
    assert all(event.payload["username"] == "bloom_and_stem" for event in events())
    assert events("connection.access_renewed") == []  # Instagram Login has no access window to renew


def renew_facebook_access(app, connection, user, expires_at):
    return linking.apply_new_token(
        connection,
        Profile(user_id=connection.instagram_user_id, username=connection.username),
        None,
        ("instagram_basic", "pages_show_list"),
        "EAAnew-page-token-0123456789abcdef",
        expires_at,
        user,
        NOW,
        FINGERPRINT,
        app.extensions["token_vault"],
        Policy(),
        facebook=linking.FacebookPageLink(
            facebook_user_id=connection.facebook_user_id,
            page_id=connection.facebook_page_id,
            page_name=connection.facebook_page_name,
            page_tasks=("MANAGE",),
            user_token="EAAuser-token-0123456789abcdef",
        ),
    )


def test_renewed_facebook_access_emits_access_renewed(app, db):
    merchant = make_user()
    old_end = NOW + timedelta(days=5)
    connection = make_facebook_connection(merchant.shop, expires_at=old_end, state="expiring")
    endpoint()
    assert renew_facebook_access(app, connection, merchant, NOW + timedelta(days=90)) == "reconnected"
    db.session.commit()
    assert [event.type for event in events()] == [
        "connection.state_changed",
        "connection.reconnected",
        "connection.access_renewed",
    ]
    renewed = events("connection.access_renewed")[0]
    assert renewed.payload["login_path"] == "facebook"
    assert renewed.payload["previous_expires_at"] == "2026-12-01T12:00:00Z"
    assert renewed.payload["token_expires_at"] == "2027-02-24T12:00:00Z"
    assert "EAA" not in str([event.payload for event in events()])


def test_a_facebook_reconnect_that_did_not_move_the_end_renewed_nothing(app, db):
    merchant = make_user()
    end = NOW + timedelta(days=60)
    connection = make_facebook_connection(merchant.shop, expires_at=end)
    endpoint()
    renew_facebook_access(app, connection, merchant, end)
    db.session.commit()
    assert [event.type for event in events()] == ["connection.reconnected"]


def test_a_data_deletion_blanks_the_account_in_stored_events(app, db):
    connection = make_connection(instagram_user_id="17841400000000654", username="tea_house")
    endpoint()
    state.set_state(connection, ConnectionState.DEGRADED, NOW, cause=CauseId.RATE_LIMITED)
    db.session.commit()
    meta_requests.request_data_deletion("17841400000000654", int(NOW.timestamp()), NOW + timedelta(minutes=1))
    assert [event.payload["username"] for event in events()] == [None, None]
    assert events()[1].payload["state"] == "not_connected"


def test_rotating_the_keys_re_encrypts_endpoint_secrets_too(app, db):
    """Promise 13 reaches the signing secrets: after a rotation the old key can go and signing still works."""
    created, secret = webhooks.create_endpoint(
        url="https://platform.example/hooks",
        description="",
        event_types=["connection.expiring"],
        created_by="t",
        now=NOW,
    )
    broken = endpoint(url="https://platform.example/other")
    db.session.execute(
        update(WebhookEndpoint).where(WebhookEndpoint.id == broken.id).values(secret_ciphertext="gAAAAA-garbage")
    )
    db.session.commit()
    new_key = Fernet.generate_key().decode()
    report = rotate_token_keys(TokenVault([new_key, TEST_TOKEN_KEY]))
    assert report.rotated == 1 and report.failed == [f"webhook endpoint secret {broken.id}"]
    db.session.refresh(created)
    assert TokenVault([new_key]).decrypt(created.secret_ciphertext) == secret
