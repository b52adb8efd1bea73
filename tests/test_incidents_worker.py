"""The real worker against a fault-injecting Meta stub: an outage across the fleet opens one incident.

No merchant is mailed for it, `incident.opened` goes to the platform, and once Meta answers again
the incident closes itself (`incident.closed`). A single shop failing alone opens none, and its
merchant is warned as before. Runs on SQLite and on PostgreSQL (TEST_DATABASE_URL); the last test
runs two worker processes on PostgreSQL.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import create_engine, func, select, text

from testbed.fleet import seed_due_connections
from testbed.meta_stub import MetaStub
from tests.conftest import TEST_TOKEN_KEY
from tests.factories import make_connection, make_user
from tests.test_races import stub_client
from tests.test_worker_processes import needs_postgres, rows, start_worker, worker_env
from webapp.extensions import db as _db
from webapp.models import (
    AuditEntry,
    ConnectionState,
    FleetIncident,
    InstagramConnection,
    OutboundMail,
    WebhookEvent,
)
from webapp.services import webhooks
from webapp.services.connections.causes import CauseId
from webapp.services.keepalive.worker import Worker

START = datetime(2026, 11, 26, 12, 0, 5, tzinfo=UTC)
FLEET = 12


@pytest.fixture
def app_config(app_config):
    return {
        **app_config,
        "INCIDENT_MIN_CONNECTIONS": 5,
        "INCIDENT_CLOSE_MINUTES": 5,
        "BACKOFF_BASE_SECONDS": 120,
    }


@pytest.fixture
def stub():
    with MetaStub(latency=0.0) as stub:
        yield stub


class Clock:
    def __init__(self, at: datetime):
        self.at = at

    def __call__(self) -> datetime:
        return self.at

    def advance(self, **delta) -> None:
        self.at += timedelta(**delta)


def shops_near_expiry(app, count: int) -> list[int]:
    """Shops with a merchant each, whose token (issued 55 days ago) ends in 5 days: renewal is due now,
    and if it fails, the merchant is owed an expiry warning (EXPIRY_WARNING_NOTICE_DAYS 10)."""
    ids = []
    for number in range(count):
        merchant = make_user()
        connection = make_connection(
            merchant.shop,
            username=f"shop{number}",
            issued_at=START - timedelta(days=55),
            refresh_due_at=START - timedelta(minutes=1),
        )
        ids.append(connection.id)
    vault_token = {connection_id: MetaStub.seed_token(connection_id) for connection_id in ids}
    vault = app.extensions["token_vault"]
    for connection in _db.session.scalars(select(InstagramConnection)):
        connection.token_ciphertext = vault.encrypt(vault_token[connection.id])
    _db.session.commit()
    return ids


def subscribe() -> None:
    webhooks.create_endpoint(
        url="http://127.0.0.1:9/hooks",  # nobody listens: the events are what this test reads
        description="the platform",
        event_types=list(webhooks.EVENT_TYPES),
        created_by="test",
        now=START,
    )


def run(worker: Worker) -> None:
    worker.run(threading.Event(), until_idle=True)
    _db.session.remove()


def fleet_events(type: str) -> list[WebhookEvent]:
    return list(_db.session.scalars(select(WebhookEvent).where(WebhookEvent.type == type)))


def test_an_outage_across_the_fleet_opens_one_incident_mails_no_one_and_closes_itself(app, db, stub):
    subscribe()
    ids = shops_near_expiry(app, FLEET)
    clock = Clock(START)
    worker = Worker(app, concurrency=4, poll_seconds=0, client=stub_client(stub), clock=clock)
    stub.add_fault("status", times=None, status=502)  # Meta answers every call with a load balancer's 502

    run(worker)
    assert worker.totals["transient"] == FLEET
    [incident] = _db.session.scalars(select(FleetIncident)).all()
    assert incident.is_open and incident.failing_at_open == FLEET
    assert incident.cause_ids == [CauseId.PROVIDER_ERROR]
    assert {c.state for c in _db.session.scalars(select(InstagramConnection))} == {ConnectionState.EXPIRING}
    assert len(fleet_events(webhooks.INCIDENT_OPENED)) == 1

    # The next minute's tick plans notices: every shop's renewal failed near its end, but it is Meta's
    # trouble, so no expiry warning is written, and no other mail either.
    clock.advance(minutes=1)
    run(worker)
    assert _db.session.scalar(select(func.count()).select_from(OutboundMail)) == 0

    # Meta answers again. The retries come due, succeed, and the incident closes after 5 calm minutes.
    stub.clear_faults()
    clock.advance(minutes=30)
    run(worker)
    assert {c.state for c in _db.session.scalars(select(InstagramConnection))} == {ConnectionState.HEALTHY}
    assert _db.session.scalars(select(FleetIncident)).one().is_open  # recovering, not yet over
    clock.advance(minutes=6)
    run(worker)
    incident = _db.session.scalars(select(FleetIncident)).one()
    assert incident.closed_at == clock.at and incident.shops_touched == FLEET
    [closed] = fleet_events(webhooks.INCIDENT_CLOSED)
    assert closed.payload["incident_id"] == incident.id and closed.payload["shops_touched"] == FLEET
    assert len(fleet_events(webhooks.INCIDENT_OPENED)) == 1
    actions = _db.session.scalars(select(AuditEntry.action).order_by(AuditEntry.id)).all()
    assert actions == ["incident.opened", "incident.closed"]
    assert _db.session.scalar(select(func.count()).select_from(OutboundMail)) == 0
    assert sorted(stub.refreshes) == sorted(ids)


def test_a_single_shop_failing_alone_opens_none_and_its_merchant_is_warned(app, db, stub):
    ids = shops_near_expiry(app, FLEET)
    clock = Clock(START)
    worker = Worker(app, concurrency=4, poll_seconds=0, client=stub_client(stub), clock=clock)
    stub.add_fault("status", connection_id=ids[0], times=None, status=502)

    run(worker)
    clock.advance(minutes=1)
    run(worker)
    assert _db.session.scalars(select(FleetIncident)).all() == []
    [mail] = _db.session.scalars(select(OutboundMail)).all()
    assert mail.kind == "expiry_warning" and mail.connection_id == ids[0]


def test_a_revocation_during_the_outage_is_still_mailed(app, db, stub):
    """Meta's confirmed disconnect is real even while Meta fails for everyone else."""
    ids = shops_near_expiry(app, FLEET)
    clock = Clock(START)
    worker = Worker(app, concurrency=4, poll_seconds=0, client=stub_client(stub), clock=clock)
    stub.add_fault("revoked", connection_id=ids[0], times=None)
    stub.add_fault("status", times=None, status=503)

    run(worker)
    clock.advance(minutes=1)
    run(worker)
    assert _db.session.scalars(select(FleetIncident)).one().is_open
    [mail] = _db.session.scalars(select(OutboundMail)).all()
    assert mail.kind == "disconnected" and mail.connection_id == ids[0]
    revoked = _db.session.get(InstagramConnection, ids[0])
    assert revoked.state == ConnectionState.NEEDS_RECONNECT and revoked.cause == CauseId.PASSWORD_CHANGED


