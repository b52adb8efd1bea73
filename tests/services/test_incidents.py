"""Fleet incidents: decided from counts in the database, one at a time, closed with hysteresis."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError

from tests.factories import make_connection, make_facebook_connection
from webapp.config import ConfigError, load_config
from webapp.extensions import db as _db
from webapp.models import AuditEntry, ConnectionEvent, FleetIncident, FleetIncidentUpdate, WebhookEvent
from webapp.services import incidents, webhooks
from webapp.services.connections.causes import CauseId
from webapp.services.notify.planning import Told, due_notices

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
THRESHOLDS = incidents.Thresholds(
    window=timedelta(minutes=10),
    min_connections=5,
    open_percent=50,
    close_percent=10,
    close_after=timedelta(minutes=15),
)


def fleet(count: int) -> list[int]:
    return [make_connection(username=f"shop{i}").id for i in range(count)]


def answer(connection_ids, at: datetime, kind: str = "check_failed", cause: str | None = CauseId.PROVIDER_ERROR):
    """Record each connection's keep-alive answer as the worker does (an event with its cause)."""
    _db.session.execute(
        insert(ConnectionEvent),
        [
            {
                "connection_id": connection_id,
                "kind": kind,
                "occurred_at": at,
                "actor_kind": "system",
                "cause": None if kind in incidents.SUCCESS_KINDS else cause,
                "message": "",
            }
            for connection_id in connection_ids
        ],
    )
    _db.session.commit()


def subscribe() -> None:
    webhooks.create_endpoint(
        url="https://platform.example/hooks",
        description="",
        event_types=list(webhooks.FLEET_EVENT_TYPES),
        created_by="test",
        now=NOW,
    )


def incident_rows() -> list[FleetIncident]:
    return list(_db.session.scalars(select(FleetIncident).order_by(FleetIncident.id)))


def fleet_events(type: str) -> list[WebhookEvent]:
    return list(_db.session.scalars(select(WebhookEvent).where(WebhookEvent.type == type)))


def test_many_connections_failing_for_metas_reasons_open_one_incident(app, db):
    subscribe()
    ids = fleet(8)
    answer(ids[:6], NOW - timedelta(minutes=3))
    answer(ids[6:], NOW - timedelta(minutes=2), kind="checked")
    assert incidents.evaluate(NOW, THRESHOLDS) == "opened"
    assert incidents.evaluate(NOW + timedelta(minutes=1), THRESHOLDS) is None  # still the same one
    [incident] = incident_rows()
    assert incident.is_open and incident.opened_at == NOW
    assert (incident.failing_at_open, incident.checked_at_open, incident.peak_percent) == (6, 8, 75)
    assert incident.cause_ids == [CauseId.PROVIDER_ERROR]
    [opened] = fleet_events(webhooks.INCIDENT_OPENED)
    assert opened.shop_id is None and opened.connection_id is None
    assert opened.payload["incident_id"] == incident.id and opened.payload["status"] == "open"
    assert opened.payload["connections_failing"] == 6 and opened.payload["connections_checked"] == 8
    assert "access_token" not in str(opened.payload) and "shop_id" not in opened.payload
    assert [row.action for row in _db.session.scalars(select(AuditEntry))] == ["incident.opened"]
    assert incidents.current() is not None


def test_one_shop_failing_again_and_again_opens_none(app, db):
    """A single shop's trouble is never a fleet incident, however often it fails."""
    [alone, *others] = fleet(3)
    for minute in range(10):
        answer([alone], NOW - timedelta(minutes=minute, seconds=30))
    answer(others, NOW - timedelta(minutes=1), kind="refreshed")
    figures = incidents.fleet_figures(NOW, THRESHOLDS.window)
    assert (figures.failing, figures.checked) == (1, 3)
    assert incidents.evaluate(NOW, THRESHOLDS) is None
    assert incident_rows() == []


def test_a_small_share_failing_or_old_failures_open_none(app, db):
    ids = fleet(20)
    answer(ids[:6], NOW - timedelta(minutes=2))
    answer(ids[6:], NOW - timedelta(minutes=1), kind="checked")  # 6 of 20 = 30 % < 50 %
    answer(ids[6:], NOW - timedelta(minutes=30))  # failures long ago, outside the window
    assert incidents.evaluate(NOW, THRESHOLDS) is None
    assert incident_rows() == []


