"""Keep tokens alive: decide what is due, claim it with a lease, call Meta, write back fenced.

Rules (DESIGN.md, "Token lifecycle policy"): refresh once a token is 7 days old (never under 24 h
or after expiry), check health every 6 h, both jittered; transient trouble backs off and never
disconnects; a definitive auth error disconnects at once and stops all calls with that token.
No database transaction is open while Meta is called; a write-back only lands while the lease it
was claimed with is still ours: the row's `version` is the fence, and every writer moves it.
"""

from __future__ import annotations

import logging
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm.exc import StaleDataError

from webapp.extensions import db
from webapp.models import InstagramConnection, RateLimitPause, SchedulerTick
from webapp.services.classifier import Classification, classify_error
from webapp.services.connections import META, SYSTEM, Actor, record_event, set_state, store_token
from webapp.services.instagram_client import InstagramClient, MetaApiError, Profile, TokenGrant, Usage
from webapp.services.schedule import Policy, backoff, refresh_allowed, schedule_after_success
from webapp.services.token_vault import TokenVault, TokenVaultError

log = logging.getLogger(__name__)

ACTIVE_STATES = ("healthy", "expiring", "degraded")


def work_for(connection: InstagramConnection, now: datetime, policy: Policy) -> str | None:
    """What the connection needs now: 'expire', 'refresh', 'check' or nothing."""
    if connection.token_ciphertext is None or connection.state not in ACTIVE_STATES:
        return None
    if connection.token_expires_at is not None and connection.token_expires_at <= now:
        return "expire"
    if connection.paused_until and now < connection.paused_until:
        return None
    if connection.retry_at and now < connection.retry_at:
        return None
    refresh_due = connection.refresh_due_at is not None and connection.refresh_due_at <= now
    if refresh_due and refresh_allowed(connection.token_issued_at, connection.token_expires_at, now, policy):
        return "refresh"
    check_due = connection.check_due_at is not None and connection.check_due_at <= now
    if check_due or (connection.retry_at and now >= connection.retry_at):
        return "check"
    return None


@dataclass
class Claim:
    """A connection leased to one worker for one piece of work."""

    connection_id: int
    version: int
    owner: str
    work: str
    token: str | None = field(default=None, repr=False)
    unreadable: bool = False
    actor: Actor = SYSTEM


@dataclass
class Outcome:
    work: str
    grant: TokenGrant | None = None
    profile: Profile | None = None
    error: MetaApiError | None = None
    usage: Usage = field(default_factory=Usage)


def app_paused_until(now: datetime) -> datetime | None:
    pause = db.session.get(RateLimitPause, "app")
    return pause.until if pause is not None and pause.until > now else None


