"""The whole fleet for support: counts per state and login path, recent causes, who needs attention, search.

Also what support reads on one shop's page that the merchant's card does not say: the role on the Page.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, distinct, func, or_, select, union
from sqlalchemy.orm import contains_eager, selectinload

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

    @property
    def attention(self) -> int:
        """Connections that need attention on any path: needs_reconnect, expiring or degraded."""
        return sum(self.states[state] for state in ATTENTION_STATES)


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


def needs_attention(page: int, per_page: int, total: int, path: LoginPath | None = None):
    """One page of the connections in trouble (on one login path, if given), longest in trouble first.

    `total` is how many there are, known from fleet_counts: a count(*) would cost more than the page.
    The page's ids come from the partial index ix_instagram_connections_attention alone (an index-only
    scan, however many rows the OFFSET skips); only those 50 rows and their shops are then read. The
    states are written into the SQL, not bound, so that PostgreSQL sees the query's rows are the
    index's rows whatever plan it caches.
    """
    in_trouble = InstagramConnection.state.in_(
        bindparam("attention_states", list(ATTENTION_STATES), expanding=True, literal_execute=True)
    )
    order = (InstagramConnection.state_changed_at.asc().nulls_first(), InstagramConnection.id)
    ids = select(InstagramConnection.id).where(in_trouble).order_by(*order)
    if path is not None:
        ids = ids.where(InstagramConnection.login_path == path)  # a connection in trouble is connected
    pagination = db.paginate(ids, page=page, per_page=per_page, count=False)
    pagination.total = total
    pagination.items = list(
        db.session.scalars(
            select(InstagramConnection)
            .options(selectinload(InstagramConnection.shop))
            .where(InstagramConnection.id.in_(pagination.items))
            .order_by(*order)
        )
    )
    return pagination


SEARCH_LIMIT = 200  # matches counted and listed; past it, support is asked to narrow the search


@dataclass(frozen=True)
class SearchResults:
    """One page of the shops a search found, first by name, and how many it found (up to SEARCH_LIMIT)."""

    items: list[Shop]
    page: int
    per_page: int
    total: int  # found, up to SEARCH_LIMIT
    more: bool  # more than SEARCH_LIMIT shops match: only the first SEARCH_LIMIT by name are listed

    @property
    def pages(self) -> int:
        return -(-self.total // self.per_page)

    @property
    def has_prev(self) -> bool:
        return self.page > 1

    @property
    def prev_num(self) -> int:
        return self.page - 1

    @property
    def has_next(self) -> bool:
        return self.page < self.pages

    @property
    def next_num(self) -> int:
        return self.page + 1


def search_shops(search: str, page: int, per_page: int, path: LoginPath | None = None) -> SearchResults:
    """Shops whose name, domain, Instagram @username or a login email contains `search` (connected on `path`).

    One query finds the first SEARCH_LIMIT + 1 matching ids by name, which both counts and pages them;
    a second reads the page's shops.
    """
    matching = shops_matching(search, path)
    ranked = db.session.scalars(
        select(matching.c.shop_id).order_by(matching.c.sort_name, matching.c.shop_id).limit(SEARCH_LIMIT + 1)
    ).all()
    listed = ranked[:SEARCH_LIMIT]
    on_page = listed[(page - 1) * per_page : page * per_page]
    shops = (
        db.session.scalars(
            select(Shop)
            .outerjoin(InstagramConnection, InstagramConnection.shop_id == Shop.id)
            .options(contains_eager(Shop.instagram_connection))
            .where(Shop.id.in_(on_page))
            .order_by(func.lower(Shop.name), Shop.id)
        ).all()
        if on_page
        else []
    )
    return SearchResults(
        items=list(shops), page=page, per_page=per_page, total=len(listed), more=len(ranked) > SEARCH_LIMIT
    )


def shops_matching(search: str, path: LoginPath | None = None):
    """The first SEARCH_LIMIT + 1 shops by name whose name, domain, @username or a login email contains `search`.

    Case does not count; "%", "_" and "\\" match themselves. Each table is asked on its own, first by
    shop name and at most SEARCH_LIMIT + 1 rows, and the answers joined (a UNION): the union holds the
    overall first SEARCH_LIMIT + 1, and PostgreSQL picks per table between reading the column's trigram
    index (migration 0020; `lower(column) LIKE`, the index's own expression), which is quick when few
    rows match, and walking shops in name order until enough match, which is quick when many do. An
    OR across the join, as before, could use neither. Without pg_trgm, and on SQLite, the same query
    gives the same answer by reading the tables; so does a term under three characters, which holds no
    trigram.
    """
    term = search.strip().lower().lstrip("@")
    # Usernames are full of "_", a LIKE wildcard: escape wildcards so they match themselves.
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    pattern = f"%{escaped}%"

    def matches(column):
        return func.lower(column).like(pattern, escape="\\")

    def first_by_name(condition, through=None):
        query = select(Shop.id.label("shop_id"), func.lower(Shop.name).label("sort_name"))
        if through is not None:
            query = query.join(through, through.shop_id == Shop.id)
        if path is not None:
            if through is not InstagramConnection:
                query = query.join(InstagramConnection, InstagramConnection.shop_id == Shop.id)
            # A connection that was disconnected keeps the path it last used; only live ones are on a path.
            query = query.where(
                InstagramConnection.login_path == path, InstagramConnection.state != ConnectionState.NOT_CONNECTED
            )
        query = query.where(condition).order_by(func.lower(Shop.name), Shop.id).limit(SEARCH_LIMIT + 1)
        return select(query.subquery())  # SQLite takes ORDER BY and LIMIT in a UNION only inside a subquery

    return union(
        first_by_name(or_(matches(Shop.name), matches(Shop.domain))),
        first_by_name(matches(InstagramConnection.username), through=InstagramConnection),
        # A shop may have several logins: EXISTS counts it once, so the LIMIT counts shops, not logins.
        first_by_name(select(User.id).where(User.shop_id == Shop.id, matches(User.email)).exists()),
    ).subquery()
