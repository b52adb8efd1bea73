"""A test or refresh a person asked for, under the same lease rules as the worker."""

from __future__ import annotations

import random
import secrets
from dataclasses import dataclass
from datetime import datetime

from flask import Flask

from webapp.extensions import db
from webapp.models import InstagramConnection
from webapp.services.connections.state import Actor
from webapp.services.keepalive.leases import Work, claim_due, pause_in_force
from webapp.services.keepalive.outcomes import Summary, call_meta, record_outcome
from webapp.services.keepalive.policy import Policy, refresh_allowed
from webapp.services.meta.client import LONG_LIVED_TOKEN_LIFETIME, InstagramClient
from webapp.services.meta.facebook import FacebookClient
from webapp.services.notify import planning
from webapp.services.token_vault import TokenVault


class ConnectionBusy(Exception):
    """A worker holds this connection right now; try again in a moment."""


@dataclass(frozen=True)
class ManualResult:
    summary: Summary
    message: str
    level: str  # success | info | warning | error


MANUAL_MESSAGES = {
    Summary.REFRESHED: (f"Token refreshed. It is valid for another {LONG_LIVED_TOKEN_LIFETIME.days} days.", "success"),
    Summary.CHECKED: ("Connection tested: Instagram answered and everything works.", "success"),
    Summary.RECOVERED: ("Connection tested: it works again.", "success"),
    Summary.TRANSIENT: (
        "Instagram did not answer properly just now. We keep retrying automatically; nothing is lost.",
        "warning",
    ),
    Summary.NEEDS_RECONNECT: ("Instagram refused the connection. Reconnect to fix it.", "error"),
    Summary.EXPIRED: ("The token has expired. Reconnect to fix it.", "error"),
    Summary.UNREADABLE: (
        "The stored token cannot be read on our side. Our team has to fix this; reconnecting also works.",
        "error",
    ),
    Summary.LEASE_LOST: ("The automatic check ran at the same moment; see the latest result below.", "info"),
    Summary.WRITE_FAILED: ("We could not save the result just now; it is retried automatically.", "warning"),
}


def run_now(
    app: Flask,
    connection_id: int,
    work: Work,
    *,
    actor: Actor,
    now: datetime,
    client: InstagramClient,
    vault: TokenVault,
    policy: Policy,
    facebook: FacebookClient | None = None,
    rng: random.Random | None = None,
) -> ManualResult:
    """Test or refresh one connection on demand; plan at once the notice its result may owe the merchant.

    Raises ConnectionBusy while a worker holds the connection.
    """
    result = _run(
        connection_id, work, actor=actor, now=now, client=client, facebook=facebook, vault=vault, policy=policy, rng=rng
    )
    if planning.notifies_at_once(result.summary):
        planning.plan(app, now, connection_ids=[connection_id])
    return result


def _minutes_left(until: datetime, now: datetime) -> str:
    minutes = max(1, -(-int((until - now).total_seconds()) // 60))
    return f"{minutes} more minute{'s' if minutes != 1 else ''}"


def _run(
    connection_id: int,
    work: Work,
    *,
    actor: Actor,
    now: datetime,
    client: InstagramClient,
    facebook: FacebookClient | None,
    vault: TokenVault,
    policy: Policy,
    rng: random.Random | None,
) -> ManualResult:
    connection = db.session.get(InstagramConnection, connection_id)
    if connection is None or connection.token_ciphertext is None:
        return ManualResult(Summary.NO_TOKEN, "There is no Instagram token to use. Connect Instagram first.", "error")
    paused_until = pause_in_force(connection, now)
    if paused_until is not None:
        # Meta counts every call against the limit it asked us to respect: calling now would extend it.
        return ManualResult(
            Summary.PAUSED,
            # Minutes, not a clock time: the message reads the same in every time zone.
            f"Instagram asked us to slow down, so calls are paused for {_minutes_left(paused_until, now)}. "
            "Testing now would only make the pause longer; we check again right after it.",
            "info",
        )
    if work == Work.REFRESH and connection.via_facebook:
        return ManualResult(
            Summary.NOT_RENEWABLE,
            "A connection made through Facebook is not renewed on our side: its access lasts until "
            "the data access date shown, and you extend it with “Renew access”.",
            "info",
        )
    if work == Work.REFRESH and not refresh_allowed(
        connection.token_issued_at, connection.token_expires_at, now, policy
    ):
        if connection.token_expires_at and connection.token_expires_at <= now:
            return ManualResult(
                Summary.EXPIRED, "The token has expired and cannot be refreshed. Reconnect to fix it.", "error"
            )
        return ManualResult(
            Summary.TOO_YOUNG,
            "The token is less than a day old. Instagram only refreshes tokens after 24 hours; nothing to do yet.",
            "info",
        )
    db.session.commit()  # end the request's read transaction before the claim
    claims = claim_due(
        # Unique per request: two tabs of one merchant must not hand back each other's lease.
        owner=f"web:{actor.kind}:{actor.id}:{secrets.token_hex(3)}",
        now=now,
        limit=1,
        policy=policy,
        vault=vault,
        connection_id=connection_id,
        manual_work=work,
        actor=actor,
    )
    if not claims:
        raise ConnectionBusy()
    claim = claims[0]
    outcome = None if claim.unreadable else call_meta(claim, client, facebook)
    summary = record_outcome(claim, outcome, now=now, policy=policy, vault=vault, rng=rng or random.Random())
    message, level = MANUAL_MESSAGES.get(summary, ("Done.", "info"))
    if connection.via_facebook:  # Facebook Login's calls are answered by Facebook
        message = message.replace("Instagram", "Facebook")
    return ManualResult(summary, message, level)
