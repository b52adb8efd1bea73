"""Call Meta for a claim, then write what it said back onto the connection, fenced by the claim.

Rules (DESIGN.md, "Token lifecycle policy"): transient trouble backs off and never disconnects; a
definitive auth error disconnects at once and stops all calls with that token. No database
transaction is open while Meta is called.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm.exc import StaleDataError

from webapp.extensions import db
from webapp.models import ConnectionState, InstagramConnection, RateLimitPause
from webapp.services.connections.causes import CauseId
from webapp.services.connections.diagnosis import store_diagnosis
from webapp.services.connections.page_roles import role_for, tasks_column
from webapp.services.connections.state import META, SYSTEM, Actor, record_event, set_state, store_token
from webapp.services.keepalive.facebook_check import PageCheck, check_page
from webapp.services.keepalive.leases import Claim, Work, drop_lease, safe_rollback
from webapp.services.keepalive.policy import Policy, backoff, schedule_after_success
from webapp.services.meta.classifier import Classification, classify_error, on_path
from webapp.services.meta.client import (
    LONG_LIVED_TOKEN_LIFETIME,
    InstagramClient,
    MetaApiError,
    Profile,
    TokenGrant,
    Usage,
)
from webapp.services.meta.facebook import FacebookClient
from webapp.services.token_vault import TokenVault

log = logging.getLogger(__name__)


class Summary(StrEnum):
    """The one word a piece of keep-alive work ends with: record_outcome's, run_now's and the worker's."""

    REFRESHED = "refreshed"
    CHECKED = "checked"
    RECOVERED = "recovered"
    TRANSIENT = "transient"
    NEEDS_RECONNECT = "needs_reconnect"
    EXPIRED = "expired"
    UNREADABLE = "unreadable"
    LEASE_LOST = "lease_lost"
    WRITE_FAILED = "write_failed"
    # run_now: there is no token to call Meta with (a word, not a secret: the S105 note is a false alarm)
    NO_TOKEN = "no_token"  # noqa: S105
    PAUSED = "paused"  # run_now: Instagram asked us to slow down; a call now would only extend the pause
    TOO_YOUNG = "too_young"  # run_now: Instagram refreshes only tokens at least a day old
    NOT_RENEWABLE = "not_renewable"  # run_now: a Facebook Login connection has nothing to refresh
    RELEASED = "released"  # the worker was stopping: the lease went back before any call
    ERROR = "error"  # the worker hit an unexpected error; the lease runs out


@dataclass
class Outcome:
    work: Work
    grant: TokenGrant | None = None
    profile: Profile | None = None
    error: MetaApiError | None = None
    usage: Usage = field(default_factory=Usage)
    page: PageCheck | None = None  # Facebook Login: what the Page check learned, failed or not


def call_meta(claim: Claim, client: InstagramClient, facebook: FacebookClient | None = None) -> Outcome:
    """Make the call the claim is for (Facebook Login: the Page check). Runs with no database transaction open."""
    work = claim.work
    if claim.page is not None:
        if facebook is None:
            raise ValueError(
                f"connection {claim.connection_id} came through Facebook Login: a FacebookClient is needed"
            )
        # Nothing to refresh on this path (policy.schedule_after_success): any work is the check.
        learned, error = check_page(facebook, claim.page)
        return Outcome(Work.CHECK, error=error, usage=error.usage if error else learned.usage, page=learned)
    try:
        if work == Work.REFRESH:
            grant = client.refresh(claim.token or "")
            return Outcome(Work.REFRESH, grant=grant, usage=grant.usage)
        profile = client.me(claim.token or "")
        return Outcome(Work.CHECK, profile=profile, usage=profile.usage)
    except MetaApiError as error:
        return Outcome(work, error=error, usage=error.usage)


def _fenced_row(claim: Claim) -> InstagramConnection | None:
    query = select(InstagramConnection).where(
        InstagramConnection.id == claim.connection_id,
        InstagramConnection.version == claim.version,
        InstagramConnection.lease_owner == claim.owner,
    )
    if db.engine.dialect.name == "postgresql":
        query = query.with_for_update()
    return db.session.scalar(query)


