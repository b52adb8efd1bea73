"""Delivering webhooks: signed as Standard Webhooks receivers verify, retried with backoff for 24 h, fenced claims."""

from __future__ import annotations

import logging
import random
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
import requests
from sqlalchemy import select, update
from standardwebhooks.webhooks import WebhookVerificationError

from testbed.servers import free_port
from tests.factories import make_connection
from tests.webhook_helpers import Receiver, verify
from webapp.extensions import db as _db
from webapp.models import ConnectionState, WebhookDelivery, WebhookEvent
from webapp.services import webhook_delivery, webhooks
from webapp.services.connections import state
from webapp.services.connections.causes import CauseId
from webapp.services.keepalive.worker import Worker

URL = "https://platform.example/hooks/instagram"
CANARY_TOKEN = "IGAAcanary-token-for-the-webhook-logs-0123456789"


def real_now() -> datetime:
    """Signatures are checked against the receiver's real clock (5 minutes' tolerance)."""
    return datetime.now(UTC)


def queue_event(now: datetime, url: str = URL, types=("connection.state_changed",)):
    """An endpoint, and a connection whose state change queued one delivery to it."""
    endpoint, secret = webhooks.create_endpoint(
        url=url, description="sync", event_types=list(types), created_by="test", now=now
    )
    connection = make_connection(token=CANARY_TOKEN, username="tea_house")
    state.set_state(connection, ConnectionState.NEEDS_RECONNECT, now, cause=CauseId.PASSWORD_CHANGED)
    _db.session.commit()
    event = _db.session.scalar(select(WebhookEvent))
    return endpoint, secret, event


def the_delivery() -> WebhookDelivery:
    _db.session.expire_all()
    return _db.session.scalar(select(WebhookDelivery))


def deliver(app, now, **kwargs):
    return webhook_delivery.deliver(app, now, rng=random.Random(7), **kwargs)


def test_a_delivery_verifies_with_the_library_exactly_as_a_receiver_does(app, requests_mock):
    now = real_now()
    _, secret, event = queue_event(now)
    requests_mock.post(URL, status_code=200)
    assert deliver(app, now) == {"delivered": 1}
    request = requests_mock.last_request
    headers = dict(request.headers)
    body = verify(secret, request.body, headers)
    assert headers["webhook-id"] == event.event_id
    assert headers["Content-Type"] == "application/json"
    assert body["type"] == "connection.state_changed"
    assert body["timestamp"] == webhooks.timestamp(event.occurred_at)
    assert body["data"]["previous_state"] == "healthy" and body["data"]["state"] == "needs_reconnect"
    assert body["data"]["cause"] == "password_changed" and body["data"]["username"] == "tea_house"
    assert CANARY_TOKEN not in request.body.decode()
    delivery = the_delivery()
    assert (delivery.status, delivery.attempts, delivery.last_response_code) == ("delivered", 1, 200)
    assert delivery.delivered_at is not None and delivery.next_attempt_at is None and delivery.lease_expires_at is None


def test_the_receiver_refuses_a_tampered_body_a_wrong_secret_and_an_old_timestamp(app, requests_mock):
    now = real_now()
    _, secret, _ = queue_event(now)
    requests_mock.post(URL, status_code=200)
    deliver(app, now)
    request = requests_mock.last_request
    headers = dict(request.headers)
    verify(secret, request.body, headers)  # the genuine one passes
    tampered = request.body.replace(b"needs_reconnect", b"healthy")
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        verify(secret, tampered, headers)
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        verify(webhooks.new_secret(), request.body, headers)
    replayed_later = headers | {"webhook-timestamp": str(int(now.timestamp()) - 600)}
    with pytest.raises(WebhookVerificationError, match="too old"):
        verify(secret, request.body, replayed_later)
    # An attempt signed ten minutes ago (a replay of a captured request) is too old as it stands.
    old = webhook_delivery.signed_headers(
        secret, headers["webhook-id"], request.body.decode(), now - timedelta(minutes=10)
    )
    with pytest.raises(WebhookVerificationError, match="too old"):
        verify(secret, request.body, old)


