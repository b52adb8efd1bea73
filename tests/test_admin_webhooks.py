"""The admins' webhook pages: endpoints (secret shown once), disable, the delivery log and "Send again"."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from tests.factories import make_connection, make_user
from webapp import clock
from webapp.extensions import db as _db
from webapp.models import AuditEntry, ConnectionState, WebhookDelivery, WebhookEndpoint
from webapp.services import webhooks
from webapp.services.connections import state
from webapp.services.connections.causes import CauseId

SECRET = re.compile(r"whsec_[A-Za-z0-9+/=]{40,}")
PAGES = ["/admin/webhooks/", "/admin/webhooks/deliveries"]


@pytest.fixture
def admin(auth):
    user = make_user(role="admin", email="boss@support.example")
    auth.login_as(user)
    return user


def add_endpoint(client, auth, **fields):
    form = {
        "csrf_token": auth.csrf_token("/admin/webhooks/"),
        "url": "https://platform.example/hooks/instagram",
        "description": "Product sync",
        "event_types": ["connection.state_changed", "connection.reconnected"],
        **fields,
    }
    return client.post("/admin/webhooks/", data=form)


def audit_actions() -> list[tuple[str, str | None]]:
    return [(row.action, row.details) for row in _db.session.scalars(select(AuditEntry).order_by(AuditEntry.id))]


@pytest.mark.parametrize("role", ["merchant", "support"])
@pytest.mark.parametrize("path", PAGES)
def test_only_admins_see_the_webhook_pages(client, auth, role, path):
    auth.login_as(make_user(role=role))
    assert client.get(path).status_code == 403
    assert "Webhooks</a>" not in client.get("/", follow_redirects=True).get_data(as_text=True)


def test_admins_find_webhooks_in_the_nav(client, admin):
    page = client.get("/admin/staff").get_data(as_text=True)
    assert 'href="/admin/webhooks/">Webhooks</a>' in page


def test_an_endpoint_added_on_the_page_shows_its_secret_once(client, auth, db, admin, app):
    response = add_endpoint(client, auth)
    page = response.get_data(as_text=True)
    assert response.status_code == 201
    assert response.headers["Cache-Control"] == "no-store"
    [secret] = SECRET.findall(page)
    endpoint = db.session.scalar(select(WebhookEndpoint))
    assert app.extensions["token_vault"].decrypt(endpoint.secret_ciphertext) == secret
    assert endpoint.types == ["connection.state_changed", "connection.reconnected"]
    assert endpoint.created_by == "boss@support.example (admin)"
    again = client.get("/admin/webhooks/").get_data(as_text=True)
    assert "https://platform.example/hooks/instagram" in again and "Product sync" in again
    assert SECRET.search(again) is None and secret not in again
    assert "whsec" not in str(client.get_cookie("session").value if client.get_cookie("session") else "")
    [(action, details)] = audit_actions()[-1:]
    assert action == "webhooks.endpoint_created" and "platform.example" in details and secret not in details


@pytest.mark.parametrize(
    "fields,words",
    [
        ({"url": "ftp://platform.example/hooks"}, "The URL must start with"),
        ({"url": ""}, "Enter the URL"),
        ({"event_types": ["connection.state_changed", "connection.deleted"]}, "Unknown event type connection.deleted"),
        ({"event_types": []}, "Choose at least one event type"),
    ],
)
def test_a_refused_endpoint_is_explained_beside_its_field(client, auth, db, admin, fields, words):
    response = add_endpoint(client, auth, **fields)
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert words in page and 'class="field-error"' in page
    assert SECRET.search(page) is None
    assert db.session.scalar(select(WebhookEndpoint)) is None


def test_disabling_an_endpoint_is_audited_and_refuses_a_second_time(client, auth, db, admin):
    add_endpoint(client, auth)
    endpoint = db.session.scalar(select(WebhookEndpoint))
    token = auth.csrf_token("/admin/webhooks/")
    response = client.post(f"/admin/webhooks/{endpoint.id}/disable", data={"csrf_token": token})
    assert response.status_code == 302 and response.headers["Location"] == "/admin/webhooks/"
    db.session.refresh(endpoint)
    assert endpoint.disabled_at is not None
    assert audit_actions()[-1] == ("webhooks.endpoint_disabled", f"endpoint {endpoint.id}")
    page = client.post(f"/admin/webhooks/{endpoint.id}/disable", data={"csrf_token": token}, follow_redirects=True)
    assert "already disabled" in page.get_data(as_text=True)
    assert client.post("/admin/webhooks/999/disable", data={"csrf_token": token}).status_code == 404


def test_state_changing_webhook_routes_need_csrf(client, db, admin):
    endpoint, _ = webhooks.create_endpoint(
        url="https://platform.example/hooks",
        description="",
        event_types=["connection.expiring"],
        created_by="t",
        now=clock.now(),
    )
    assert client.post("/admin/webhooks/", data={"url": "https://x.example/"}).status_code == 400
    assert client.post(f"/admin/webhooks/{endpoint.id}/disable").status_code == 400
    assert client.post("/admin/webhooks/deliveries/1/send-again").status_code == 400
    db.session.refresh(endpoint)
    assert endpoint.enabled and len(webhooks.list_endpoints()) == 1


def failed_delivery(now) -> WebhookDelivery:
    webhooks.create_endpoint(
        url="https://platform.example/hooks",
        description="",
        event_types=["connection.state_changed"],
        created_by="t",
        now=now,
    )
    connection = make_connection()
    state.set_state(connection, ConnectionState.NEEDS_RECONNECT, now, cause=CauseId.PASSWORD_CHANGED)
    _db.session.commit()
    _db.session.execute(
        update(WebhookDelivery).values(
            status="failed", attempts=19, last_response_code=503, last_error="HTTP 503 Service Unavailable: busy"
        )
    )
    _db.session.commit()
    return _db.session.scalar(select(WebhookDelivery))


def test_the_delivery_log_shows_codes_attempts_and_next_attempt(client, db, admin, pinned_clock):
    delivery = failed_delivery(pinned_clock)
    page = client.get("/admin/webhooks/deliveries").get_data(as_text=True)
    assert "connection.state_changed" in page and delivery.event.event_id in page
    assert "HTTP 503" in page and "busy" in page and "19 attempts" in page
    assert "Send again" in page
    db.session.execute(
        update(WebhookDelivery).values(status="pending", next_attempt_at=pinned_clock + timedelta(minutes=4))
    )
    db.session.commit()
    page = client.get("/admin/webhooks/deliveries?status=pending").get_data(as_text=True)
    assert (pinned_clock + timedelta(minutes=4)).isoformat() in page or "2026-11-26T12:04" in page
    assert "No deliveries match" in client.get("/admin/webhooks/deliveries?status=delivered").get_data(as_text=True)
    assert client.get("/admin/webhooks/deliveries?status=lost").status_code == 404
    assert client.get("/admin/webhooks/deliveries?endpoint_id=99999999999999999999").status_code == 404


def test_send_again_requeues_the_same_event_and_is_audited(client, auth, db, admin, pinned_clock):
    delivery = failed_delivery(pinned_clock)
    event_id = delivery.event.event_id
    token = auth.csrf_token("/admin/webhooks/deliveries")
    response = client.post(
        f"/admin/webhooks/deliveries/{delivery.id}/send-again", data={"csrf_token": token, "status": "failed"}
    )
    assert response.status_code == 302
    assert response.headers["Location"] == "/admin/webhooks/deliveries?status=failed"
    db.session.expire_all()
    delivery = db.session.get(WebhookDelivery, delivery.id)
    assert (delivery.status, delivery.attempts, delivery.next_attempt_at) == ("pending", 0, pinned_clock)
    assert delivery.event.event_id == event_id
    action, details = audit_actions()[-1]
    assert action == "webhooks.delivery_sent_again" and event_id in details
    entry = db.session.scalar(select(AuditEntry).order_by(AuditEntry.id.desc()))
    assert entry.subject_shop_id == delivery.event.shop_id and entry.actor_id == admin.id
    assert client.post("/admin/webhooks/deliveries/999/send-again", data={"csrf_token": token}).status_code == 404


def test_send_again_for_a_disabled_endpoint_says_why_not(client, auth, db, admin, pinned_clock):
    delivery = failed_delivery(pinned_clock)
    webhooks.disable_endpoint(delivery.endpoint_id, pinned_clock)
    token = auth.csrf_token("/admin/webhooks/deliveries")
    page = client.post(
        f"/admin/webhooks/deliveries/{delivery.id}/send-again", data={"csrf_token": token}, follow_redirects=True
    ).get_data(as_text=True)
    assert "Not sent again. Its endpoint is disabled" in page
    db.session.expire_all()
    assert db.session.get(WebhookDelivery, delivery.id).status == "failed"
