"""The keep-alive rules: what is due, the fault matrix, fencing, lost writes (promises 2, 4-8, 10)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import inspect, select
from sqlalchemy.exc import OperationalError

from tests.factories import make_connection
from webapp.config import ConfigError, check_lease
from webapp.models import ConnectionEvent, InstagramConnection, RateLimitPause
from webapp.services.keepalive import leases, outcomes, scheduler
from webapp.services.keepalive.policy import Policy, refresh_allowed

GRAPH = "https://graph.instagram.com"
POLICY = Policy()
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


@pytest.fixture
def vault(app):
    return app.extensions["token_vault"]


@pytest.fixture
def meta_client(app):
    return app.extensions["instagram_client"]


def run_cycle(app, vault, meta_client, now=NOW, owner="worker-a", rng=None, connection_id=None):
    """One claim-call-write cycle, as a worker does it."""
    claims = leases.claim_due(owner=owner, now=now, limit=100, policy=POLICY, vault=vault, connection_id=connection_id)
    results = []
    for claim in claims:
        outcome = None
        if claim.work != "expire" and not claim.unreadable:
            outcome = outcomes.call_meta(claim, meta_client)
        results.append(
            outcomes.record_outcome(
                claim, outcome, now=now, policy=POLICY, vault=vault, rng=rng or random.Random(1), sleep=lambda s: None
            )
        )
    return results


def reload(db, connection) -> InstagramConnection:
    """Read the row afresh (the worker functions close the session, detaching test objects)."""
    db.session.expire_all()
    return db.session.get(InstagramConnection, inspect(connection).identity[0])


def refresh_ok(requests_mock, token="IGAAnew-token"):
    return requests_mock.get(
        f"{GRAPH}/refresh_access_token", json={"access_token": token, "token_type": "bearer", "expires_in": 5184000}
    )


@settings(max_examples=300, deadline=None)
@given(
    issued_offset=st.integers(min_value=-90 * 24 * 60, max_value=24 * 60),
    lifetime=st.integers(min_value=0, max_value=70 * 24 * 60),
)
def test_refresh_window_property(issued_offset, lifetime):
    """Promise 7: never refresh a token under 24 h old or already expired."""
    issued = NOW + timedelta(minutes=issued_offset)
    expires = issued + timedelta(minutes=lifetime)
    allowed = refresh_allowed(issued, expires, NOW, POLICY)
    assert allowed == (NOW - issued >= timedelta(hours=24) and expires > NOW)
    connection = InstagramConnection(
        state="healthy", token_ciphertext="x", token_issued_at=issued, token_expires_at=expires
    )
    connection.schedule(refresh_due_at=issued, check_due_at=NOW + timedelta(hours=1))
    work = leases.work_for(connection, NOW, POLICY)
    if work == "refresh":
        assert NOW - issued >= timedelta(hours=24) and expires > NOW
    if expires <= NOW:
        assert work == "expire"


def test_due_refresh_gets_a_new_token(app, db, vault, meta_client, requests_mock):
    connection = make_connection(token="IGAAold-token", issued_at=NOW - timedelta(days=8))
    refresh_ok(requests_mock)
    assert run_cycle(app, vault, meta_client) == ["refreshed"]
    row = reload(db, connection)
    assert vault.decrypt(row.token_ciphertext) == "IGAAnew-token"
    assert row.token_issued_at == NOW and row.token_expires_at == NOW + timedelta(seconds=5184000)
    assert row.state == "healthy" and row.lease_owner is None
    assert NOW + timedelta(days=6) < row.refresh_due_at < NOW + timedelta(days=8)
    assert requests_mock.last_request.qs["grant_type"] == ["ig_refresh_token"]
    assert db.session.scalar(select(ConnectionEvent.kind)) == "refreshed"


def test_check_when_only_the_check_is_due(app, db, vault, meta_client, requests_mock):
    connection = make_connection(issued_at=NOW - timedelta(days=2), check_due_at=NOW - timedelta(minutes=1))
    requests_mock.get(f"{GRAPH}/v23.0/me", json={"user_id": connection.instagram_user_id, "username": "renamed"})
    assert run_cycle(app, vault, meta_client) == ["checked"]
    row = reload(db, connection)
    assert row.username == "renamed" and row.last_checked_at == NOW and row.last_check_ok


def test_a_check_that_finds_a_personal_account_records_account_not_professional(
    app, db, vault, meta_client, requests_mock
):
    """Issue 14: account_type from /me no longer professional is the account_not_professional cause."""
    connection = make_connection(issued_at=NOW - timedelta(days=2), check_due_at=NOW - timedelta(minutes=1))
    requests_mock.get(
        f"{GRAPH}/v23.0/me",
        json={"user_id": connection.instagram_user_id, "username": "bloom", "account_type": "PERSONAL"},
    )
    assert run_cycle(app, vault, meta_client) == ["needs_reconnect"]
    row = reload(db, connection)
    assert (row.state, row.cause) == ("needs_reconnect", "account_not_professional")
    assert row.due_at is None  # no more calls with this token until the merchant reconnects
    event = db.session.scalars(select(ConnectionEvent).order_by(ConnectionEvent.id.desc())).first()
    assert (event.kind, event.cause, event.actor_kind) == ("check_failed", "account_not_professional", "meta")
    assert "PERSONAL" in event.message and "professional" in event.message


def test_a_check_learns_the_app_scoped_id_it_did_not_know(app, db, vault, meta_client, requests_mock):
    connection = make_connection(issued_at=NOW - timedelta(days=2), check_due_at=NOW - timedelta(minutes=1))
    assert connection.instagram_scoped_id is None
    requests_mock.get(f"{GRAPH}/v23.0/me", json={"user_id": connection.instagram_user_id, "id": "9900000000000042"})
    assert run_cycle(app, vault, meta_client) == ["checked"]
    assert reload(db, connection).instagram_scoped_id == "9900000000000042"


def test_nothing_due_means_no_call(app, db, vault, meta_client, requests_mock):
    make_connection(issued_at=NOW - timedelta(days=1), check_due_at=NOW + timedelta(hours=1))
    assert run_cycle(app, vault, meta_client) == []
    assert requests_mock.call_count == 0


TRANSIENT_FAULTS = {
    "timeout": {"exc": requests.ReadTimeout},
    "connection-reset": {"exc": requests.ConnectionError("Connection reset by peer")},
    "http-500": {
        "status_code": 500,
        "json": {
            "error": {
                "message": "An unexpected error has occurred. Please retry your request later.",
                "type": "OAuthException",
                "code": 2,
                "is_transient": True,
            }
        },
    },
    "http-502-html": {"status_code": 502, "text": "<html>Bad Gateway</html>"},
    "http-503-empty": {"status_code": 503, "text": ""},
    "code-1": {
        "status_code": 400,
        "json": {"error": {"message": "An unknown error occurred", "type": "OAuthException", "code": 1}},
    },
    "code-4": {
        "status_code": 400,
        "json": {
            "error": {
                "message": "(#4) Application request limit reached",
                "type": "OAuthException",
                "code": 4,
                "is_transient": True,
            }
        },
    },
    "code-17": {
        "status_code": 400,
        "json": {"error": {"message": "(#17) User request limit reached", "type": "OAuthException", "code": 17}},
    },
    "code-32": {
        "status_code": 400,
        "json": {"error": {"message": "(#32) Page request limit reached", "type": "OAuthException", "code": 32}},
    },
    "code-341": {
        "status_code": 400,
        "json": {"error": {"message": "(#341) Application limit reached", "type": "OAuthException", "code": 341}},
    },
    "code-613": {
        "status_code": 400,
        "json": {
            "error": {
                "message": "(#613) Calls to this api have exceeded the rate limit.",
                "type": "OAuthException",
                "code": 613,
            }
        },
    },
    "code-80002": {
        "status_code": 400,
        "json": {
            "error": {
                "message": "There have been too many calls to this Instagram account.",
                "type": "OAuthException",
                "code": 80002,
            }
        },
    },
    "code-368": {
        "status_code": 400,
        "json": {
            "error": {
                "message": "(#368) Temporarily blocked for policies violations",
                "type": "OAuthException",
                "code": 368,
            }
        },
    },
    "malformed-json": {"status_code": 200, "text": "{not json"},
    "request-error-100": {
        "status_code": 400,
        "json": {
            "error": {"message": "Unsupported get request.", "type": "IGApiException", "code": 100, "error_subcode": 33}
        },
    },
}


@pytest.mark.parametrize("work", ["refresh", "check"])
@pytest.mark.parametrize("fault", list(TRANSIENT_FAULTS), ids=list(TRANSIENT_FAULTS))
def test_transient_failures_never_disconnect(app, db, vault, meta_client, requests_mock, work, fault):
    """Promise 5: timeouts, resets, 5xx, codes 1/2/4/17/32/341/613, malformed JSON: healthy or degraded."""
    if work == "refresh":
        connection = make_connection(issued_at=NOW - timedelta(days=8))
        requests_mock.get(f"{GRAPH}/refresh_access_token", **TRANSIENT_FAULTS[fault])
    else:
        connection = make_connection(issued_at=NOW - timedelta(days=2), check_due_at=NOW - timedelta(minutes=1))
        requests_mock.get(f"{GRAPH}/v23.0/me", **TRANSIENT_FAULTS[fault])
    assert run_cycle(app, vault, meta_client) == ["transient"]
    row = reload(db, connection)
    assert row.state == "degraded" and row.has_token
    assert row.cause in ("provider_error", "rate_limited", "policy_block", "request_error")
    assert row.retry_at > NOW and row.due_at >= row.retry_at
    # The same day again: a second failure is an attempt, not another failing day.
    later = max(row.retry_at, row.paused_until or row.retry_at) + timedelta(seconds=1)
    assert later.date() == NOW.date()
    assert run_cycle(app, vault, meta_client, now=later) == ["transient"]
    row = reload(db, connection)
    assert (row.consecutive_failures, row.failure_days) == (2, 1)
    assert row.state == "degraded"


def test_backoff_grows_with_jitter(app, db, vault, meta_client, requests_mock):
    """Promise 5: retries back off exponentially, with jitter."""
    connection = make_connection(issued_at=NOW - timedelta(days=8))
    requests_mock.get(f"{GRAPH}/refresh_access_token", status_code=500, text="oops")
    now, delays = NOW, []
    for _ in range(5):
        run_cycle(app, vault, meta_client, now=now, rng=random.Random(7))
        row = reload(db, connection)
        delays.append(row.retry_at - now)
        now = row.retry_at + timedelta(seconds=1)
    base = POLICY.backoff_base
    for attempt, delay in enumerate(delays, start=1):
        step = min(base * 2 ** (attempt - 1), POLICY.backoff_max)
        assert step * 0.5 <= delay <= step


def test_failures_on_two_days_count_twice(app, db, vault, meta_client, requests_mock):
    connection = make_connection(issued_at=NOW - timedelta(days=8))
    requests_mock.get(f"{GRAPH}/refresh_access_token", status_code=500, text="oops")
    run_cycle(app, vault, meta_client, now=NOW)
    run_cycle(app, vault, meta_client, now=NOW + timedelta(days=1))
    assert reload(db, connection).failure_days == 2


def test_transient_failure_close_to_expiry_is_expiring(app, db, vault, meta_client, requests_mock):
    connection = make_connection(issued_at=NOW - timedelta(days=55), expires_at=NOW + timedelta(days=5))
    requests_mock.get(f"{GRAPH}/refresh_access_token", status_code=503, text="")
    run_cycle(app, vault, meta_client)
    row = reload(db, connection)
    assert row.state == "expiring" and row.refresh_failures == 1 and row.last_refresh_error


DEFINITIVE = {
    "460-password": (
        190,
        460,
        "Error validating access token: The session has been invalidated because the user changed their password or Facebook has changed the session for security reasons.",
        "password_changed",
    ),
    "458-app-removed": (
        190,
        458,
        "Error validating access token: The user has not authorized application 1234.",
        "app_removed",
    ),
    "459-checkpoint": (
        190,
        459,
        "Error validating access token: You cannot access the app till you log in to www.facebook.com and follow the instructions given.",
        "account_checkpoint",
    ),
    "463-expired": (
        190,
        463,
        "Error validating access token: Session has expired on Tuesday, 10-Nov-26 10:00:00 PST.",
        "token_expired",
    ),
    "467-logged-out": (
        190,
        467,
        "Error validating access token: The session is invalid because the user logged out.",
        "session_invalidated",
    ),
    "493-data-access": (
        190,
        493,
        "The access token is invalid since the user hasn't engaged the app in longer than 90 days.",
        "data_access_expired",
    ),
    "190-plain": (190, None, "Invalid OAuth access token - Cannot parse access token", "invalid_token"),
    "10-permission": (10, None, "(#10) Application does not have permission for this action", "permissions_changed"),
}


@pytest.mark.parametrize("status", [400, 401])
@pytest.mark.parametrize("case", list(DEFINITIVE), ids=list(DEFINITIVE))
def test_definitive_auth_errors_disconnect_at_once_and_stop(app, db, vault, meta_client, requests_mock, status, case):
    """Promise 6: 400 or 401 alike; needs_reconnect at once, no more calls with that token."""
    code, subcode, message, cause = DEFINITIVE[case]
    error = {"message": message, "type": "OAuthException", "code": code}
    if subcode:
        error["error_subcode"] = subcode
    connection = make_connection(issued_at=NOW - timedelta(days=8))
    requests_mock.get(f"{GRAPH}/refresh_access_token", status_code=status, json={"error": error})
    assert run_cycle(app, vault, meta_client) == ["needs_reconnect"]
    row = reload(db, connection)
    assert (row.state, row.cause, row.last_error_code, row.last_error_subcode) == (
        "needs_reconnect",
        cause,
        code,
        subcode,
    )
    assert row.due_at is None and leases.work_for(row, NOW + timedelta(days=1), POLICY) is None
    event = db.session.scalar(select(ConnectionEvent).where(ConnectionEvent.kind == "refresh_failed"))
    assert event.cause == cause and event.actor_kind == "meta"
    calls = requests_mock.call_count
    assert run_cycle(app, vault, meta_client, now=NOW + timedelta(days=2)) == []
    assert requests_mock.call_count == calls


def test_expired_token_is_not_sent_to_meta(app, db, vault, meta_client, requests_mock):
    connection = make_connection(
        issued_at=NOW - timedelta(days=61),
        expires_at=NOW - timedelta(hours=1),
        refresh_failures=3,
        last_refresh_error="provider_error: HTTP 503 from Meta",
    )
    assert run_cycle(app, vault, meta_client) == ["expired"]
    assert requests_mock.call_count == 0
    row = reload(db, connection)
    assert (row.state, row.cause) == ("needs_reconnect", "token_expired")
    event = db.session.scalar(select(ConnectionEvent).where(ConnectionEvent.kind == "expired"))
    assert "automatic refresh failed 3 time(s)" in event.message


def test_app_wide_rate_limit_pauses_every_call(app, db, vault, meta_client, requests_mock):
    """Throttle codes pause; such pauses show as degraded, never as disconnects."""
    first = make_connection(issued_at=NOW - timedelta(days=8))
    requests_mock.get(
        f"{GRAPH}/refresh_access_token",
        status_code=400,
        json={"error": {"message": "(#4) Application request limit reached", "type": "OAuthException", "code": 4}},
    )
    run_cycle(app, vault, meta_client)
    pause = db.session.get(RateLimitPause, "app")
    assert pause.until >= NOW + POLICY.rate_limit_pause
    assert reload(db, first).state == "degraded" and reload(db, first).cause == "rate_limited"
    assert leases.app_paused_until(NOW + timedelta(minutes=1)) == pause.until


def test_usage_header_near_the_limit_slows_down(app, db, vault, meta_client, requests_mock):
    connection = make_connection(issued_at=NOW - timedelta(days=2), check_due_at=NOW - timedelta(minutes=1))
    requests_mock.get(
        f"{GRAPH}/v23.0/me",
        json={"user_id": "1"},
        headers={
            "X-Business-Use-Case-Usage": '{"1": [{"type": "instagram", "call_count": 95, "total_cputime": 3, "total_time": 4, "estimated_time_to_regain_access": 20}]}'
        },
    )
    assert run_cycle(app, vault, meta_client) == ["checked"]
    row = reload(db, connection)
    assert row.state == "healthy" and row.paused_until == NOW + timedelta(minutes=20)
    row.check_due_at = NOW  # even a connection due for its check waits out the pause
    assert leases.work_for(row, NOW + timedelta(minutes=10), POLICY) is None
    assert leases.work_for(row, NOW + timedelta(minutes=21), POLICY) is not None


def test_fenced_write_after_the_lease_ran_out(app, db, vault, meta_client, requests_mock):
    """Promise 2: A stalls past its lease, B claims and writes, A's late write changes nothing."""
    connection = make_connection(token="IGAAold-token", issued_at=NOW - timedelta(days=8))
    [claim_a] = leases.claim_due(owner="A", now=NOW, limit=10, policy=POLICY, vault=vault)
    refresh_ok(requests_mock, token="IGAAtoken-from-A")
    outcome_a = outcomes.call_meta(claim_a, meta_client)
    later = NOW + POLICY.lease + timedelta(seconds=1)
    [claim_b] = leases.claim_due(owner="B", now=later, limit=10, policy=POLICY, vault=vault)
    refresh_ok(requests_mock, token="IGAAtoken-from-B")
    outcome_b = outcomes.call_meta(claim_b, meta_client)
    assert (
        outcomes.record_outcome(claim_b, outcome_b, now=later, policy=POLICY, vault=vault, rng=random.Random())
        == "refreshed"
    )
    before = reload(db, connection)
    snapshot = (before.token_ciphertext, before.token_issued_at, before.version, before.due_at)
    assert (
        outcomes.record_outcome(claim_a, outcome_a, now=later, policy=POLICY, vault=vault, rng=random.Random())
        == "lease_lost"
    )
    after = reload(db, connection)
    assert (after.token_ciphertext, after.token_issued_at, after.version, after.due_at) == snapshot
    assert vault.decrypt(after.token_ciphertext) == "IGAAtoken-from-B"


