"""Who hears what, when, exactly once: which notices are due, recorded under an idempotency key.

Planning decides which notices are due (with a fixed `now`) and records each one under an
idempotency key (connection, incident or expiry, kind, person); a unique index makes parallel
workers and retries harmless. A connection that keeps breaking and coming back is damped by a quiet
period (NOTICE_QUIET_MINUTES, see `due_notices`), never at the cost of the first disconnect mail.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from flask import Flask
from sqlalchemy import and_, or_, select, update
from sqlalchemy.exc import IntegrityError

from webapp.extensions import db
from webapp.models import (
    ConnectionEvent,
    ConnectionState,
    InstagramConnection,
    LoginPath,
    Notification,
    OutboundMail,
    User,
)
from webapp.services import audit, incidents
from webapp.services.keepalive.leases import ACTIVE_STATES
from webapp.services.keepalive.outcomes import Summary
from webapp.services.notify.compose import compose_notice

log = logging.getLogger(__name__)


NOTICE_STATES = (
    ConnectionState.NEEDS_RECONNECT,
    ConnectionState.EXPIRING,
    ConnectionState.DEGRADED,
    ConnectionState.HEALTHY,
)


# Keep-alive results (worker or manual) after which the merchant may need to hear from us at once
# (a disconnect, an expiry, a recovery) rather than at the scheduler's next tick.
NOTIFY_AT_ONCE = frozenset({Summary.NEEDS_RECONNECT, Summary.EXPIRED, Summary.RECOVERED})


def notifies_at_once(summary: str) -> bool:
    """Whether this keep-alive result may owe the merchant a notice right away."""
    return summary in NOTIFY_AT_ONCE


@dataclass(frozen=True)
class Notice:
    kind: str  # disconnected | reminder | expiry_warning | restored | reconnect_link
    key: str  # without the person
    days: int = 0
    optional_preference: str | None = None  # the User flag that may turn it off
    # A flapping connection's summary: our "disconnected" notice this one follows, and how many times
    # the connection broke again since then (counted when the notice is recorded).
    told_at: datetime | None = None
    breaks_since: int = 0


@dataclass(frozen=True)
class Told:
    """What one person has been told about a connection's incidents."""

    keys: frozenset[str] = frozenset()  # the notices they were given, without the person
    broken_since: datetime | None = None  # our latest "disconnected" notice, unless "restored" followed it


def incident_prefix(connection_id: int, started_at: datetime) -> str:
    """The start of every key about one incident (a stretch of needs_reconnect)."""
    return f"c{connection_id}:i{started_at:%Y%m%dT%H%M%S}"


def _expiry_prefix(connection: InstagramConnection) -> str:
    """The start of every key about one token's coming expiry."""
    return f"c{connection.id}:e{connection.token_expires_at:%Y%m%d}"


def _refresh_failing(connection: InstagramConnection, now: datetime) -> bool:
    """Renewal keeps failing while the token still works: what expiry warnings are about."""
    return (
        connection.refresh_failures > 0
        and connection.state in (ConnectionState.EXPIRING, ConnectionState.DEGRADED)
        and connection.token_expires_at is not None
        and connection.token_expires_at > now
    )


def _window_open(connection: InstagramConnection, now: datetime) -> bool:
    """Facebook Login: the data-access window has not ended yet, and only the merchant can renew it.

    We never renew these connections ourselves, so the warnings are due whether or not anything
    failed; a renewed window has a new end, hence new keys.
    """
    return (
        connection.via_facebook
        and connection.has_token
        and connection.state in ACTIVE_STATES
        and connection.token_expires_at is not None
        and connection.token_expires_at > now
    )


def _expiry_ahead(connection: InstagramConnection, now: datetime) -> bool:
    """Whether the connection's end by date is something the merchant should hear about."""
    return _window_open(connection, now) if connection.via_facebook else _refresh_failing(connection, now)


def restore_settled(connection: InstagramConnection, now: datetime, config) -> bool:
    """Whether a resolved incident has stayed resolved for the quiet period ("connected again" may go)."""
    healthy_since = connection.state_changed_at or now
    return now - healthy_since >= timedelta(minutes=config["NOTICE_QUIET_MINUTES"])


