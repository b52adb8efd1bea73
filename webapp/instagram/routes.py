"""The merchant's side of the Instagram connection: connect, callback, switch, disconnect, test and renew now."""

from __future__ import annotations

import logging

from authlib.integrations.base_client.errors import MismatchingStateError, OAuthError
from flask import Blueprint, abort, current_app, flash, g, redirect, render_template, request, url_for
from flask_login import current_user

from webapp.auth.decorators import merchant_required, owner_only
from webapp.dashboard import fragments
from webapp.extensions import limiter
from webapp.facebook.oauth import start_login as start_facebook_login
from webapp.instagram.forms import ConnectForm, DisconnectForm, SwitchForm
from webapp.instagram.oauth import callback_url, grant_from, instagram_login, take_reply_state
from webapp.models import ConnectionState, InstagramConnection, LoginPath
from webapp.services.connections import connect_errors, linking, state
from webapp.services.connections.causes import CauseId
from webapp.services.fingerprint import ClientFingerprint
from webapp.services.keepalive import manual
from webapp.services.keepalive.leases import Work
from webapp.services.meta.client import MetaApiError
from webapp.services.notify import planning
from webapp.services.notify.links import LinkError, read_reconnect_token, use_reconnect_token
from webapp.services.runtime import facebook_client, instagram_client, keep_alive_policy, token_vault

bp = Blueprint("instagram", __name__, url_prefix="/instagram")
log = logging.getLogger(__name__)

# What the merchant reads once a login or a switch went through, by what it did to the connection.
LINKED_MESSAGES = {
    "connected": "Instagram connected: @{username}.",
    "restored": "Connection restored: @{username} is connected again.",
    "reconnected": "Reconnected @{username}. It was already working; it keeps working as before.",
    "switched_account": "Switched: your shop is now connected to @{username}.",
}


def _linked_message(linked: linking.Linked) -> str:
    key = "restored" if linked.restored else linked.kind
    return LINKED_MESSAGES[key].format(username=linked.connection.username)


def client_fingerprint() -> ClientFingerprint:
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
    """Instagram's reply to the login: finish the connection, or say why not and who can fix it."""
    args = request.args
    reply_secrets = [args.get("code", ""), args.get("state", "")]
    if args.get("error"):
        refusal = connect_errors.from_login_page(
            args["error"], args.get("error_reason"), args.get("error_description"), reply_secrets
        )
        return refuse_login(refusal, record=take_reply_state(args.get("state")))
    if not args.get("code"):
        abort(400, description="This page expects a reply from Instagram's login. Start again from your dashboard.")
    state.end_read_transaction()  # the code exchange, the long-lived exchange and /me follow
    try:
        short_grant = grant_from(instagram_login().authorize_access_token())
    except MismatchingStateError:
        # Not a reply to a login this browser started (or one already used): nothing to record, since a
        # link anyone can forge must not fill the shop's history or the app health page.
        refusal = connect_errors.from_reply_check(state_mismatch=True, detail="state did not match")
        return refuse_login(refusal, status=400, record=False)
    except OAuthError as error:
        detail = f"incomplete reply: {error.error}"
        return refuse_login(connect_errors.from_reply_check(state_mismatch=False, detail=detail), status=400)
    except MetaApiError as error:
        log.warning("code exchange refused by Meta: %r", error)
        return refuse_login(connect_errors.from_meta_error(connect_errors.Step.CODE_EXCHANGE, error, reply_secrets))
    try:
        linked = linking.complete_connect(
            shop=current_user.shop,
            user=current_user,
            short_grant=short_grant,
            client=instagram_client(),
            vault=token_vault(),
            now=g.now,
            client_fingerprint=client_fingerprint(),
            policy=keep_alive_policy(),
        )
    except linking.AccountSwitchRequired:
        return redirect(url_for("instagram.switch"))
    except MetaApiError as error:
        log.warning("finishing the Instagram connection failed: %r", error)
        return refuse_login(connect_errors.from_meta_error(connect_errors.Step.FINISH, error, reply_secrets))
    planning.plan(current_app, g.now, connection_ids=[linked.connection.id])  # a "restored" notice, if due
    flash(_linked_message(linked), "success")
    return redirect(url_for("dashboard.index"))


def refuse_login(refusal: connect_errors.ConnectRefusal, *, status: int = 302, record: bool = True):
    """Record the refusal, then tell the merchant: on the dashboard, or on an error page (400)."""
    if record:
        connect_errors.record(
            refusal, shop=current_user.shop, user=current_user, now=g.now, client_fingerprint=client_fingerprint()
        )
    if status == 400:
        abort(400, description=refusal.message)
    flash(refusal.message, refusal.level)
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
        linked = linking.confirm_switch(
            shop=shop,
            user=current_user,
            vault=token_vault(),
            now=g.now,
            client_fingerprint=client_fingerprint(),
            policy=keep_alive_policy(),
        )
        planning.plan(current_app, g.now, connection_ids=[linked.connection.id])
        flash(_linked_message(linked), "success")
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
    if not connection.has_token and connection.state == ConnectionState.NOT_CONNECTED:
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


def _run_now(work: Work):
    connection = state.connection_for(current_user.shop)
    try:
        result = manual.run_now(
            current_app,
            connection.id,
            work,
            actor=state.Actor.for_user(current_user),
            now=g.now,
            client=instagram_client(),
            facebook=facebook_client(),
            vault=token_vault(),
            policy=keep_alive_policy(),
        )
    except manual.ConnectionBusy:
        return fragments.card_response("An automatic check is running right now. Try again in a few seconds.", "info")
    return fragments.card_response(result.message, result.level)


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
    """From a mail: opening the link shows one button; pressing it starts the login the shop connected with."""
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
        if login_path_of(connection) == LoginPath.FACEBOOK:
            # Data access ran out: Facebook must be asked to confirm the person again to renew it.
            return start_facebook_login(renew=connection.cause == CauseId.DATA_ACCESS_EXPIRED)
        return instagram_login().authorize_redirect(callback_url())
    return render_template(
        "instagram/reconnect_link.html",
        connection=connection,
        form=form,
        token=token,
        via_facebook=login_path_of(connection) == LoginPath.FACEBOOK,
    )


def login_path_of(connection: InstagramConnection) -> LoginPath:
    """The login that reconnects this connection: the one it was made with, when the operator still offers it."""
    if connection.via_facebook and LoginPath.FACEBOOK in current_app.config["LOGIN_PATHS"]:
        return LoginPath.FACEBOOK
    return LoginPath.INSTAGRAM
