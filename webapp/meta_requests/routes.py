"""Meta's requests to us (server to server): deauthorize and data deletion (signed_request, no CSRF)."""

from __future__ import annotations

import logging

from flask import Blueprint, abort, current_app, g, jsonify, render_template, request, url_for

from webapp.extensions import csrf, db
from webapp.models import MetaCallback
from webapp.services import audit
from webapp.services.connections import meta_requests, state
from webapp.services.meta import signed_request
from webapp.services.notify import planning

bp = Blueprint("meta_requests", __name__, url_prefix="/instagram")
log = logging.getLogger(__name__)


def _verified_payload() -> dict:
    return signed_request.parse(request.form.get("signed_request"), current_app.config["INSTAGRAM_CLIENT_SECRET"])


@bp.errorhandler(signed_request.SignedRequestError)
def refuse_signed_request(error: signed_request.SignedRequestError):
    log.warning("refused a Meta callback: %s", error)
    return jsonify(error="invalid signed_request", detail=str(error)), 400


@bp.post("/deauthorize")
@csrf.exempt  # Meta posts this server-to-server; the signed_request is the proof of origin
def deauthorize():
    payload = _verified_payload()
    changed = meta_requests.apply_deauthorize(payload["user_id"], payload.get("issued_at", 0), g.now)
    audit.record(
        "meta.deauthorize",
        now=g.now,
        actor=None,
        details=f"Instagram user {payload['user_id']}: {changed} connection(s) changed",
    )
    if changed:
        planning.plan(current_app, g.now, connection_ids=state.connection_ids_for(payload["user_id"]))
    return jsonify(status="ok", connections_changed=changed)


@bp.post("/data-deletion")
@csrf.exempt  # Meta posts this server-to-server; the signed_request is the proof of origin
def data_deletion():
    payload = _verified_payload()
    callback = meta_requests.request_data_deletion(payload["user_id"], payload.get("issued_at", 0), g.now)
    audit.record("meta.data_deletion", now=g.now, actor=None, details=f"confirmation {callback.confirmation_code}")
    code = callback.confirmation_code
    base = current_app.config.get("PUBLIC_BASE_URL")
    status_url = (
        f"{base}{url_for('meta_requests.deletion_status', code=code)}"
        if base
        else url_for("meta_requests.deletion_status", code=code, _external=True)
    )
    return jsonify(url=status_url, confirmation_code=code)


@bp.get("/data-deletion/<code>")
def deletion_status(code: str):
    """Show the status of one deletion request, and nothing else."""
    callback = db.session.scalar(
        db.select(MetaCallback).where(MetaCallback.kind == "data_deletion", MetaCallback.confirmation_code == code)
    )
    if callback is None:
        abort(404, description="There is no data deletion request with that confirmation code.")
    return render_template("meta_requests/deletion_status.html", callback=callback)
