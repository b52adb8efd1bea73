"""Administrators: staff accounts, the audit log and the app's health at Meta."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, g, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import EmailField, PasswordField, SelectField, StringField, SubmitField
from wtforms.fields.choices import SelectChoice  # type: ignore[attr-defined]  # new in WTForms 3.3; its stubs are 3.2
from wtforms.validators import DataRequired, Length

from webapp.auth.decorators import admin_required
from webapp.auth.forms import no_control_characters
from webapp.extensions import db
from webapp.htmx import is_fragment_request, vary_on_htmx
from webapp.instagram.oauth import callback_url
from webapp.models import STAFF_ROLES, AuditEntry, User
from webapp.request_input import id_argument, page_number
from webapp.services import accounts, app_health, audit
from webapp.services.runtime import instagram_client, keep_alive_policy

bp = Blueprint("admin", __name__, url_prefix="/admin")


class StaffForm(FlaskForm):
    email = EmailField(
        "Email", validators=[DataRequired(message="Enter an email."), Length(max=254), no_control_characters]
    )
    name = StringField("Name", validators=[Length(max=120)])
    role = SelectField("Role", choices=[SelectChoice("support", "Support"), SelectChoice("admin", "Admin")])
    password = PasswordField("First password", validators=[DataRequired(message="Set a first password.")])
    submit = SubmitField("Create staff login")


class CheckAppForm(FlaskForm):
    submit = SubmitField("Check the app")


@bp.route("/staff", methods=["GET", "POST"])
@admin_required
def staff():
    form = StaffForm()
    if form.validate_on_submit():
        try:
            user = accounts.create_user(
                email=form.email.data or "",
                password=form.password.data or "",
                role=form.role.data,
                name=form.name.data or "",
                now=g.now,
            )
        except accounts.AccountError as error:
            db.session.rollback()
            field = form.email if "email" in str(error).lower() else form.password
            field.errors = [*field.errors, str(error)]
        else:
            audit.record(
                "staff.created", now=g.now, actor=current_user, subject_user=user, details=user.role, commit=False
            )
            db.session.commit()
            flash(f"Created {user.role} login {user.email}.", "success")
            return redirect(url_for(".staff"))
    people = db.session.scalars(select(User).where(User.role.in_(STAFF_ROLES)).order_by(User.email)).all()
    return render_template("admin/staff.html", form=form, people=people), 400 if form.errors else 200


def _staff_member(user_id: int) -> User:
    user = db.get_or_404(User, user_id, description="There is no user with that number.")
    if not user.is_staff:
        abort(404, description="There is no staff member with that number.")
    return user


@bp.post("/staff/<int:user_id>/role")
@admin_required
def change_role(user_id: int):
    user = _staff_member(user_id)
    try:
        accounts.change_role(user, request.form.get("role", ""), actor=current_user, now=g.now)
    except accounts.AccountError as error:
        flash(str(error), "error")
    else:
        flash(f"{user.email} is now {user.role}; their sessions were ended.", "success")
    return redirect(url_for(".staff"))


@bp.post("/staff/<int:user_id>/active")
@admin_required
def set_active(user_id: int):
    user = _staff_member(user_id)
    active = request.form.get("active") == "1"
    try:
        accounts.set_active(user, active, actor=current_user, now=g.now)
    except accounts.AccountError as error:
        flash(str(error), "error")
    else:
        flash(f"{user.email} {'reactivated' if active else 'deactivated; their sessions were ended'}.", "success")
    return redirect(url_for(".staff"))


@bp.get("/audit")
@admin_required
def audit_log():
    """Browse the append-only audit log, filtered by actor, action or shop."""
    query = select(AuditEntry).order_by(AuditEntry.id.desc())
    actor = request.args.get("actor", "").strip()
    action = request.args.get("action", "").strip()
    shop = id_argument("shop", missing="There is no shop with that number.")
    # autoescape: a "%" or "_" typed into a filter matches itself, not any text.
    if actor:
        query = query.where(AuditEntry.actor_label.icontains(actor, autoescape=True))
    if action:
        query = query.where(AuditEntry.action.istartswith(action, autoescape=True))
    if shop:
        query = query.where(AuditEntry.subject_shop_id == shop)
    page = page_number()
    pagination = db.paginate(query, page=page, per_page=50, error_out=True)
    return render_template("admin/audit.html", pagination=pagination, actor=actor, action=action, shop=shop)


def _app_health_page(check: app_health.AppCheck | None = None):
    errors = app_health.recent_errors(g.now)
    return render_template(
        "admin/app_health.html",
        errors=errors,
        counts=app_health.count_by_fixer(errors),
        limits=app_health.rate_limits(g.now, keep_alive_policy()),
        facts=app_health.config_facts(current_app.config, callback_url()),
        form=CheckAppForm(),
        check=check,
    )


@bp.get("/app-health")
@admin_required
def app_health_page():
    """The app's recent errors at Meta, its rate limits, its settings, and a button to check it."""
    return _app_health_page()


@bp.post("/app-health/check")
@admin_required
def check_app():
    """Ask Meta whether it recognises the app; the answer replaces the check panel (or the page without JS)."""
    CheckAppForm()  # CSRFProtect has already checked the token
    check = app_health.check_app(instagram_client(), callback_url(), g.now, actor=current_user)
    if is_fragment_request():
        return vary_on_htmx(
            current_app.make_response(render_template("admin/_app_check.html", form=CheckAppForm(), check=check))
        )
    return vary_on_htmx(current_app.make_response(_app_health_page(check)))
