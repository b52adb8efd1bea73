"""Login, logout and password change."""

from __future__ import annotations

from flask import Blueprint, flash, g, make_response, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user

from webapp.auth import throttle
from webapp.auth.decorators import owner_only
from webapp.auth.forms import ChangePasswordForm, LoginForm, LogoutForm
from webapp.extensions import limiter
from webapp.security import mark_session_started, safe_next_url
from webapp.services import accounts, audit, impersonation
from webapp.services.fingerprint import ClientFingerprint, ip_prefix

bp = Blueprint("auth", __name__)


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(throttle.address_limit, methods=["POST"])
@limiter.limit(throttle.account_limit, key_func=throttle.account_key, methods=["POST"])
def login():
    if current_user.is_authenticated:
        return redirect(safe_next_url(request.args.get("next")) or url_for("dashboard.index"))
    form = LoginForm(next=request.args.get("next", ""))
    if form.validate_on_submit():
        user = accounts.authenticate(form.email.data or "", form.password.data or "")
        if user is None:
            form.password.errors = [*form.password.errors, "That email and password do not match an active account."]
        else:
            # A fresh session on every login: nothing from before survives (session fixation).
            session.clear()
            client_fingerprint = ClientFingerprint.from_request(request.remote_addr, request.user_agent.string)
            login_session = accounts.start_session(user, client_fingerprint, g.now)
            session["sid"] = login_session.id
            session.permanent = True
            mark_session_started(g.now)
            login_user(user)
            if user.is_staff:
                audit.record("staff.login", now=g.now, actor=user, ip_prefix=login_session.ip_prefix)
            response = redirect(safe_next_url(form.next.data) or url_for("dashboard.index"))
            return throttle.remember_browser(response, user.email)
    return render_template("auth/login.html", form=form), 400 if form.errors else 200


@bp.errorhandler(429)
def too_many_attempts(error):
    """A refused login gets the login page with the true wait (the limit it hit, not a guess)."""
    form = LoginForm()
    form.form_errors.append(throttle.refusal_message())
    # Flask-Limiter adds Retry-After from the same limit.
    return make_response(render_template("auth/login.html", form=form), 429)


@bp.post("/logout")
def logout():
    form = LogoutForm()
    if form.validate_on_submit():
        active = g.get("impersonation") if current_user.is_authenticated else None
        if active is not None:
            # Logging out ends the view as the merchant too, with its stop row (promise 40).
            impersonation.stop(active, g.now, "logged_out", ip_prefix(request.remote_addr))
            g.impersonation = None
        accounts.revoke_session(session.get("sid"), g.now)
        logout_user()
        session.clear()
        flash("You have logged out.", "info")
    return redirect(url_for("auth.login"))


@bp.route("/account/password", methods=["GET", "POST"])
@login_required
@owner_only
def change_password():
    form = ChangePasswordForm()
    if form.validate_on_submit():
        try:
            accounts.change_password(
                current_user, form.current_password.data or "", form.new_password.data or "", g.now, session.get("sid")
            )
        except accounts.AccountError as error:
            getattr(form, error.field or "new_password").errors.append(str(error))
        else:
            flash("Password changed. Every other browser signed in to your account has been logged out.", "success")
            return redirect(url_for("dashboard.index"))
    status = 400 if form.errors else 200
    return render_template("auth/password.html", form=form), status
