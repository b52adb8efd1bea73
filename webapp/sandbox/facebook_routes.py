"""The sandbox's Facebook face: the Facebook Login dialog, Graph endpoints, and a control panel for testers."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from urllib.parse import urlencode, urlsplit

import requests
from flask import Blueprint, abort, current_app, flash, g, redirect, render_template, request, url_for

from webapp.extensions import csrf, db
from webapp.sandbox import facebook
from webapp.sandbox.emulator import SandboxReply, graph_error
from webapp.sandbox.models import SandboxFacebookPage, SandboxFacebookUser
from webapp.sandbox.routes import TELLS_NOBODY, _reply, nudges_dashboard
from webapp.services.meta import signed_request

bp = Blueprint("sandbox_facebook", __name__, url_prefix="/sandbox/facebook")
log = logging.getLogger(__name__)
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 .'-]{2,59}$")
VERSION = re.compile(r"^v\d+\.\d+$")


def app_credentials() -> tuple[str, str]:
    """The Facebook app the sandbox answers for: the configured one (config.py sets the sandbox's own)."""
    return current_app.config["FACEBOOK_APP_ID"], current_app.config["FACEBOOK_APP_SECRET"]


def graph_route(path: str, **options):
    """Register a Graph path with and without the version segment, as graph.facebook.com accepts both."""

    def register(view):
        bp.route(f"/graph/<version>{path}", **options)(view)
        bp.route(f"/graph{path}", defaults={"version": None}, **options)(view)
        return view

    return register


def _refused_version(version: str | None) -> SandboxReply | None:
    if version is None or VERSION.match(version):
        return None
    return graph_error(2500, "Unknown path components: /" + version)


def _graph(version: str | None, answer: Callable[[], SandboxReply]):
    """Check the version and the appsecret_proof, then answer."""
    refused = _refused_version(version) or facebook.proof_refused(request.args.to_dict(), app_credentials()[1])
    return _reply(refused or answer())


@graph_route("/oauth/access_token", methods=["GET", "POST"])
@csrf.exempt  # Facebook's token endpoint, called server-to-server by the dashboard
def access_token(version: str | None):
    app_id, app_secret = app_credentials()
    return _reply(
        _refused_version(version) or facebook.access_token(request.values.to_dict(), app_id, app_secret, g.now)
    )


@graph_route("/me")
def me(version: str | None):
    return _graph(version, lambda: facebook.me(request.args.to_dict(), app_credentials()[0], g.now))


@graph_route("/me/accounts")
def me_accounts(version: str | None):
    base = request.url_root.rstrip("/") + request.path.removesuffix("/me/accounts")
    return _graph(version, lambda: facebook.me_accounts(request.args.to_dict(), app_credentials()[0], g.now, base))


@graph_route("/debug_token")
def debug_token(version: str | None):
    app_id, app_secret = app_credentials()
    return _graph(version, lambda: facebook.debug_token(request.args.to_dict(), app_id, app_secret, g.now))


@graph_route("/<node_id>")
def node(version: str | None, node_id: str):
    return _graph(version, lambda: facebook.node(node_id, request.args.to_dict(), app_credentials()[0], g.now))


def _valid_redirect_uri(uri: str) -> bool:
    parts = urlsplit(uri)
    return parts.scheme in ("http", "https") and bool(parts.netloc) and parts.path.endswith("/callback")


@bp.route("/dialog/oauth", methods=["GET", "POST"], defaults={"version": None})
@bp.route("/<version>/dialog/oauth", methods=["GET", "POST"])
def dialog(version: str | None):
    """Facebook Login's dialog, sandbox edition: pick or create a user, pick the Pages, Continue or Cancel."""
    params = request.values
    redirect_uri = params.get("redirect_uri", "")
    state = params.get("state")
    if params.get("client_id") != app_credentials()[0]:
        return render_template(
            "sandbox/authorize_error.html",
            message="Invalid App ID: The provided app ID does not look like a valid app ID.",
            side="Facebook",
        ), 400
    if not _valid_redirect_uri(redirect_uri) or params.get("response_type", "code") != "code":
        return render_template(
            "sandbox/authorize_error.html",
            message="URL blocked: this redirect failed because the redirect URI is not whitelisted in the app's "
            "Client OAuth Settings.",
            side="Facebook",
        ), 400
    scopes = facebook.requested_scopes(params.get("scope", ""), params.get("config_id", ""))
    reauthorize = params.get("auth_type") == "reauthorize"
    if request.method == "POST":
        if request.form.get("decision") == "cancel":
            query = {
                "error": "access_denied",
                "error_code": "200",
                "error_description": "Permissions error",
                "error_reason": "user_denied",
            }
            if state:
                query["state"] = state
            return redirect(f"{redirect_uri}?{urlencode(query)}#_=_")
        new_name = (request.form.get("new_name") or "").strip()
        if new_name and not NAME.match(new_name):
            flash("Use 3 to 60 letters, digits, spaces, dots, apostrophes or hyphens for the name.", "error")
            return redirect(request.full_path)
        if new_name:
            user = db.session.scalar(db.select(SandboxFacebookUser).where(SandboxFacebookUser.name == new_name))
            user = user or facebook.new_user(new_name, g.now)
            page_ids = [page.page_id for page in user.pages]
        else:
            user = db.session.get(SandboxFacebookUser, request.form.get("user_id", type=int) or 0)
            page_ids = request.form.getlist(f"pages_{user.id}") if user else []
        if user is None:
            flash("Pick a Facebook user or type a name for a new one.", "error")
            return redirect(request.full_path)
        code = facebook.issue_code(user, page_ids, redirect_uri, scopes, g.now)
        query = {"code": code}
        if state:
            query["state"] = state
        # Facebook appends "#_=_" to the redirect after login; the dashboard must cope with it.
        return redirect(f"{redirect_uri}?{urlencode(query)}#_=_")
    return render_template(
        "sandbox/facebook_dialog.html", users=facebook.users(), scopes=scopes, reauthorize=reauthorize
    )


NOTICED = " The dashboard's worker will notice at its next cycle."


@bp.get("/")
def panel():
    return render_template(
        "sandbox/facebook_panel.html",
        users=facebook.users(),
        user_actions=facebook.USER_ACTIONS,
        page_actions=facebook.PAGE_ACTIONS,
        now=g.now,
        nudges=nudges_dashboard(),
    )


@bp.post("/users")
def create_user():
    name = (request.form.get("name") or "").strip()
    if not NAME.match(name):
        flash("Use 3 to 60 letters, digits, spaces, dots, apostrophes or hyphens for the name.", "error")
    elif db.session.scalar(db.select(SandboxFacebookUser).where(SandboxFacebookUser.name == name)):
        flash(f"{name} already exists in the sandbox.", "error")
    else:
        facebook.new_user(name, g.now)
        db.session.commit()
        flash(f"Created sandbox Facebook user {name} with two Pages.", "success")
    return redirect(url_for(".panel"))


@bp.post("/users/<int:user_id>/<action>")
def act_on_user(user_id: int, action: str):
    user = db.get_or_404(SandboxFacebookUser, user_id)
    if action not in facebook.USER_ACTIONS:
        abort(404)
    result = facebook.apply_user_action(user, action, g.now)
    if action == "remove_app":
        result += " " + _send_deauthorize(user)
    elif not nudges_dashboard():
        result += TELLS_NOBODY
    elif facebook.nudge_connections(g.now, user=user):
        result += NOTICED
    flash(f"{user.name}: {result}", "success")
    return redirect(url_for(".panel"))


@bp.post("/pages/<int:page_pk>/<action>")
def act_on_page(page_pk: int, action: str):
    page = db.get_or_404(SandboxFacebookPage, page_pk)
    if action not in facebook.PAGE_ACTIONS:
        abort(404)
    result = facebook.apply_page_action(page, action)
    if not nudges_dashboard():
        result += TELLS_NOBODY
    elif facebook.nudge_connections(g.now, page=page):
        result += NOTICED
    flash(result, "success")
    return redirect(url_for(".panel"))


def _send_deauthorize(user: SandboxFacebookUser) -> str:
    """POST a signed deauthorize callback to the dashboard's Facebook endpoint, as Meta does [MF, DDC].

    Signed with the Facebook app's secret, which is not the Instagram app's (meta-platform.md F).
    """
    payload = {"user_id": user.facebook_user_id, "algorithm": "HMAC-SHA256", "issued_at": int(time.time())}
    body = {"signed_request": signed_request.sign(payload, app_credentials()[1])}
    target = request.host_url.rstrip("/") + "/facebook/deauthorize"
    try:
        response = requests.post(target, data=body, timeout=5)
    except requests.RequestException as error:
        log.warning("sandbox could not deliver the Facebook deauthorize callback: %s", type(error).__name__)
        return "The deauthorize callback could not be delivered."
    return f"Deauthorize callback delivered (HTTP {response.status_code})."
