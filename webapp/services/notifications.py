"""Who hears what, when, exactly once: disconnect notices, reminders, pre-expiry warnings, recovery.

Planning decides which notices are due (with a fixed `now`) and records each one under an
idempotency key (connection, incident or expiry, kind, person); a unique index makes parallel
workers and retries harmless. Delivery claims each pending mail right before sending it over SMTP
(`deliver` states the claim rule), retrying refusals with backoff; without MAIL_URL they stay in
the outbox for staff to read.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypedDict, cast

from flask import Flask, render_template, url_for
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import CursorResult, or_, select, update
from sqlalchemy.exc import IntegrityError

from webapp.extensions import db
from webapp.models import InstagramConnection, Notification, OutboundMail, UsedLinkToken, User
from webapp.services import mailer
from webapp.services.diagnosis import diagnose_connection

log = logging.getLogger(__name__)

# The claim's database writes (the claim, the outcome) in the worst case, SQLite's busy wait included.
CLAIM_WRITE_SECONDS = 5
RETRY_DELAYS = (timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=30), timedelta(hours=2))
NOTICE_STATES = ("needs_reconnect", "expiring", "degraded", "healthy")


@dataclass(frozen=True)
class Notice:
    kind: str  # disconnected | reminder | expiry_warning | restored
    key: str  # without the person
    days: int = 0
    optional_preference: str | None = None  # the User flag that may turn it off


class LinkError(ValueError):
    """A signed link is broken, expired or already used; the message is for the person."""


def _serializer(app: Flask, purpose: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(app.config["SECRET_KEY"], salt=f"shop-health:{purpose}")


def reconnect_token(app: Flask, connection_id: int, user_id: int) -> str:
    return _serializer(app, "reconnect").dumps({"c": connection_id, "u": user_id, "n": secrets.token_urlsafe(12)})


def read_reconnect_token(app: Flask, token: str) -> dict:
    """Verify a reconnect link; raise LinkError when it is forged, too old or already used."""
    max_age = app.config["RECONNECT_LINK_DAYS"] * 86400
    try:
        payload = _serializer(app, "reconnect").loads(token, max_age=max_age)
    except SignatureExpired as exc:
        raise LinkError("This reconnect link has expired. You can reconnect from your dashboard.") from exc
    except BadSignature as exc:
        raise LinkError("This reconnect link is not valid. You can reconnect from your dashboard.") from exc
    if db.session.get(UsedLinkToken, payload["n"]) is not None:
        raise LinkError("This reconnect link was already used. You can reconnect from your dashboard.")
    return payload


def use_reconnect_token(payload: dict, now: datetime) -> None:
    db.session.add(UsedLinkToken(nonce=payload["n"], used_at=now))
    try:
        db.session.commit()
    except IntegrityError as exc:
        db.session.rollback()
        raise LinkError("This reconnect link was already used. You can reconnect from your dashboard.") from exc


def unsubscribe_token(app: Flask, user_id: int) -> str:
    return _serializer(app, "unsubscribe").dumps({"u": user_id})


def read_unsubscribe_token(app: Flask, token: str) -> int:
    try:
        return int(_serializer(app, "unsubscribe").loads(token, max_age=400 * 86400)["u"])
    except (BadSignature, KeyError, TypeError, ValueError) as exc:
        raise LinkError("This unsubscribe link is not valid. Change your mail settings from your account.") from exc


def due_notices(connection: InstagramConnection, now: datetime, config, sent_keys: set[str]) -> list[Notice]:
    """The notices this connection is due at `now` (before de-duplication by key)."""
    notices: list[Notice] = []
    if connection.state == "needs_reconnect" and connection.incident_started_at is not None:
        incident = f"c{connection.id}:i{connection.incident_started_at:%Y%m%dT%H%M%S}"
        notices.append(Notice("disconnected", f"{incident}:disconnected"))
        previous = f"{incident}:disconnected"
        for days in config["REMINDER_DAYS"]:
            key = f"{incident}:reminder{days}"
            # A reminder follows an earlier notice; a long outage of the worker does not send all at once.
            if now - connection.incident_started_at >= timedelta(days=days) and previous in sent_keys:
                notices.append(Notice("reminder", key, days, "notify_reminders"))
            previous = key
    refresh_failing = connection.refresh_failures > 0 and connection.state in ("expiring", "degraded")
    if refresh_failing and connection.token_expires_at is not None and connection.token_expires_at > now:
        left = connection.token_expires_at - now
        due = [days for days in config["EXPIRY_WARNING_NOTICE_DAYS"] if left <= timedelta(days=days)]
        if due:
            days = min(due)  # only the most urgent warning that applies
            key = f"c{connection.id}:e{connection.token_expires_at:%Y%m%d}:expiry{days}"
            notices.append(Notice("expiry_warning", key, days, "notify_expiry_warnings"))
    if connection.state == "healthy" and connection.resolved_incident_at is not None:
        incident = f"c{connection.id}:i{connection.resolved_incident_at:%Y%m%dT%H%M%S}"
        if f"{incident}:disconnected" in sent_keys:
            notices.append(Notice("restored", f"{incident}:restored"))
    return notices


def _base_url(app: Flask) -> str:
    return app.config.get("PUBLIC_BASE_URL") or app.config["LOCAL_BASE_URL"]


def _compose(app: Flask, notice: Notice, connection: InstagramConnection, person: User, now: datetime) -> dict:
    """Subject, text and HTML of one notice for one person, with working links."""
    diagnosis = diagnose_connection(connection, now) if notice.kind != "restored" else None
    primary = diagnosis.primary if diagnosis else None
    with app.test_request_context(base_url=_base_url(app)):
        links = {
            "dashboard": url_for("dashboard.index", _external=True),
            "reconnect": url_for(
                "instagram.reconnect_link", token=reconnect_token(app, connection.id, person.id), _external=True
            ),
            "help": url_for("dashboard.why_disconnects", _external=True) + (f"#{primary.cause.id}" if primary else ""),
            "settings": url_for("notifications.settings", _external=True),
            "unsubscribe": url_for(
                "notifications.unsubscribe", token=unsubscribe_token(app, person.id), _external=True
            ),
        }
        shop = connection.shop.name
        subjects = {
            "disconnected": f"Instagram is disconnected from {shop}: please reconnect",
            "reminder": f"Reminder: Instagram is still disconnected from {shop}",
            "expiry_warning": f"Instagram connection for {shop} ends in {notice.days} days",
            "restored": f"Instagram is connected again for {shop}",
            "reconnect_link": f"Your link to reconnect Instagram for {shop}",
        }
        context = {
            "notice": notice,
            "connection": connection,
            "person": person,
            "shop": shop,
            "cause": primary.cause if primary else None,
            "pattern": primary.pattern if primary else None,
            "checklist": primary.checklist if primary else [],
            "links": links,
            "expires_at": connection.token_expires_at,
            "failing_since": connection.failing_since,
        }
        text = render_template(f"mail/{notice.kind}.txt", **context)
        html = render_template(f"mail/{notice.kind}.html", **context)
    return {
        "subject": subjects[notice.kind],
        "text": text,
        "html": html,
        "link": links["reconnect"] if notice.kind != "restored" else links["dashboard"],
        "unsubscribe": links["unsubscribe"] if notice.optional_preference else links["settings"],
    }


IN_APP_TITLES = {
    "disconnected": "Instagram is disconnected",
    "reminder": "Instagram is still disconnected",
    "expiry_warning": "Instagram connection ends soon",
    "restored": "Instagram is connected again",
    "reconnect_link": "Support sent you a reconnect link",
}


def plan(app: Flask, now: datetime, connection_ids: list[int] | None = None) -> int:
    """Record every notice that is due now, once per key and person. Return how many were new.

    The worker that wins the scheduler tick plans for everyone; a worker or a request that has just
    changed a connection plans for that one at once, so a disconnect mail does not wait a minute.
    """
    query = select(InstagramConnection)
    if connection_ids is not None:
        query = query.where(InstagramConnection.id.in_(connection_ids))
    candidates = db.session.scalars(
        query.where(
            InstagramConnection.state.in_(NOTICE_STATES),
            or_(
                InstagramConnection.incident_started_at.is_not(None),
                InstagramConnection.resolved_incident_at.is_not(None),
                InstagramConnection.refresh_failures > 0,
            ),
        )
    ).all()
    created = 0
    for connection in candidates:
        sent_keys = set(
            db.session.scalars(
                select(Notification.idempotency_key).where(Notification.idempotency_key.like(f"c{connection.id}:%"))
            )
        )
        sent_keys = {key.rsplit(":u", 1)[0] for key in sent_keys}
        people = [u for u in connection.shop.users if u.active and u.role == "merchant"]
        for notice in due_notices(connection, now, app.config, sent_keys):
            for person in people:
                if notice.optional_preference and not getattr(person, notice.optional_preference):
                    continue
                created += _record(app, notice, connection, person, now)
        if connection.state == "healthy" and connection.resolved_incident_at is not None:
            # The restored notice (if any) is recorded. Only this bookkeeping column is cleared, and
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
    content = _compose(app, notice, connection, person, now)
    status = "pending" if app.config.get("MAIL_URL") else "outbox"
    try:
        with db.session.begin_nested():
            db.session.add(
                Notification(
                    idempotency_key=key,
                    user_id=person.id,
                    kind=notice.kind,
                    title=IN_APP_TITLES[notice.kind],
                    body=content["subject"],
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


def mail_lease(config: dict) -> timedelta:
    """How long a sender's claim on one mail lasts: twice the worst case of the send and its writes.

    Derived from MAIL_SEND_TIMEOUT (the whole SMTP conversation, enforced by the mailer) rather than
    set beside it, so no configuration can make a claim run out while its message is still going.
    """
    return 2 * timedelta(seconds=config["MAIL_SEND_TIMEOUT"] + CLAIM_WRITE_SECONDS)


def deliver(app: Flask, now: datetime, limit: int = 20, stop: threading.Event | None = None) -> dict:
    """Send pending mails one claim at a time, so parallel senders never send one twice (promise 37).

    The claim rule, the same for every sender: a mail is claimed right before its message goes out,
    by a compare-and-set from `pending` to `sending` that writes a token of this claim and a lease
    (`mail_lease`, longer than the longest possible send). Only a sender whose update hit the row
    talks to the SMTP server, with no transaction open, and it records the outcome with the same
    compare-and-set on its token: a claim that is no longer its own changes nothing.

    When the outcome is unknown we choose at most once. A mail whose data reached the server but
    whose answer never came back, and a mail whose claim ran out with no outcome recorded (its
    sender was killed, or lost the database, mid-send), become `unknown`: they may have been
    delivered, so no sender sends them again, and staff see them in the outbox. Only a mail the
    server refused, or that failed before its data was complete, is retried. Nothing goes from
    `sending` back to `pending` except by its own claimant's outcome, so no timing (a slow server,
    a paused process, clocks that disagree) can have two senders send one mail; the lease only
    decides when a silent claim is given up as `unknown`.

    `now` is when the run started; claims read the time as `now` plus the time spent since, since
    a run with a slow server lasts minutes. Once `stop` is set no further mail is claimed.
    """
    if not app.config.get("MAIL_URL"):
        return {}
    settings = mailer.parse_mail_url(app.config["MAIL_URL"], app.config["MAIL_FROM"], app.config["MAIL_SEND_TIMEOUT"])
    lease = mail_lease(app.config)
    started = time.monotonic()

    def clock() -> datetime:
        return now + timedelta(seconds=time.monotonic() - started)

    results = {"sent": 0, "retry": 0, "failed": 0, "unknown": _give_up_on_lost_claims(clock())}
    for _ in range(limit):
        if stop is not None and stop.is_set():
            break
        claim = _claim_next(clock(), lease)
        if claim is None:
            break
        message = mailer.build_message(
            sender=settings.sender,
            to=claim.to_address,
            subject=claim.subject,
            text=claim.text_body,
            html=claim.html_body,
            unsubscribe_url=claim.unsubscribe_url,
        )
        outcome: _Outcome
        try:
            mailer.send(settings, message)
        except mailer.OutcomeUnknown as error:
            outcome = {"status": "unknown", "last_error": f"outcome unknown: {error}"[:500]}
        except (OSError, mailer.smtplib.SMTPException) as error:
            outcome = {"last_error": f"{type(error).__name__}: {error}"[:500]}
            if claim.attempts > len(RETRY_DELAYS):
                outcome["status"] = "failed"
            else:
                outcome["status"] = "pending"
                outcome["next_attempt_at"] = clock() + RETRY_DELAYS[claim.attempts - 1]
        else:
            outcome = {"status": "sent", "sent_at": clock()}
        summary = "retry" if outcome["status"] == "pending" else outcome["status"]
        if summary != "sent":
            log.warning(
                "mail %s to user %s (attempt %d): %s", claim.kind, claim.user_id, claim.attempts, outcome["last_error"]
            )
        if _record_outcome(claim, outcome):
            results[summary] += 1
    return results


class _Outcome(TypedDict, total=False):
    """The columns a send's outcome writes to its mail."""

    status: str
    last_error: str
    next_attempt_at: datetime
    sent_at: datetime


