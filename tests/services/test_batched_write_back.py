"""The worker writes results back several at a time: each still fenced, none lost (promises 2, 8, 36)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import event
from sqlalchemy.exc import IntegrityError, OperationalError

from tests.factories import make_connection
from webapp.models import InstagramConnection
from webapp.services.keepalive import leases, outcomes
from webapp.services.keepalive.policy import Policy
from webapp.services.keepalive.worker import Worker

GRAPH = "https://graph.instagram.com"
POLICY = Policy()
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


@pytest.fixture
def vault(app):
    return app.extensions["token_vault"]


@pytest.fixture
def meta_client(app):
    return app.extensions["instagram_client"]


@pytest.fixture
def meta(requests_mock):
    """Instagram's refresh endpoint: a new token per old one; `refuse` names old tokens it answers with a 500."""
    refused: set[str] = set()

    def refresh(request, context):
        old = parse_qs(urlsplit(request.url).query)["access_token"][0]
        if old in refused:
            context.status_code = 500
            return {"error": {"message": "An unexpected error has occurred.", "code": 2, "is_transient": True}}
        return {"access_token": f"{old}-refreshed", "token_type": "bearer", "expires_in": 5184000}

    requests_mock.get(f"{GRAPH}/refresh_access_token", json=refresh)
    return refused


def due_connections(count: int) -> list[int]:
    return [make_connection(token=f"IGAAtoken-{index}", issued_at=NOW - timedelta(days=8)).id for index in range(count)]


def called(claims, meta_client, at=NOW) -> list:
    return [(claim, outcomes.call_meta(claim, meta_client), at) for claim in claims]


def claim_all(vault, owner="worker-a", now=NOW):
    return sorted(
        leases.claim_due(owner=owner, now=now, limit=100, policy=POLICY, vault=vault), key=lambda c: c.connection_id
    )


def row(db, connection_id) -> InstagramConnection:
    db.session.expire_all()
    return db.session.get(InstagramConnection, connection_id)


def test_several_results_land_in_one_transaction(app, db, vault, meta_client, meta):
    """Three refreshes, one commit: each row gets its own new token, and no lease is left behind."""
    ids = due_connections(3)
    results = called(claim_all(vault), meta_client)
    commits = []

    def count(connection):
        commits.append(connection)

    event.listen(db.engine, "commit", count)
    try:
        summaries = outcomes.record_outcomes(results, policy=POLICY, vault=vault, rng=random.Random(1))
    finally:
        event.remove(db.engine, "commit", count)
    assert summaries == ["refreshed"] * 3
    assert len(commits) == 1
    for index, connection_id in enumerate(ids):
        stored = row(db, connection_id)
        assert vault.decrypt(stored.token_ciphertext) == f"IGAAtoken-{index}-refreshed"
        assert (stored.state, stored.lease_owner, stored.lease_expires_at) == ("healthy", None, None)


def test_each_result_in_a_batch_is_fenced_by_its_own_claim(app, db, vault, meta_client, meta):
    """Promise 2: a row another worker took over after A's lease ran out keeps B's token; A's others land."""
    first, second = due_connections(2)
    results = called(claim_all(vault, owner="A"), meta_client)
    later = NOW + POLICY.lease + timedelta(seconds=1)  # A stalled past its leases; B takes the first row
    [claim_b] = leases.claim_due(
        owner="B", now=later, limit=1, policy=POLICY, vault=vault, connection_id=first, manual_work=leases.Work.REFRESH
    )
    assert outcomes.record_outcomes(
        called([claim_b], meta_client, later), policy=POLICY, vault=vault, rng=random.Random()
    )
    b_wrote = row(db, first)
    snapshot = (b_wrote.token_ciphertext, b_wrote.version, b_wrote.due_at)
    summaries = outcomes.record_outcomes(
        [(claim, outcome, later) for claim, outcome, _ in results], policy=POLICY, vault=vault, rng=random.Random()
    )
    assert summaries == ["lease_lost", "refreshed"]
    after = row(db, first)
    assert (after.token_ciphertext, after.version, after.due_at) == snapshot
    assert vault.decrypt(row(db, second).token_ciphertext) == "IGAAtoken-1-refreshed"


def test_a_batch_mixes_successes_and_failures(app, db, vault, meta_client, meta):
    """Promise 5: a transient failure in the batch backs off its own row only."""
    ok, failing = due_connections(2)
    meta.add("IGAAtoken-1")
    summaries = outcomes.record_outcomes(
        called(claim_all(vault), meta_client), policy=POLICY, vault=vault, rng=random.Random(1)
    )
    assert summaries == ["refreshed", "transient"]
    assert row(db, ok).state == "healthy"
    degraded = row(db, failing)
    assert degraded.state == "degraded" and degraded.retry_at > NOW
    assert vault.decrypt(degraded.token_ciphertext) == "IGAAtoken-1" and degraded.lease_owner is None


