"""Who is signed in: the user loader and the idle/absolute session limits (promise 20)."""

from __future__ import annotations

from flask import flash, g, redirect, request, session, url_for
from flask_login import current_user, logout_user

from webapp.extensions import db, login_manager
from webapp.htmx import hx_redirect
from webapp.models import User
from webapp.services.accounts import live_session

SESSION_ENDED_MESSAGE = "Your session has ended. Please log in again."


@login_manager.user_loader
def load_user(user_id: str) -> User | None:
    """Load the user only while this browser's server-side session is live."""
    try:
        user = db.session.get(User, int(user_id))
    except ValueError:
        return None
    if user is None or live_session(user.id, session.get("sid")) is None:
        return None
    return user


@login_manager.unauthorized_handler
def unauthorized():
    """Send anonymous visitors to the login page; htmx gets HX-Redirect instead of a fragment."""
    had_session = "sid" in session
    message = SESSION_ENDED_MESSAGE if had_session else "Please log in to continue."
    session.clear()
    flash(message, "info")
    target = url_for("auth.login", next=request.full_path.rstrip("?") if request.method == "GET" else None)
    if request.headers.get("HX-Request") == "true":
        response = redirect(target, code=303)
        response.status_code = 401
        response.headers.pop("Location")
        return hx_redirect(response, target)
    return redirect(target)


def enforce_session_limits():
    """End sessions past their idle or absolute limit before any view runs."""
    if request.endpoint in (None, "static", "health.healthz"):
        return None
    from webapp.security import session_expired

    if current_user.is_authenticated and session_expired(g.now):
        from webapp.services.accounts import revoke_session

        revoke_session(session.get("sid"), g.now)
        logout_user()
        return unauthorized()
    return None
