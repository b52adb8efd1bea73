"""The whole fleet for support: counts per state and login path, recent causes, who needs attention, search.

Also what support reads on one shop's page that the merchant's card does not say: the role on the Page.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import distinct, func, or_, select
from sqlalchemy.orm import contains_eager

from webapp.extensions import db
from webapp.models import ConnectionEvent, ConnectionState, InstagramConnection, LoginPath, Shop, User
from webapp.services.connections import page_roles

ATTENTION_STATES = (ConnectionState.NEEDS_RECONNECT, ConnectionState.EXPIRING, ConnectionState.DEGRADED)
STATE_ORDER = (*ATTENTION_STATES, ConnectionState.HEALTHY, ConnectionState.NOT_CONNECTED)
PATH_ORDER = (LoginPath.INSTAGRAM, LoginPath.FACEBOOK)
PATH_NAMES = {LoginPath.INSTAGRAM: "Instagram Login", LoginPath.FACEBOOK: "Facebook Login"}


@dataclass(frozen=True)
class PathCounts:
    """One login path's connections: all that are connected, those Meta broke, those in any trouble."""

    connected: int = 0  # every state but not_connected
    needs_reconnect: int = 0
    attention: int = 0  # needs_reconnect, expiring or degraded


@dataclass(frozen=True)
class FleetCounts:
    states: dict[str, int]  # shops per state, in STATE_ORDER; a shop that never connected is not connected
    paths: dict[str, PathCounts]  # connections per login path, in PATH_ORDER


def fleet_counts() -> FleetCounts:
    """Shops per connection state and connections per login path, from one grouped scan of the connections."""
    rows = db.session.execute(
        select(InstagramConnection.state, InstagramConnection.login_path, func.count()).group_by(
            InstagramConnection.state, InstagramConnection.login_path
        )
    ).all()
    states: dict[str, int] = dict.fromkeys(STATE_ORDER, 0)
    per_path: dict[str, dict[str, int]] = {path: dict.fromkeys(STATE_ORDER, 0) for path in PATH_ORDER}
    for state, path, count in rows:
        states[state] = states.get(state, 0) + count
        per_path.setdefault(path, dict.fromkeys(STATE_ORDER, 0))[state] = count
    shops = db.session.execute(select(func.count(Shop.id))).scalar_one()
    states[ConnectionState.NOT_CONNECTED] += max(shops - sum(states.values()), 0)
    paths = {
        path: PathCounts(
            connected=sum(count for state, count in counts.items() if state != ConnectionState.NOT_CONNECTED),
            needs_reconnect=counts[ConnectionState.NEEDS_RECONNECT],
            attention=sum(counts[state] for state in ATTENTION_STATES),
        )
        for path, counts in per_path.items()
    }
    return FleetCounts(states=states, paths=paths)


def state_counts() -> dict[str, int]:
    """Shops per connection state; a shop that never connected counts as not connected."""
    return fleet_counts().states


@dataclass(frozen=True)
class PageRole:
    """The merchant's role on a Facebook Login connection's Page, as support reads it."""

    described: str  # "Admin (MANAGE, CREATE_CONTENT)", or "no role"
    enough: bool  # whether it still lets the shop act for the Page's Instagram account
    needed: str = page_roles.ENOUGH_ROLE


def page_role(connection: InstagramConnection | None) -> PageRole | None:
    """The merchant's role on the connection's Page (Facebook Login), or None for Instagram Login."""
    if connection is None or not connection.via_facebook:
        return None
    tasks = connection.page_tasks
    return PageRole(described=page_roles.describe(tasks), enough=page_roles.tasks_enough(tasks))


def login_path_or_none(value: str | None) -> LoginPath | None:
    """The login path a filter names ("instagram", "facebook"), or None for anything else (no filter)."""
    try:
        return LoginPath((value or "").strip().lower())
    except ValueError:
        return None


def recent_causes(now: datetime, days: int = 30) -> list[tuple[str, int]]:
    """Causes seen in the last `days`, with how many connections each touched, most first."""
    rows = db.session.execute(
        select(ConnectionEvent.cause, func.count(distinct(ConnectionEvent.connection_id)))
        .where(ConnectionEvent.cause.is_not(None), ConnectionEvent.occurred_at >= now - timedelta(days=days))
        .group_by(ConnectionEvent.cause)
        .order_by(func.count(distinct(ConnectionEvent.connection_id)).desc())
    ).all()
    return [(cause, count) for cause, count in rows]


def needs_attention(search: str | None = None, path: LoginPath | None = None):
    """Connections in trouble (on one login path, if given), longest in trouble first, each with its shop loaded."""
    query = (
        select(InstagramConnection)
        .join(Shop, Shop.id == InstagramConnection.shop_id)
        .options(contains_eager(InstagramConnection.shop))
        .where(InstagramConnection.state.in_(ATTENTION_STATES))
        .order_by(InstagramConnection.state_changed_at.asc().nulls_first(), InstagramConnection.id)
    )
    return _filtered(query, search, path)


def search_shops(search: str, path: LoginPath | None = None):
    """Any shop whose name, domain, Instagram @username or a login email matches (connected on `path`, if given)."""
    query = (
        select(Shop)
        .outerjoin(InstagramConnection, InstagramConnection.shop_id == Shop.id)
        .options(contains_eager(Shop.instagram_connection))
        .order_by(func.lower(Shop.name), Shop.id)
    )
    return _filtered(query, search, path)


def _filtered(query, search: str | None, path: LoginPath | None = None):
    if path is not None:
        # A connection that was disconnected keeps the path it last used; only live ones are on a path.
        query = query.where(
            InstagramConnection.login_path == path, InstagramConnection.state != ConnectionState.NOT_CONNECTED
        )
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
