"""Fleet incidents: when Meta itself is failing, one incident for everyone instead of thousands of alarms.

The keep-alive's own answers from Meta decide, counted in the database over a sliding window
(`INCIDENT_WINDOW_MINUTES`): of the connections with an answer in the window, how many had their
latest answer fail with a cause that is Meta's or the app's (INCIDENT_CAUSES), never the
merchant's. At least `INCIDENT_MIN_CONNECTIONS` of them, and at least `INCIDENT_OPEN_PERCENT` of
those answered, open an incident: one row, guarded by a partial unique index (and on PostgreSQL an
advisory lock), so several workers deciding at once open one. It closes once calls succeed again
and the failing share has stayed under `INCIDENT_CLOSE_PERCENT` for `INCIDENT_CLOSE_MINUTES`
(hysteresis: a flicker does not close and reopen it).

While it is open, merchants whose connection is in trouble for those causes see one calm banner,
the mails about them wait (a disconnect Meta confirmed is still mailed), support sees it with its
timeline and the shops it touched, and `incident.opened` / `incident.closed` webhooks go out.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flask import g, has_request_context
from sqlalchemy import Select, func, select, text, update
from sqlalchemy.exc import IntegrityError

from webapp.extensions import db
from webapp.models import (
    ConnectionEvent,
    ConnectionState,
    FleetIncident,
    FleetIncidentUpdate,
    InstagramConnection,
    Shop,
)
from webapp.services import audit, webhooks
from webapp.services.connections.causes import CauseId

log = logging.getLogger(__name__)

SCOPE = "meta"
# Causes that are Meta's trouble or the app's, never one merchant's: Meta's 5xx, timeouts and codes
# 1/2, its rate limits, and the app's own settings. A revocation (190, code 10, ...) is never one.
INCIDENT_CAUSES: tuple[str, ...] = (CauseId.PROVIDER_ERROR, CauseId.RATE_LIMITED, CauseId.APP_MISCONFIGURED)
# The keep-alive's answers from Meta, as connection events: a success, or a failure with its cause.
SUCCESS_KINDS = ("checked", "refreshed")
FAILURE_KINDS = ("check_failed", "refresh_failed", "token_unreadable")
# Serialises the decision across workers on PostgreSQL (any fixed number; this one spells "incid").
ADVISORY_LOCK = 0x696E636964
TIMELINE_SHOWN = 200


@dataclass(frozen=True)
class Thresholds:
    window: timedelta
    min_connections: int
    open_percent: int
    close_percent: int
    close_after: timedelta

    @classmethod
    def from_config(cls, config: Mapping) -> Thresholds:
        return cls(
            window=timedelta(minutes=config["INCIDENT_WINDOW_MINUTES"]),
            min_connections=config["INCIDENT_MIN_CONNECTIONS"],
            open_percent=config["INCIDENT_OPEN_PERCENT"],
            close_percent=config["INCIDENT_CLOSE_PERCENT"],
            close_after=timedelta(minutes=config["INCIDENT_CLOSE_MINUTES"]),
        )

    def opens(self, figures: Figures) -> bool:
        """Many connections, and a large share of those answered, failing for Meta's reasons."""
        return figures.failing >= self.min_connections and figures.failing * 100 >= self.open_percent * figures.checked

    def calm(self, figures: Figures) -> bool:
        """Calls succeed again and few fail."""
        return figures.succeeded > 0 and figures.failing * 100 < self.close_percent * figures.checked


@dataclass(frozen=True)
class Figures:
    """The fleet's keep-alive answers in the window, one per connection (its latest)."""

    checked: int = 0
    failing: int = 0  # latest answer failed with an incident cause
    succeeded: int = 0
    causes: Counter = field(default_factory=Counter)

    @property
    def percent(self) -> int:
        return round(100 * self.failing / self.checked) if self.checked else 0

    def words(self) -> str:
        if not self.checked:
            return "No calls to Meta in the window."
        return (
            f"{self.failing} of {self.checked} connections checked failed for Meta's reasons ({self.percent}%); "
            f"{self.succeeded} succeeded."
        )


