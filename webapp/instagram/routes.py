"""The merchant's side of the Instagram connection: connect, callback, switch, disconnect."""

from __future__ import annotations

import logging

from authlib.integrations.base_client.errors import MismatchingStateError, OAuthError
from flask import Blueprint, abort, current_app, flash, g, make_response, redirect, render_template, request, url_for
from flask_login import current_user

from webapp import models
from webapp.auth.decorators import merchant_required, owner_only
from webapp.dashboard import presenter
from webapp.extensions import db, limiter
from webapp.htmx import hx_trigger, is_fragment_request, vary_on_htmx
from webapp.instagram.forms import ConnectForm, DisconnectForm, SwitchForm
from webapp.instagram.oauth import (
    callback_url,
    grant_from,
    instagram_client,
    instagram_login,
    keep_alive_policy,
    token_vault,
)
from webapp.request_input import page_number
from webapp.services.connections import checklist, linking, state
from webapp.services.fingerprint import ClientFingerprint
from webapp.services.keepalive import manual
from webapp.services.keepalive.leases import Work
from webapp.services.keepalive.outcomes import NOTIFY_AT_ONCE
from webapp.services.meta.client import MetaApiError
from webapp.services.notify import planning
from webapp.services.notify.links import LinkError, read_reconnect_token, use_reconnect_token

bp = Blueprint("instagram", __name__, url_prefix="/instagram")
log = logging.getLogger(__name__)


def _client_fingerprint() -> ClientFingerprint:
    return ClientFingerprint.from_request(request.remote_addr, request.user_agent.string)


@bp.post("/connect")
@merchant_required
@owner_only
def connect():
    """Start Instagram Business Login (POST + CSRF, so no other site can start it for the merchant)."""
    ConnectForm()  # CSRFProtect has already checked the token
    return instagram_login().authorize_redirect(callback_url())


@bp.get("/callback")
@merchant_required
@owner_only
def callback():
    if request.args.get("error"):
        if request.args.get("error") == "access_denied":
            flash("You cancelled the Instagram login. Nothing was changed.", "info")
        else:
            flash("Instagram did not complete the login. Nothing was changed; you can try again.", "warning")
        return redirect(url_for("dashboard.index"))
    if not request.args.get("code"):
        abort(400, description="This page expects a reply from Instagram's login. Start again from your dashboard.")
    try:
        short_grant = grant_from(instagram_login().authorize_access_token())
    except MismatchingStateError:
        abort(
            400,
            description="This Instagram login was not started from this browser, was already used, or took too long. "
            "Nothing was changed. Start again from your dashboard.",
        )
    except OAuthError:
        abort(
            400, description="Instagram's reply was incomplete. Nothing was changed. Start again from your dashboard."
        )
    except MetaApiError as error:
        log.warning("code exchange refused by Meta: %r", error)
        flash(
            "Instagram did not accept this login (the link was already used or has expired). "
            "Nothing was changed. Please connect again.",
            "error",
        )
        return redirect(url_for("dashboard.index"))
    try:
        connection = linking.complete_connect(
            shop=current_user.shop,
            user=current_user,
            short_grant=short_grant,
            client=instagram_client(),
            vault=token_vault(),
            now=g.now,
            client_fingerprint=_client_fingerprint(),
            policy=keep_alive_policy(),
        )
    except linking.AccountSwitchRequired:
        return redirect(url_for("instagram.switch"))
    except MetaApiError as error:
        log.warning("finishing the Instagram connection failed: %r", error)
        flash(
            "Instagram accepted the login but then refused to give access. Nothing was changed. Please try again.",
            "error",
        )
        return redirect(url_for("dashboard.index"))
    planning.plan(current_app, g.now, connection_ids=[connection.id])  # a "restored" notice, if due
    latest = connection.events.order_by(None).order_by(models.ConnectionEvent.id.desc()).first()
    if latest is not None and latest.kind == "reconnected":
        flash(f"Connection restored: @{connection.username} is connected again.", "success")
    else:
        flash(f"Instagram connected: @{connection.username}.", "success")
    return redirect(url_for("dashboard.index"))


@bp.route("/switch", methods=["GET", "POST"])
@merchant_required
@owner_only
def switch():
    shop = current_user.shop
    pending = linking.live_pending_switch(shop, g.now)
    if pending is None:
        flash("That account switch has expired. Connect Instagram again to choose the account.", "warning")
        return redirect(url_for("dashboard.index"))
    form = SwitchForm()
    if form.validate_on_submit():
        connection = linking.confirm_switch(
            shop=shop,
            user=current_user,
            vault=token_vault(),
            now=g.now,
            client_fingerprint=_client_fingerprint(),
            policy=keep_alive_policy(),
        )
        planning.plan(current_app, g.now, connection_ids=[connection.id])
        flash(f"Switched: your shop is now connected to @{connection.username}.", "success")
        return redirect(url_for("dashboard.index"))
    current = state.connection_for(shop)
    return render_template("instagram/switch.html", pending=pending, current=current, form=form)


@bp.post("/switch/cancel")
@merchant_required
@owner_only
def cancel_switch():
    linking.cancel_switch(current_user.shop)
    flash("Kept your current Instagram account. Nothing was changed.", "info")
    return redirect(url_for("dashboard.index"))


@bp.route("/disconnect", methods=["GET", "POST"])
@merchant_required
@owner_only
def disconnect():
    connection = state.connection_for(current_user.shop)
    if not connection.has_token and connection.state == models.ConnectionState.NOT_CONNECTED:
        flash("Instagram is not connected.", "info")
        return redirect(url_for("dashboard.index"))
    form = DisconnectForm()
    if form.validate_on_submit():
        linking.disconnect(connection, current_user, g.now)
        flash("Instagram disconnected. Its access token has been deleted.", "success")
        return redirect(url_for("dashboard.index"))
    status = 400 if form.errors else 200
    return render_template("instagram/disconnect.html", connection=connection, form=form), status


