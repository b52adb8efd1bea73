"""The sandbox's clock: moving it forward moves the dashboard's stored past with it, in one piece."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from tests.factories import make_connection, make_shop
from webapp.models import ChecklistTick, ConnectionEvent, ConnectionState, InstagramConnection
from webapp.sandbox import emulator
from webapp.services.connections.causes import CauseId
from webapp.services.connections.diagnosis import diagnose_connection
from webapp.services.keepalive.leases import Work, work_for
from webapp.services.keepalive.outcomes import expire
from webapp.services.keepalive.policy import Policy

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
SHIFT = timedelta(days=61)
pytestmark = pytest.mark.usefixtures("pinned_clock")


@pytest.fixture
def now() -> datetime:
    return NOW


def add_event(db, connection, kind: str, ago: timedelta, **fields) -> None:
    db.session.add(ConnectionEvent(connection_id=connection.id, kind=kind, occurred_at=NOW - ago, **fields))


def move_clock(db, account, days: int) -> int:
    """What the panel's "Move the clock forward" button does."""
    emulator.apply_action(account, "age_token", days)
    return emulator.nudge_linked_connections(account, NOW, shift_days=days)


def test_moving_the_clock_moves_every_stored_time_and_the_history_keeps_its_order(app, db):
    """Issue 13: the app was removed, the merchant reconnected, then the clock moved 61 days.

    The row's times moved and its events did not, so the deauthorize from before the reconnect looked
    newer than the connect and the panel said "app removed, certain" for a token that simply expired.
    """
    account = emulator.new_account("clock_shop", NOW)
    db.session.commit()
    connection = make_connection(
        make_shop(),
        instagram_user_id=account.instagram_user_id,
        issued_at=NOW - timedelta(minutes=5),
        state_changed_at=NOW - timedelta(minutes=5),
        last_checked_at=NOW - timedelta(minutes=1),
        last_check_ok=True,
    )
    add_event(db, connection, "connected", timedelta(days=2), state_after="healthy")
    add_event(
        db,
        connection,
        "deauthorized",
        timedelta(minutes=10),
        cause="app_removed",
        actor_kind="meta",
        state_after="needs_reconnect",
    )
    add_event(db, connection, "reconnected", timedelta(minutes=5), state_after="healthy")
    add_event(db, connection, "checked", timedelta(minutes=1), state_after="healthy")
    incident = (NOW - timedelta(minutes=10)).isoformat(timespec="seconds")
    db.session.add(
        ChecklistTick(connection_id=connection.id, incident_key=incident, item=0, ticked_at=NOW - timedelta(minutes=8))
    )
    db.session.commit()
    names = emulator.SHIFTED_CONNECTION_TIMES
    before = {name: getattr(connection, name) for name in names}
    events_before = [
        (e.kind, e.occurred_at) for e in db.session.scalars(select(ConnectionEvent).order_by(ConnectionEvent.id))
    ]

    assert move_clock(db, account, 61) == 1

    db.session.expire_all()
    connection = db.session.get(InstagramConnection, connection.id)
    for name in names:
        if before[name] is not None:
            assert getattr(connection, name) == before[name] - SHIFT, name
    events_after = [
        (e.kind, e.occurred_at) for e in db.session.scalars(select(ConnectionEvent).order_by(ConnectionEvent.id))
    ]
    assert events_after == [(kind, when - SHIFT) for kind, when in events_before]
    tick = db.session.scalar(select(ChecklistTick))
    assert tick.ticked_at == NOW - timedelta(minutes=8) - SHIFT
    assert tick.incident_key == (NOW - timedelta(minutes=10) - SHIFT).isoformat(timespec="seconds")
    assert connection.check_due_at == NOW

    # The worker finds the token past its 60 days; the diagnosis sees one coherent history.
    assert work_for(connection, NOW, Policy()) == Work.EXPIRE
    expire(connection, NOW)
    db.session.commit()
    diagnosis = diagnose_connection(connection, NOW)
    assert [(c.cause.id, c.confidence) for c in diagnosis.causes] == [(CauseId.TOKEN_EXPIRED, "certain")]


def test_a_connection_instagram_already_ended_keeps_its_times(app, db):
    """Its token is dead whatever the clock says, and its incident's time keys the mails already sent."""
    account = emulator.new_account("broken_shop", NOW)
    db.session.commit()
    connection = make_connection(
        make_shop(),
        instagram_user_id=account.instagram_user_id,
        state=ConnectionState.NEEDS_RECONNECT,
        cause=CauseId.PASSWORD_CHANGED,
        incident_started_at=NOW - timedelta(hours=1),
    )
    add_event(
        db, connection, "check_failed", timedelta(hours=1), cause="password_changed", state_after="needs_reconnect"
    )
    db.session.commit()
    issued, started = connection.token_issued_at, connection.incident_started_at

    assert move_clock(db, account, 61) == 0

    db.session.expire_all()
    connection = db.session.get(InstagramConnection, connection.id)
    assert (connection.token_issued_at, connection.incident_started_at) == (issued, started)
    assert db.session.scalar(select(ConnectionEvent.occurred_at)) == NOW - timedelta(hours=1)