def fleet_figures(now: datetime, window: timedelta) -> Figures:
    """Count, over the window ending now, each connection's latest keep-alive answer by kind and cause."""
    latest = (
        select(func.max(ConnectionEvent.id))
        .where(
            ConnectionEvent.kind.in_(SUCCESS_KINDS + FAILURE_KINDS),
            ConnectionEvent.occurred_at > now - window,
            ConnectionEvent.occurred_at <= now,
        )
        .group_by(ConnectionEvent.connection_id)
    )
    rows = db.session.execute(
        select(ConnectionEvent.kind, ConnectionEvent.cause, func.count())
        .where(ConnectionEvent.id.in_(latest))
        .group_by(ConnectionEvent.kind, ConnectionEvent.cause)
    ).all()
    checked = failing = succeeded = 0
    causes: Counter = Counter()
    for kind, cause, count in rows:
        checked += count
        if kind in SUCCESS_KINDS:
            succeeded += count
        elif cause in INCIDENT_CAUSES:
            failing += count
            causes[cause] += count
    return Figures(checked=checked, failing=failing, succeeded=succeeded, causes=causes)


@dataclass(frozen=True)
class OpenIncident:
    """What the pages need of the open incident (every polled card reads it: three columns, no ORM object)."""

    id: int
    opened_at: datetime
    recovering_since: datetime | None


# Built once: building the statement cost more than running it (0.2 ms a poll).
_OPEN_INCIDENT = (
    select(FleetIncident.id, FleetIncident.opened_at, FleetIncident.recovering_since)
    .where(FleetIncident.scope == SCOPE, FleetIncident.closed_at.is_(None))
    .limit(1)
)


def current() -> OpenIncident | None:
    """The open incident, if any (read once per request: the card, the panel and the banner share it)."""
    if has_request_context() and "fleet_incident" in g:
        return g.fleet_incident
    row = db.session.execute(_OPEN_INCIDENT).first()
    incident = OpenIncident(*row) if row is not None else None
    if has_request_context():
        g.fleet_incident = incident
    return incident


def part_of(connection: InstagramConnection | None, incident: OpenIncident | None) -> bool:
    """Whether this connection's trouble is the open incident's: working but failing for Meta's reasons."""
    return (
        incident is not None
        and connection is not None
        and connection.state in (ConnectionState.DEGRADED, ConnectionState.EXPIRING)
        and connection.cause in INCIDENT_CAUSES
    )


def evaluate(now: datetime, thresholds: Thresholds) -> str | None:
    """Open, update or close the incident from the figures in the window; commit.

    Returns what happened: "opened", "closed", or None when no incident started or ended.
    """
    if db.engine.dialect.name == "postgresql":
        # One decision at a time: a second worker waits, then sees the first one's row.
        db.session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK})
    incident = db.session.scalar(
        select(FleetIncident).where(FleetIncident.scope == SCOPE, FleetIncident.closed_at.is_(None)).limit(1)
    )
    figures = fleet_figures(now, thresholds.window)
    if incident is None:
        if not thresholds.opens(figures):
            db.session.commit()
            return None
        return _open(now, figures)
    return _follow(incident, now, figures, thresholds)


def _open(now: datetime, figures: Figures) -> str | None:
    incident = FleetIncident(
        scope=SCOPE,
        opened_at=now,
        causes=_cause_list(figures.causes),
        failing_at_open=figures.failing,
        checked_at_open=figures.checked,
        peak_failing=figures.failing,
        peak_percent=figures.percent,
    )
    try:
        with db.session.begin_nested():
            db.session.add(incident)
    except IntegrityError:
        # Another worker opened it a moment ago (the unique index on open incidents): that one stands.
        db.session.rollback()
        return None
    _timeline(incident, now, "opened", figures, "Incident opened: Meta is failing for much of the fleet.")
    audit.record(
        "incident.opened",
        now=now,
        actor=None,
        label="keep-alive worker",
        details=f"incident {incident.id}: {figures.words()} Causes: {incident.causes}.",
        commit=False,
    )
    webhooks.emit_fleet(webhooks.INCIDENT_OPENED, now, payload(incident, figures))
    db.session.commit()
    log.warning("fleet incident %s opened: %s (causes %s)", incident.id, figures.words(), incident.causes)
    return "opened"


def _follow(incident: FleetIncident, now: datetime, figures: Figures, thresholds: Thresholds) -> str | None:
    incident.peak_failing = max(incident.peak_failing, figures.failing)
    incident.peak_percent = max(incident.peak_percent, figures.percent)
    incident.causes = _cause_list(Counter(incident.cause_ids) + figures.causes)
    if thresholds.opens(figures):
        kind = "relapsed" if incident.recovering_since is not None else "ongoing"
        message = "Failing again after calls had recovered." if kind == "relapsed" else "Still failing."
        incident.recovering_since = None
    elif thresholds.calm(figures) or (figures.checked == 0 and incident.recovering_since is not None):
        kind, message = "recovering", "Calls to Meta succeed again."
        if incident.recovering_since is None:
            incident.recovering_since = now
        if now - incident.recovering_since >= thresholds.close_after:
            return _close(incident, now, figures, thresholds)
    else:
        # Between the two thresholds, or no calls yet: not over, and any recovery starts again.
        kind, message = "ongoing", "Some calls still fail."
        if figures.checked:
            incident.recovering_since = None
    _timeline(incident, now, kind, figures, message)
    db.session.commit()
    return None