def claim_due(
    *,
    owner: str,
    now: datetime,
    limit: int,
    policy: Policy,
    vault: TokenVault,
    connection_id: int | None = None,
    manual_work: str = "check",
    actor: Actor = SYSTEM,
    exclude: frozenset[int] = frozenset(),
) -> list[Claim]:
    """Lease up to `limit` due connections in one short transaction; decrypt their tokens after it.

    `exclude` names rows the caller still has in flight: it never claims them again, even if their
    lease ran out (promise 35).
    """
    dialect = db.engine.dialect.name
    query = select(InstagramConnection).where(
        InstagramConnection.token_ciphertext.is_not(None),
        or_(InstagramConnection.lease_expires_at.is_(None), InstagramConnection.lease_expires_at < now),
    )
    if exclude:
        query = query.where(InstagramConnection.id.not_in(exclude))
    if connection_id is None:
        query = (
            query.where(InstagramConnection.state.in_(ACTIVE_STATES), InstagramConnection.due_at <= now)
            .order_by(InstagramConnection.due_at)
            .limit(limit)
        )
    else:
        # On demand, even a disconnected row that kept its token may be tried: a checkpoint the
        # merchant has since cleared can make the old token work again.
        query = query.where(InstagramConnection.id == connection_id)
    if dialect == "postgresql":
        # Rows another worker is claiming right now are skipped, not waited for.
        query = query.with_for_update(skip_locked=True)
    works: dict[int, str] = {}
    try:
        for connection in db.session.scalars(query):
            work = work_for(connection, now, policy) if connection_id is None else manual_work
            if work is None:
                # Due by the index but nothing to do now (e.g. paused): move it along.
                connection.recompute_due_at()
                if connection.due_at is not None and connection.due_at <= now:
                    connection.due_at = connection.paused_until or now + policy.check_interval
                continue
            works[connection.id] = work
        claims: list[tuple[Claim, str]] = []
        if works:
            # One statement leases them all and moves each version (one round trip, not one per row);
            # the claim carries the moved version as its fence. The token condition holds the line
            # against a writer that removed the token after our read (SQLite takes no row locks).
            leased = db.session.execute(
                update(InstagramConnection)
                .where(InstagramConnection.id.in_(works), InstagramConnection.token_ciphertext.is_not(None))
                .values(lease_owner=owner, lease_expires_at=now + policy.lease, version=InstagramConnection.version + 1)
                .returning(InstagramConnection.id, InstagramConnection.version, InstagramConnection.token_ciphertext)
                .execution_options(synchronize_session=False)
            ).all()
            claims = [
                (Claim(row.id, row.version, owner, works[row.id], actor=actor), row.token_ciphertext) for row in leased
            ]
        # Committing ends the transaction: nothing stays open while the caller talks to Meta.
        db.session.commit()
    except StaleDataError:
        # Another writer changed one of these rows since we read it (SQLite has no row locks):
        # claim nothing now; they are due again on the next turn.
        db.session.rollback()
        return []
    except SQLAlchemyError:
        db.session.rollback()
        raise
    result = []
    for claim, ciphertext in claims:
        if ciphertext is None:  # the query leases only rows that hold a token
            raise RuntimeError(f"connection {claim.connection_id} was leased without a token")
        try:
            claim.token = vault.decrypt(ciphertext)
        except TokenVaultError:
            claim.unreadable = True
        result.append(claim)
    return result


def call_meta(claim: Claim, client: InstagramClient) -> Outcome:
    """Make the one call the claim is for. Runs with no database transaction open."""
    work = claim.work
    try:
        if work == "refresh":
            return Outcome("refresh", grant=client.refresh(claim.token or ""), usage=client.last_usage)
        return Outcome("check", profile=client.me(claim.token or ""), usage=client.last_usage)
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