def test_a_batch_the_database_refuses_is_kept_whole_and_written_later(app, db, vault, meta_client, meta, monkeypatch):
    """Promises 8/36: the database away at write-back: every new token is kept, none is lost or half written."""
    ids = due_connections(3)
    results = called(claim_all(vault), meta_client)

    def away(claims):
        raise OperationalError("SELECT", {}, Exception("server closed the connection unexpectedly"))

    with monkeypatch.context() as patch:
        patch.setattr(outcomes, "_fenced_rows", away)
        assert (
            outcomes.record_outcomes(results, policy=POLICY, vault=vault, rng=random.Random()) == ["write_failed"] * 3
        )
    for index, connection_id in enumerate(ids):
        kept = row(db, connection_id)
        assert kept.state == "healthy" and vault.decrypt(kept.token_ciphertext) == f"IGAAtoken-{index}"
    assert outcomes.record_outcomes(results, policy=POLICY, vault=vault, rng=random.Random()) == ["refreshed"] * 3
    assert [vault.decrypt(row(db, i).token_ciphertext) for i in ids] == [f"IGAAtoken-{n}-refreshed" for n in range(3)]


def test_one_row_that_cannot_be_written_holds_back_no_other(app, db, vault, meta_client, meta, monkeypatch):
    """A write one row cannot take (not an outage) fails alone: the others are written on their own."""
    ids = due_connections(3)
    results = called(claim_all(vault), meta_client)
    real_apply = outcomes._apply

    def refuses_the_middle_row(connection, *args, **kwargs):
        if connection.id == ids[1]:
            raise IntegrityError("UPDATE instagram_connections", {}, Exception("a constraint said no"))
        return real_apply(connection, *args, **kwargs)

    monkeypatch.setattr(outcomes, "_apply", refuses_the_middle_row)
    summaries = outcomes.record_outcomes(results, policy=POLICY, vault=vault, rng=random.Random())
    assert summaries == ["refreshed", "write_failed", "refreshed"]
    assert vault.decrypt(row(db, ids[0]).token_ciphertext) == "IGAAtoken-0-refreshed"
    assert vault.decrypt(row(db, ids[1]).token_ciphertext) == "IGAAtoken-1"
    assert vault.decrypt(row(db, ids[2]).token_ciphertext) == "IGAAtoken-2-refreshed"


def test_the_worker_keeps_what_it_could_not_write_and_writes_it_later(app, db, vault, meta_client, meta, monkeypatch):
    """Promise 8: the worker's batch write-back keeps refused results and lands them on its next turn."""
    ids = due_connections(2)
    worker = Worker(app, concurrency=2, client=meta_client)
    claims = worker.claim()
    results = [(claim, *worker.call(claim)) for claim in claims]

    def away(claims):
        raise OperationalError("SELECT", {}, Exception("could not connect to server"))

    with monkeypatch.context() as patch:
        patch.setattr(outcomes, "_fenced_rows", away)
        assert worker.write_back(results) == ["write_failed", "write_failed"]
    assert sorted(claim.connection_id for claim, _, _ in worker.unwritten) == sorted(ids)
    worker._write_unwritten()
    assert worker.unwritten == [] and worker.totals["refreshed"] == 2
    assert all(vault.decrypt(row(db, i).token_ciphertext).endswith("-refreshed") for i in ids)


def test_an_unexpected_error_in_one_result_costs_the_others_nothing(app, db, vault, meta_client, meta, monkeypatch):
    """A bug met while applying one result: that lease runs out; the batch's other results are written."""
    ids = due_connections(3)
    worker = Worker(app, concurrency=3, client=meta_client)
    results = [(claim, *worker.call(claim)) for claim in sorted(worker.claim(), key=lambda c: c.connection_id)]
    real_apply = outcomes._apply

    def breaks_on_the_first_row(connection, *args, **kwargs):
        if connection.id == ids[0]:
            raise ValueError("a bug")
        return real_apply(connection, *args, **kwargs)

    monkeypatch.setattr(outcomes, "_apply", breaks_on_the_first_row)
    assert worker.write_back(results) == ["error", "refreshed", "refreshed"]
    assert vault.decrypt(row(db, ids[0]).token_ciphertext) == "IGAAtoken-0"
    assert row(db, ids[0]).lease_owner == worker.owner  # it runs out, and the row is due again
    assert [vault.decrypt(row(db, i).token_ciphertext) for i in ids[1:]] == [
        "IGAAtoken-1-refreshed",
        "IGAAtoken-2-refreshed",
    ]
