"""Login, logout and password change."""

from __future__ import annotations

from flask import Blueprint, current_app, flash, g, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user

from webapp.auth.decorators import owner_only
from webapp.auth.forms import ChangePasswordForm, LoginForm, LogoutForm
from webapp.extensions import limiter
from webapp.security import mark_session_started, safe_next_url
from webapp.services import accounts, audit

bp = Blueprint("auth", __name__)


def _login_rate_limit() -> str:
    return current_app.config["LOGIN_RATE_LIMIT"]


def _account_rate_limit() -> str:
    return current_app.config["LOGIN_ACCOUNT_RATE_LIMIT"]


def _submitted_email() -> str:
    return "email:" + request.form.get("email", "").strip().lower()


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(_login_rate_limit, methods=["POST"])
@limiter.limit(_account_rate_limit, key_func=_submitted_email, methods=["POST"])
def login():
    if current_user.is_authenticated:
        return redirect(safe_next_url(request.args.get("next")) or url_for("dashboard.index"))
    form = LoginForm(next=request.args.get("next", ""))
    if form.validate_on_submit():
        user = accounts.authenticate(form.email.data, form.password.data)
        if user is None:
            form.password.errors.append("That email and password do not match an active account.")
        else:
            # A fresh session on every login: nothing from before survives (session fixation).
            session.clear()
            login_session = accounts.start_session(
                user, accounts.ClientInfo(request.remote_addr, request.user_agent.string), g.now
            )
            session["sid"] = login_session.id
            session.permanent = True
            mark_session_started(g.now)
            login_user(user)
            if user.is_staff:
                audit.record("staff.login", now=g.now, actor=user, ip_prefix=login_session.ip_prefix)
            return redirect(safe_next_url(form.next.data) or url_for("dashboard.index"))
    return render_template("auth/login.html", form=form), 400 if form.errors else 200


@bp.post("/logout")
def logout():
    form = LogoutForm()
    if form.validate_on_submit():
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
                current_user, form.current_password.data, form.new_password.data, g.now, session.get("sid")
            )
        except accounts.AccountError as error:
            getattr(form, error.field or "new_password").errors.append(str(error))
        else:
            flash("Password changed. Every other browser signed in to your account has been logged out.", "success")
            return redirect(url_for("dashboard.index"))
    status = 400 if form.errors else 200
    return render_template("auth/password.html", form=form), status