def due_notices(
    connection: InstagramConnection, now: datetime, config, told: Told, *, in_incident: bool = False
) -> list[Notice]:
    """The notices this connection is due at `now` for one person (before de-duplication by key).

    Flapping is damped without holding back bad news from anyone who believes all is well. A
    disconnect is due at once, unless this person was told "disconnected" less than the quiet period
    before it broke and has not been told it came back: what they believe is still true, so the
    new incident waits for the end of that quiet period and goes only if still open then, as one
    summary. "Connected again" waits until the connection has held for the quiet period, so a break
    meanwhile leaves that person believing, rightly, that it is broken.

    While the connection's trouble is part of a fleet incident (`in_incident`: Meta itself failing),
    the warning that renewal keeps failing waits: it is Meta's trouble, the merchant can do nothing,
    and the warning goes once the incident is over if renewal still fails. A disconnect is never held.
    """
    quiet = timedelta(minutes=config["NOTICE_QUIET_MINUTES"])
    notices: list[Notice] = []
    if connection.state == ConnectionState.NEEDS_RECONNECT and connection.incident_started_at is not None:
        incident = incident_prefix(connection.id, connection.incident_started_at)
        disconnected = f"{incident}:disconnected"
        told_at = told.broken_since
        if told_at is None or connection.incident_started_at - told_at >= quiet:
            notices.append(Notice("disconnected", disconnected))
        elif disconnected not in told.keys and now >= told_at + quiet:
            notices.append(Notice("disconnected", disconnected, told_at=told_at))  # flapping: one summary
        previous = disconnected
        for days in config["REMINDER_DAYS"]:
            key = f"{incident}:reminder{days}"
            # A reminder follows an earlier notice; a long outage of the worker does not send all at once.
            if now - connection.incident_started_at >= timedelta(days=days) and previous in told.keys:
                notices.append(Notice("reminder", key, days, "notify_reminders"))
            previous = key
    held = in_incident and not connection.via_facebook  # Facebook's window ends on its date whatever Meta does
    if _expiry_ahead(connection, now) and connection.token_expires_at is not None and not held:
        left = connection.token_expires_at - now
        due = [days for days in config["EXPIRY_WARNING_NOTICE_DAYS"] if left <= timedelta(days=days)]
        if due:
            days = min(due)  # only the most urgent warning that applies
            key = f"{_expiry_prefix(connection)}:expiry{days}"
            notices.append(Notice("expiry_warning", key, days, "notify_expiry_warnings"))
    if (
        connection.state == ConnectionState.HEALTHY
        and connection.resolved_incident_at is not None
        and told.broken_since is not None
        and restore_settled(connection, now, config)
    ):
        incident = incident_prefix(connection.id, connection.resolved_incident_at)
        notices.append(Notice("restored", f"{incident}:restored", told_at=told.broken_since))
    return notices


# The notices whose link starts a reconnect.
RECONNECT_KINDS = ("disconnected", "reminder", "expiry_warning", "reconnect_link")


def calls_for_reconnect(
    notes: list[Notification], connection: InstagramConnection | None, now: datetime, config
) -> set[int]:
    """The ids of the notices whose Reconnect still applies: the trouble each was about is still there.

    A disconnect or a reminder belongs to its incident and applies while that incident is open; an
    expiry warning while renewal of that same token keeps failing (Facebook Login: until that same
    window is renewed); support's link until it expires or the shop reconnects.
    """
    if connection is None:
        return set()
    live_prefixes = []
    if connection.state == ConnectionState.NEEDS_RECONNECT and connection.incident_started_at is not None:
        live_prefixes.append(incident_prefix(connection.id, connection.incident_started_at) + ":")
    if _expiry_ahead(connection, now):
        live_prefixes.append(_expiry_prefix(connection) + ":")
    link_lifetime = timedelta(days=config["RECONNECT_LINK_DAYS"])

    def applies(note: Notification) -> bool:
        if note.kind == "reconnect_link":
            reconnected_since = connection.connected_at is not None and connection.connected_at >= note.created_at
            return (
                note.idempotency_key.startswith(f"c{connection.id}:")
                and now < note.created_at + link_lifetime
                and not reconnected_since
            )
        return note.kind in RECONNECT_KINDS and note.idempotency_key.startswith(tuple(live_prefixes))

    return {note.id for note in notes if applies(note)}


def told_about(connection: InstagramConnection) -> dict[int, Told]:
    """What each person has been told about this connection, from the notices recorded for them."""
    rows = db.session.execute(
        select(Notification.user_id, Notification.idempotency_key, Notification.kind, Notification.created_at)
        .where(Notification.idempotency_key.like(f"c{connection.id}:%"))
        .order_by(Notification.created_at, Notification.id)
    ).all()
    keys: dict[int, set[str]] = {}
    broken_since: dict[int, datetime | None] = {}
    for row in rows:
        keys.setdefault(row.user_id, set()).add(row.idempotency_key.rsplit(":u", 1)[0])
        if row.kind == "disconnected":
            broken_since[row.user_id] = row.created_at
        elif row.kind == "restored":
            broken_since[row.user_id] = None
    return {
        user_id: Told(keys=frozenset(user_keys), broken_since=broken_since.get(user_id))
        for user_id, user_keys in keys.items()
    }


def breaks_since(connection_id: int, since: datetime) -> int:
    """How many times the connection broke (moved into needs_reconnect) after `since`, when it was broken."""
    states = db.session.scalars(
        select(ConnectionEvent.state_after)
        .where(ConnectionEvent.connection_id == connection_id, ConnectionEvent.occurred_at > since)
        .order_by(ConnectionEvent.occurred_at, ConnectionEvent.id)
    )
    breaks, previous = 0, str(ConnectionState.NEEDS_RECONNECT)
    for state in states:
        if state == ConnectionState.NEEDS_RECONNECT and previous != ConnectionState.NEEDS_RECONNECT:
            breaks += 1
        previous = state or previous
    return breaks