def _close(incident: FleetIncident, now: datetime, figures: Figures, thresholds: Thresholds) -> str | None:
    closed = db.session.execute(
        update(FleetIncident)
        .where(FleetIncident.id == incident.id, FleetIncident.closed_at.is_(None))
        .values(closed_at=now)
        .execution_options(synchronize_session=False)
    )
    if closed.rowcount != 1:  # type: ignore[attr-defined]
        db.session.rollback()
        return None
    incident.closed_at = now
    incident.shops_touched = db.session.scalar(
        select(func.count()).select_from(_touched_ids(incident, thresholds.window, now).subquery())
    )
    quiet = now - (incident.recovering_since or now)
    _timeline(
        incident,
        now,
        "closed",
        figures,
        f"Incident closed: calls have succeeded again for {int(quiet.total_seconds() // 60)} minutes.",
    )
    audit.record(
        "incident.closed",
        now=now,
        actor=None,
        label="keep-alive worker",
        details=f"incident {incident.id}: open since {incident.opened_at:%Y-%m-%d %H:%M} UTC, "
        f"{incident.shops_touched} shops touched. {figures.words()}",
        commit=False,
    )
    webhooks.emit_fleet(webhooks.INCIDENT_CLOSED, now, payload(incident, figures))
    db.session.commit()
    log.warning("fleet incident %s closed: %s shops touched", incident.id, incident.shops_touched)
    return "closed"


def _timeline(incident: FleetIncident, now: datetime, kind: str, figures: Figures, message: str) -> None:
    db.session.add(
        FleetIncidentUpdate(
            incident=incident,
            occurred_at=now,
            kind=kind,
            checked=figures.checked,
            failing=figures.failing,
            message=f"{message} {figures.words()}"[:500],
        )
    )


def _cause_list(causes: Counter) -> str:
    return ",".join(cause for cause in INCIDENT_CAUSES if causes[cause])


def payload(incident: FleetIncident, figures: Figures) -> dict:
    """The webhook body's `data` for the incident's start or end; no shop is named."""
    return {
        "incident_id": incident.id,
        "status": "open" if incident.closed_at is None else "closed",
        "opened_at": webhooks.timestamp(incident.opened_at),
        "closed_at": webhooks.timestamp(incident.closed_at),
        "causes": incident.cause_ids,
        "connections_checked": figures.checked,
        "connections_failing": figures.failing,
        "shops_touched": incident.shops_touched,
    }


def _touched_ids(incident: FleetIncident, window: timedelta, now: datetime) -> Select:
    """The connections that failed for Meta's reasons during the incident (and the window that opened it)."""
    until = incident.closed_at or now
    return (
        select(ConnectionEvent.connection_id)
        .where(
            ConnectionEvent.occurred_at > incident.opened_at - window,
            ConnectionEvent.occurred_at <= until,
            ConnectionEvent.cause.in_(INCIDENT_CAUSES),
            ConnectionEvent.kind.in_(FAILURE_KINDS),
        )
        .distinct()
    )


def touched_connections(incident: FleetIncident, window: timedelta, now: datetime) -> Select:
    """The touched shops' connections (with their shop), by shop name, for paging."""
    return (
        select(InstagramConnection)
        .join(Shop, Shop.id == InstagramConnection.shop_id)
        .where(InstagramConnection.id.in_(_touched_ids(incident, window, now)))
        .order_by(func.lower(Shop.name), Shop.id)
    )


def timeline(incident: FleetIncident) -> list[FleetIncidentUpdate]:
    """The incident's timeline, oldest first (the latest TIMELINE_SHOWN lines)."""
    rows = db.session.scalars(
        select(FleetIncidentUpdate)
        .where(FleetIncidentUpdate.incident_id == incident.id)
        .order_by(FleetIncidentUpdate.occurred_at.desc(), FleetIncidentUpdate.id.desc())
        .limit(TIMELINE_SHOWN)
    ).all()
    return list(reversed(rows))


def all_incidents() -> Select:
    """Every incident, newest first (for paging)."""
    return select(FleetIncident).order_by(FleetIncident.opened_at.desc(), FleetIncident.id.desc())
