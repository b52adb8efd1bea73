"""The merchant's side of Facebook Login for Business: connect, callback, and the Page picker.

Meta's own requests for the Facebook app (deauthorize, data deletion) live in webapp/meta_requests/.
"""

from __future__ import annotations

import logging

from authlib.integrations.base_client.errors import MismatchingStateError, OAuthError
from flask import Blueprint, abort, current_app, flash, g, redirect, render_template, request, url_for
from flask_login import current_user

from webapp.auth.decorators import merchant_required, owner_only
from webapp.facebook.forms import FacebookConnectForm, PagePickForm
from webapp.facebook.oauth import facebook_login, grant_from, start_login, take_reply_state
from webapp.instagram.routes import client_fingerprint, refuse_login
from webapp.models import LoginPath
from webapp.services.connections import connect_errors, facebook_linking, linking, page_roles, state
from webapp.services.meta.client import MetaApiError
from webapp.services.notify import planning
from webapp.services.runtime import facebook_client, keep_alive_policy, token_vault

bp = Blueprint("facebook", __name__, url_prefix="/facebook")
log = logging.getLogger(__name__)

FACEBOOK = LoginPath.FACEBOOK
LINKED_MESSAGES = {
    "connected": "Instagram connected: @{username}, through your Facebook Page {page}.",
    "restored": "Connection restored: @{username} is connected again, through your Facebook Page {page}.",
    "reconnected": "Reconnected @{username} through your Facebook Page {page}. It keeps working as before.",
    "switched_account": "Switched: your shop is now connected to @{username}, through your Facebook Page {page}.",
}
NOT_OFFERED = "Connecting through Facebook is not offered here. Connect Instagram from your dashboard."
EXPIRED = "That Facebook login has expired (we keep it for 15 minutes). Connect again to choose the Page."


@bp.before_request
def path_offered():
    """Refuse every page of this login when the operator has not turned Facebook Login on (LOGIN_PATHS)."""
    if FACEBOOK not in current_app.config["LOGIN_PATHS"]:
        abort(404, description=NOT_OFFERED)


def _linked_message(linked: linking.Linked) -> str:
    connection = linked.connection
    key = "restored" if linked.restored else linked.kind
    page = f"\u201c{connection.facebook_page_name or connection.facebook_page_id}\u201d"
    return LINKED_MESSAGES[key].format(username=connection.username, page=page)


def _finished(linked: linking.Linked):
    planning.plan(current_app, g.now, connection_ids=[linked.connection.id])  # a "restored" notice, if due
    flash(_linked_message(linked), "success")
    return redirect(url_for("dashboard.index"))


@bp.post("/connect")
@merchant_required
@owner_only
def connect():
    """Start Facebook Login (POST + CSRF); `renew=1` asks Facebook to confirm the person again."""
    form = FacebookConnectForm()  # CSRFProtect has already checked the token
    return start_login(renew=form.renew.data == "1")


@bp.get("/callback")
@merchant_required
@owner_only
def callback():
    """Facebook's reply to the login: park its Pages for the merchant's pick, or say why not and who can fix it."""
    args = request.args
    reply_secrets = [args.get("code", ""), args.get("state", "")]
    if args.get("error"):
        refusal = connect_errors.from_login_page(
            args["error"], args.get("error_reason"), args.get("error_description"), reply_secrets, FACEBOOK
        )
        return refuse_login(refusal, record=take_reply_state(args.get("state")))
    if not args.get("code"):
        abort(400, description="This page expects a reply from Facebook's login. Start again from your dashboard.")
    state.end_read_transaction()  # the code exchange and everything after it call Meta
    try:
        short_grant = grant_from(facebook_login().authorize_access_token())
    except MismatchingStateError:
        # Not a reply to a login this browser started (or one already used): nothing to record.
        refusal = connect_errors.from_reply_check(state_mismatch=True, detail="state did not match", path=FACEBOOK)
        return refuse_login(refusal, status=400, record=False)
    except OAuthError as error:
        detail = f"incomplete reply: {error.error}"
        return refuse_login(
            connect_errors.from_reply_check(state_mismatch=False, detail=detail, path=FACEBOOK), status=400
        )
    except MetaApiError as error:
        log.warning("Facebook code exchange refused by Meta: %r", error)
        return refuse_login(
            connect_errors.from_meta_error(connect_errors.Step.CODE_EXCHANGE, error, reply_secrets, FACEBOOK)
        )
    try:
        linked = facebook_linking.receive_login(
            shop=current_user.shop,
            user=current_user,
            short_grant=short_grant,
            client=facebook_client(),
            vault=token_vault(),
            now=g.now,
            client_fingerprint=client_fingerprint(),
            policy=keep_alive_policy(),
        )
    except facebook_linking.PendingLoginExpired:
        flash(EXPIRED, "warning")
        return redirect(url_for("dashboard.index"))
    except facebook_linking.LoginRefused as refused:
        return refuse_login(refused.refusal)
    except MetaApiError as error:
        log.warning("finishing the Facebook login failed: %r", error)
        return refuse_login(connect_errors.from_meta_error(connect_errors.Step.FINISH, error, reply_secrets, FACEBOOK))
    if linked is None:
        return redirect(url_for("facebook.pages"))
    return _finished(linked)


@bp.route("/pages", methods=["GET", "POST"])
@merchant_required
@owner_only
def pages():
    """The Page picker: the shop's Page among those the login let us see, with the merchant's role on each."""
    picker = facebook_linking.picker_for(current_user.shop, current_user, g.now)
    if picker is None:
        flash(EXPIRED, "warning")
        return redirect(url_for("dashboard.index"))
    form = PagePickForm()
    form.page_id.choices = [(page.id, page.label) for page in picker.choices]
    if form.validate_on_submit():
        try:
            linked = facebook_linking.choose_page(
                shop=current_user.shop,
                user=current_user,
                page_id=form.page_id.data,
                client=facebook_client(),
                vault=token_vault(),
                now=g.now,
                client_fingerprint=client_fingerprint(),
                policy=keep_alive_policy(),
            )
        except facebook_linking.PendingLoginExpired:
            flash(EXPIRED, "warning")
            return redirect(url_for("dashboard.index"))
        except facebook_linking.LoginRefused as refused:
            # Another Page may still do: back to the picker, with the reason.
            connect_errors.record(
                refused.refusal,
                shop=current_user.shop,
                user=current_user,
                now=g.now,
                client_fingerprint=client_fingerprint(),
            )
            flash(refused.refusal.message, refused.refusal.level)
            return redirect(url_for("facebook.pages"))
        except MetaApiError as error:
            log.warning("the picked Facebook Page's token was refused: %r", error)
            return refuse_login(connect_errors.from_meta_error(connect_errors.Step.FINISH, error, [], FACEBOOK))
        return _finished(linked)
    status = 400 if form.errors else 200
    return render_template(
        "facebook/pages.html",
        picker=picker,
        form=form,
        enough_role=page_roles.ENOUGH_ROLE,
    ), status


@bp.post("/pages/cancel")
@merchant_required
@owner_only
def cancel_pages():
    facebook_linking.discard_pending(current_user.shop, current_user)
    flash("No Page was connected. Nothing was changed.", "info")
    return redirect(url_for("dashboard.index"))