def test_a_live_lease_keeps_others_out(app, db, vault):
    make_connection(issued_at=NOW - timedelta(days=8))
    assert len(leases.claim_due(owner="A", now=NOW, limit=10, policy=POLICY, vault=vault)) == 1
    assert leases.claim_due(owner="B", now=NOW + timedelta(seconds=30), limit=10, policy=POLICY, vault=vault) == []


def test_new_token_survives_a_failing_write(app, db, vault, meta_client, requests_mock, monkeypatch):
    """Promise 8: Meta refreshed, our write failed twice: it is retried and the token is kept."""
    connection = make_connection(token="IGAAold-token", issued_at=NOW - timedelta(days=8))
    refresh_ok(requests_mock, token="IGAAprecious-new-token")
    real_apply, failures = outcomes._apply, []

    def flaky_apply(*args, **kwargs):
        if len(failures) < 2:
            failures.append(1)
            raise OperationalError("UPDATE instagram_connections", {}, Exception("database is locked"))
        return real_apply(*args, **kwargs)

    monkeypatch.setattr(outcomes, "_apply", flaky_apply)
    assert run_cycle(app, vault, meta_client) == ["refreshed"]
    row = reload(db, connection)
    assert vault.decrypt(row.token_ciphertext) == "IGAAprecious-new-token" and row.state == "healthy"