def _fenced_rows(claims: list[Claim]) -> dict[int, InstagramConnection]:
    """The rows these claims still hold (version and owner unchanged), locked on PostgreSQL, by id."""
    fences = {claim.connection_id: (claim.version, claim.owner) for claim in claims}
    query = select(InstagramConnection).where(InstagramConnection.id.in_(fences)).order_by(InstagramConnection.id)
    if db.engine.dialect.name == "postgresql":
        query = query.with_for_update()
    return {row.id: row for row in db.session.scalars(query) if (row.version, row.lease_owner) == fences[row.id]}


def record_outcomes(
    results: list[tuple[Claim, Outcome | None, datetime]],
    *,
    policy: Policy,
    vault: TokenVault,
    rng: random.Random,
) -> list[Summary]:
    """Write several results back in one transaction, each fenced by its own claim; one summary each.

    The worker's calls end many at a time: one transaction for all of them spares each result a
    pool checkout, a round trip and a commit of its own. Each write is tried once here; one that
    does not land is WRITE_FAILED, for the worker to keep and write once the database answers
    (promise 8). When the database is away every result is kept; when one row's write fails for
    another reason, each result is written alone, so that row costs the others nothing.
    """
    if len(results) == 1:
        claim, outcome, finished_at = results[0]
        once = dataclasses.replace(policy, write_attempts=1)
        return [record_outcome(claim, outcome, now=finished_at, policy=once, vault=vault, rng=rng)]
    summaries: list[Summary] = []
    lost: list[Claim] = []
    try:
        rows = _fenced_rows([claim for claim, _, _ in results])
        for claim, outcome, finished_at in results:
            connection = rows.get(claim.connection_id)
            if connection is None:
                lost.append(claim)
                summaries.append(Summary.LEASE_LOST)
                continue
            summaries.append(_apply(connection, claim, outcome, finished_at, policy, vault, rng))
            if connection.state != ConnectionState.HEALTHY:
                store_diagnosis(connection, finished_at)  # in the same transaction as the trouble it explains
            connection.lease_owner = connection.lease_expires_at = None
        db.session.commit()
    except (OperationalError, PoolTimeout) as error:
        safe_rollback()
        log.warning(
            "write-back of %d results failed (%s); kept to be written later", len(results), type(error).__name__
        )
        return [Summary.WRITE_FAILED] * len(results)
    except SQLAlchemyError as error:
        # StaleDataError among them: another writer moved a row between our read and our write
        # (SQLite takes no row locks); alone, that row's result is discarded and the rest land.
        safe_rollback()
        log.warning(
            "write-back of %d results failed together (%s); writing each alone", len(results), type(error).__name__
        )
        return [record_outcomes([result], policy=policy, vault=vault, rng=rng)[0] for result in results]
    for claim in lost:
        log.warning("connection %s: lease lost before write-back; result discarded", claim.connection_id)
        drop_lease(claim)
    return summaries


def record_outcome(
    claim: Claim,
    outcome: Outcome | None,
    *,
    now: datetime,
    policy: Policy,
    vault: TokenVault,
    rng: random.Random,
    sleep: Callable[[float], None] = time.sleep,
) -> Summary:
    """Write the result back if the lease is still ours; retry the write so no new token is lost.

    Returns a one-word summary: refreshed, checked, recovered, transient, needs_reconnect, expired,
    unreadable, lease_lost or write_failed.
    """
    for attempt in range(1, policy.write_attempts + 1):
        try:
            connection = _fenced_row(claim)
            if connection is None:
                db.session.rollback()
                log.warning("connection %s: lease lost before write-back; result discarded", claim.connection_id)
                drop_lease(claim)
                return Summary.LEASE_LOST
            summary = _apply(connection, claim, outcome, now, policy, vault, rng)
            if connection.state != ConnectionState.HEALTHY:
                store_diagnosis(connection, now)  # in the same transaction as the trouble it explains
            connection.lease_owner = connection.lease_expires_at = None
            db.session.commit()
            return summary
        except StaleDataError:
            # Another writer (a disconnect, a callback, a key rotation) moved the version between our
            # read and our write: theirs stands.
            safe_rollback()
            log.warning(
                "connection %s: changed by another writer during the call; result discarded", claim.connection_id
            )
            drop_lease(claim)
            return Summary.LEASE_LOST
        except SQLAlchemyError as error:
            # The database went away, refused the write, or had no connection free in time: try
            # again, the new token is worth it.
            safe_rollback()
            log.warning(
                "connection %s: write-back attempt %d failed (%s)", claim.connection_id, attempt, type(error).__name__
            )
            if attempt < policy.write_attempts:
                sleep(min(0.2 * 2**attempt, 5))
    # The result is not stored yet. The worker keeps it and writes it once the database answers;
    # should the worker die first, the old token stays valid on Instagram's side and the lease runs
    # out, so the next cycle refreshes again. The connection is not marked broken.
    log.error(
        "connection %s: write-back failed %d times; kept to be written later",
        claim.connection_id,
        policy.write_attempts,
    )
    return Summary.WRITE_FAILED


