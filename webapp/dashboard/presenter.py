"""The presenter of a connection: the words and numbers the card, the health strip and the timeline show."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import select

from webapp.extensions import db
from webapp.models import ConnectionEvent, ConnectionState, InstagramConnection, LoginPath
from webapp.services import incidents
from webapp.services.connections.causes import DATA_ACCESS_WINDOW, CauseId
from webapp.services.connections.checklist import checklist_ticks
from webapp.services.connections.connect_errors import REFUSAL_KINDS, Step
from webapp.services.connections.diagnosis import current_diagnosis, incident_key
from webapp.services.connections.page_roles import ENOUGH_ROLE, role_for, tasks_enough
from webapp.services.keepalive.leases import ACTIVE_STATES, pause_in_force
from webapp.services.keepalive.policy import Policy
from webapp.services.meta.client import LONG_LIVED_TOKEN_LIFETIME

# An expiry we detected ourselves is not Instagram disconnecting the shop: it has its own words.
EXPIRED_LABEL = ("Expired", "✕")
EXPIRED_SENTENCE = (
    f"The connection reached the end of its {LONG_LIVED_TOKEN_LIFETIME.days} days without being renewed. "
    "Reconnect to continue; it takes a minute."
)
PAUSED_SENTENCE = (
    "Instagram asked us to slow down, so our calls are paused for a while. Your connection still works; nothing to do."
)

# Facebook Login: the token lasts as long as Meta's data-access window, which only the merchant can
# renew (by logging in again); nothing is renewed automatically, so the card never promises it.
FACEBOOK_EXPIRED_SENTENCE = (
    f"Access ended: Facebook gives the shop {DATA_ACCESS_WINDOW.days} days at a time, and this time was not "
    "renewed before it ran out. Reconnect with Facebook to continue; it takes a minute."
)
# Our own expiry date on this path is the end of the window; Meta says the same with 190/493.
FACEBOOK_EXPIRY_CAUSES = (CauseId.TOKEN_EXPIRED, CauseId.DATA_ACCESS_EXPIRED)

STATE_LABELS: dict[str, tuple[str, str]] = {
    ConnectionState.NOT_CONNECTED: ("Not connected", "○"),
    ConnectionState.HEALTHY: ("Connected", "✓"),
    ConnectionState.EXPIRING: ("Expiring soon", "!"),
    ConnectionState.DEGRADED: ("Having trouble, retrying", "~"),
    ConnectionState.NEEDS_RECONNECT: ("Disconnected by Instagram", "✕"),
}


# While Meta itself is failing for much of the fleet (a fleet incident): one calm banner for every
# merchant, and on a card whose trouble is that incident's, calm words instead of the shop's own alarm.
INCIDENT_BANNER = "Instagram is having trouble; nothing for you to do."
INCIDENT_BANNER_DETAIL = (
    "Instagram is failing for many shops at once right now, not because of anything in your shop. We keep "
    "retrying and everything picks up again by itself once Instagram answers; we will not email you about it."
)
INCIDENT_LABEL = ("Instagram is having trouble", "~")
INCIDENT_SENTENCE = (
    "Your connection is still valid. Instagram is not answering properly for many shops right now; we keep "
    "retrying, and it recovers by itself."
)
INCIDENT_NOTICE = "Instagram is having trouble for many shops right now; nothing for you to do."


# The state in the middle of a sentence ("3 shops: 2 connected, 1 having trouble.").
STATE_PHRASES = {
    "needs_reconnect": "disconnected by Instagram",
    "expiring": "expiring soon",
    "degraded": "having trouble",
    "healthy": "connected",
    "not_connected": "not connected",
}


# What the card tells the merchant about each state, and whether there is anything to do.
STATE_SENTENCES = {
    "not_connected": "Connect your Instagram professional account so your products can appear in your feed and "
    "shoppable posts.",
    "healthy": "Everything is working. We renew the connection automatically, long before it expires.",
    "expiring": "The connection still works, but we could not renew it yet and it ends soon. We keep trying; if it "
    "keeps failing, reconnect.",
    "degraded": "Instagram is not answering properly right now. Your connection is still valid and we keep retrying; "
    "nothing to do yet.",
    "needs_reconnect": "Instagram has ended this connection. Products are not syncing until you reconnect.",
}


# The card's sentence on a Facebook Login connection, where it differs.
FACEBOOK_STATE_SENTENCES = {
    "healthy": f"Everything is working. Facebook gives the shop access for {DATA_ACCESS_WINDOW.days} days at a "
    "time; we remind you before it ends, and renewing takes a minute.",
    "degraded": "Facebook is not answering properly right now. Your connection is still valid and we keep "
    "retrying; nothing to do yet.",
    "needs_reconnect": "This connection has stopped working. Products are not syncing until you reconnect with "
    "Facebook.",
}
# A Facebook card whose access ends within the warning period, whatever the worker has noticed yet.
FACEBOOK_RENEW_SENTENCE = (
    "The connection works, but access ends soon. Press Renew access and log in with Facebook to keep products "
    "syncing: Facebook lets only you renew it, we cannot do it for you."
)
# Under the Page's role when Meta's tasks for it cannot act for the Page (an Advertiser, an Analyst).
ROLE_TOO_LOW_SENTENCE = (
    "This role lets you see the Page but not act for it, so the shop cannot use its Instagram account: ask an "
    f"admin of the Page to give you at least the {ENOUGH_ROLE} role."
)
FACEBOOK_STATE_LABELS: dict[str, tuple[str, str]] = {ConnectionState.NEEDS_RECONNECT: ("Disconnected", "✕")}


# The short notice an open dashboard shows when a poll finds the connection in another state.
STATE_CHANGE_NOTICES = {
    "not_connected": "Instagram was disconnected from your shop.",
    "healthy": "Your Instagram connection works again.",
    "expiring": "Your Instagram connection ends soon and could not be renewed yet.",
    "degraded": "Instagram stopped answering properly. We keep retrying; nothing to do yet.",
    "needs_reconnect": "Instagram just ended the connection. See “What happened” for why and how to fix it.",
}


FACEBOOK_STATE_CHANGE_NOTICES = {
    **STATE_CHANGE_NOTICES,
    "expiring": "Access to your Instagram account through Facebook ends soon. Press Renew access to keep it.",
    "degraded": "Facebook stopped answering properly. We keep retrying; nothing to do yet.",
    "needs_reconnect": "The connection just stopped working. See “What happened” for why and how to fix it.",
}


# How sure the diagnosis is of its first cause, in the panel's words.
CONFIDENCE_WORDS = {"certain": "Certain", "likely": "Most likely", "possible": "Possible"}


# Which events each timeline filter shows.
EVENT_GROUPS = {
    "problems": ("refresh_failed", "check_failed", "expired", "deauthorized", "token_unreadable", "error_reported"),
    "connections": (
        "connected",
        "reconnected",
        "switched_account",
        "disconnected",
        "instagram_data_deleted",
        *REFUSAL_KINDS.values(),
    ),
    "upkeep": ("refreshed", "checked"),
}


# The history page's filters in order, as (group, label); the empty group shows everything.
HISTORY_FILTERS = (
    ("", "All"),
    ("problems", "Problems"),
    ("connections", "Connects and disconnects"),
    ("upkeep", "Renewals and checks"),
)


EVENT_TITLES = {
    "connected": "Connected",
    "reconnected": "Reconnected",
    "switched_account": "Switched account",
    "disconnected": "Disconnected by the shop",
    "deauthorized": "App removed on Instagram",
    "instagram_data_deleted": "Instagram data deleted",
    "refreshed": "Token renewed",
    "refresh_failed": "Token renewal failed",
    "checked": "Health check passed",
    "check_failed": "Health check failed",
    "expired": "Token expired",
    "token_unreadable": "Stored token unreadable",
    "support_viewed": "Dashboard viewed",  # followed by "by support"
    "error_reported": "Error reported by the shop platform",
    REFUSAL_KINDS[Step.LOGIN_PAGE]: "Connecting stopped at Instagram's login page",
    REFUSAL_KINDS[Step.REPLY_CHECK]: "Connecting refused: the reply was not for this login",
    REFUSAL_KINDS[Step.CODE_EXCHANGE]: "Connecting refused by Instagram",
    REFUSAL_KINDS[Step.FINISH]: "Connecting could not be finished",
}


# Who did it, beside an event; system events say nothing.
ACTOR_WORDS = {
    "merchant": "by the shop",
    "support": "by support",
    "meta": "reported by Instagram",
    "platform": "through the shop platform's API",
}


# "<version>-<state>", with "-i<incident id>" while a fleet incident is open.
SEEN = re.compile(r"\d{1,12}-[a-z_]{1,20}(-i\d{1,12})?")


def page_saw(seen: str | None) -> str | None:
    """What a poll says its page last saw, if it is in the card's own format (anything else: nothing)."""
    return seen if seen is not None and SEEN.fullmatch(seen) else None