def test_write_that_never_lands_is_retried_next_cycle_without_breaking(
    app, db, vault, meta_client, requests_mock, monkeypatch
):
    """Promise 8: if every write attempt fails, the connection is not marked broken and is retried."""
    connection = make_connection(token="IGAAold-token", issued_at=NOW - timedelta(days=8))
    refresh_ok(requests_mock, token="IGAAfirst-new-token")

    def always_failing(*args, **kwargs):
        raise OperationalError("UPDATE", {}, Exception("server closed the connection unexpectedly"))

    with monkeypatch.context() as patch:
        patch.setattr(outcomes, "_apply", always_failing)
        assert run_cycle(app, vault, meta_client) == ["write_failed"]
    row = reload(db, connection)
    assert row.state == "healthy" and vault.decrypt(row.token_ciphertext) == "IGAAold-token"
    refresh_ok(requests_mock, token="IGAAsecond-new-token")
    after_lease = NOW + POLICY.lease + timedelta(seconds=1)
    assert run_cycle(app, vault, meta_client, now=after_lease) == ["refreshed"]
    assert "access_token=IGAAold-token" in requests_mock.last_request.url
    assert vault.decrypt(reload(db, connection).token_ciphertext) == "IGAAsecond-new-token"


def test_unreadable_token_is_a_per_connection_problem(app, db, vault, meta_client, requests_mock):
    connection = make_connection(issued_at=NOW - timedelta(days=8))
    connection.token_ciphertext = "gAAAAA-not-a-real-ciphertext"
    db.session.commit()
    assert run_cycle(app, vault, meta_client) == ["unreadable"]
    row = reload(db, connection)
    assert (row.state, row.cause) == ("degraded", "app_misconfigured") and requests_mock.call_count == 0