def _apply(
    connection: InstagramConnection,
    claim: Claim,
    outcome: Outcome | None,
    now: datetime,
    policy: Policy,
    vault: TokenVault,
    rng: random.Random,
) -> Summary:
    if claim.work == Work.EXPIRE:
        return expire(connection, now)
    if claim.unreadable or outcome is None:
        # Our own key configuration is wrong; the merchant can do nothing about it. Retry later.
        _record_failure(connection, now, policy, rng, cause=CauseId.APP_MISCONFIGURED)
        record_event(
            connection,
            "token_unreadable",
            now,
            SYSTEM,
            cause=CauseId.APP_MISCONFIGURED,
            message="The stored token could not be decrypted with the configured keys (TOKEN_ENCRYPTION_KEYS).",
        )
        return Summary.UNREADABLE
    if outcome.page is not None:
        _apply_page_facts(connection, outcome.page)
    if outcome.error is None:
        summary = _apply_success(connection, claim, outcome, now, policy, vault, rng)
    else:
        classification = on_path(classify_error(outcome.error), connection.login_path)
        summary = _apply_failure(connection, outcome, classification, now, policy, rng)
    _apply_usage(connection, outcome.usage, now, policy)
    return summary


def _apply_success(connection, claim, outcome, now, policy, vault, rng) -> Summary:
    window_closing = _window_closing(connection, now, policy)
    recovered = connection.state != ConnectionState.HEALTHY and not (
        connection.state == ConnectionState.EXPIRING and connection.cause is None
    )
    if outcome.grant is not None:
        expires_at = outcome.grant.expires_at(now) or now + policy.token_lifetime
        store_token(connection, outcome.grant.access_token, vault, issued_at=now, expires_at=expires_at)
        connection.last_refreshed_at = connection.last_refresh_attempt_at = now
        connection.refresh_failures = 0
        connection.last_refresh_error = None
        kind, message = "refreshed", f"Token refreshed automatically; now valid until {expires_at:%d %b %Y}."
        summary = Summary.REFRESHED
    elif outcome.page is not None:
        kind, message = "checked", _page_check_message(connection)
        summary = Summary.CHECKED
    else:
        profile = outcome.profile
        if profile.username:
            connection.username = profile.username
        if profile.profile_picture_url:
            connection.profile_picture_url = profile.profile_picture_url
        if profile.account_type:
            connection.account_type = profile.account_type
        # Connections made before the app-scoped id was kept learn it here, so Meta's callbacks find them.
        if profile.scoped_id and not connection.instagram_scoped_id and profile.user_id == connection.instagram_user_id:
            connection.instagram_scoped_id = profile.scoped_id
        kind, message = "checked", "Health check passed."
        summary = Summary.CHECKED
    connection.last_checked_at = now
    connection.last_check_ok = True
    connection.last_error_code = connection.last_error_subcode = None
    connection.last_error_message = None
    connection.consecutive_failures = connection.failure_days = 0
    connection.failing_since = connection.last_failure_on = None
    connection.paused_until = None
    # Working, but a Facebook Login window about to close is "expiring" until the merchant renews access.
    set_state(connection, ConnectionState.EXPIRING if window_closing else ConnectionState.HEALTHY, now)
    schedule_after_success(connection, now, policy, rng)
    if recovered:
        message += " The connection works again."
    record_event(connection, kind, now, claim.actor, message=message)
    return Summary.RECOVERED if recovered else summary


