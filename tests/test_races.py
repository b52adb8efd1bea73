"""Every writer wins against a refresh in flight; calls to Meta end by one deadline (promises 33, 35).

The worker here is the real one (`Worker.claim` and `Worker.process` in a thread), talking over
loopback to a Meta stub that holds the refresh open until the test has done its write. On
PostgreSQL (TEST_DATABASE_URL) the worker thread and the test use separate connections, as two
processes would.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select

from testbed.meta_stub import MetaStub
from tests.conftest import TEST_TOKEN_KEY
from tests.factories import make_user
from webapp.extensions import db as _db
from webapp.models import InstagramConnection, PendingConnection
from webapp.services.connections import key_rotation, linking, meta_requests, state
from webapp.services.fingerprint import ClientFingerprint
from webapp.services.keepalive.policy import Policy
from webapp.services.keepalive.worker import Worker
from webapp.services.meta.client import InstagramClient, MetaApiError
from webapp.services.token_vault import TokenVault

INSTAGRAM_USER_ID = "17841400000000777"


@pytest.fixture
def stub():
    with MetaStub(latency=0.0) as stub:
        yield stub


def stub_client(stub: MetaStub, timeout: float = 5.0) -> InstagramClient:
    return InstagramClient(
        client_id="990011223344",
        client_secret="test-instagram-app-secret",
        api_base=stub.base_url,
        graph_base=stub.base_url,
        timeout=timeout,
    )


def due_for_refresh(app, merchant) -> InstagramConnection:
    """A healthy connection whose 8-day-old token is due for refresh, holding the stub's seed token."""
    now = datetime.now(UTC)
    connection = state.connection_for(merchant.shop)
    vault = app.extensions["token_vault"]
    state.store_token(
        connection,
        MetaStub.seed_token(connection.id),
        vault,
        issued_at=now - timedelta(days=8),
        expires_at=now + timedelta(days=52),
    )
    connection.instagram_user_id = INSTAGRAM_USER_ID
    connection.username = "bloom_and_stem"
    connection.connected_at = now - timedelta(days=8)
    connection.state = "healthy"
    connection.schedule(refresh_due_at=now - timedelta(minutes=1), check_due_at=now + timedelta(hours=6))
    _db.session.commit()
    return connection


def refresh_in_flight(app, stub: MetaStub):
    """Claim the due refresh and start it in a thread; return once Meta holds the call open."""
    worker = Worker(app, concurrency=1, client=stub_client(stub))
    claims = worker.claim()
    assert [claim.work for claim in claims] == ["refresh"]
    result: dict = {}
    thread = threading.Thread(target=lambda: result.setdefault("summary", worker.process(claims[0])))
    thread.start()
    return thread, result


def park_switch(app, merchant, now: datetime) -> str:
    """A second account the merchant authorised and is about to confirm (as the callback parks it)."""
    vault = app.extensions["token_vault"]
    token = "IGAAswitched-account-token-000000000001"
    profile = {"user_id": "17841400000000999", "username": "bloom_second", "name": "Second", "permissions": []}
    profile.update(profile_picture_url=None, account_type="BUSINESS")
    _db.session.add(
        PendingConnection(
            shop_id=merchant.shop.id,
            user_id=merchant.id,
            instagram_user_id="17841400000000999",
            username="bloom_second",
            profile_json=json.dumps(profile),
            token_ciphertext=vault.encrypt(token),
            token_expires_at=now + timedelta(days=60),
            created_at=now,
            expires_at=now + timedelta(minutes=15),
        )
    )
    _db.session.commit()
    return token


def write_disconnect(app, merchant, now):
    connection = state.connection_for(merchant.shop)
    linking.disconnect(connection, merchant, now)


def write_switch(app, merchant, now):
    linking.confirm_switch(
        shop=merchant.shop,
        user=merchant,
        vault=app.extensions["token_vault"],
        now=now,
        client_fingerprint=ClientFingerprint("203.0.113.0/24", "Firefox on Linux"),
        policy=Policy(),
    )


def write_deauthorize(app, merchant, now):
    meta_requests.apply_deauthorize(INSTAGRAM_USER_ID, int(now.timestamp()), now)


def write_data_deletion(app, merchant, now):
    meta_requests.request_data_deletion(INSTAGRAM_USER_ID, int(now.timestamp()), now)