def test_only_one_scheduler_runs_each_tick(app, db):
    """Promise 10: two schedulers in the same minute: the second does nothing."""
    make_connection(issued_at=NOW - timedelta(days=61), expires_at=NOW - timedelta(minutes=5))
    first = scheduler.scheduler_tick("scheduler-1", NOW, POLICY)
    second = scheduler.scheduler_tick("scheduler-2", NOW + timedelta(seconds=20), POLICY)
    assert first is not None and first.expired == 1
    assert second is None
    assert scheduler.scheduler_tick("scheduler-2", NOW + timedelta(minutes=1), POLICY) is not None


def test_lease_must_outlive_the_worst_case_call():
    """Promise 4: checked at start-up."""
    with pytest.raises(ConfigError, match="WORKER_LEASE_SECONDS"):
        check_lease({"INSTAGRAM_HTTP_TIMEOUT": 30.0, "WORKER_LEASE_SECONDS": 60})
    check_lease({"INSTAGRAM_HTTP_TIMEOUT": 10.0, "WORKER_LEASE_SECONDS": 120})


def test_app_refuses_to_start_with_a_short_lease(app_config):
    from webapp import create_app

    with pytest.raises(ConfigError, match="must be at least twice"):
        create_app({**app_config, "WORKER_LEASE_SECONDS": 5})