@needs_postgres
@pytest.mark.slow
def test_two_worker_processes_open_one_incident_and_close_it(database_uri, tmp_path):
    """Two workers on PostgreSQL see the same outage and decide at once: one incident, one opened and one
    closed event, one audit row each."""
    with MetaStub(latency=0.01) as stub:
        seed_due_connections(database_uri, 40, TEST_TOKEN_KEY)
        secret = Fernet(TEST_TOKEN_KEY.encode()).encrypt(webhooks.new_secret().encode()).decode()
        engine = create_engine(database_uri)
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO webhook_endpoints (url, description, event_types, secret_ciphertext, created_by, "
                    "created_at) VALUES ('http://127.0.0.1:9/hooks', '', 'incident.opened,incident.closed', :secret, "
                    "'test', now())"
                ),
                {"secret": secret},
            )
        engine.dispose()
        stub.add_fault("status", times=None, status=502)
        env = worker_env(
            database_uri,
            stub,
            INCIDENT_MIN_CONNECTIONS="10",
            INCIDENT_CLOSE_MINUTES="0",
            BACKOFF_BASE_SECONDS="1",
            BACKOFF_MAX_SECONDS="2",
        )
        logs = [tmp_path / f"w{i}.log" for i in range(2)]
        workers = [start_worker(env, "--concurrency", "4", "--batch-size", "5", log=log) for log in logs]
        try:
            opened = wait_for(database_uri, "SELECT count(*) FROM fleet_incidents", 1, timeout=120)
            time.sleep(3)  # both workers keep failing and deciding for a while
            stub.clear_faults()
            closed = wait_for(
                database_uri, "SELECT count(*) FROM fleet_incidents WHERE closed_at IS NOT NULL", 1, timeout=120
            )
        finally:
            for worker in workers:
                worker.terminate()
            for worker in workers:
                worker.wait(timeout=30)
    output = "".join(log.read_text() for log in logs)
    assert opened and closed, output[-3000:]
    assert rows(database_uri, "SELECT count(*) FROM fleet_incidents") == [(1,)]
    assert rows(database_uri, "SELECT type, count(*) FROM webhook_events GROUP BY type ORDER BY type") == [
        ("incident.closed", 1),
        ("incident.opened", 1),
    ]
    assert rows(database_uri, "SELECT action, count(*) FROM audit_log GROUP BY action ORDER BY action") == [
        ("incident.closed", 1),
        ("incident.opened", 1),
    ]
    # Both workers met the outage (and so both looked at the incident after their answers came in).
    assert all("transient" in log.read_text() for log in logs), output[-3000:]


def wait_for(database_uri: str, sql: str, expected: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if rows(database_uri, sql)[0][0] >= expected:
            return True
        time.sleep(0.3)
    return False