def test_a_failing_receiver_is_retried_with_growing_jittered_waits_then_delivered(app, requests_mock):
    now = real_now()
    _, secret, event = queue_event(now)
    requests_mock.post(
        URL,
        [
            {"status_code": 500, "text": "Internal error: database down"},
            {"exc": requests.exceptions.ConnectTimeout("connect timed out")},
            {"status_code": 503, "reason": "Service Unavailable"},
            {"status_code": 202},
        ],
    )
    moment, waits = now, []
    for expected_code, expected_error in ((500, "HTTP 500"), (None, "Timed out: connect timed out"), (503, "HTTP 503")):
        assert deliver(app, moment) == {"retry": 1}
        delivery = the_delivery()
        assert delivery.status == "pending" and delivery.last_response_code == expected_code
        assert expected_error in delivery.last_error
        waits.append(delivery.next_attempt_at - moment)
        assert deliver(app, delivery.next_attempt_at - timedelta(seconds=1)) == {}  # not due yet: nothing sent
        moment = delivery.next_attempt_at
    assert deliver(app, moment) == {"delivered": 1}
    # 30 s doubling, each within ±25 % (plus the run's own few milliseconds).
    for attempt, wait in enumerate(waits, start=1):
        base = 30 * 2 ** (attempt - 1)
        assert 0.75 * base <= wait.total_seconds() <= 1.25 * base + 1, (attempt, wait)
    assert requests_mock.call_count == 4
    assert {request.headers["webhook-id"] for request in requests_mock.request_history} == {event.event_id}
    assert len({request.body for request in requests_mock.request_history}) == 1  # the same body every time
    for request in requests_mock.request_history[-1:]:
        verify(secret, request.body, dict(request.headers))
    delivery = the_delivery()
    assert (delivery.status, delivery.attempts, delivery.last_response_code, delivery.last_error) == (
        "delivered",
        4,
        202,
        None,
    )


def test_backoff_doubles_to_two_hours_with_jitter():
    rng = random.Random(1)
    for attempts, base in ((1, 30), (2, 60), (3, 120), (8, 3840), (9, 7200), (30, 7200)):
        for _ in range(50):
            assert 0.75 * base <= webhook_delivery.backoff(attempts, rng).total_seconds() <= 1.25 * base


def test_a_receiver_still_failing_after_24_hours_is_given_up(app, requests_mock):
    now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    queue_event(now)
    requests_mock.post(URL, status_code=500)
    moment, attempts = now, 0
    while True:
        results = deliver(app, moment)
        attempts += 1
        delivery = the_delivery()
        if delivery.status == "failed":
            break
        assert results == {"retry": 1} and delivery.next_attempt_at <= now + timedelta(hours=24)
        moment = delivery.next_attempt_at
        assert attempts < 60
    assert moment == now + timedelta(hours=24)  # the last try comes right at the window's end
    assert results == {"failed": 1}
    assert delivery.next_attempt_at is None and delivery.last_response_code == 500
    assert 15 <= delivery.attempts == attempts <= 30
    assert deliver(app, now + timedelta(days=3)) == {}  # failed stays failed


def test_a_redirect_is_not_followed_and_counts_as_a_failure(app, requests_mock):
    now = real_now()
    queue_event(now)
    requests_mock.post(URL, status_code=302, headers={"Location": "https://elsewhere.example/"})
    assert deliver(app, now) == {"retry": 1}
    assert the_delivery().last_error.startswith("HTTP 302")
    assert requests_mock.call_count == 1


def test_send_again_requeues_under_the_same_event_id(app, requests_mock):
    now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    _, _, event = queue_event(now)
    _db.session.execute(update(WebhookDelivery).values(status="failed", attempts=19, next_attempt_at=None))
    _db.session.commit()
    delivery = webhooks.send_again(the_delivery().id, now + timedelta(days=2))
    assert (delivery.status, delivery.attempts, delivery.next_attempt_at) == ("pending", 0, now + timedelta(days=2))
    requests_mock.post(URL, status_code=200)
    assert deliver(app, now + timedelta(days=2)) == {"delivered": 1}
    assert requests_mock.last_request.headers["webhook-id"] == event.event_id
    # A fresh window: it would be retried for another 24 h from the resend.
    assert the_delivery().queued_at == now + timedelta(days=2)


