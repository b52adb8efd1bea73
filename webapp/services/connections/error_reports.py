"""A Meta error the shop platform met while using a shop's token: classify it, then act as the worker would.

The platform is the first to see Meta refuse a token, but one buggy caller (or one holding an older
token) must not disconnect a shop. So a permanent cause is never applied on the report's word: it
triggers at once the same call "Test connection now" makes, with the stored token, and only Meta's
own answer changes the state (then with the stored diagnosis and the mail, as any check would).
Those calls are bounded (Policy.confirm_spacing per connection, confirms_per_key_per_day per caller),
so a flood of wrong reports costs Meta a few calls, not one per report.
Transient causes count toward `degraded` by the worker's own rule, fenced like every writer. Errors
that are not about the token (a bad request, our app's settings, nothing recognised) change nothing.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from flask import Flask
from sqlalchemy import func, select

from webapp.extensions import db
from webapp.models import ConnectionEvent, ConnectionState, InstagramConnection
from webapp.services.connections.causes import CauseId, words_for
from webapp.services.connections.diagnosis import store_diagnosis
from webapp.services.connections.state import Actor, fenced_write, read_token, record_event
from webapp.services.keepalive import manual
from webapp.services.keepalive.leases import Work
from webapp.services.keepalive.outcomes import Summary

# The worker's rule for a transient failure (backoff, degraded or expiring, once a day): one rule for both.
from webapp.services.keepalive.outcomes import _record_failure as record_transient_failure
from webapp.services.keepalive.policy import Policy
from webapp.services.meta.classifier import TRANSIENT_CAUSES, Classification, classify_error
from webapp.services.meta.client import InstagramClient, MetaApiError
from webapp.services.meta.facebook import FacebookClient
from webapp.services.token_vault import TokenVault, TokenVaultError

REPORT_EVENT = "error_reported"
# Errors that say nothing about the token leave the connection as it is (DESIGN.md: never a disconnection).
NOT_ABOUT_THE_TOKEN = {
    CauseId.REQUEST_ERROR: "The error is about the request your service made, not the token: nothing changed.",
    CauseId.APP_MISCONFIGURED: (
        "The error is about the Meta app's own settings, not the shop's token: nothing changed. "
        "Operators can see the app's standing on the admin App health page."
    ),
}
NOT_RECOGNISED = "The error was not recognised as being about the token: nothing changed."
CONTRADICTIONS_WINDOW = timedelta(days=1)


class ReportAction(StrEnum):
    """What a report led to (the API's `action`)."""

    CONFIRMED_DISCONNECTED = "confirmed_disconnected"  # Meta refused the stored token too: needs_reconnect
    NOT_CONFIRMED = "not_confirmed"  # Meta did not refuse the stored token just now: nothing changed
    RECORDED_TRANSIENT = "recorded_transient"  # passing trouble, counted toward degraded
    IGNORED = "ignored"  # not about the token, or nothing left to change


class NotConnected(Exception):
    """The shop has no connection with a token: there is nothing the error could be about."""


@dataclass(frozen=True)
class ReportedError:
    """The fields of Meta's `error` object as the platform got it, and the HTTP status it came with."""

    code: int | None = None
    subcode: int | None = None
    error_type: str | None = None
    message: str | None = None
    user_title: str | None = None
    user_message: str | None = None
    fbtrace_id: str | None = None
    http_status: int | None = None
    is_transient: bool | None = None

    def as_meta_error(self, secrets: list[str]) -> MetaApiError:
        """As the client would have raised it: token-shaped text and the shop's own token taken out."""
        return MetaApiError(
            self.message or "",
            http_status=self.http_status,
            code=self.code,
            subcode=self.subcode,
            error_type=self.error_type,
            fbtrace_id=self.fbtrace_id,
            is_transient=self.is_transient,
            user_title=self.user_title,
            user_message=self.user_message,
        ).without(secrets)


@dataclass(frozen=True)
class ReportOutcome:
    classification: Classification
    title: str
    action: ReportAction
    detail: str
    state: str
    cause: str | None


def apply_report(
    app: Flask,
    connection_id: int,
    report: ReportedError,
    *,
    actor: Actor,
    now: datetime,
    client: InstagramClient,
    vault: TokenVault,
    policy: Policy,
    facebook: FacebookClient | None = None,
    rng: random.Random | None = None,
) -> ReportOutcome:
    """Classify the reported error and do what it calls for; raise NotConnected when there is no token."""
    connection = db.session.get(InstagramConnection, connection_id)
    if connection is None or connection.token_ciphertext is None:
        raise NotConnected()
    error = report.as_meta_error(_own_token(connection, vault))
    classification = classify_error(error)
    meta = "Facebook" if connection.via_facebook else "Instagram"
    if classification.needs_reconnect:
        action, detail = _confirm(
            app, connection, actor=actor, now=now, client=client, facebook=facebook, vault=vault, policy=policy
        )
    elif classification.cause in TRANSIENT_CAUSES:
        action, detail = _count_transient(connection_id, error, classification, actor, now, policy, rng)
    else:
        action, detail = ReportAction.IGNORED, NOT_ABOUT_THE_TOKEN.get(classification.cause, NOT_RECOGNISED)
    _record_report(connection_id, error, classification, action, actor, now, meta)
    connection = db.session.get(InstagramConnection, connection_id)
    if connection is None:  # deleted meanwhile (the shop went away)
        raise NotConnected()
    return ReportOutcome(
        classification,
        words_for(classification.cause, connection.login_path).title,
        action,
        detail,
        str(connection.state),
        connection.cause,
    )


def _own_token(connection: InstagramConnection, vault: TokenVault) -> list[str]:
    """The shop's token, to scrub from the report's text should the platform's error quote it."""
    try:
        return [read_token(connection, vault)]
    except TokenVaultError:
        return []


def _confirm(
    app: Flask,
    connection: InstagramConnection,
    *,
    actor: Actor,
    now: datetime,
    client: InstagramClient,
    facebook: FacebookClient | None,
    vault: TokenVault,
    policy: Policy,
) -> tuple[ReportAction, str]:
    """Ask Meta with the stored token, as "Test connection now" does; only Meta's answer can disconnect."""
    if connection.state == ConnectionState.NEEDS_RECONNECT:
        return ReportAction.IGNORED, "The connection already needs the merchant to reconnect; nothing changed."
    meta = "Facebook" if connection.via_facebook else "Instagram"
    held_back = _why_meta_is_not_asked(connection, actor, now, policy, meta)
    if held_back is not None:
        return ReportAction.NOT_CONFIRMED, held_back
    try:
        result = manual.run_now(
            app,
            connection.id,
            Work.CHECK,
            actor=actor,
            now=now,
            client=client,
            facebook=facebook,
            vault=vault,
            policy=policy,
        )
    except manual.ConnectionBusy:
        return (
            ReportAction.NOT_CONFIRMED,
            f"A check of this connection is calling {meta} right now; its answer decides the state.",
        )
    if result.summary in (Summary.NEEDS_RECONNECT, Summary.EXPIRED):
        return (
            ReportAction.CONFIRMED_DISCONNECTED,
            f"{meta} refused the stored token too: the shop needs to reconnect, and its merchant is told.",
        )
    if result.summary in (Summary.CHECKED, Summary.RECOVERED):
        return (
            ReportAction.NOT_CONFIRMED,
            f"{meta} accepted the stored token just now, so the shop stays connected. If your service used an "
            "older token, fetch the current one.",
        )
    return (
        ReportAction.NOT_CONFIRMED,
        f"The confirming call could not decide ({result.summary}): nothing changed; the usual checks go on.",
    )


def _why_meta_is_not_asked(
    connection: InstagramConnection, actor: Actor, now: datetime, policy: Policy, meta: str
) -> str | None:
    """Why no confirming call is made for this report, or None: a flood of reports must not make us hammer Meta.

    Meta was asked about this connection moments ago (by anyone), or it contradicted this caller's
    reports of a revocation too often today: the caller is probably wrong (an older token, a bug), and
    another call would cost the connection's budget for nothing. Our own checks go on either way.
    """
    # Only a confirming call another report made counts here: our own health check a moment ago says
    # nothing of a revocation since, and a platform that reports once must be heard (detection < 60 s).
    asked_at = db.session.execute(
        select(func.max(ConnectionEvent.occurred_at)).where(
            ConnectionEvent.connection_id == connection.id,
            ConnectionEvent.actor_kind == actor.kind,
            ConnectionEvent.kind != REPORT_EVENT,
            ConnectionEvent.occurred_at > now - policy.confirm_spacing,
        )
    ).scalar_one()
    if asked_at is not None:
        answered = "accepted it" if connection.last_check_ok else "did not answer properly"
        again = asked_at + policy.confirm_spacing
        return (
            f"{meta} was asked about the stored token {int((now - asked_at).total_seconds())} seconds ago, for "
            f"an earlier report, and {answered}: nothing changed. If your calls are still refused after "
            f"{again:%H:%M:%S} UTC, report again."
        )
    contradicted = db.session.execute(
        select(func.count())
        .select_from(ConnectionEvent)
        .where(
            ConnectionEvent.connection_id == connection.id,
            ConnectionEvent.kind == "checked",  # a confirming call that Meta answered with "the token works"
            ConnectionEvent.actor_kind == actor.kind,
            ConnectionEvent.actor_id == actor.id,
            ConnectionEvent.occurred_at > now - CONTRADICTIONS_WINDOW,
        )
    ).scalar_one()
    if contradicted >= policy.confirms_per_key_per_day:
        return (
            f"{meta} accepted the stored token each of the {contradicted} times this API key's reports made us ask "
            "in the last 24 hours, so its reports do not make us ask again for now: nothing changed. Our own "
            "checks go on. If your service keeps being refused, fetch the current token: yours may be an older one."
        )
    return None


@fenced_write
def _count_transient(
    connection_id: int,
    error: MetaApiError,
    classification: Classification,
    actor: Actor,
    now: datetime,
    policy: Policy,
    rng: random.Random | None,
) -> tuple[ReportAction, str]:
    """Count passing trouble as the worker counts its own: degraded (or expiring), once a day, backing off."""
    connection = db.session.get(InstagramConnection, connection_id, populate_existing=True)
    if connection is None or connection.token_ciphertext is None:
        raise NotConnected()
    if connection.state in (ConnectionState.NEEDS_RECONNECT, ConnectionState.NOT_CONNECTED):
        return ReportAction.IGNORED, "The connection is not in use (it needs reconnecting): nothing changed."
    if connection.lease_expires_at is not None and connection.lease_expires_at > now:
        # A worker is calling Meta for this row right now: moving its version would throw its answer
        # (perhaps a fresh token) away. Its answer tells the state; the report stays in the history.
        return ReportAction.RECORDED_TRANSIENT, "Recorded; a check running right now decides the state."
    earlier_retry = connection.retry_at
    record_transient_failure(connection, now, policy, rng or random.Random(), cause=classification.cause)
    if earlier_retry is not None and connection.retry_at is not None and earlier_retry < connection.retry_at:
        # A stream of reports must not push our own next check further away.
        connection.schedule(
            refresh_due_at=connection.refresh_due_at, check_due_at=connection.check_due_at, retry_at=earlier_retry
        )
    connection.last_error_code, connection.last_error_subcode = error.code, error.subcode
    connection.last_error_message = error.message[:1000] or None
    store_diagnosis(connection, now)
    db.session.commit()
    return (
        ReportAction.RECORDED_TRANSIENT,
        f"Counted as passing trouble ({classification.cause}): the connection is {connection.state}; "
        "our checks go on and it recovers by itself.",
    )


def _record_report(
    connection_id: int,
    error: MetaApiError,
    classification: Classification,
    action: ReportAction,
    actor: Actor,
    now: datetime,
    meta: str,
) -> None:
    """One event in the shop's history saying what the platform reported and what came of it."""
    connection = db.session.get(InstagramConnection, connection_id)
    if connection is None:
        return
    codes = f"{error.code}/{error.subcode}" if error.subcode else str(error.code) if error.code else "no code"
    outcome = {
        ReportAction.CONFIRMED_DISCONNECTED: f"{meta} confirmed it.",
        ReportAction.NOT_CONFIRMED: f"{meta} did not confirm it: the connection was left as it was.",
        ReportAction.RECORDED_TRANSIENT: "Counted as passing trouble.",
        ReportAction.IGNORED: "Not about the connection: nothing changed.",
    }[action]
    trace = f" (fbtrace_id {error.fbtrace_id[:64]})" if error.fbtrace_id else ""
    record_event(
        connection,
        REPORT_EVENT,
        now,
        actor,
        # A transient cause is the report's own finding; a permanent one is only Meta's to give (the check's event).
        cause=classification.cause if action == ReportAction.RECORDED_TRANSIENT else None,
        meta_code=error.code,
        meta_subcode=error.subcode,
        meta_user_title=error.user_title[:255] if error.user_title else None,
        meta_user_message=error.user_message[:1000] if error.user_message else None,
        message=f"The shop platform reported {meta} error {codes} ({classification.cause}){trace}. {outcome}"[:1000],
    )
    db.session.commit()