def _apply_failure(connection, outcome, classification: Classification, now, policy, rng) -> Summary:
    error = outcome.error
    passing_trouble_on_a_break = (
        connection.state == ConnectionState.NEEDS_RECONNECT and not classification.needs_reconnect
    )
    if not passing_trouble_on_a_break:
        # A passing outage met while testing an already broken connection is not the break's evidence:
        # Meta's answer that ended the connection stays the one the diagnosis quotes.
        connection.last_error_code, connection.last_error_subcode = error.code, error.subcode
        connection.last_error_message = error.message[:1000]
    connection.last_checked_at = now
    connection.last_check_ok = False
    if outcome.work == Work.REFRESH:
        connection.last_refresh_attempt_at = now
        connection.last_refresh_error = f"{classification.cause}: {error.message}"[:500]
    kind = "refresh_failed" if outcome.work == Work.REFRESH else "check_failed"
    if classification.needs_reconnect:
        # Definitive: stop all calls with this token, at once (promise 6).
        if outcome.work == Work.REFRESH:
            connection.refresh_failures += 1
        set_state(connection, ConnectionState.NEEDS_RECONNECT, now, cause=classification.cause)
        connection.schedule()
        connection.paused_until = None
        _failure_event(connection, kind, now, META, classification, error)
        log.info("connection %s: %s -> needs_reconnect (%s)", connection.id, kind, classification.cause)
        return Summary.NEEDS_RECONNECT
    if connection.state == ConnectionState.NEEDS_RECONNECT:
        # A manual test of an already broken connection hit passing trouble: it stays broken.
        _failure_event(connection, kind, now, SYSTEM, classification, error)
        return Summary.TRANSIENT
    new_day = _record_failure(connection, now, policy, rng, cause=classification.cause)
    if outcome.work == Work.REFRESH and new_day:
        connection.refresh_failures += 1
    if classification.cause == CauseId.RATE_LIMITED:
        minutes = outcome.usage.regain_access_minutes
        pause = max(timedelta(minutes=minutes), policy.rate_limit_pause)
        connection.paused_until = now + pause
        connection.retry_at = max(connection.retry_at or now, connection.paused_until)
        connection.recompute_due_at()
        if classification.app_wide:
            _pause_app(now + pause, f"Meta code {error.code}: {error.message[:200]}")
    _failure_event(connection, kind, now, SYSTEM, classification, error)
    log.info(
        "connection %s: %s, transient (%s); retry at %s", connection.id, kind, classification.cause, connection.retry_at
    )
    return Summary.TRANSIENT


def _apply_page_facts(connection: InstagramConnection, learned: PageCheck) -> None:
    """Keep what the Page check learned, even when it ended in trouble: the card and evidence show it."""
    if learned.tasks is not None:
        connection.facebook_page_tasks = tasks_column(learned.tasks)
    if learned.page_name:
        connection.facebook_page_name = learned.page_name[:255]
    if learned.instagram_username:  # set only when the Page still links the shop's own account
        connection.username = learned.instagram_username[:64]
    if learned.expires_at is not None:
        # The data-access window moves only when the merchant renews access; Meta's date is the truth.
        connection.token_expires_at = learned.expires_at
    if learned.debug is not None and learned.debug.is_valid and learned.debug.scopes:
        connection.granted_permissions = ",".join(learned.debug.scopes)[:512]


def _window_closing(connection: InstagramConnection, now: datetime, policy: Policy) -> bool:
    """Facebook Login: the data-access window ends within the expiry warning (only the merchant can renew it)."""
    return (
        connection.via_facebook
        and connection.token_expires_at is not None
        and connection.token_expires_at - now <= policy.expiry_warning
    )


def _page_check_message(connection: InstagramConnection) -> str:
    role = role_for(connection.page_tasks)
    page = f"“{connection.facebook_page_name}”" if connection.facebook_page_name else "the Facebook Page"
    held = f"; your role there: {role}" if role else ""
    return f"Health check passed: {page} still reaches @{connection.username or 'the Instagram account'}{held}."