NEW_KEY = Fernet.generate_key().decode()


def write_rotation(app, merchant, now):
    report = key_rotation.rotate_token_keys(TokenVault([NEW_KEY, TEST_TOKEN_KEY]))
    assert report.rotated == 1 and not report.failed


def check_disconnected(row, app, seed):
    assert (row.state, row.token_ciphertext) == ("not_connected", None)


def check_switched(row, app, seed):
    assert row.instagram_user_id == "17841400000000999" and row.state == "healthy"
    assert state.read_token(row, app.extensions["token_vault"]) == "IGAAswitched-account-token-000000000001"


def check_deauthorized(row, app, seed):
    assert (row.state, row.cause, row.token_ciphertext) == ("needs_reconnect", "app_removed", None)


def check_deleted(row, app, seed):
    assert (row.state, row.token_ciphertext, row.instagram_user_id, row.username) == ("not_connected", None, None, None)


def check_rotated(row, app, seed):
    # Still the token that was there when the rotation ran, readable with the new key alone.
    assert state.read_token(row, TokenVault([NEW_KEY])) == seed
    assert row.state == "healthy"


WRITERS = {
    "merchant disconnect": (write_disconnect, check_disconnected),
    "account switch": (write_switch, check_switched),
    "deauthorize callback": (write_deauthorize, check_deauthorized),
    "data deletion callback": (write_data_deletion, check_deleted),
    "key rotation": (write_rotation, check_rotated),
}


@pytest.mark.parametrize("writer", WRITERS)
def test_every_writer_wins_against_a_refresh_in_flight(app, db, stub, writer):
    """Promise 33: a refresh that started before the write cannot bring back what the write removed."""
    write, check = WRITERS[writer]
    merchant = make_user()
    connection = due_for_refresh(app, merchant)
    seed = MetaStub.seed_token(connection.id)
    now = datetime.now(UTC)
    if writer == "account switch":
        park_switch(app, merchant, now)
    with stub.hold("refresh_access_token") as held:
        thread, result = refresh_in_flight(app, stub)
        held.wait_for_call()
        write(app, merchant, now)
    thread.join(timeout=20)
    assert stub.refreshes[connection.id] == 1  # Meta did issue a new token...
    assert result["summary"] == "lease_lost"  # ...and the worker threw it away.
    db.session.expire_all()
    row = db.session.get(InstagramConnection, connection.id)
    check(row, app, seed)
    if row.token_ciphertext is not None:
        assert state.read_token(row, TokenVault([NEW_KEY, TEST_TOKEN_KEY])) not in stub.issued
    assert row.lease_owner is None or row.token_ciphertext is None


def test_a_writer_that_read_before_a_claim_writes_on_fresh_rows(app, db, stub):
    """Promise 33: a disconnect based on a read from before the worker's claim is run again, not lost."""
    merchant = make_user()
    connection = due_for_refresh(app, merchant)
    stale = db.session.get(InstagramConnection, connection.id)
    version_read = stale.version
    # The worker claims (moving the version) in another session while this one still holds the old row.
    claims = Worker(app, concurrency=1, client=stub_client(stub)).claim()
    assert claims and claims[0].version > version_read
    linking.disconnect(stale, merchant, datetime.now(UTC))
    db.session.expire_all()
    row = db.session.get(InstagramConnection, connection.id)
    assert (row.state, row.token_ciphertext) == ("not_connected", None)
    events = [event.kind for event in row.events]
    assert events.count("disconnected") == 1


def test_a_worker_gives_a_trickled_refresh_up_at_the_deadline(app, db, stub):
    """Promise 35: a reply sent one byte every 0.2 s ends by the 1.5 s deadline, not by the read timeout."""
    merchant = make_user()
    connection = due_for_refresh(app, merchant)
    stub.add_fault("trickle", path="refresh_access_token", interval=0.2)
    worker = Worker(app, concurrency=1, client=stub_client(stub, timeout=1.5))
    claims = worker.claim()
    started = time.monotonic()
    summary = worker.process(claims[0])
    elapsed = time.monotonic() - started
    assert summary == "transient"
    # The whole reply would take over 30 s at this pace; each byte arrives well within a read timeout.
    assert elapsed < 1.5 + 1.0, elapsed
    db.session.expire_all()
    row = db.session.get(InstagramConnection, connection.id)
    assert row.state == "degraded" and row.lease_owner is None
    assert "did not answer" in (row.last_error_message or "")


