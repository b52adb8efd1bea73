"""Who is signed in: the user loader and the idle/absolute session limits (promise 20)."""

from __future__ import annotations

from flask import flash, g, redirect, request, session, url_for
from flask_login import current_user, logout_user

from webapp import clock
from webapp.extensions import login_manager
from webapp.htmx import hx_redirect
from webapp.models import User
from webapp.security import session_expired
from webapp.services import impersonation
from webapp.services.accounts import revoke_session, user_with_live_session

SESSION_ENDED_MESSAGE = "Your session has ended. Please log in again."


@login_manager.user_loader
def load_user(user_id: str) -> User | None:
    """Load the user only while this browser's server-side session is live.

    While a support agent views a shop as its merchant, the signed-in user stays the agent (that is
    whose session is checked), but `current_user` is the merchant, so every merchant page works
    unchanged; `g.impersonation` says who is really there.
    """
    try:
        user = user_with_live_session(int(user_id), session.get("sid"))
    except ValueError:
        return None
    if user is None:
        if "impersonation_id" in session:
            # The agent's own session was revoked (role removed, deactivated, signed out elsewhere):
            # the view as the merchant ends with it, and says why (promise 29).
            impersonation.end_orphaned(session.pop("impersonation_id"), int(user_id), g.get("now") or clock.now())
        return None
    impersonation_id = session.get("impersonation_id")
    if impersonation_id is not None:
        now = g.get("now") or clock.now()
        why_ended = "ended"
        running = impersonation.running(impersonation_id, user)
        if running is not None:
            reason = impersonation.why_it_ends(running, user, now)
            if reason is None:
                g.impersonation = running
                return running.subject
            impersonation.stop(running, now, reason)
            why_ended = reason
        session.pop("impersonation_id", None)
        flash(IMPERSONATION_ENDED[why_ended], "info")
        if not user.active:
            return None
    return user


IMPERSONATION_ENDED = {
    "expired": "Your time viewing the shop as its merchant ran out; you are back in your own account.",
    "role_revoked": "Your support role was removed, so viewing the shop as its merchant has ended.",
    "subject_changed": "The merchant's account changed, so viewing it has ended.",
    "ended": "Viewing the shop as its merchant has ended.",
}


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
    if current_user.is_authenticated and session_expired(g.now):
        if g.get("impersonation") is not None:
            impersonation.stop(g.impersonation, g.now, "session_expired")
            g.impersonation = None
        revoke_session(session.get("sid"), g.now)
        logout_user()
        return unauthorized()
    return None