def test_revocations_are_not_metas_outage(app, db):
    """Many disconnects at once are each merchant's: they are counted as answered, not as failing."""
    ids = fleet(8)
    answer(ids, NOW - timedelta(minutes=1), cause=CauseId.PASSWORD_CHANGED)
    assert incidents.fleet_figures(NOW, THRESHOLDS.window).failing == 0
    assert incidents.evaluate(NOW, THRESHOLDS) is None


def test_each_connection_counts_by_its_latest_answer(app, db):
    ids = fleet(6)
    answer(ids, NOW - timedelta(minutes=5))
    answer(ids[:4], NOW - timedelta(minutes=1), kind="checked")  # four recovered since
    figures = incidents.fleet_figures(NOW, THRESHOLDS.window)
    assert (figures.checked, figures.failing, figures.succeeded) == (6, 2, 4)


def test_it_closes_only_after_calls_have_succeeded_for_a_while(app, db):
    """Hysteresis: a recovery that relapses starts again; the incident closes after INCIDENT_CLOSE_MINUTES calm."""
    subscribe()
    ids = fleet(10)
    answer(ids, NOW - timedelta(minutes=1))
    assert incidents.evaluate(NOW, THRESHOLDS) == "opened"
    answer(ids, NOW + timedelta(minutes=2), kind="checked")
    assert incidents.evaluate(NOW + timedelta(minutes=3), THRESHOLDS) is None  # recovering, not yet closed
    [incident] = incident_rows()
    assert incident.recovering_since == NOW + timedelta(minutes=3)
    answer(ids[:7], NOW + timedelta(minutes=5))  # Meta fails again
    assert incidents.evaluate(NOW + timedelta(minutes=6), THRESHOLDS) is None
    assert incident_rows()[0].recovering_since is None
    answer(ids, NOW + timedelta(minutes=8), kind="refreshed")
    assert incidents.evaluate(NOW + timedelta(minutes=9), THRESHOLDS) is None
    assert incidents.evaluate(NOW + timedelta(minutes=20), THRESHOLDS) is None  # calm, 11 minutes: not yet
    # No calls at all in the window meanwhile: still calm, and after 15 minutes it is over.
    assert incidents.evaluate(NOW + timedelta(minutes=24), THRESHOLDS) == "closed"
    [incident] = incident_rows()
    assert incident.closed_at == NOW + timedelta(minutes=24) and incident.shops_touched == 10
    kinds = [update.kind for update in incidents.timeline(incident)]
    assert kinds == ["opened", "recovering", "relapsed", "recovering", "recovering", "closed"]
    [closed] = fleet_events(webhooks.INCIDENT_CLOSED)
    assert closed.payload["status"] == "closed" and closed.payload["shops_touched"] == 10
    assert [row.action for row in _db.session.scalars(select(AuditEntry).order_by(AuditEntry.id))] == [
        "incident.opened",
        "incident.closed",
    ]
    assert incidents.current() is None
    # The next outage is a new incident.
    answer(ids, NOW + timedelta(minutes=30))
    assert incidents.evaluate(NOW + timedelta(minutes=31), THRESHOLDS) == "opened"
    assert len(incident_rows()) == 2


def test_between_the_thresholds_it_stays_open(app, db):
    ids = fleet(10)
    answer(ids, NOW - timedelta(minutes=1))
    incidents.evaluate(NOW, THRESHOLDS)
    answer(ids[:3], NOW + timedelta(minutes=1))  # 3 of 10 still failing: above 10 %, below 50 %
    answer(ids[3:], NOW + timedelta(minutes=1), kind="checked")
    for minute in (2, 20, 40):
        assert incidents.evaluate(NOW + timedelta(minutes=minute), THRESHOLDS) is None
    assert incident_rows()[0].is_open and incident_rows()[0].recovering_since is None