@dataclass(frozen=True)
class _Claim:
    id: int
    token: str
    attempts: int
    kind: str
    user_id: int | None
    to_address: str
    subject: str
    text_body: str
    html_body: str
    unsubscribe_url: str | None


def _due(now: datetime):
    return or_(OutboundMail.next_attempt_at.is_(None), OutboundMail.next_attempt_at <= now)


def _claim_next(now: datetime, lease: timedelta) -> _Claim | None:
    """Claim one due mail (compare-and-set, any database) and read it; the transaction ends here."""
    candidates = db.session.scalars(
        select(OutboundMail.id)
        .where(OutboundMail.status == "pending", _due(now))
        .order_by(OutboundMail.next_attempt_at, OutboundMail.id)
        .limit(5)
    ).all()
    for mail_id in candidates:
        token = secrets.token_hex(8)
        # Session.execute types every result as a plain Result; an UPDATE's is a CursorResult.
        taken = cast(
            CursorResult,
            db.session.execute(
                update(OutboundMail)
                .where(OutboundMail.id == mail_id, OutboundMail.status == "pending", _due(now))
                .values(
                    status="sending",
                    claim_token=token,
                    lease_expires_at=now + lease,
                    attempts=OutboundMail.attempts + 1,
                )
                .execution_options(synchronize_session=False)
            ),
        )
        if taken.rowcount != 1:
            db.session.commit()
            continue  # another sender was first
        row = db.session.execute(select(OutboundMail.__table__).where(OutboundMail.id == mail_id)).one()
        db.session.commit()  # the claim is ours; nothing stays open while SMTP talks
        return _Claim(
            id=row.id,
            token=token,
            attempts=row.attempts,
            kind=row.kind,
            user_id=row.user_id,
            to_address=row.to_address,
            subject=row.subject,
            text_body=row.text_body,
            html_body=row.html_body,
            unsubscribe_url=row.unsubscribe_url,
        )
    db.session.commit()
    return None


