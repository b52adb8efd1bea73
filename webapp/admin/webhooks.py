"""Administrators: the platform's webhook endpoints (secret shown once) and the delivery log with "Send again"."""

from __future__ import annotations

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import SelectMultipleField, StringField, SubmitField
from wtforms.fields.choices import SelectChoice  # type: ignore[attr-defined]  # new in WTForms 3.3; its stubs are 3.2
from wtforms.validators import Length
from wtforms.widgets import CheckboxInput, ListWidget

from webapp.auth.decorators import admin_required
from webapp.extensions import db
from webapp.models import WebhookDelivery, WebhookEndpoint
from webapp.request_input import id_argument, page_number
from webapp.services import audit, webhooks

bp = Blueprint("webhooks", __name__, url_prefix="/admin/webhooks")


# What each event means, for the admin choosing them (README "Webhooks" has their data).
EVENT_WORDS = {
    webhooks.STATE_CHANGED: "a connection changed state (it stopped working, works again, was disconnected)",
    webhooks.RECONNECTED: "a merchant connected or reconnected Instagram",
    webhooks.EXPIRING: "a connection ends soon and could not be renewed yet",
    webhooks.ACCESS_RENEWED: "a merchant renewed Facebook Login's access window",
    webhooks.INCIDENT_OPENED: "Meta started failing for much of the fleet (one event, no shop named)",
    webhooks.INCIDENT_CLOSED: "Meta answers properly again; the fleet incident is over",
}


class EndpointForm(FlaskForm):
    url = StringField("URL", validators=[Length(max=webhooks.URL_MAX_LENGTH)])
    description = StringField("Description", validators=[Length(max=webhooks.DESCRIPTION_MAX_LENGTH)])
    event_types = SelectMultipleField(
        "Events",
        choices=[SelectChoice(name, f"{name} — {EVENT_WORDS[name]}") for name in webhooks.EVENT_TYPES],
        default=list(webhooks.EVENT_TYPES),
        widget=ListWidget(prefix_label=False),
        option_widget=CheckboxInput(),
        validate_choice=False,  # the service names unknown types in its own words
    )
    submit = SubmitField("Add endpoint")


@bp.route("/", methods=["GET", "POST"])
@admin_required
def endpoints():
    """List the endpoints; a valid POST creates one and shows its secret on this answer only."""
    form = EndpointForm()
    secret = created = None
    if form.validate_on_submit():
        try:
            created, secret = webhooks.create_endpoint(
                url=form.url.data or "",
                description=form.description.data or "",
                event_types=form.event_types.data or [],
                created_by=audit.actor_label(current_user),
                now=g.now,
            )
        except webhooks.EndpointRefused as refusal:
            db.session.rollback()
            field = getattr(form, refusal.field)
            field.errors = [*field.errors, str(refusal)]
        else:
            audit.record(
                "webhooks.endpoint_created",
                now=g.now,
                actor=current_user,
                details=f"endpoint {created.id}: {created.url} ({created.event_types})",
            )
            form = EndpointForm(formdata=None)
    response = render_template(
        "admin/webhooks.html", form=form, endpoints=webhooks.list_endpoints(), created=created, secret=secret
    )
    status = 400 if form.errors else 201 if secret else 200
    # The secret is in this page and nowhere else: no cache keeps a copy, and no flash puts it in a cookie.
    return response, status, {"Cache-Control": "no-store"}


@bp.post("/<int:endpoint_id>/disable")
@admin_required
def disable(endpoint_id: int):
    endpoint = db.get_or_404(WebhookEndpoint, endpoint_id, description="There is no webhook endpoint with that number.")
    if webhooks.disable_endpoint(endpoint.id, g.now):
        audit.record("webhooks.endpoint_disabled", now=g.now, actor=current_user, details=f"endpoint {endpoint.id}")
        flash(f"Disabled {endpoint.url}: nothing more is sent to it.", "success")
    else:
        flash("That endpoint was already disabled.", "info")
    return redirect(url_for(".endpoints"))


@bp.get("/deliveries")
@admin_required
def deliveries():
    """The delivery log: each event to each endpoint, its attempts, the receiver's last answer, the next try."""
    endpoint = id_argument("endpoint_id", missing="There is no webhook endpoint with that number.")
    status = request.args.get("status", "").strip()
    if status and status not in webhooks.DELIVERY_STATUSES:
        abort(404, description="There is no such delivery status.")
    query = webhooks.deliveries(endpoint_id=endpoint, status=status or None)
    pagination = db.paginate(query, page=page_number(), per_page=50, error_out=True)
    return render_template(
        "admin/webhook_deliveries.html",
        pagination=pagination,
        endpoint=endpoint,
        status=status,
        statuses=webhooks.DELIVERY_STATUSES,
        endpoints=webhooks.list_endpoints(),
    )


@bp.post("/deliveries/<int:delivery_id>/send-again")
@admin_required
def send_again(delivery_id: int):
    """Queue one delivery again under the same event id; the worker sends it at its next tick."""
    db.get_or_404(WebhookDelivery, delivery_id, description="There is no webhook delivery with that number.")
    try:
        delivery = webhooks.send_again(delivery_id, g.now)
    except webhooks.DeliveryNotRequeued as refusal:
        db.session.rollback()
        flash(f"Not sent again. {refusal}", "error")
    else:
        audit.record(
            "webhooks.delivery_sent_again",
            now=g.now,
            actor=current_user,
            subject_shop_id=delivery.event.shop_id,
            details=f"delivery {delivery.id}: event {delivery.event.event_id} to endpoint {delivery.endpoint_id}",
        )
        flash(f"Queued {delivery.event.event_id} again; the worker sends it within a minute.", "success")
    return redirect(url_for(".deliveries", **_log_filters()))


def _log_filters() -> dict:
    """The log's filters as the form that posted carried them, so the admin lands where they were."""
    filters = {name: request.form[name] for name in ("endpoint_id", "page") if request.form.get(name, "").isdigit()}
    if request.form.get("status") in webhooks.DELIVERY_STATUSES:
        filters["status"] = request.form["status"]
    return filters