def test_checks_come_every_50_minutes_on_instagram_login_and_every_6_hours_on_facebook_login(app, db):
    """Issue 17: a revocation shows within the hour from checks alone, at under 30 calls a day (bench/detect.py).

    A Facebook Login check costs four calls, so its Pages keep the 6-hour interval (16 calls a day).
    """
    from tests.factories import make_facebook_connection
    from webapp.services.keepalive.policy import schedule_after_success

    policy = Policy.from_config(app.config)
    assert policy.check_interval == timedelta(minutes=50)
    assert policy.facebook_check_interval == timedelta(hours=6)
    now = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    instagram = make_connection(issued_at=now - timedelta(days=1))
    facebook = make_facebook_connection(issued_at=now - timedelta(days=1))
    rng = random.Random(3)
    gaps = {"instagram": [], "facebook": []}
    for _ in range(50):
        for name, connection in (("instagram", instagram), ("facebook", facebook)):
            schedule_after_success(connection, now, policy, rng)
            gaps[name].append(connection.check_due_at - now)
    assert timedelta(minutes=45) <= min(gaps["instagram"]) and max(gaps["instagram"]) <= timedelta(minutes=55)
    assert timedelta(hours=5.4) <= min(gaps["facebook"]) and max(gaps["facebook"]) <= timedelta(hours=6.6)
    per_day = timedelta(days=1) / policy.check_interval + timedelta(days=1) / policy.refresh_after
    assert per_day <= 30