def test_the_database_refuses_a_second_open_incident(app, db):
    """Several workers deciding at once: the partial unique index keeps one open incident."""
    _db.session.add(FleetIncident(scope="meta", opened_at=NOW))
    _db.session.commit()
    _db.session.add(FleetIncident(scope="meta", opened_at=NOW))
    with pytest.raises(IntegrityError):
        _db.session.commit()
    _db.session.rollback()
    # Closed ones may be many.
    _db.session.add(FleetIncident(scope="meta", opened_at=NOW - timedelta(days=1), closed_at=NOW - timedelta(hours=20)))
    _db.session.commit()
    assert _db.session.scalar(select(func.count()).select_from(FleetIncident)) == 2


def test_an_opener_that_lost_the_race_stands_down(app, db):
    """A row another worker opened a moment ago (the unique index) makes this decision a no-op, not an error."""
    ids = fleet(6)
    answer(ids, NOW - timedelta(minutes=1))
    figures = incidents.fleet_figures(NOW, THRESHOLDS.window)
    _db.session.add(FleetIncident(scope="meta", opened_at=NOW - timedelta(seconds=1)))
    _db.session.commit()
    assert incidents._open(NOW, figures) is None
    assert len(incident_rows()) == 1
    assert _db.session.scalar(select(func.count()).select_from(FleetIncidentUpdate)) == 0


def test_shops_touched_are_those_failing_for_metas_reasons_during_it(app, db):
    ids = fleet(8)
    answer(ids[:6], NOW - timedelta(minutes=1))
    answer(ids[6:7], NOW - timedelta(minutes=1), cause=CauseId.PASSWORD_CHANGED)
    answer(ids[7:], NOW - timedelta(hours=2))  # long before
    incidents.evaluate(NOW, THRESHOLDS)
    [incident] = incident_rows()
    touched = _db.session.scalars(incidents.touched_connections(incident, THRESHOLDS.window, NOW)).all()
    assert sorted(connection.id for connection in touched) == sorted(ids[:6])


@pytest.mark.parametrize(
    "env, words",
    [
        ({"INCIDENT_MIN_CONNECTIONS": "1"}, "one shop's trouble"),
        ({"INCIDENT_OPEN_PERCENT": "20", "INCIDENT_CLOSE_PERCENT": "30"}, "below INCIDENT_OPEN_PERCENT"),
        ({"INCIDENT_OPEN_PERCENT": "120"}, "between 0 and 100"),
        ({"INCIDENT_WINDOW_MINUTES": "0"}, "INCIDENT_WINDOW_MINUTES must be 1 or more"),
        ({"INCIDENT_MIN_CONNECTIONS": "many"}, "whole number"),
    ],
)
def test_thresholds_that_make_no_sense_stop_start_up(env, words, tmp_path):
    with pytest.raises(ConfigError, match=words):
        load_config(env, instance_path=str(tmp_path))


def test_the_defaults(tmp_path):
    config = load_config({}, instance_path=str(tmp_path))
    thresholds = incidents.Thresholds.from_config(config)
    assert thresholds == incidents.Thresholds(
        window=timedelta(minutes=10),
        min_connections=10,
        open_percent=50,
        close_percent=10,
        close_after=timedelta(minutes=15),
    )


def test_only_the_renewal_warning_waits_for_the_incident(app, db):
    """Held: "renewal keeps failing" (Meta's trouble). Not held: a disconnect Meta confirmed, or Facebook's
    data-access window, which ends on its date whatever Meta does."""
    failing = make_connection(
        issued_at=NOW - timedelta(days=58), state="expiring", cause=CauseId.PROVIDER_ERROR, refresh_failures=1
    )
    window = make_facebook_connection(
        expires_at=NOW + timedelta(days=2), state="degraded", cause=CauseId.PROVIDER_ERROR
    )
    broken = make_connection(state="needs_reconnect", cause=CauseId.PASSWORD_CHANGED, incident_started_at=NOW)

    def kinds(connection, in_incident):
        return [n.kind for n in due_notices(connection, NOW, app.config, Told(), in_incident=in_incident)]

    assert kinds(failing, False) == ["expiry_warning"] and kinds(failing, True) == []
    assert kinds(window, True) == ["expiry_warning"]
    assert kinds(broken, True) == ["disconnected"]
    incident = incidents.OpenIncident(1, NOW, None)
    assert incidents.part_of(failing, incident) and incidents.part_of(window, incident)
    assert not incidents.part_of(broken, incident)
