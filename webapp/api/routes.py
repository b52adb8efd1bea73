"""The Platform API's endpoints: a shop's connection and token, error reports, the list of connections.

Views stay thin: each authenticates (`require_scope`), calls one service and returns what it gave;
flask-smorest reads the decorators to write the OpenAPI document.
"""

from __future__ import annotations

from flask import abort, current_app, g, request

from webapp.api import schemas
from webapp.api.auth import BEARER_CHALLENGE, current_key, require_scope
from webapp.api.bodies import ApiBlueprint
from webapp.api.problems import PROBLEM_TYPES, Problem
from webapp.extensions import csrf, db
from webapp.models import Shop
from webapp.services import idempotency, platform_api
from webapp.services.connections import error_reports
from webapp.services.connections.state import Actor
from webapp.services.runtime import facebook_client, instagram_client, keep_alive_policy, token_vault

bp = ApiBlueprint(
    "platform_api",
    __name__,
    url_prefix="/api/v1",
    description="Connection status, the kept-alive token and error reports for the shop platform's services.",
)

NO_STORE = {"Cache-Control": "no-store"}
IDEMPOTENCY_HEADER = {
    "in": "header",
    "name": "Idempotency-Key",
    "required": True,
    "description": "New for each report, the same when the report is retried (1-255 visible ASCII characters).",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[\\x21-\\x7e]+$"},
}
REPLAYED_HEADER = {
    "Idempotent-Replayed": {
        "description": "`true` when this is the stored answer to an earlier request with the same key",
        "schema": {"type": "string"},
    }
}


def _shop(shop_id: int) -> Shop:
    return db.get_or_404(Shop, shop_id, description="There is no shop with that number.")


@bp.route("/shops/<int:shop_id>/connection")
@bp.response(200, schemas.ConnectionDetailSchema)
@bp.alt_response(404, response="NOT_FOUND")
@require_scope("status:read")
def shop_connection(shop_id: int):
    """A shop's connection: state, cause, account, token age and expiry, last check, stored diagnosis

    Needs the scope `status:read`. A shop that never connected reads as `not_connected`.
    """
    shop = _shop(shop_id)
    connection = platform_api.connection_of(shop)
    return {
        **platform_api.describe(shop, connection, g.now),
        "diagnosis": platform_api.describe_diagnosis(connection, g.now),
    }, NO_STORE


@bp.route("/shops/<int:shop_id>/token")
@bp.response(200, schemas.TokenSchema, headers={"Cache-Control": {"schema": {"type": "string"}}})
@bp.alt_response(404, response="NOT_FOUND")
@bp.alt_response(409, response="CONFLICT")
@require_scope("token:read")
def shop_token(shop_id: int):
    """The shop's current access token, while it is usable

    Needs the scope `token:read`; every call is in the audit log (with the token's fingerprint, never
    the token). Answered only while the connection is healthy, expiring or degraded and before the
    token's end date; otherwise a 409 problem whose `state` and `cause` say why. Never cache it:
    fetch it when you need it (the answer says `Cache-Control: no-store`).
    """
    shop = _shop(shop_id)
    try:
        token = platform_api.read_current_token(shop, api_key=current_key(), now=g.now, vault=token_vault())
    except platform_api.TokenUnavailable as refusal:
        raise Problem("token-unavailable", refusal.detail, state=refusal.state, cause=refusal.cause) from None
    except platform_api.KeyRevoked:
        raise Problem("api-key", "This API key was revoked.", headers=BEARER_CHALLENGE) from None
    return token, NO_STORE