def record_outcome(
    claim: Claim,
    outcome: Outcome | None,
    *,
    now: datetime,
    policy: Policy,
    vault: TokenVault,
    rng: random.Random,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
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
                _drop_lease(claim)
                return "lease_lost"
            summary = _apply(connection, claim, outcome, now, policy, vault, rng)
            connection.lease_owner = connection.lease_expires_at = None
            db.session.commit()
            return summary
        except StaleDataError:
            # Another writer (a disconnect, a callback, a key rotation) moved the version between our
            # read and our write: theirs stands.
            _safe_rollback()
            log.warning(
                "connection %s: changed by another writer during the call; result discarded", claim.connection_id
            )
            _drop_lease(claim)
            return "lease_lost"
        except SQLAlchemyError as error:
            # The database went away, refused the write, or had no connection free in time: try
            # again, the new token is worth it.
            _safe_rollback()
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
    return "write_failed"


def _safe_rollback() -> None:
    """Roll back, even on a connection that is already dead."""
    try:
        db.session.rollback()
    except SQLAlchemyError:
        db.session.close()


def _drop_lease(claim: Claim) -> None:
    """Hand back a lease whose result was discarded, so the row is due again at once, not when it expires.

    Only this worker's own lease is cleared (another worker's has another owner), and the version is
    left alone: clearing a lease changes no data. If the database fails here, the lease runs out.
    """
    try:
        db.session.execute(
            update(InstagramConnection)
            .where(InstagramConnection.id == claim.connection_id, InstagramConnection.lease_owner == claim.owner)
            .values(lease_owner=None, lease_expires_at=None)
            .execution_options(synchronize_session=False)
        )
        db.session.commit()
    except SQLAlchemyError:
        _safe_rollback()  # the lease then simply runs out


def _apply(
    connection: InstagramConnection,
    claim: Claim,
    outcome: Outcome | None,
    now: datetime,
    policy: Policy,
    vault: TokenVault,
    rng: random.Random,
) -> str:
    if claim.work == "expire":
        return _expire(connection, now)
    if claim.unreadable or outcome is None:
        # Our own key configuration is wrong; the merchant can do nothing about it. Retry later.
        _record_failure(connection, now, policy, rng, cause="app_misconfigured")
        record_event(
            connection,
            "token_unreadable",
            now,
            SYSTEM,
            cause="app_misconfigured",
            message="The stored token could not be decrypted with the configured keys (TOKEN_ENCRYPTION_KEYS).",
        )
        return "unreadable"
    if outcome.error is None:
        summary = _apply_success(connection, claim, outcome, now, policy, vault, rng)
    else:
        summary = _apply_failure(connection, outcome, classify_error(outcome.error), now, policy, rng)
    _apply_usage(connection, outcome.usage, now, policy)
    return summary


def _apply_success(connection, claim, outcome, now, policy, vault, rng) -> str:
    recovered = connection.state != "healthy"
    if outcome.grant is not None:
        expires_at = outcome.grant.expires_at(now) or now + policy.token_lifetime
        store_token(connection, outcome.grant.access_token, vault, issued_at=now, expires_at=expires_at)
        connection.last_refreshed_at = connection.last_refresh_attempt_at = now
        connection.refresh_failures = 0
        connection.last_refresh_error = None
        kind, message = "refreshed", f"Token refreshed automatically; now valid until {expires_at:%d %b %Y}."
    else:
        profile = outcome.profile
        if profile.username:
            connection.username = profile.username
        if profile.profile_picture_url:
            connection.profile_picture_url = profile.profile_picture_url
        kind, message = "checked", "Health check passed."
    connection.last_checked_at = now
    connection.last_check_ok = True
    connection.last_error_code = connection.last_error_subcode = None
    connection.last_error_message = None
    connection.consecutive_failures = connection.failure_days = 0
    connection.failing_since = connection.last_failure_on = None
    connection.paused_until = None
    set_state(connection, "healthy", now)
    schedule_after_success(connection, now, policy, rng)
    if recovered:
        message += " The connection works again."
    record_event(connection, kind, now, claim.actor, message=message)
    return "recovered" if recovered else kind


def _apply_failure(connection, outcome, classification: Classification, now, policy, rng) -> str:
    error = outcome.error
    connection.last_error_code, connection.last_error_subcode = error.code, error.subcode
    connection.last_error_message = error.message[:1000]
    connection.last_checked_at = now
    connection.last_check_ok = False
    if outcome.work == "refresh":
        connection.last_refresh_attempt_at = now
        connection.last_refresh_error = f"{classification.cause}: {error.message}"[:500]
    kind = "refresh_failed" if outcome.work == "refresh" else "check_failed"
    if classification.needs_reconnect:
        # Definitive: stop all calls with this token, at once (promise 6).
        if outcome.work == "refresh":
            connection.refresh_failures += 1
        set_state(connection, "needs_reconnect", now, cause=classification.cause)
        connection.schedule()
        connection.paused_until = None
        _failure_event(connection, kind, now, META, classification, error)
        log.info("connection %s: %s -> needs_reconnect (%s)", connection.id, kind, classification.cause)
        return "needs_reconnect"
    if connection.state == "needs_reconnect":
        # A manual test of an already broken connection hit passing trouble: it stays broken.
        _failure_event(connection, kind, now, SYSTEM, classification, error)
        return "transient"
    new_day = _record_failure(connection, now, policy, rng, cause=classification.cause)
    if outcome.work == "refresh" and new_day:
        connection.refresh_failures += 1
    if classification.cause == "rate_limited":
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
    return "transient"


def _failure_event(connection, kind: str, now: datetime, actor: Actor, classification: Classification, error) -> None:
    record_event(
        connection,
        kind,
        now,
        actor,
        cause=classification.cause,
        meta_code=error.code,
        meta_subcode=error.subcode,
        message=error.message[:1000],
    )


def _record_failure(connection, now, policy, rng, *, cause: str) -> bool:
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
    set_state(connection, "expiring" if expiring else "degraded", now, cause=cause)
    return new_day


def _apply_usage(connection, usage: Usage, now: datetime, policy: Policy) -> None:
    """Slow down before Meta's quota runs out (headers near 100%)."""
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


def _expire(connection: InstagramConnection, now: datetime) -> str:
    """The token's own expiry passed: no call to Meta can help. Say honestly whether refresh failed."""
    if connection.state == "needs_reconnect":
        return "expired"
    set_state(connection, "needs_reconnect", now, cause="token_expired")
    connection.schedule()
    if connection.refresh_failures:
        message = (
            f"The token expired after automatic refresh failed {connection.refresh_failures} time(s); "
            f"last error: {connection.last_refresh_error or 'unknown'}."
        )
    else:
        message = "The token reached its 60-day expiry without being refreshed."
    record_event(connection, "expired", now, SYSTEM, cause="token_expired", message=message)
    return "expired"


def release(claims: list[Claim]) -> None:
    """Give leases back early (a worker stopping before it could work on them)."""
    for claim in claims:
        db.session.execute(
            update(InstagramConnection)
            .where(InstagramConnection.id == claim.connection_id, InstagramConnection.version == claim.version)
            .values(lease_owner=None, lease_expires_at=None, version=InstagramConnection.version + 1)
        )
    db.session.commit()


@dataclass(frozen=True)
class TickResult:
    tick_at: datetime
    expired: int


def scheduler_tick(owner: str, now: datetime, policy: Policy) -> TickResult | None:
    """Run the once-a-minute duties unless another scheduler already ran this minute (promise 10)."""
    tick_at = now.replace(second=0, microsecond=0)
    try:
        db.session.execute(insert(SchedulerTick).values(tick_at=tick_at, owner=owner, ran_at=now))
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        return None
    expired = db.session.scalars(
        select(InstagramConnection).where(
            InstagramConnection.state.in_(ACTIVE_STATES),
            InstagramConnection.token_expires_at <= now,
            or_(InstagramConnection.lease_expires_at.is_(None), InstagramConnection.lease_expires_at < now),
        )
    ).all()
    try:
        for connection in expired:
            _expire(connection, now)
        db.session.execute(update(SchedulerTick).where(SchedulerTick.tick_at == tick_at).values(expired=len(expired)))
        db.session.execute(delete(SchedulerTick).where(SchedulerTick.tick_at < tick_at - timedelta(days=1)))
        db.session.commit()
    except StaleDataError:
        # A row changed under us (a reconnect, a disconnect): this tick stands down, the next one runs.
        db.session.rollback()
        return None
    return TickResult(tick_at, len(expired))


class ConnectionBusy(Exception):
    """A worker holds this connection right now; try again in a moment."""


@dataclass(frozen=True)
class ManualResult:
    summary: str
    message: str
    level: str  # success | info | warning | error


MANUAL_MESSAGES = {
    "refreshed": ("Token refreshed. It is valid for another 60 days.", "success"),
    "checked": ("Connection tested: Instagram answered and everything works.", "success"),
    "recovered": ("Connection tested: it works again.", "success"),
    "transient": (
        "Instagram did not answer properly just now. We keep retrying automatically; nothing is lost.",
        "warning",
    ),
    "needs_reconnect": ("Instagram refused the connection. Reconnect to fix it.", "error"),
    "expired": ("The token has expired. Reconnect to fix it.", "error"),
    "unreadable": (
        "The stored token cannot be read on our side. Our team has to fix this; reconnecting also works.",
        "error",
    ),
    "lease_lost": ("The automatic check ran at the same moment; see the latest result below.", "info"),
    "write_failed": ("We could not save the result just now; it is retried automatically.", "warning"),
}


def run_now(
    connection_id: int,
    work: str,
    *,
    actor: Actor,
    now: datetime,
    client: InstagramClient,
    vault: TokenVault,
    policy: Policy,
    rng: random.Random | None = None,
) -> ManualResult:
    """Test or refresh one connection on demand, under the same lease rules as the worker."""
    connection = db.session.get(InstagramConnection, connection_id)
    if connection is None or connection.token_ciphertext is None:
        return ManualResult("no_token", "There is no Instagram token to use. Connect Instagram first.", "error")
    if work == "refresh" and not refresh_allowed(connection.token_issued_at, connection.token_expires_at, now, policy):
        if connection.token_expires_at and connection.token_expires_at <= now:
            return ManualResult(
                "expired", "The token has expired and cannot be refreshed. Reconnect to fix it.", "error"
            )
        return ManualResult(
            "too_young",
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
    outcome = None if claim.unreadable else call_meta(claim, client)
    summary = record_outcome(claim, outcome, now=now, policy=policy, vault=vault, rng=rng or random.Random())
    message, level = MANUAL_MESSAGES.get(summary, ("Done.", "info"))
    return ManualResult(summary, message, level)