def test_send_again_refuses_a_disabled_endpoint_and_a_delivery_in_flight(app):
    now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    endpoint, _, _ = queue_event(now)
    delivery_id = the_delivery().id
    _db.session.execute(update(WebhookDelivery).values(status="sending"))
    _db.session.commit()
    with pytest.raises(webhooks.DeliveryNotRequeued, match="being sent right now"):
        webhooks.send_again(delivery_id, now)
    webhooks.disable_endpoint(endpoint.id, now)
    with pytest.raises(webhooks.DeliveryNotRequeued, match="disabled"):
        webhooks.send_again(delivery_id, now)
    with pytest.raises(webhooks.DeliveryNotRequeued, match="no webhook delivery"):
        webhooks.send_again(delivery_id + 100, now)


def test_a_disabled_endpoint_is_never_called_and_its_waiting_deliveries_fail(app, requests_mock):
    now = real_now()
    endpoint, _, _ = queue_event(now)
    assert webhooks.disable_endpoint(endpoint.id, now)
    assert not webhooks.disable_endpoint(endpoint.id, now)  # already off
    assert deliver(app, now) == {}
    assert requests_mock.call_count == 0
    delivery = the_delivery()
    assert delivery.status == "failed" and "disabled" in delivery.last_error


def test_a_claim_whose_worker_died_is_sent_again_once_its_lease_ran_out(app, requests_mock):
    """At least once: a worker killed mid-send never reports; after the lease, another sends it again."""
    now = real_now()
    _, _, event = queue_event(now)
    lease = webhook_delivery.delivery_lease(app.config)
    [lost] = webhook_delivery._claim(now, lease, 10)  # the worker that died right after claiming
    requests_mock.post(URL, status_code=200)
    assert deliver(app, now + lease - timedelta(seconds=1)) == {}  # still its claim: nobody else sends
    assert requests_mock.call_count == 0
    later = now + lease + timedelta(seconds=1)
    assert deliver(app, later) == {"requeued": 1, "delivered": 1}
    assert requests_mock.last_request.headers["webhook-id"] == event.event_id
    # The dead worker's claim is fenced out: its late outcome changes nothing.
    late = {"status": "pending", "next_attempt_at": later, "last_response_code": None, "last_error": "late"}
    assert not webhook_delivery._record_outcome(lost, late)
    assert the_delivery().status == "delivered"


def test_a_late_outcome_of_a_requeued_claim_nobody_took_since_still_lands(app):
    now = real_now()
    queue_event(now)
    lease = webhook_delivery.delivery_lease(app.config)
    [claim] = webhook_delivery._claim(now, lease, 10)
    assert webhook_delivery._requeue_lost_claims(now + lease + timedelta(seconds=1)) == 1
    delivered = {"status": "delivered", "delivered_at": now, "next_attempt_at": None, "last_response_code": 200}
    assert webhook_delivery._record_outcome(claim, delivered)
    assert the_delivery().status == "delivered"


def test_an_unreadable_secret_is_retried_without_calling_the_receiver(app, requests_mock):
    now = real_now()
    queue_event(now)
    _db.session.execute(update(webhooks.WebhookEndpoint).values(secret_ciphertext="gAAAAA-not-a-fernet-token"))
    _db.session.commit()
    assert deliver(app, now) == {"retry": 1}
    assert requests_mock.call_count == 0
    assert "TOKEN_ENCRYPTION_KEYS" in the_delivery().last_error