def _failure_event(connection, kind: str, now: datetime, actor: Actor, classification: Classification, error) -> None:
    record_event(
        connection,
        kind,
        now,
        actor,
        cause=classification.cause,
        meta_code=error.code,
        meta_subcode=error.subcode,
        meta_user_title=error.user_title[:255] if error.user_title else None,
        meta_user_message=error.user_message[:1000] if error.user_message else None,
        message=error.message[:1000],
    )


def _record_failure(connection, now, policy, rng, *, cause: CauseId) -> bool:
    """Back off and move to degraded or expiring; count the failure once per day. True on a new day."""
    connection.consecutive_failures += 1
    today = now.date().isoformat()
    new_day = connection.last_failure_on != today
    if new_day:
        connection.failure_days += 1
        connection.last_failure_on = today
    connection.failing_since = connection.failing_since or now
    retry_at = now + backoff(connection.consecutive_failures, policy, rng)
    connection.schedule(
        refresh_due_at=connection.refresh_due_at, check_due_at=connection.check_due_at, retry_at=retry_at
    )
    expiring = connection.token_expires_at is not None and connection.token_expires_at - now <= policy.expiry_warning
    set_state(connection, ConnectionState.EXPIRING if expiring else ConnectionState.DEGRADED, now, cause=cause)
    return new_day


def _apply_usage(connection, usage: Usage, now: datetime, policy: Policy) -> None:
    """Keep the figures for the app health page, and slow down before Meta's quota runs out (near 100%)."""
    if usage.app or usage.business:
        connection.usage = {"app": usage.app, "business": usage.business}
        connection.usage_percent, connection.usage_seen_at = usage.highest_percent, now
    if usage.highest_percent >= policy.slowdown_percent:
        minutes = usage.regain_access_minutes
        pause = timedelta(minutes=minutes) if minutes else policy.rate_limit_pause / 3
        if (
            usage.app
            and max((v for v in usage.app.values() if isinstance(v, int | float)), default=0) >= policy.slowdown_percent
        ):
            _pause_app(now + pause, f"X-App-Usage at {usage.highest_percent}%")
        else:
            connection.paused_until = now + pause


def _pause_app(until: datetime, reason: str) -> None:
    pause = db.session.get(RateLimitPause, "app")
    if pause is None:
        db.session.add(RateLimitPause(scope="app", until=until, reason=reason))
    elif pause.until < until:
        pause.until, pause.reason = until, reason
    log.warning("pausing all calls to Meta until %s: %s", until.isoformat(timespec="seconds"), reason)


def expire(connection: InstagramConnection, now: datetime) -> Summary:
    """The token's own expiry passed: no call to Meta can help. Say honestly whether refresh failed."""
    if connection.state == ConnectionState.NEEDS_RECONNECT:
        return Summary.EXPIRED
    if connection.via_facebook:
        return _data_access_ended(connection, now)
    set_state(connection, ConnectionState.NEEDS_RECONNECT, now, cause=CauseId.TOKEN_EXPIRED)
    connection.schedule()
    if connection.refresh_failures:
        message = (
            f"The token expired after automatic refresh failed {connection.refresh_failures} time(s); "
            f"last error: {connection.last_refresh_error or 'unknown'}."
        )
    else:
        message = f"The token reached its {LONG_LIVED_TOKEN_LIFETIME.days}-day expiry without being refreshed."
    record_event(connection, "expired", now, SYSTEM, cause=CauseId.TOKEN_EXPIRED, message=message)
    store_diagnosis(connection, now)
    return Summary.EXPIRED


def _data_access_ended(connection: InstagramConnection, now: datetime) -> Summary:
    """Facebook Login: the 90-day data-access window closed without the merchant renewing access."""
    set_state(connection, ConnectionState.NEEDS_RECONNECT, now, cause=CauseId.DATA_ACCESS_EXPIRED)
    connection.schedule()
    ended = connection.token_expires_at or now
    record_event(
        connection,
        "expired",
        now,
        SYSTEM,
        cause=CauseId.DATA_ACCESS_EXPIRED,
        message=(
            f"The 90-day data access window ended on {ended:%d %b %Y} without access being renewed; "
            "Meta no longer lets the app read the Page's Instagram account."
        ),
    )
    store_diagnosis(connection, now)
    return Summary.EXPIRED
