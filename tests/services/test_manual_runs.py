"""A test or refresh someone asked for plans the notice its result owes, whoever asked (merchant or support)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from tests.factories import make_connection, make_shop, make_user
from webapp.models import Notification
from webapp.services.connections.state import Actor, set_state
from webapp.services.keepalive import manual
from webapp.services.keepalive.policy import Policy
from webapp.services.notify import planning

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
pytestmark = pytest.mark.usefixtures("pinned_clock")


@pytest.fixture
def now() -> datetime:
    return NOW


@pytest.fixture
def merchant():
    return make_user(shop=make_shop(name="Bloom & Stem"), email="maya@bloom.example")


def run(app, connection, work: str, actor: Actor) -> manual.ManualResult:
    return manual.run_now(
        app,
        connection.id,
        work,
        actor=actor,
        now=NOW,
        client=app.extensions["instagram_client"],
        vault=app.extensions["token_vault"],
        policy=Policy(),
    )


def notices(db) -> list[tuple[str, int]]:
    return [(n.kind, n.user_id) for n in db.session.scalars(select(Notification).order_by(Notification.id))]


@pytest.mark.parametrize("actor_kind", ["support", "merchant"])
def test_a_run_ending_expired_plans_the_disconnect_notice(app, db, merchant, requests_mock, actor_kind):
    """The support copy of this rule once forgot "expired"; the rule now lives in one place for every caller."""
    connection = make_connection(merchant.shop, issued_at=NOW - timedelta(days=61), expires_at=NOW - timedelta(days=1))
    # The worker marked the expiry, but its plan never ran (it stopped right after the write-back).
    set_state(connection, "needs_reconnect", NOW - timedelta(days=1), cause="token_expired")
    db.session.commit()
    person = make_user(role="support") if actor_kind == "support" else merchant
    result = run(app, connection, "refresh", Actor(actor_kind, person.id))
    assert result.summary == "expired" and requests_mock.call_count == 0  # no call can help an expired token
    assert notices(db) == [("disconnected", merchant.id)]


def test_a_run_with_nothing_to_tell_plans_nothing(app, db, merchant, requests_mock):
    connection = make_connection(merchant.shop, issued_at=NOW - timedelta(hours=3))
    result = run(app, connection, "refresh", Actor("support", make_user(role="support").id))
    assert result.summary == "too_young" and notices(db) == []


@pytest.mark.parametrize("summary", ["needs_reconnect", "expired", "recovered"])
def test_the_results_that_notify_at_once(summary):
    assert planning.notifies_at_once(summary)


@pytest.mark.parametrize("summary", ["refreshed", "checked", "transient", "lease_lost", "write_failed", "too_young"])
def test_the_results_that_wait_for_the_tick(summary):
    assert not planning.notifies_at_once(summary)
