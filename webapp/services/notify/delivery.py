"""Sending recorded mails: claim each right before the SMTP send, retry refusals, never send twice.

Without MAIL_URL the mails stay in the outbox for staff to read.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypedDict, cast

from flask import Flask
from sqlalchemy import CursorResult, or_, select, update

from webapp.extensions import db
from webapp.models import OutboundMail
from webapp.services.notify import smtp

log = logging.getLogger(__name__)


# The claim's database writes (the claim, the outcome) in the worst case, SQLite's busy wait included.
CLAIM_WRITE_SECONDS = 5


RETRY_DELAYS = (timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=30), timedelta(hours=2))


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
    settings = smtp.parse_mail_url(app.config["MAIL_URL"], app.config["MAIL_FROM"], app.config["MAIL_SEND_TIMEOUT"])
    lease = mail_lease(app.config)
    started = time.monotonic()

    def now_in_run() -> datetime:
        return now + timedelta(seconds=time.monotonic() - started)

    results = {"sent": 0, "retry": 0, "failed": 0, "unknown": _give_up_on_lost_claims(now_in_run())}
    for _ in range(limit):
        if stop is not None and stop.is_set():
            break
        claim = _claim_next(now_in_run(), lease)
        if claim is None:
            break
        message = smtp.build_message(
            sender=settings.sender,
            to=claim.to_address,
            subject=claim.subject,
            text=claim.text_body,
            html=claim.html_body,
            unsubscribe_url=claim.unsubscribe_url,
        )
        outcome: _Outcome
        try:
            smtp.send(settings, message)
        except smtp.OutcomeUnknown as error:
            outcome = {"status": "unknown", "last_error": f"outcome unknown: {error}"[:500]}
        except (OSError, smtp.smtplib.SMTPException) as error:
            outcome = {"last_error": f"{type(error).__name__}: {error}"[:500]}
            if claim.attempts > len(RETRY_DELAYS):
                outcome["status"] = "failed"
            else:
                outcome["status"] = "pending"
                outcome["next_attempt_at"] = now_in_run() + RETRY_DELAYS[claim.attempts - 1]
        else:
            outcome = {"status": "sent", "sent_at": now_in_run()}
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
