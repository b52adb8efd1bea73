"""The once-a-minute duties, run by exactly one worker per minute."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError

from webapp.extensions import db
from webapp.models import InstagramConnection, SchedulerTick
from webapp.services.keepalive.leases import ACTIVE_STATES
from webapp.services.keepalive.outcomes import expire
from webapp.services.keepalive.policy import Policy


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
            expire(connection, now)
        db.session.execute(update(SchedulerTick).where(SchedulerTick.tick_at == tick_at).values(expired=len(expired)))
        db.session.execute(delete(SchedulerTick).where(SchedulerTick.tick_at < tick_at - timedelta(days=1)))
        db.session.commit()
    except StaleDataError:
        # A row changed under us (a reconnect, a disconnect): this tick stands down, the next one runs.
        db.session.rollback()
        return None
    return TickResult(tick_at, len(expired))
