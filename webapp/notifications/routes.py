"""In-app notifications, mail preferences and the unsubscribe link."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, g, make_response, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from sqlalchemy import func, select, update
from wtforms import BooleanField, SubmitField

from webapp.auth.decorators import impersonating, owner_only
from webapp.extensions import db
from webapp.htmx import hx_trigger, is_fragment_request, vary_on_htmx
from webapp.models import Notification, User
from webapp.request_input import page_number
from webapp.services.notify import planning
from webapp.services.notify.links import LinkError, read_unsubscribe_token

bp = Blueprint("notifications", __name__)


class SettingsForm(FlaskForm):
    notify_reminders = BooleanField("Remind me after 2 and 5 days while Instagram stays disconnected")
    notify_expiry_warnings = BooleanField(
        "Warn me 10 and 3 days before the connection ends: when our renewals keep failing, "
        "or when access through Facebook needs renewing"
    )
    submit = SubmitField("Save")


def unread_count(user_id: int) -> int:
    return db.session.execute(
        select(func.count(Notification.id)).where(Notification.user_id == user_id, Notification.read_at.is_(None))
    ).scalar_one()


@bp.get("/notifications")
@login_required
def index():
    page = page_number()
    pagination = db.paginate(
        select(Notification).where(Notification.user_id == current_user.id).order_by(Notification.id.desc()),
        page=page,
        per_page=20,
        error_out=True,
    )
    connection = current_user.shop.instagram_connection if current_user.shop else None
    return render_template(
        "notifications/index.html",
        pagination=pagination,
        unread=unread_count(current_user.id),
        reconnect_applies=planning.calls_for_reconnect(pagination.items, connection, g.now, current_app.config),
        # A Facebook Login shop's expiry warning asks to renew access, not to reconnect.
        renews_access=connection is not None and connection.via_facebook,
    )


@bp.get("/notifications/count")
@login_required
def count():
    """The nav's unread badge (htmx polls it), or the list itself."""
    if not is_fragment_request():
        return vary_on_htmx(redirect(url_for(".index")))
    html = render_template("notifications/_count.html", unread=unread_count(current_user.id))
    return vary_on_htmx(make_response(html))


@bp.post("/notifications/read")
@login_required
def mark_read():
    """Mark every notification read (the list page does this when it opens)."""
    if impersonating():
        # Support looking at the list must not hide the merchant's unread notices.
        return make_response("", 204) if is_fragment_request() else redirect(url_for(".index"))
    db.session.execute(
        update(Notification)
        .where(Notification.user_id == current_user.id, Notification.read_at.is_(None))
        .values(read_at=g.now)
    )
    db.session.commit()
    if is_fragment_request():
        return hx_trigger(make_response("", 204), "notifications-read")
    return redirect(url_for(".index"))


@bp.route("/account/notifications", methods=["GET", "POST"])
@login_required
@owner_only
def settings():
    form = SettingsForm(obj=current_user)
    if form.validate_on_submit():
        current_user.notify_reminders = form.notify_reminders.data
        current_user.notify_expiry_warnings = form.notify_expiry_warnings.data
        db.session.commit()
        flash("Mail settings saved. The first notice of a disconnection is always sent.", "success")
        return redirect(url_for(".settings"))
    return render_template("notifications/settings.html", form=form)


@bp.route("/notifications/unsubscribe/<token>", methods=["GET", "POST"])
def unsubscribe(token: str):
    """From a mail's link: one button stops reminders and warnings (opening the link alone changes nothing)."""
    try:
        user = db.session.get(User, read_unsubscribe_token(current_app, token))
    except LinkError as error:
        abort(400, description=str(error))
    if user is None:
        abort(404, description="This unsubscribe link belongs to an account that no longer exists.")
    form = FlaskForm()
    if request.method == "POST" and form.validate_on_submit():
        user.notify_reminders = user.notify_expiry_warnings = False
        db.session.commit()
        return render_template("notifications/unsubscribed.html", user=user)
    return render_template("notifications/unsubscribe.html", user=user, form=form, token=token)
