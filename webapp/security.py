"""Security headers, safe redirects and session lifetime rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from flask import Flask, Response, abort, current_app, request, session

HTMX_CDN_ORIGIN = "https://cdn.jsdelivr.net"


def safe_next_url(target: str | None) -> str | None:
    """Return `target` when it is a path on our own origin, else None (promise 19)."""
    if not target:
        return None
    # Browsers drop tabs and newlines and read a backslash as a slash, so `/\t/evil.com` and
    # `/\evil.com` would leave the site; refuse any such character outright.
    if any(ch.isspace() or ord(ch) < 0x20 or ch == "\\" for ch in target):
        return None
    if not target.startswith("/") or target.startswith("//"):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return None
    return target


def _origin(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme and parts.netloc:
        return f"{parts.scheme}://{parts.netloc}"
    return None


def content_security_policy(app: Flask) -> str:
    """Build the CSP: no inline script or style, no eval, no framing."""
    script_src = ["'self'"]
    if app.config.get("HTMX_CDN"):
        script_src.append(HTMX_CDN_ORIGIN)
    # Chrome applies form-action to the redirect after a form POST, so the Instagram login page
    # (or the sandbox's) must be allowed as a form destination.
    form_action = ["'self'"]
    authorize_origin = _origin(app.config.get("INSTAGRAM_AUTHORIZE_URL", ""))
    if authorize_origin:
        form_action.append(authorize_origin)
    directives = {
        "default-src": ["'self'"],
        "script-src": script_src,
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:", "https:"],
        "connect-src": ["'self'"],
        "font-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "frame-ancestors": ["'none'"],
        "form-action": form_action,
    }
    return "; ".join(f"{name} {' '.join(values)}" for name, values in directives.items())


def apply_security_headers(response: Response) -> Response:
    """Add the security headers every response carries (promise 31)."""
    app = current_app
    response.headers.setdefault("Content-Security-Policy", app.extensions["csp"])
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
    response.headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    if app.config.get("PRODUCTION"):
        response.headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
    return response


def mark_session_started(now: datetime) -> None:
    session["login_at"] = now.timestamp()
    session["seen_at"] = now.timestamp()


def session_expired(now: datetime) -> bool:
    """True when the signed-in session passed its idle or absolute limit; refreshes the idle clock."""
    login_at = session.get("login_at")
    seen_at = session.get("seen_at")
    if login_at is None or seen_at is None:
        return True
    idle = timedelta(minutes=current_app.config["SESSION_IDLE_MINUTES"])
    absolute = timedelta(hours=current_app.config["SESSION_ABSOLUTE_HOURS"])
    started = datetime.fromtimestamp(login_at, UTC)
    last_seen = datetime.fromtimestamp(seen_at, UTC)
    if now - started > absolute or now - last_seen > idle:
        return True
    # Write at most once a minute so that polling fragments do not re-sign the cookie every time.
    if now - last_seen > timedelta(minutes=1):
        session["seen_at"] = now.timestamp()
    return False


def refuse_nul_bytes() -> None:
    """Refuse input carrying NUL bytes: no field of ours needs one and PostgreSQL cannot store one.

    The path counts too: `<code>` or `<token>` in a route reaches a query as it was typed.
    """
    if "\x00" in request.path:
        abort(400, description="The address contained characters we cannot accept. Check the link.")
    for values in (request.args, request.form):
        for name, items in values.lists():
            if "\x00" in name or any("\x00" in value for value in items):
                abort(400, description="The form contained characters we cannot accept. Check what you typed.")
