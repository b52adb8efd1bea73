"""Real worker processes on PostgreSQL deliver webhooks: once per endpoint, and again only after a crash."""

from __future__ import annotations

import os
import signal
import time
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import func, select

from tests.conftest import TEST_DATABASE_URL
from tests.factories import make_connection
from tests.test_worker_processes import rows, start_worker, worker_env
from tests.webhook_helpers import Receiver, verify
from webapp.extensions import db
from webapp.models import ConnectionState, WebhookDelivery
from webapp.services import webhook_delivery, webhooks
from webapp.services.connections import state
from webapp.services.connections.causes import CauseId

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not TEST_DATABASE_URL, reason="TEST_DATABASE_URL is not set (CI sets it to a real PostgreSQL)"),
]
NOWHERE = SimpleNamespace(base_url="http://127.0.0.1:9")  # no connection is due: Meta is never called


def queue_changes(receiver: Receiver, endpoints: int, connections: int) -> dict[str, str]:
    """Endpoints on the receiver and connections that changed state; return each endpoint's path and secret."""
    now = datetime.now(UTC)
    secrets = {}
    for number in range(endpoints):
        path = f"/hooks/{number}"
        _, secrets[path] = webhooks.create_endpoint(
            url=receiver.url(path), description="", event_types=["connection.state_changed"], created_by="t", now=now
        )
    for _ in range(connections):
        # Nothing due for the keep-alive: the workers only send webhooks.
        connection = make_connection(
            issued_at=now - timedelta(hours=1),
            refresh_due_at=now + timedelta(days=7),
            check_due_at=now + timedelta(hours=6),
        )
        state.set_state(connection, ConnectionState.DEGRADED, now, cause=CauseId.PROVIDER_ERROR)
    db.session.commit()
    db.session.remove()
    return secrets


def statuses() -> dict[str, int]:
    rows = db.session.execute(select(WebhookDelivery.status, func.count()).group_by(WebhookDelivery.status)).all()
    db.session.commit()
    return dict(rows)


def test_worker_processes_deliver_each_event_once_per_endpoint(app, database_uri, tmp_path):
    """Three workers, three endpoints, forty changes: 120 deliveries, each received exactly once, each verifiable."""
    with Receiver(status=204, delay=0.1) as receiver:
        secrets = queue_changes(receiver, endpoints=3, connections=40)
        env = worker_env(database_uri, NOWHERE, WEBHOOK_CONCURRENCY="3")
        workers = [start_worker(env, "--until-idle", log=tmp_path / f"w{i}.log") for i in range(3)]
        for number, worker in enumerate(workers):
            assert worker.wait(timeout=120) == 0, (tmp_path / f"w{number}.log").read_text()[-2000:]
        counts = receiver.per_endpoint_and_id()
        received = list(receiver.received)
    assert len(counts) == 120
    assert {n for n in counts.values()} == {1}, [key for key, n in counts.items() if n > 1]
    for request in received:
        verify(secrets[request.path], request.body, request.headers)
    assert statuses() == {"delivered": 120}
    logs = [(tmp_path / f"w{i}.log").read_text() for i in range(3)]
    assert sum("delivered to endpoint" in log for log in logs) >= 2  # the work was shared


def test_a_worker_killed_mid_send_is_covered_by_the_next_once_its_lease_runs_out(app, database_uri, tmp_path):
    """At least once, and no more than that: only the deliveries the dead worker had in flight arrive twice."""
    with Receiver(status=204, delay=0.5) as receiver:
        queue_changes(receiver, endpoints=1, connections=12)
        env = worker_env(database_uri, NOWHERE, WEBHOOK_TIMEOUT="1", WEBHOOK_CONCURRENCY="3")
        doomed = start_worker(env, log=tmp_path / "doomed.log")
        deadline = time.monotonic() + 30
        while len(receiver.received) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        os.killpg(doomed.pid, signal.SIGKILL)  # mid-send: three requests are at the receiver
        doomed.wait(timeout=10)
        in_flight_at_death = {item.headers["webhook-id"] for item in receiver.received}
        survivor = start_worker(env, "--until-idle", log=tmp_path / "survivor.log")
        assert survivor.wait(timeout=60) == 0, (tmp_path / "survivor.log").read_text()[-2000:]
        assert statuses().get("sending")  # the dead worker's claims wait for their lease
        time.sleep(webhook_delivery.delivery_lease({"WEBHOOK_TIMEOUT": 1}).total_seconds() + 1)
        cleaner = start_worker(env, "--until-idle", log=tmp_path / "cleaner.log")
        assert cleaner.wait(timeout=60) == 0, (tmp_path / "cleaner.log").read_text()[-2000:]
        counts = receiver.per_endpoint_and_id()
    assert len(counts) == 12
    twice = {webhook_id for (_path, webhook_id), n in counts.items() if n > 1}
    assert twice <= in_flight_at_death and max(counts.values()) <= 2
    assert statuses() == {"delivered": 12}
    assert "sending them again" in (tmp_path / "cleaner.log").read_text()


def test_no_transaction_is_open_while_a_receiver_thinks(app, database_uri, tmp_path):
    """Promise 3 for webhooks: with a receiver taking 0.8 s per POST, no worker connection sits idle in a transaction."""
    with Receiver(status=204, delay=0.8) as receiver:
        queue_changes(receiver, endpoints=2, connections=6)
        worker = start_worker(
            worker_env(database_uri, NOWHERE, WEBHOOK_CONCURRENCY="3"), "--until-idle", log=tmp_path / "w.log"
        )
        samples, idle_in_transaction = 0, []
        deadline = time.monotonic() + 60
        while worker.poll() is None and time.monotonic() < deadline:
            found = rows(
                database_uri,
                "SELECT state, query, now() - state_change > interval '0.2 seconds' FROM pg_stat_activity "
                "WHERE application_name = 'shop-health-worker'",
            )
            samples += 1
            idle_in_transaction += [query for state, query, long in found if state == "idle in transaction" and long]
            time.sleep(0.05)
        assert worker.wait(timeout=60) == 0, (tmp_path / "w.log").read_text()[-2000:]
    assert samples > 20
    assert idle_in_transaction == []
    assert statuses() == {"delivered": 12}
