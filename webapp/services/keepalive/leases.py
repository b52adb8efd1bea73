"""Which connections need work now, and the leases that give each to one worker at a time.

A claim leases rows in one short transaction and moves each row's `version`; the claim carries that
version as its fence, so a write-back lands only while nobody else has written the row since.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm.exc import StaleDataError

from webapp.extensions import db
from webapp.models import ConnectionState, InstagramConnection, LoginPath, RateLimitPause
from webapp.services.connections.state import SYSTEM, Actor
from webapp.services.keepalive.facebook_check import PageTarget
from webapp.services.keepalive.policy import Policy, refresh_allowed
from webapp.services.token_vault import TokenVault, TokenVaultError

log = logging.getLogger(__name__)


# The states whose token the keep-alive looks after.
ACTIVE_STATES = (ConnectionState.HEALTHY, ConnectionState.EXPIRING, ConnectionState.DEGRADED)


class Work(StrEnum):
    """What a claim is for."""

    EXPIRE = "expire"  # the token's own expiry passed: no call to Meta can help
    REFRESH = "refresh"
    CHECK = "check"


def work_for(connection: InstagramConnection, now: datetime, policy: Policy) -> Work | None:
    """What the connection needs now: expire, refresh, check or nothing."""
    if connection.token_ciphertext is None or connection.state not in ACTIVE_STATES:
        return None
    if connection.token_expires_at is not None and connection.token_expires_at <= now:
        return Work.EXPIRE
    if connection.paused_until and now < connection.paused_until:
        return None
    if connection.retry_at and now < connection.retry_at:
        return None
    refresh_due = connection.refresh_due_at is not None and connection.refresh_due_at <= now
    if refresh_due and refresh_allowed(connection.token_issued_at, connection.token_expires_at, now, policy):
        return Work.REFRESH
    check_due = connection.check_due_at is not None and connection.check_due_at <= now
    if check_due or (connection.retry_at and now >= connection.retry_at):
        return Work.CHECK
    return None


@dataclass
class Claim:
    """A connection leased to one worker for one piece of work."""

    connection_id: int
    version: int
    owner: str
    work: Work
    token: str | None = field(default=None, repr=False)
    unreadable: bool = False
    actor: Actor = SYSTEM
    # Facebook Login: the Page, its linked account and the user token the check needs (facebook_check.py).
    page: PageTarget | None = None

    @property
    def via_facebook(self) -> bool:
        return self.page is not None


def app_paused_until(now: datetime) -> datetime | None:
    # One column, no ORM object: the card's poll asks this on every request.
    until = db.session.scalar(select(RateLimitPause.until).where(RateLimitPause.scope == "app"))
    return until if until is not None and until > now else None


def pause_in_force(connection: InstagramConnection, now: datetime) -> datetime | None:
    """Until when Meta asked us not to call for this connection (its own pause or the whole app's)."""
    pauses = [moment for moment in (connection.paused_until, app_paused_until(now)) if moment and moment > now]
    return max(pauses, default=None)


def claim_due(
    *,
    owner: str,
    now: datetime,
    limit: int,
    policy: Policy,
    vault: TokenVault,
    connection_id: int | None = None,
    manual_work: Work = Work.CHECK,
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
    works: dict[int, Work] = {}
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
        claims: list[tuple[Claim, Any]] = []  # each claim with its leased row
        if works:
            # One statement leases them all and moves each version (one round trip, not one per row);
            # the claim carries the moved version as its fence. The token condition holds the line
            # against a writer that removed the token after our read (SQLite takes no row locks).
            leased = db.session.execute(
                update(InstagramConnection)
                .where(InstagramConnection.id.in_(works), InstagramConnection.token_ciphertext.is_not(None))
                .values(lease_owner=owner, lease_expires_at=now + policy.lease, version=InstagramConnection.version + 1)
                .returning(
                    InstagramConnection.id,
                    InstagramConnection.version,
                    InstagramConnection.token_ciphertext,
                    InstagramConnection.login_path,
                    InstagramConnection.facebook_page_id,
                    InstagramConnection.facebook_page_name,
                    InstagramConnection.facebook_page_tasks,
                    InstagramConnection.instagram_user_id,
                    InstagramConnection.user_token_ciphertext,
                )
                .execution_options(synchronize_session=False)
            ).all()
            claims = [(Claim(row.id, row.version, owner, works[row.id], actor=actor), row) for row in leased]
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
    for claim, row in claims:
        if row.token_ciphertext is None:  # the query leases only rows that hold a token
            raise RuntimeError(f"connection {claim.connection_id} was leased without a token")
        try:
            claim.token = vault.decrypt(row.token_ciphertext)
        except TokenVaultError:
            claim.unreadable = True
        if row.login_path == LoginPath.FACEBOOK and not claim.unreadable:
            claim.page = _page_target(claim.token or "", row, vault)
        result.append(claim)
    return result


def _page_target(page_token: str, row, vault: TokenVault) -> PageTarget:
    """What the Facebook check needs; an unreadable user token only costs the role lookup."""
    try:
        user_token = vault.decrypt(row.user_token_ciphertext) if row.user_token_ciphertext else None
    except TokenVaultError:
        user_token = None
    return PageTarget(
        page_id=row.facebook_page_id or "",
        page_name=row.facebook_page_name,
        instagram_account_id=row.instagram_user_id,
        page_token=page_token,
        user_token=user_token,
        tasks=tuple(task for task in (row.facebook_page_tasks or "").split(",") if task),
    )


def safe_rollback() -> None:
    """Roll back, even on a connection that is already dead."""
    try:
        db.session.rollback()
    except SQLAlchemyError:
        db.session.close()


def drop_lease(claim: Claim) -> None:
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
        safe_rollback()  # the lease then simply runs out


def release(claims: list[Claim]) -> None:
    """Give leases back early (a worker stopping before it could work on them)."""
    for claim in claims:
        db.session.execute(
            update(InstagramConnection)
            .where(InstagramConnection.id == claim.connection_id, InstagramConnection.version == claim.version)
            .values(lease_owner=None, lease_expires_at=None, version=InstagramConnection.version + 1)
        )
    db.session.commit()