def _record_outcome(claim: _Claim, outcome: _Outcome) -> bool:
    """Write the outcome only while the claim is still this sender's; say whether it was.

    The token, new with every claim, is the fence: a row no other sender has claimed since is ours
    even if our lease ran out (`unknown` then only meant nobody had reported yet), so a late `sent`
    still lands; a row someone else claimed is not touched.
    """
    written = cast(
        CursorResult,
        db.session.execute(
            update(OutboundMail)
            .where(
                OutboundMail.id == claim.id,
                OutboundMail.claim_token == claim.token,
                OutboundMail.status.in_(("sending", "unknown")),
            )
            .values(lease_expires_at=None, **outcome)
            .execution_options(synchronize_session=False)
        ),
    ).rowcount
    db.session.commit()
    if written != 1:
        log.error(
            "mail %s to user %s: the claim was lost during the send; outcome %s not recorded",
            claim.kind,
            claim.user_id,
            outcome["status"],
        )
    return written == 1


def _give_up_on_lost_claims(now: datetime) -> int:
    """Mark mails whose claim ran out with no outcome as `unknown`: they may have left (at most once)."""
    lost = cast(
        CursorResult,
        db.session.execute(
            update(OutboundMail)
            .where(OutboundMail.status == "sending", OutboundMail.lease_expires_at < now)
            .values(status="unknown", last_error="outcome unknown: the sender stopped during the send")
            .execution_options(synchronize_session=False)
        ),
    ).rowcount
    db.session.commit()
    if lost:
        log.warning("%d mail(s) were being sent by a sender that stopped; not sending them again", lost)
    return lost


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
    from webapp.services import audit

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