def plan(app: Flask, now: datetime, connection_ids: list[int] | None = None) -> int:
    """Record every notice that is due now, once per key and person. Return how many were new.

    The worker that wins the scheduler tick plans for everyone; a worker or a request that has just
    changed a connection plans for that one at once, so a disconnect mail does not wait a minute.
    """
    query = select(InstagramConnection)
    if connection_ids is not None:
        query = query.where(InstagramConnection.id.in_(connection_ids))
    reasons = [
        InstagramConnection.incident_started_at.is_not(None),
        InstagramConnection.resolved_incident_at.is_not(None),
        InstagramConnection.refresh_failures > 0,
    ]
    warning_days = app.config["EXPIRY_WARNING_NOTICE_DAYS"]
    if warning_days:
        # Facebook Login's window ends on its date whatever happens: no failure announces it.
        reasons.append(
            and_(
                InstagramConnection.login_path == LoginPath.FACEBOOK,
                InstagramConnection.token_expires_at <= now + timedelta(days=max(warning_days)),
            )
        )
    candidates = db.session.scalars(query.where(InstagramConnection.state.in_(NOTICE_STATES), or_(*reasons))).all()
    incident = incidents.current()
    created = 0
    for connection in candidates:
        told = told_about(connection)
        people = [u for u in connection.shop.users if u.active and u.role == "merchant"]
        in_incident = incidents.part_of(connection, incident)
        for person in people:
            for notice in due_notices(
                connection, now, app.config, told.get(person.id, Told()), in_incident=in_incident
            ):
                if notice.optional_preference and not getattr(person, notice.optional_preference):
                    continue
                created += _record(app, notice, connection, person, now)
        if (
            connection.state == ConnectionState.HEALTHY
            and connection.resolved_incident_at is not None
            and restore_settled(connection, now, app.config)
        ):
            # The restored notices (if any) are recorded. Only this bookkeeping column is cleared, and
            # only if it still holds what was planned for: no version move, so a refresh in flight
            # is not discarded for it and this plan never fails on a row a worker just changed.
            db.session.execute(
                update(InstagramConnection)
                .where(
                    InstagramConnection.id == connection.id,
                    InstagramConnection.resolved_incident_at == connection.resolved_incident_at,
                )
                .values(resolved_incident_at=None)
                .execution_options(synchronize_session=False)
            )
    db.session.commit()
    return created


def _record(app: Flask, notice: Notice, connection: InstagramConnection, person: User, now: datetime) -> int:
    key = f"{notice.key}:u{person.id}"
    if db.session.scalar(select(Notification.id).where(Notification.idempotency_key == key)):
        return 0
    if notice.told_at is not None:
        notice = replace(notice, breaks_since=breaks_since(connection.id, notice.told_at))
    content = compose_notice(app, notice, connection, person, now)
    status = "pending" if app.config.get("MAIL_URL") else "outbox"
    try:
        with db.session.begin_nested():
            db.session.add(
                Notification(
                    idempotency_key=key,
                    user_id=person.id,
                    kind=notice.kind,
                    title=content["title"],
                    body=content["in_app"],
                    link=content["link"],
                    created_at=now,
                )
            )
            db.session.add(
                OutboundMail(
                    idempotency_key=key,
                    kind=notice.kind,
                    connection_id=connection.id,
                    user_id=person.id,
                    to_address=person.email,
                    subject=content["subject"],
                    text_body=content["text"],
                    html_body=content["html"],
                    unsubscribe_url=content["unsubscribe"],
                    status=status,
                    next_attempt_at=now,
                    created_at=now,
                )
            )
    except IntegrityError:
        return 0  # another worker recorded it first: exactly once
    if status == "outbox":
        log.info("mail kept in the outbox (no MAIL_URL): %s to user %s", notice.kind, person.id)
    return 1


def send_reconnect_link(
    app: Flask,
    connection: InstagramConnection,
    agent: User,
    now: datetime,
    *,
    impersonation_id: int | None = None,
    ip_prefix: str | None = None,
) -> int:
    """Mail each merchant of the shop a fresh reconnect link, at support's request. Returns how many."""
    people = [u for u in connection.shop.users if u.active and u.role == "merchant"]
    notice = Notice("reconnect_link", f"c{connection.id}:link{now:%Y%m%dT%H%M%S%f}")
    for person in people:
        _record(app, notice, connection, person, now)
        audit.record(
            "reconnect_link.sent",
            now=now,
            actor=agent,
            subject_user=person,
            subject_shop_id=connection.shop_id,
            impersonation_id=impersonation_id,
            ip_prefix=ip_prefix,
            commit=False,
        )
    db.session.commit()
    return len(people)
