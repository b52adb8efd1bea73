"""The whole fleet for support: counts per state, recent causes, who needs attention, search."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import distinct, func, or_, select
from sqlalchemy.orm import contains_eager

from webapp.extensions import db
from webapp.models import ConnectionEvent, ConnectionState, InstagramConnection, Shop, User

ATTENTION_STATES = (ConnectionState.NEEDS_RECONNECT, ConnectionState.EXPIRING, ConnectionState.DEGRADED)
STATE_ORDER = (*ATTENTION_STATES, ConnectionState.HEALTHY, ConnectionState.NOT_CONNECTED)


def state_counts() -> dict[str, int]:
    """Shops per connection state; a shop that never connected counts as not connected."""
    rows = db.session.execute(select(InstagramConnection.state, func.count()).group_by(InstagramConnection.state))
    counts = {state: count for state, count in rows}
    shops = db.session.execute(select(func.count(Shop.id))).scalar_one()
    with_connection = sum(counts.values())
    never_connected = max(shops - with_connection, 0)
    counts[ConnectionState.NOT_CONNECTED] = counts.get(ConnectionState.NOT_CONNECTED, 0) + never_connected
    return {state: counts.get(state, 0) for state in STATE_ORDER}


def recent_causes(now: datetime, days: int = 30) -> list[tuple[str, int]]:
    """Causes seen in the last `days`, with how many connections each touched, most first."""
    rows = db.session.execute(
        select(ConnectionEvent.cause, func.count(distinct(ConnectionEvent.connection_id)))
        .where(ConnectionEvent.cause.is_not(None), ConnectionEvent.occurred_at >= now - timedelta(days=days))
        .group_by(ConnectionEvent.cause)
        .order_by(func.count(distinct(ConnectionEvent.connection_id)).desc())
    ).all()
    return [(cause, count) for cause, count in rows]


def needs_attention(search: str | None = None):
    """Connections in trouble, longest in trouble first, each with its shop loaded."""
    query = (
        select(InstagramConnection)
        .join(Shop, Shop.id == InstagramConnection.shop_id)
        .options(contains_eager(InstagramConnection.shop))
        .where(InstagramConnection.state.in_(ATTENTION_STATES))
        .order_by(InstagramConnection.state_changed_at.asc().nulls_first(), InstagramConnection.id)
    )
    return _filtered(query, search)


def search_shops(search: str):
    """Any shop whose name, domain, Instagram @username or a login email matches."""
    query = (
        select(Shop)
        .outerjoin(InstagramConnection, InstagramConnection.shop_id == Shop.id)
        .options(contains_eager(Shop.instagram_connection))
        .order_by(func.lower(Shop.name), Shop.id)
    )
    return _filtered(query, search)


def _filtered(query, search: str | None):
    term = (search or "").strip().lower().lstrip("@")
    if not term:
        return query
    # Usernames are full of "_", a LIKE wildcard: escape wildcards so they match themselves.
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    pattern = f"%{escaped}%"

    def matches(column):
        return func.lower(column).like(pattern, escape="\\")

    emails = select(User.shop_id).where(matches(User.email), User.shop_id.is_not(None))
    return query.where(
        or_(matches(Shop.name), matches(Shop.domain), matches(InstagramConnection.username), Shop.id.in_(emails))
    )
