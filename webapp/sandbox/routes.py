"""The sandbox's HTTP face: Instagram's login page and API, plus a control panel for testers."""

from __future__ import annotations

import logging
import re
import time
from urllib.parse import urlencode, urlsplit

import requests
from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)

from webapp.extensions import csrf, db
from webapp.sandbox import emulator
from webapp.sandbox.models import SandboxAccount
from webapp.services.meta import signed_request

bp = Blueprint("sandbox", __name__, url_prefix="/sandbox")
log = logging.getLogger(__name__)
USERNAME = re.compile(r"^[a-z0-9._]{3,30}$")
# The tester's choice, kept in their session: after a cause button, Meta tells nobody (as real Meta).
META_TELLS_NOBODY = "sandbox_meta_tells_nobody"
TELLS_NOBODY = " Meta tells nobody: the dashboard learns of it at its next health check or from the platform."


def _reply(reply: emulator.SandboxReply):
    response = jsonify(reply.body)
    response.status_code = reply.status
    response.headers.update(reply.headers)
    return response


def _valid_redirect_uri(uri: str) -> bool:
    parts = urlsplit(uri)
    return parts.scheme in ("http", "https") and bool(parts.netloc) and parts.path.endswith("/instagram/callback")


@bp.get("/")
def panel():
    return render_template(
        "sandbox/panel.html",
        accounts=emulator.accounts(),
        actions=emulator.ACTIONS,
        now=g.now,
        nudges=nudges_dashboard(),
    )


def nudges_dashboard() -> bool:
    """Whether a cause button makes the dashboard check what it touched at its worker's next cycle.

    The sandbox's shortcut, on by default so that a demo shows the change within seconds. Real Meta
    tells nobody: with the shortcut off, the dashboard learns at its next health check (hours away)
    or when the shop platform reports the error it met (the Platform API), which is what
    docs/platform_loop.py shows.
    """
    return not session.get(META_TELLS_NOBODY, False)


@bp.post("/nudge")
def set_nudge():
    """Turn the shortcut on or off for this tester (both sandbox panels follow it)."""
    tells_nobody = request.form.get("nudge") == "off"
    session[META_TELLS_NOBODY] = tells_nobody
    if tells_nobody:
        flash(
            "Meta tells nobody now, as real Meta: after a button the dashboard learns of it at its next health "
            "check, or when the shop platform reports the error it met.",
            "success",
        )
    else:
        flash("After each button the dashboard's worker checks the connections it touched at its next cycle.", "info")
    back = request.form.get("back", "")
    return redirect(back if back.startswith("/sandbox/") else url_for(".panel"))


@bp.post("/accounts")
def create_account():
    username = (request.form.get("username") or "").strip().lstrip("@").lower()
    if not USERNAME.match(username):
        flash("Use 3 to 30 lower-case letters, digits, dots or underscores for the username.", "error")
    elif db.session.scalar(db.select(SandboxAccount).where(SandboxAccount.username == username)):
        flash(f"@{username} already exists in the sandbox.", "error")
    else:
        emulator.new_account(username, g.now)
        db.session.commit()
        flash(f"Created sandbox account @{username}.", "success")
    back = request.form.get("back", "")
    return redirect(back if back.startswith("/sandbox/") else url_for(".panel"))


@bp.post("/accounts/<int:account_id>/<action>")
def act(account_id: int, action: str):
    account = db.get_or_404(SandboxAccount, account_id)
    if action not in emulator.ACTIONS:
        abort(404)
    days = request.form.get("days", type=int) or 0
    if action == "age_token" and not 1 <= days <= 400:
        flash("Move the clock forward by 1 to 400 days.", "error")
        return redirect(url_for(".panel"))
    result = emulator.apply_action(account, action, days)
    if action == "remove_app":
        result += " " + _send_deauthorize(account)  # Meta does send this one: no shortcut
    elif action == "age_token" or nudges_dashboard():
        # Moving the clock always moves the dashboard's past with it, or the two would disagree on every age.
        if emulator.nudge_linked_connections(account, g.now, shift_days=days if action == "age_token" else 0):
            result += " The dashboard's worker will notice at its next cycle."
    else:
        result += TELLS_NOBODY
    flash(f"@{account.username}: {result}", "success")
    return redirect(url_for(".panel"))


