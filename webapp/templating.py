"""Template globals and filters shared by every page."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Flask, current_app, g, url_for
from flask_login import current_user
from markupsafe import Markup

from webapp import clock
from webapp.auth.decorators import OWNER_ONLY_REASON
from webapp.dashboard import presenter
from webapp.models import LoginPath
from webapp.notifications.routes import unread_count
from webapp.services.connections.causes import CAUSES, DATA_ACCESS_WINDOW
from webapp.services.connections.diagnosis import permission_facts
from webapp.services.meta.client import LONG_LIVED_TOKEN_LIFETIME
from webapp.services.notify.compose import PAST_NOTICE_WORDS
from webapp.services.notify.planning import RECONNECT_KINDS

HTMX_VERSION = "2.0.11"
HTMX_CDN_URL = f"https://cdn.jsdelivr.net/npm/htmx.org@{HTMX_VERSION}/dist/htmx.min.js"
# sha384 of the exact file shipped in static/vendor/htmx-2.0.11/ (the npm package jsDelivr serves).
HTMX_INTEGRITY = "sha384-2OatzQy1H+Zd/IIrjr1TcuDGqLXeHhbooAyJY1KdQMKnr4LZ22k31GBLdYKHmVjg"
HTMX_LOCAL_PATH = f"vendor/htmx-{HTMX_VERSION}/htmx.min.js"


def format_datetime(value: datetime | None, missing: str = "never") -> str:
    """Show a UTC time the way people read it: '26 Nov 2026, 14:05 UTC'."""
    if value is None:
        return missing
    return value.astimezone(UTC).strftime("%-d %b %Y, %H:%M UTC")


def relative_phrase(value: datetime, now: datetime) -> str:
    """'2 hours ago', 'in 3 days' (static/js/local-time.js words it the same way)."""
    if value > now:
        return f"in {presenter.duration_text(value - now)}"
    return f"{presenter.duration_text(now - value)} ago"


def time_element(value: datetime | None, missing: str = "never", relative: bool = False) -> Markup | str:
    """A time for pages: UTC in the HTML, which static/js/local-time.js shows in the reader's time zone.

    With `relative`, a phrase such as '(2 hours ago)' follows; without JavaScript the reader sees the
    UTC time and the phrase as of the request.
    """
    if value is None:
        return missing
    text = format_datetime(value)
    if relative:
        text = f"{text} ({relative_phrase(value, g.get('now') or clock.now())})"
    return Markup('<time datetime="{}" title="{}" data-local="{}">{}</time>').format(
        value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        format_datetime(value),
        "relative" if relative else "absolute",
        text,
    )


# The route that starts each login path (a POST with `csrf_token`; Facebook's also takes `renew=1`).
CONNECT_ENDPOINTS: dict[str, str] = {LoginPath.INSTAGRAM: "instagram.connect", LoginPath.FACEBOOK: "facebook.connect"}


def _route(path: str | None) -> str | None:
    endpoint = CONNECT_ENDPOINTS.get(path or LoginPath.INSTAGRAM)
    return url_for(endpoint) if endpoint and endpoint in current_app.view_functions else None


def connect_url(path: str | None, *, fallback: bool = True) -> str | None:
    """Where Connect, Reconnect and Renew access post for this login path.

    A path the operator no longer offers (LOGIN_PATHS) falls back to the first one offered, so a
    Reconnect button never leads to a refusal; with fallback=False (Renew access, which only
    Facebook Login has) it is None instead.
    """
    offered = offered_paths()
    if (path or LoginPath.INSTAGRAM) in offered:
        return _route(path)
    return _route(offered[0]) if fallback and offered else None


def offered_paths() -> list[str]:
    """The login paths a merchant may connect with: LOGIN_PATHS, in its order, each with its route."""
    return [path for path in current_app.config.get("LOGIN_PATHS", (LoginPath.INSTAGRAM,)) if _route(path)]


def register(app: Flask) -> None:
    app.jinja_env.filters["datetime"] = time_element
    app.jinja_env.filters["utc"] = format_datetime  # mails: no script can localise them, so they say UTC
    # The presenter's words, so templates only render them.
    app.jinja_env.globals["event_titles"] = presenter.EVENT_TITLES
    app.jinja_env.globals["actor_words"] = presenter.ACTOR_WORDS
    app.jinja_env.globals["state_labels"] = presenter.STATE_LABELS
    app.jinja_env.globals["state_phrases"] = presenter.STATE_PHRASES
    app.jinja_env.globals["confidence_words"] = presenter.CONFIDENCE_WORDS
    app.jinja_env.globals["incident_banner"] = presenter.INCIDENT_BANNER
    app.jinja_env.globals["incident_banner_detail"] = presenter.INCIDENT_BANNER_DETAIL
    app.jinja_env.globals["day_words"] = presenter.DAY_WORDS
    app.jinja_env.globals["cause_catalogue"] = CAUSES
    app.jinja_env.globals["permission_facts"] = permission_facts
    app.jinja_env.globals["duration"] = presenter.duration_text
    app.jinja_env.globals["strip_summary"] = presenter.strip_summary
    app.jinja_env.globals["token_lifetime_days"] = LONG_LIVED_TOKEN_LIFETIME.days
    app.jinja_env.globals["data_access_days"] = DATA_ACCESS_WINDOW.days
    app.jinja_env.globals["owner_only_reason"] = OWNER_ONLY_REASON
    app.jinja_env.globals["reconnect_kinds"] = RECONNECT_KINDS
    app.jinja_env.globals["past_notice_words"] = PAST_NOTICE_WORDS
    app.jinja_env.globals["connect_url"] = connect_url
    app.jinja_env.globals["offered_paths"] = offered_paths

    def unread_notifications() -> int:
        return unread_count(current_user.id) if current_user.is_authenticated else 0

    app.jinja_env.globals["unread_notifications"] = unread_notifications

    @app.context_processor
    def layout_globals() -> dict:
        return {
            "htmx_cdn": current_app.config.get("HTMX_CDN"),
            "htmx_cdn_url": HTMX_CDN_URL,
            "htmx_integrity": HTMX_INTEGRITY,
            "htmx_local_path": HTMX_LOCAL_PATH,
            "sandbox_enabled": current_app.config.get("INSTAGRAM_SANDBOX"),
            # g.now is stamped per request; an early error (e.g. CSRF) can render before that.
            "request_now": g.get("now") or clock.now(),
        }