def change_notice(seen_by_page: str | None, card: CardView) -> str | None:
    """The notice for a page that last saw `seen_by_page`: None when nothing changed or only details did."""
    if not seen_by_page or seen_by_page == card.seen:
        return None
    _version, previous_state, previous_incident = (seen_by_page.split("-") + ["", ""])[:3]
    previous_state = previous_state or ConnectionState.NOT_CONNECTED
    if card.calm and (previous_state != card.state or previous_incident != f"i{card.incident_id}"):
        return INCIDENT_NOTICE
    if previous_state == card.state:
        return None
    if not card.via_facebook:
        return STATE_CHANGE_NOTICES[card.state]
    if previous_state == ConnectionState.EXPIRING and card.state == ConnectionState.HEALTHY and card.expires_at:
        return f"Access renewed until {card.expires_at:%-d %b %Y}."
    return FACEBOOK_STATE_CHANGE_NOTICES[card.state]


def duration_text(delta: timedelta) -> str:
    """'12 days', '5 hours', '3 minutes'; the largest unit that is at least one."""
    seconds = max(int(delta.total_seconds()), 0)
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return "less than a minute"


def countdown_text(delta: timedelta) -> str:
    """'47 days, 3 hours, 12 minutes' (the browser keeps it ticking from data-expires-at)."""
    minutes = max(int(delta.total_seconds() // 60), 0)
    days, rest = divmod(minutes, 1440)
    hours, minutes = divmod(rest, 60)
    parts = [(days, "day"), (hours, "hour"), (minutes, "minute")]
    return ", ".join(f"{count} {unit}{'s' if count != 1 else ''}" for count, unit in parts)


@dataclass
class CardView:
    state: str
    label: str
    icon: str
    sentence: str
    connected_for: str | None = None
    stopped_at: datetime | None = None  # a broken card says since when, not how long it was connected
    expired: bool = False
    token_age_days: float = 0
    expires_at: datetime | None = None
    expires_in: str | None = None
    last_refresh: datetime | None = None
    next_refresh: datetime | None = None
    last_check: datetime | None = None
    last_check_ok: bool | None = None
    next_check: datetime | None = None
    retry_at: datetime | None = None
    paused_until: datetime | None = None
    # How the shop connected. Facebook Login adds the Page, the role its tasks amount to, and a warning
    # when that role cannot let the shop read the Instagram account (none when Meta listed no tasks).
    login_path: str = LoginPath.INSTAGRAM
    page_name: str | None = None
    page_role: str | None = None
    page_role_warning: str | None = None
    # The bar's length: the token's 60 days, or on Facebook Login the 90-day data-access window.
    lifetime_days: int = LONG_LIVED_TOKEN_LIFETIME.days
    # Facebook Login's "Renew access": "primary" when the window ends within the warning period,
    # "secondary" while it is far off, None where there is nothing to renew (broken, expired).
    renew_access: str | None = None
    # What an open page last saw: it changes with every write to the connection (its version) and
    # with its state, so a poll can tell the page to refresh the parts that depend on it.
    seen: str = "none"
    # A fleet incident is open (Meta failing for many shops): the banner shows; `calm` when this
    # connection's own trouble is that incident's, so the card says so instead of alarming.
    incident_id: int | None = None
    incident_since: datetime | None = None
    calm: bool = False

    @property
    def lifetime_used_days(self) -> int:
        return min(int(self.token_age_days), self.lifetime_days)

    @property
    def via_facebook(self) -> bool:
        return self.login_path == LoginPath.FACEBOOK


def card_view(
    connection: InstagramConnection | None, now: datetime, expiry_warning: timedelta | None = None
) -> CardView:
    """The card's words and numbers; `expiry_warning` defaults to the app's policy (EXPIRY_WARNING_DAYS)."""
    incident = incidents.current()
    if connection is not None and connection.via_facebook and connection.state != ConnectionState.NOT_CONNECTED:
        return during_incident(_facebook_card_view(connection, now, expiry_warning), connection, incident)
    return during_incident(_card_view(connection, now), connection, incident)


def during_incident(
    view: CardView, connection: InstagramConnection | None, incident: incidents.OpenIncident | None
) -> CardView:
    """Add the fleet incident to the card: the banner, and calm words where the shop's trouble is the incident's."""
    if incident is None:
        return view
    view.incident_id, view.incident_since = incident.id, incident.opened_at
    view.seen = f"{view.seen}-i{incident.id}"
    if incidents.part_of(connection, incident):
        view.calm = True
        view.label, view.icon = INCIDENT_LABEL
        view.sentence = INCIDENT_SENTENCE
    return view


def _card_view(connection: InstagramConnection | None, now: datetime) -> CardView:
    state = connection.state if connection else ConnectionState.NOT_CONNECTED
    expired = (
        state == ConnectionState.NEEDS_RECONNECT
        and connection is not None
        and connection.cause == CauseId.TOKEN_EXPIRED
    )
    label, icon = EXPIRED_LABEL if expired else STATE_LABELS[state]
    view = CardView(
        state=state, label=label, icon=icon, sentence=EXPIRED_SENTENCE if expired else STATE_SENTENCES[state]
    )
    if connection is not None:
        view.seen = f"{connection.version}-{state}"
        if state == ConnectionState.NEEDS_RECONNECT:
            # Also when Meta's deauthorize took the token with it: the card says since when.
            view.stopped_at = connection.state_changed_at
    if connection is None or not connection.has_token or connection.token_issued_at is None:
        return view
    view.expired = expired
    if state != ConnectionState.NEEDS_RECONNECT:
        # How long the shop has been connected (the token is renewed weekly; its age is the lifetime bar).
        view.connected_for = duration_text(now - (connection.connected_at or connection.token_issued_at))
    view.token_age_days = (now - connection.token_issued_at).total_seconds() / 86400
    view.expires_at = connection.token_expires_at
    if connection.token_expires_at and state != ConnectionState.NEEDS_RECONNECT:  # a dead token's expiry means nothing
        remaining = connection.token_expires_at - now
        view.expires_in = countdown_text(remaining) if remaining.total_seconds() > 0 else None
    view.last_refresh = connection.last_refreshed_at
    view.next_refresh = connection.refresh_due_at if state in ACTIVE_STATES else None
    view.last_check = connection.last_checked_at
    view.last_check_ok = connection.last_check_ok
    view.next_check = connection.check_due_at if state in ACTIVE_STATES else None
    view.retry_at = connection.retry_at if state in (ConnectionState.DEGRADED, ConnectionState.EXPIRING) else None
    if state in ACTIVE_STATES:
        view.paused_until = pause_in_force(connection, now)
    if view.paused_until is not None:
        if state == ConnectionState.HEALTHY:
            view.sentence = PAUSED_SENTENCE
        # Nothing is called before the pause ends: a renewal "due" earlier happens right after it.
        if view.next_refresh is not None and view.next_refresh < view.paused_until:
            view.next_refresh = view.paused_until
        view.retry_at = None
    return view


def _facebook_card_view(connection: InstagramConnection, now: datetime, expiry_warning: timedelta | None) -> CardView:
    """A Facebook Login card: the Page and the merchant's role on it, and the data-access window's countdown.

    Nothing here is renewed automatically (refresh_due_at stays empty), so the card shows no renewal
    facts; the merchant renews the window with "Renew access", offered first once it ends soon.
    """
    state = connection.state
    expired = state == ConnectionState.NEEDS_RECONNECT and connection.cause in FACEBOOK_EXPIRY_CAUSES
    label, icon = EXPIRED_LABEL if expired else FACEBOOK_STATE_LABELS.get(state, STATE_LABELS[state])
    tasks = connection.page_tasks
    view = CardView(
        state=state,
        label=label,
        icon=icon,
        sentence=FACEBOOK_EXPIRED_SENTENCE if expired else FACEBOOK_STATE_SENTENCES.get(state, STATE_SENTENCES[state]),
        login_path=LoginPath.FACEBOOK,
        page_name=connection.facebook_page_name,
        page_role=role_for(tasks),
        page_role_warning=ROLE_TOO_LOW_SENTENCE if tasks and not tasks_enough(tasks) else None,
        lifetime_days=DATA_ACCESS_WINDOW.days,
        seen=f"{connection.version}-{state}",
    )
    if state == ConnectionState.NEEDS_RECONNECT:
        view.stopped_at = connection.state_changed_at
    window_start = connection.token_issued_at or connection.connected_at
    if not connection.has_token or window_start is None:
        return view
    view.expired = expired
    # The window's end is Meta's date (debug_token's data_access_expires_at), so the part used is
    # counted back from it; from the connect only when Meta has not said.
    if connection.token_expires_at is not None:
        window_start = min(now, connection.token_expires_at - DATA_ACCESS_WINDOW)
    view.token_age_days = max((now - window_start).total_seconds() / 86400, 0)
    view.expires_at = connection.token_expires_at
    view.last_check = connection.last_checked_at
    view.last_check_ok = connection.last_check_ok
    if state not in ACTIVE_STATES:
        return view
    view.connected_for = duration_text(now - (connection.connected_at or window_start))
    ends_soon = state == ConnectionState.EXPIRING
    if connection.token_expires_at is not None:
        remaining = connection.token_expires_at - now
        view.expires_in = countdown_text(remaining) if remaining.total_seconds() > 0 else None
        if expiry_warning is None:
            expiry_warning = Policy.from_config(current_app.config).expiry_warning
        ends_soon = ends_soon or remaining <= expiry_warning
    view.renew_access = "primary" if ends_soon else "secondary"
    if ends_soon:
        view.sentence = FACEBOOK_RENEW_SENTENCE
    view.next_check = connection.check_due_at
    view.retry_at = connection.retry_at if state in (ConnectionState.DEGRADED, ConnectionState.EXPIRING) else None
    view.paused_until = pause_in_force(connection, now)
    if view.paused_until is not None:
        if state == ConnectionState.HEALTHY and not ends_soon:
            view.sentence = PAUSED_SENTENCE
        view.retry_at = None
    return view


# A day of the health strip, in its legend and each cell's title.
DAY_WORDS = {
    "healthy": "connected",
    "degraded": "had trouble",
    "recovered": "disconnected, then reconnected",
    "disconnected": "disconnected",
    "not_connected": "not connected",
}


@dataclass(frozen=True)
class DayCell:
    day: datetime
    status: str  # healthy | degraded | recovered | disconnected | not_connected

    @property
    def label(self) -> str:
        return f"{self.day:%d %b}: {DAY_WORDS[self.status]}"


_STATE_TO_DAY: dict[str, str] = {
    ConnectionState.HEALTHY: "healthy",
    ConnectionState.EXPIRING: "degraded",
    ConnectionState.DEGRADED: "degraded",
    ConnectionState.NEEDS_RECONNECT: "disconnected",
    ConnectionState.NOT_CONNECTED: "not_connected",
}


_DAY_SEVERITY = {"not_connected": 0, "healthy": 1, "degraded": 2, "recovered": 3, "disconnected": 4}


def strip_summary(cells: list[DayCell]) -> str:
    """'80 days connected, 3 days with trouble, ...' for screen readers."""
    words = {
        "healthy": "connected",
        "degraded": "with trouble",
        "recovered": "disconnected, then reconnected",
        "disconnected": "disconnected",
        "not_connected": "not connected",
    }
    counts = {status: 0 for status in words}
    for cell in cells:
        counts[cell.status] += 1
    return (
        ", ".join(f"{counts[status]} day{'' if counts[status] == 1 else 's'} {word}" for status, word in words.items())
        + "."
    )


def health_strip(connection: InstagramConnection | None, now: datetime, days: int = 90) -> list[DayCell]:
    """One cell per day, oldest first: the worst state the connection was in that day."""
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    start = today - timedelta(days=days - 1)
    if connection is None:
        return [DayCell(start + timedelta(days=i), "not_connected") for i in range(days)]
    before = db.session.scalar(
        select(ConnectionEvent.state_after)
        .where(ConnectionEvent.connection_id == connection.id, ConnectionEvent.occurred_at < start)
        .order_by(ConnectionEvent.occurred_at.desc(), ConnectionEvent.id.desc())
        .limit(1)
    )
    rows = db.session.execute(
        select(ConnectionEvent.occurred_at, ConnectionEvent.state_after)
        .where(ConnectionEvent.connection_id == connection.id, ConnectionEvent.occurred_at >= start)
        .order_by(ConnectionEvent.occurred_at, ConnectionEvent.id)
    ).all()
    carried = _STATE_TO_DAY.get(before or ConnectionState.NOT_CONNECTED, "not_connected")
    cells, index = [], 0
    for offset in range(days):
        day = start + timedelta(days=offset)
        day_end = day + timedelta(days=1)
        worst = carried
        while index < len(rows) and rows[index].occurred_at < day_end:
            status = _STATE_TO_DAY.get(rows[index].state_after or ConnectionState.NOT_CONNECTED, "not_connected")
            if _DAY_SEVERITY[status] > _DAY_SEVERITY[worst]:
                worst = status
            carried = status
            index += 1
        if worst == "disconnected" and carried == "healthy":
            worst = "recovered"  # broken during the day, working again by its end
        cells.append(DayCell(day, worst))
    return cells


def timeline_query(connection: InstagramConnection, group: str | None):
    query = select(ConnectionEvent).where(ConnectionEvent.connection_id == connection.id)
    if group in EVENT_GROUPS:
        query = query.where(ConnectionEvent.kind.in_(EVENT_GROUPS[group]))
    return query.order_by(ConnectionEvent.occurred_at.desc(), ConnectionEvent.id.desc())


def recent_events(connection: InstagramConnection | None, limit: int) -> list[ConnectionEvent]:
    """The connection's latest events, newest first."""
    if connection is None:
        return []
    return list(db.session.scalars(timeline_query(connection, None).limit(limit)))


def merchant_dashboard(shop, now: datetime) -> dict:
    """What the merchant's dashboard page shows: the card and the diagnosis (history comes as a fragment)."""
    connection = shop.instagram_connection
    diagnosis = current_diagnosis(connection, now)
    incident = incident_key(diagnosis)
    return {
        "shop": shop,
        "connection": connection,
        "card": card_view(connection, now),
        "diagnosis": diagnosis,
        "incident": incident,
        "ticks": checklist_ticks(connection, incident),
    }