def test_a_trickling_receiver_is_cut_at_the_deadline(app):
    """Promise 35 for webhooks: a real server on loopback answering a byte every 0.2 s (40 s in all) is cut at 1 s."""
    app.config["WEBHOOK_TIMEOUT"] = 1.0
    with Receiver(status=200, trickle=0.2) as receiver:
        now = real_now()
        queue_event(now, url=receiver.url())
        started = time.monotonic()
        assert deliver(app, now) == {"retry": 1}
        elapsed = time.monotonic() - started
        assert len(receiver.received) == 1
    assert elapsed < 2.5, elapsed
    delivery = the_delivery()
    assert delivery.status == "pending" and "No complete answer in time" in delivery.last_error
    assert delivery.lease_expires_at is None


def test_a_slow_receiver_does_not_hold_up_the_worker(app):
    """The worker's tick starts the webhooks' own thread and goes on; the delivery lands when the receiver answers."""
    answer = threading.Event()
    with Receiver(status=204, hold=answer) as receiver:
        now = real_now()
        _, secret, _ = queue_event(now, url=receiver.url())
        worker = Worker(app, concurrency=1)
        worker.tick()  # returns while the receiver has not answered (it waits for the test)
        deadline = time.monotonic() + 10
        while not receiver.received and time.monotonic() < deadline:
            time.sleep(0.02)
        assert the_delivery().status == "sending"  # at the receiver, which is still thinking
        answer.set()
        worker.webhooks.wait()
        [request] = receiver.received
    verify(secret, request.body, request.headers)
    assert the_delivery().status == "delivered"


def test_parallel_senders_deliver_each_event_once_per_endpoint(app):
    """Three senders (threads with their own database connections), three endpoints, forty events each."""
    with Receiver(status=204, delay=0.02) as receiver:
        now = real_now()
        urls = [receiver.url(f"/hooks/{name}") for name in ("a", "b", "c")]
        for url in urls:
            webhooks.create_endpoint(
                url=url, description="", event_types=["connection.state_changed"], created_by="t", now=now
            )
        for _ in range(40):
            connection = make_connection()
            state.set_state(connection, ConnectionState.DEGRADED, now, cause=CauseId.PROVIDER_ERROR)
        _db.session.commit()
        errors = []

        def sender():
            try:
                with app.app_context():
                    for _ in range(100):
                        if not webhook_delivery.deliver(app, real_now(), limit=10):
                            break
                    _db.session.remove()
            except Exception as error:  # noqa: BLE001 - surfaced below
                errors.append(error)

        threads = [threading.Thread(target=sender) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        counts = receiver.per_endpoint_and_id()
    assert errors == []
    assert len(counts) == 120 and set(counts.values()) == {1}
    statuses = _db.session.scalars(select(WebhookDelivery.status)).all()
    assert statuses == ["delivered"] * 120


def test_no_secret_signature_or_token_reaches_a_log_record(app, caplog):
    """Promise 15's rule for webhooks: every logger at DEBUG (urllib3 too) during create, emit, fail and deliver."""
    caplog.set_level(logging.DEBUG)
    with Receiver(status=500) as receiver:
        now = real_now()
        _, secret, _ = queue_event(now, url=receiver.url())
        deliver(app, now)  # refused: logged as a warning
        receiver.status = 200
        deliver(app, the_delivery().next_attempt_at)
        signatures = [item.headers["webhook-signature"] for item in receiver.received]
    assert the_delivery().status == "delivered"
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert "webhook" in text and "urllib3" in {record.name.split(".")[0] for record in caplog.records}
    for secret_part in (secret, secret.removeprefix("whsec_"), CANARY_TOKEN, *signatures):
        assert secret_part not in text
    stored = "\n".join(str(row) for row in _db.session.execute(select(WebhookDelivery.__table__)))
    assert secret not in stored and CANARY_TOKEN not in stored


def test_a_refused_connection_is_said_in_a_few_words(app):
    nobody_listens = f"http://127.0.0.1:{free_port()}/hooks"
    now = real_now()
    queue_event(now, url=nobody_listens)
    assert deliver(app, now) == {"retry": 1}
    delivery = the_delivery()
    assert (delivery.last_response_code, delivery.last_error) == (None, "Could not connect: Connection refused")