def _send_deauthorize(account: SandboxAccount) -> str:
    """POST a correctly signed deauthorize callback to the dashboard, as Meta would.

    Which of the account's ids Meta puts in it is not documented for Instagram Login; Meta's own
    callbacks carry an app-scoped id, so the sandbox sends the login's, which is not /me's `user_id`.
    """
    payload = {"user_id": account.login_user_id, "algorithm": "HMAC-SHA256", "issued_at": int(time.time())}
    body = {"signed_request": signed_request.sign(payload, current_app.config["INSTAGRAM_CLIENT_SECRET"])}
    target = request.host_url.rstrip("/") + url_for("meta_requests.deauthorize")
    try:
        response = requests.post(target, data=body, timeout=5)
    except requests.RequestException as error:
        log.warning("sandbox could not deliver the deauthorize callback: %s", type(error).__name__)
        return "The deauthorize callback could not be delivered."
    return f"Deauthorize callback delivered (HTTP {response.status_code})."


@bp.route("/oauth/authorize", methods=["GET", "POST"])
def authorize():
    """Instagram's login and consent page, sandbox edition."""
    params = request.values
    client_id = params.get("client_id", "")
    redirect_uri = params.get("redirect_uri", "")
    scope = params.get("scope", "")
    state = params.get("state")
    if client_id != current_app.config["INSTAGRAM_CLIENT_ID"]:
        return render_template("sandbox/authorize_error.html", message="Invalid platform app"), 400
    if not _valid_redirect_uri(redirect_uri) or params.get("response_type") != "code":
        return render_template(
            "sandbox/authorize_error.html", message="Invalid redirect_uri or response_type for this app."
        ), 400
    scopes = [s for s in re.split(r"[ ,]+", scope) if s]
    if "instagram_business_basic" not in scopes:
        return render_template(
            "sandbox/authorize_error.html", message="Invalid scope: instagram_business_basic is required."
        ), 400
    if request.method == "POST":
        if request.form.get("decision") == "cancel":
            query = {
                "error": "access_denied",
                "error_reason": "user_denied",
                "error_description": "The user denied your request",
            }
            if state:
                query["state"] = state
            return redirect(f"{redirect_uri}?{urlencode(query)}")
        # A typed username wins over the picked account: the person typed it to use it.
        new_username = (request.form.get("new_username") or "").strip().lstrip("@").lower()
        account = (
            None if new_username else db.session.get(SandboxAccount, request.form.get("account_id", type=int) or 0)
        )
        if new_username:
            if not USERNAME.match(new_username):
                flash("Use 3 to 30 lower-case letters, digits, dots or underscores for the username.", "error")
                return redirect(request.full_path)
            account = db.session.scalar(db.select(SandboxAccount).where(SandboxAccount.username == new_username))
            account = account or emulator.new_account(new_username, g.now)
        if account is None:
            flash("Pick an account or type a username for a new one.", "error")
            return redirect(request.full_path)
        code = emulator.issue_code(account, redirect_uri, ",".join(scopes), g.now)
        query = {"code": code}
        if state:
            query["state"] = state
        # Instagram appends "#_" to the redirect; the dashboard must cope with it.
        return redirect(f"{redirect_uri}?{urlencode(query)}#_")
    return render_template("sandbox/authorize.html", accounts=emulator.accounts(), scopes=scopes)


@bp.post("/oauth/access_token")
@csrf.exempt  # Instagram's token endpoint, called server-to-server by the dashboard
def access_token():
    config = current_app.config
    return _reply(
        emulator.exchange_code(
            request.form.to_dict(), config["INSTAGRAM_CLIENT_ID"], config["INSTAGRAM_CLIENT_SECRET"], g.now
        )
    )


@bp.get("/graph/access_token")
def long_lived_token():
    return _reply(
        emulator.exchange_for_long_lived(request.args.to_dict(), current_app.config["INSTAGRAM_CLIENT_SECRET"], g.now)
    )


@bp.get("/graph/refresh_access_token")
def refresh_token():
    return _reply(emulator.refresh(request.args.to_dict(), g.now))


@bp.get("/graph/<version>/me")
def me(version: str):
    return _reply(emulator.me(request.args.to_dict(), g.now))