def _manual_action_limit() -> str:
    return current_app.config["MANUAL_ACTION_RATE_LIMIT"]


def _shop_key() -> str:
    return f"shop:{current_user.shop_id}"


def _card_response(message: str | None = None, level: str = "info", changed: bool = True):
    """The card fragment for htmx (with `connection-changed` after an action), or back to the page."""
    if is_fragment_request():
        # Loaded with the user in one query (see accounts.user_with_live_session): this fragment is
        # polled by every open dashboard.
        connection = current_user.shop.instagram_connection
        html = render_template(
            "instagram/_card.html",
            connection=connection,
            card=presenter.card_view(connection, g.now),
            card_message=message,
            card_level=level,
        )
        response = make_response(html)
        return vary_on_htmx(hx_trigger(response, "connection-changed") if changed else response)
    if message:
        flash(message, level)
    return vary_on_htmx(redirect(url_for("dashboard.index")))


@bp.get("/card")
@merchant_required
def card():
    """The Instagram card alone (htmx), or the dashboard that contains it."""
    return _card_response(changed=False)


@bp.get("/diagnosis")
@merchant_required
def diagnosis():
    """The "What happened" panel alone (htmx), or the dashboard that contains it."""
    if not is_fragment_request():
        return vary_on_htmx(redirect(url_for("dashboard.index")))
    context = presenter.merchant_dashboard(current_user.shop, g.now)
    return vary_on_htmx(make_response(render_template("dashboard/_diagnosis.html", **context)))


@bp.post("/checklist")
@merchant_required
def tick():
    """Tick or untick one checklist step of the current incident."""
    item = request.form.get("item", type=int)
    if item is None or item < 0 or item > 20:
        abort(400, description="That checklist step does not exist.")
    connection = state.connection_for(current_user.shop)
    try:
        checklist.tick_checklist_item(connection, request.form.get("incident"), item, current_user, g.now)
    except checklist.StaleChecklist:
        flash("That checklist belongs to a problem that is already over.", "info")
    if is_fragment_request():
        context = presenter.merchant_dashboard(current_user.shop, g.now)
        return vary_on_htmx(make_response(render_template("dashboard/_diagnosis.html", **context)))
    return vary_on_htmx(redirect(url_for("dashboard.index")))


@bp.get("/activity")
@merchant_required
def activity():
    """The 90-day strip and the latest events (htmx), or the full history page."""
    if not is_fragment_request():
        return vary_on_htmx(redirect(url_for("instagram.history")))
    connection = state.connection_for(current_user.shop)
    recent = db.session.scalars(presenter.timeline_query(connection, None).limit(5)).all()
    html = render_template(
        "dashboard/_activity.html", cells=presenter.health_strip(connection, g.now), recent_events=recent
    )
    return vary_on_htmx(make_response(html))


@bp.get("/history")
@merchant_required
def history():
    connection = state.connection_for(current_user.shop)
    group = request.args.get("group") or None
    if group is not None and group not in presenter.EVENT_GROUPS:
        abort(404, description="There is no such filter for the history.")
    page = page_number()
    pagination = db.paginate(presenter.timeline_query(connection, group), page=page, per_page=25, error_out=True)
    cells = presenter.health_strip(connection, g.now)
    return render_template("instagram/history.html", pagination=pagination, group=group, cells=cells)


def _run_now(work: Work):
    connection = state.connection_for(current_user.shop)
    try:
        result = manual.run_now(
            connection.id,
            work,
            actor=state.Actor.for_user(current_user),
            now=g.now,
            client=instagram_client(),
            vault=token_vault(),
            policy=keep_alive_policy(),
        )
    except manual.ConnectionBusy:
        return _card_response("An automatic check is running right now. Try again in a few seconds.", "info")
    if result.summary in NOTIFY_AT_ONCE:
        planning.plan(current_app, g.now, connection_ids=[connection.id])
    return _card_response(result.message, result.level)


@bp.post("/test")
@merchant_required
@limiter.limit(_manual_action_limit, key_func=_shop_key)
def test_now():
    """Call Instagram now with the stored token and show what it says."""
    return _run_now(Work.CHECK)


@bp.post("/refresh")
@merchant_required
@limiter.limit(_manual_action_limit, key_func=_shop_key)
def refresh_now():
    """Refresh the token now instead of waiting for the automatic refresh."""
    return _run_now(Work.REFRESH)


@bp.route("/reconnect/<token>", methods=["GET", "POST"])
@merchant_required
@owner_only
def reconnect_link(token: str):
    """From a mail: opening the link shows one button; pressing it starts the Instagram login."""
    try:
        payload = read_reconnect_token(current_app, token)
    except LinkError as error:
        flash(str(error), "warning")
        return redirect(url_for("dashboard.index"))
    connection = state.connection_for(current_user.shop)
    if payload["c"] != connection.id:
        abort(403, description="This reconnect link is for another shop. Log in with that shop's account.")
    form = ConnectForm()
    if request.method == "POST" and form.validate_on_submit():
        try:
            use_reconnect_token(payload, g.now)
        except LinkError as error:
            flash(str(error), "warning")
            return redirect(url_for("dashboard.index"))
        return instagram_login().authorize_redirect(callback_url())
    return render_template("instagram/reconnect_link.html", connection=connection, form=form, token=token)
