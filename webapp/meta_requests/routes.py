"""Meta's requests to us (server to server): deauthorize and data deletion (signed_request, no CSRF).

Each of Meta's apps has its own pair of URLs, verified with its own secret: `/instagram/...` for the
Instagram app (Instagram Login), `/facebook/...` for the Facebook app (Facebook Login for Business).
Both go through the same service, which applies a request only to connections made through that app.
"""

from __future__ import annotations

import logging

from flask import Blueprint, abort, current_app, g, jsonify, render_template, request, url_for

from webapp.extensions import csrf, db
from webapp.models import LoginPath, MetaCallback
from webapp.services import audit
from webapp.services.connections import meta_requests, state
from webapp.services.meta import signed_request
from webapp.services.notify import planning

bp = Blueprint("meta_requests", __name__)
log = logging.getLogger(__name__)

# The secret that signs each app's requests: the Instagram app's and the Facebook app's differ.
SIGNING_SECRET = {LoginPath.INSTAGRAM: "INSTAGRAM_CLIENT_SECRET", LoginPath.FACEBOOK: "FACEBOOK_APP_SECRET"}
STATUS_ENDPOINT = {
    LoginPath.INSTAGRAM: "meta_requests.deletion_status",
    LoginPath.FACEBOOK: "meta_requests.facebook_deletion_status",
}
USER_WORDS = {LoginPath.INSTAGRAM: "Instagram user", LoginPath.FACEBOOK: "Facebook user"}


def _verified_payload(login_path: LoginPath) -> dict:
    return signed_request.parse(request.form.get("signed_request"), current_app.config[SIGNING_SECRET[login_path]])


@bp.errorhandler(signed_request.SignedRequestError)
def refuse_signed_request(error: signed_request.SignedRequestError):
    log.warning("refused a Meta callback: %s", error)
    return jsonify(error="invalid signed_request", detail=str(error)), 400


@bp.post("/instagram/deauthorize")
@csrf.exempt  # Meta posts this server-to-server; the signed_request is the proof of origin
def deauthorize():
    return _deauthorize(LoginPath.INSTAGRAM)


@bp.post("/facebook/deauthorize")
@csrf.exempt  # Meta posts this server-to-server; the signed_request is the proof of origin
def facebook_deauthorize():
    return _deauthorize(LoginPath.FACEBOOK)


@bp.post("/instagram/data-deletion")
@csrf.exempt  # Meta posts this server-to-server; the signed_request is the proof of origin
def data_deletion():
    return _data_deletion(LoginPath.INSTAGRAM)


@bp.post("/facebook/data-deletion")
@csrf.exempt  # Meta posts this server-to-server; the signed_request is the proof of origin
def facebook_data_deletion():
    return _data_deletion(LoginPath.FACEBOOK)


@bp.get("/instagram/data-deletion/<code>")
def deletion_status(code: str):
    """Show the status of one deletion request, and nothing else."""
    return _deletion_status(LoginPath.INSTAGRAM, code)


@bp.get("/facebook/data-deletion/<code>")
def facebook_deletion_status(code: str):
    """Show the status of one deletion request, and nothing else."""
    return _deletion_status(LoginPath.FACEBOOK, code)


def _deauthorize(login_path: LoginPath):
    payload = _verified_payload(login_path)
    user_id = payload["user_id"]
    changed = meta_requests.apply_deauthorize(user_id, payload.get("issued_at", 0), g.now, login_path)
    audit.record(
        "meta.deauthorize",
        now=g.now,
        actor=None,
        details=f"{USER_WORDS[login_path]} {user_id}: {changed} connection(s) changed",
    )
    if changed:
        planning.plan(current_app, g.now, connection_ids=state.connection_ids_for(user_id, login_path))
    return jsonify(status="ok", connections_changed=changed)


def _data_deletion(login_path: LoginPath):
    payload = _verified_payload(login_path)
    callback = meta_requests.request_data_deletion(payload["user_id"], payload.get("issued_at", 0), g.now, login_path)
    audit.record("meta.data_deletion", now=g.now, actor=None, details=f"confirmation {callback.confirmation_code}")
    code = callback.confirmation_code
    endpoint = STATUS_ENDPOINT[login_path]
    base = current_app.config.get("PUBLIC_BASE_URL")
    status_url = f"{base}{url_for(endpoint, code=code)}" if base else url_for(endpoint, code=code, _external=True)
    return jsonify(url=status_url, confirmation_code=code)


def _deletion_status(login_path: LoginPath, code: str):
    callback = db.session.scalar(
        db.select(MetaCallback).where(
            MetaCallback.kind == "data_deletion",
            MetaCallback.login_path == login_path,
            MetaCallback.confirmation_code == code,
        )
    )
    if callback is None:
        abort(404, description="There is no data deletion request with that confirmation code.")
    return render_template("meta_requests/deletion_status.html", callback=callback)