@bp.route("/shops/<int:shop_id>/errors", methods=["POST"])
@csrf.exempt  # server to server: the bearer key is the proof of origin, and no cookie is ever read
@bp.response(200, schemas.ErrorReportResultSchema, headers=REPLAYED_HEADER)
@bp.alt_response(400, response="BAD_REQUEST")
@bp.alt_response(404, response="NOT_FOUND")
@bp.alt_response(409, response="CONFLICT")
@bp.alt_response(415, response="UNSUPPORTED_MEDIA_TYPE")
@bp.alt_response(422, response="UNPROCESSABLE_ENTITY")
@bp.doc(parameters=[IDEMPOTENCY_HEADER])
@require_scope("errors:write")
@bp.arguments(schemas.ErrorReportSchema)
def report_error(report: dict, shop_id: int):
    """Report a Meta error your service got while using the shop's token

    Needs the scope `errors:write` and an `Idempotency-Key` header. The error goes through the same
    classifier as our own calls. A permanent cause (the merchant must reconnect) makes us call Meta
    at once with the stored token, and only if Meta refuses it too does the shop go
    `needs_reconnect` (with the diagnosis stored and the merchant mailed): one faulty report cannot
    disconnect a shop. A transient cause counts toward `degraded`; an error that is not about the
    token (or one nothing in it names) changes nothing. `action` says what happened.
    """
    key = idempotency.valid_key(request.headers.get("Idempotency-Key"))
    if key is None:
        raise Problem("idempotency-key-missing", "Send an Idempotency-Key header (1-255 visible ASCII characters).")
    shop = _shop(shop_id)
    connection = platform_api.connection_of(shop)
    if connection is None or not connection.has_token:
        raise Problem("not-connected", "The shop has no Instagram connection with a token; nothing was recorded.")
    api_key = current_key()
    fingerprint = idempotency.request_hash("POST", shop.id, report)
    try:
        body, replayed = idempotency.run_once(
            api_key.id, key, fingerprint, g.now, lambda: _apply_report(shop.id, connection.id, report, api_key.id)
        )
    except idempotency.IdempotencyKeyReused:
        raise Problem(
            "idempotency-key-reused", "This Idempotency-Key was used for a different report; use a new key."
        ) from None
    except idempotency.IdempotencyKeyInProgress:
        raise Problem(
            "idempotency-key-in-progress", "The first report with this key is still being handled; retry shortly."
        ) from None
    except error_reports.NotConnected:
        raise Problem(
            "not-connected", "The shop has no Instagram connection with a token; nothing was recorded."
        ) from None
    return body, 200, {**NO_STORE, "Idempotent-Replayed": "true"} if replayed else NO_STORE


def _apply_report(shop_id: int, connection_id: int, report: dict, api_key_id: int) -> dict:
    outcome = error_reports.apply_report(
        current_app._get_current_object(),  # type: ignore[attr-defined]
        connection_id,
        _reported_error(report),
        actor=Actor("platform", api_key_id),
        now=g.now,
        client=instagram_client(),
        facebook=facebook_client(),
        vault=token_vault(),
        policy=keep_alive_policy(),
    )
    return schemas.ErrorReportResultSchema().dump(
        {
            "shop_id": shop_id,
            "classification": {
                "cause": str(outcome.classification.cause),
                "title": outcome.title,
                "needs_reconnect": outcome.classification.needs_reconnect,
                "retryable": outcome.classification.retryable,
            },
            "action": str(outcome.action),
            "detail": outcome.detail,
            "connection": {"state": outcome.state, "cause": outcome.cause},
        }
    )


def _reported_error(report: dict) -> error_reports.ReportedError:
    return error_reports.ReportedError(
        code=report.get("code"),
        subcode=report.get("error_subcode"),
        error_type=report.get("type"),
        message=report.get("message"),
        user_title=report.get("error_user_title"),
        user_message=report.get("error_user_msg"),
        fbtrace_id=report.get("fbtrace_id"),
        http_status=report.get("http_status"),
        is_transient=report.get("is_transient"),
    )


@bp.route("/connections")
@bp.response(200, schemas.ConnectionPageSchema)
@bp.alt_response(400, response="BAD_REQUEST")
@bp.alt_response(422, response="UNPROCESSABLE_ENTITY")
@require_scope("status:read")
@bp.arguments(schemas.ConnectionListArgsSchema, location="query", unknown=None)  # the schema refuses unknowns
def list_connections(query: dict):
    """Every connection, in pages, filtered by state or cause (for sync jobs)

    Needs the scope `status:read`. Pages follow the connections' order of creation; pass
    `next_cursor` back as `cursor` until it is null.
    """
    try:
        items, next_cursor = platform_api.page_of_connections(
            state=query.get("state"),
            cause=query.get("cause"),
            cursor=query.get("cursor"),
            limit=query["limit"],
            now=g.now,
        )
    except platform_api.InvalidCursor:
        raise Problem("invalid-cursor", "That cursor was not given out by this API.") from None
    return {"connections": items, "next_cursor": next_cursor}, NO_STORE


@bp.route("/problems/<slug>")
@bp.response(200, schemas.ProblemTypeSchema)
@bp.alt_response(404, response="NOT_FOUND")
def problem_type(slug: str):
    """What a problem `type` of this API means (no key needed)"""
    problem = PROBLEM_TYPES.get(slug)
    if problem is None:
        abort(404, description="This API has no problem type of that name.")
    return {"type": problem.uri, "title": problem.title, "status": problem.status, "description": problem.description}