@pytest.mark.parametrize("close", [False, True], ids=["whole-reply-headers-too", "body-after-connection-close"])
def test_a_trickled_reply_ends_at_the_deadline(stub, close):
    """Promise 35: the deadline covers status line and headers, and holds when a Connection: close reply
    hands its socket over to the response."""
    stub.add_fault("trickle", close=close, interval=0.2)
    client = stub_client(stub, timeout=1.0)
    started = time.monotonic()
    with pytest.raises(MetaApiError) as raised:
        client.me(MetaStub.seed_token(1))
    assert time.monotonic() - started < 2.0
    assert getattr(raised.value, "failure", None) == "timeout"


def test_a_call_after_a_cut_one_is_not_cut_by_its_timer(stub):
    """Promise 35: a watch that ends before its deadline never cuts the pooled socket the next call uses."""
    # Margins of 0.7 s either side: a loaded CI machine (4 test processes) once took 0.2 s longer.
    client = stub_client(stub, timeout=1.0)
    client.me(MetaStub.seed_token(1))  # ends at once; its timer is cancelled, its socket goes back to the pool
    stub.add_fault("latency", seconds=1.7)
    with pytest.raises(MetaApiError):
        client.me(MetaStub.seed_token(1))  # cut at 1 s by its own watch
    stub.add_fault("latency", seconds=0.3)
    assert client.me(MetaStub.seed_token(1)).user_id == "1"  # 0.3 s < 1 s: answered in full


def test_a_worker_never_reclaims_a_row_it_has_in_flight(app, db, stub):
    """Promise 35: even once its lease has run out, a row still in flight is not claimed again by its worker."""
    merchant = make_user()
    connection = due_for_refresh(app, merchant)
    worker = Worker(app, concurrency=1, client=stub_client(stub))
    first = worker.claim()
    assert len(first) == 1
    # The lease runs out while the call is (say) still going.
    row = db.session.get(InstagramConnection, connection.id)
    row.lease_expires_at = datetime.now(UTC) - timedelta(seconds=1)
    db.session.commit()
    assert worker.claim(in_flight=frozenset({connection.id})) == []
    assert len(worker.claim()) == 1  # without the in-flight set it would have been claimed again


def test_the_lease_outlives_the_deadline_at_start_up():
    """Promise 4/35: a lease shorter than the worst-case call stops start-up with a sentence."""
    from webapp.config import ConfigError, check_lease

    with pytest.raises(ConfigError, match="WORKER_LEASE_SECONDS"):
        check_lease({"INSTAGRAM_HTTP_TIMEOUT": 60.0, "WORKER_LEASE_SECONDS": 90})
    check_lease({"INSTAGRAM_HTTP_TIMEOUT": 10.0, "WORKER_LEASE_SECONDS": 120})


def test_rotation_never_overwrites_a_newer_token(app, db):
    """Finding 3 (promise 33): a token written between the rotation's read and its write stands."""
    merchant = make_user()
    connection = due_for_refresh(app, merchant)
    vault = app.extensions["token_vault"]
    rotating = TokenVault([NEW_KEY, TEST_TOKEN_KEY])
    original_rotate = rotating.rotate

    def rotate_while_a_refresh_lands(ciphertext: str) -> str:
        rotated = original_rotate(ciphertext)
        # A refresh lands between the rotation's read and its write.
        with app.app_context():
            row = _db.session.get(InstagramConnection, connection.id)
            if state.read_token(row, vault) != "stub-fresh-token-after-refresh":
                now = datetime.now(UTC)
                state.store_token(
                    row, "stub-fresh-token-after-refresh", vault, issued_at=now, expires_at=now + timedelta(days=60)
                )
                _db.session.commit()
        return rotated

    rotating.rotate = rotate_while_a_refresh_lands
    report = key_rotation.rotate_token_keys(rotating)
    db.session.expire_all()
    row = db.session.scalar(select(InstagramConnection).where(InstagramConnection.id == connection.id))
    assert state.read_token(row, TokenVault([NEW_KEY])) == "stub-fresh-token-after-refresh"
    assert report.rotated == 1 and report.changed_meanwhile == 0
