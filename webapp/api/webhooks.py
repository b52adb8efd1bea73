"""Webhook endpoints over the API (`webhooks:manage`): list, add (its signing secret shown once), disable.

The endpoints, their signing and their delivery belong to webapp/services/webhooks.py; these views
only call its `create_endpoint`, `list_endpoints` and `disable_endpoint`.
"""

from __future__ import annotations

from flask import g
from marshmallow import Schema, fields, validate

from webapp.api import schemas
from webapp.api.auth import current_key, require_scope
from webapp.api.bodies import ApiBlueprint
from webapp.api.problems import Problem
from webapp.extensions import csrf, db
from webapp.models import WebhookEndpoint
from webapp.services import audit, webhooks

bp = ApiBlueprint(
    "platform_api_webhooks",
    __name__,
    url_prefix="/api/v1",
    description="Where to send signed webhooks when a connection changes (Standard Webhooks).",
)
NO_STORE = {"Cache-Control": "no-store"}


class NewEndpointArgsSchema(Schema):
    url = fields.Url(
        required=True,
        schemes={"https", "http"},
        require_tld=False,
        validate=[validate.Length(max=1000), schemas.NO_NUL],
        metadata={"description": "Where to POST the events; https in production"},
    )
    description = schemas.text(255, load_default="")
    event_types = fields.List(
        fields.String(validate=validate.OneOf(webhooks.EVENT_TYPES)),
        load_default=lambda: list(webhooks.EVENT_TYPES),
        validate=validate.Length(min=1),
        metadata={"description": "The events to send; all of them when left out"},
    )


def _described(endpoint) -> dict:
    return {
        "id": endpoint.id,
        "url": endpoint.url,
        "description": endpoint.description or "",
        "event_types": [kind for kind in (endpoint.event_types or "").split(",") if kind],
        "created_at": endpoint.created_at,
        "disabled_at": endpoint.disabled_at,
    }


@bp.route("/webhooks")
@bp.response(200, schemas.WebhookEndpointListSchema)
@require_scope("webhooks:manage")
def list_webhooks():
    """Every webhook endpoint, disabled ones too

    Needs the scope `webhooks:manage`.
    """
    return {"endpoints": [_described(endpoint) for endpoint in webhooks.list_endpoints()]}, NO_STORE


@bp.route("/webhooks", methods=["POST"])
@csrf.exempt  # server to server: the bearer key is the proof of origin, and no cookie is ever read
@bp.response(201, schemas.NewWebhookEndpointSchema)
@bp.alt_response(400, response="BAD_REQUEST")
@bp.alt_response(415, response="UNSUPPORTED_MEDIA_TYPE")
@bp.alt_response(422, response="UNPROCESSABLE_ENTITY")
@require_scope("webhooks:manage")
@bp.arguments(NewEndpointArgsSchema)
def create_webhook(new: dict):
    """Add a webhook endpoint; the answer holds its signing secret, shown this once

    Needs the scope `webhooks:manage`. Verify each delivery's `webhook-signature` with the secret
    (Standard Webhooks); store it now, it cannot be shown again.
    """
    try:
        endpoint, secret = webhooks.create_endpoint(
            url=new["url"],
            description=new["description"],
            event_types=new["event_types"],
            created_by=current_key().label,
            now=g.now,
        )
    except webhooks.EndpointRefused as refusal:  # the service's own rules (e.g. https only in production)
        db.session.rollback()
        raise Problem("validation", str(refusal), errors={"json": {refusal.field: [str(refusal)]}}) from None
    # Audited as the admin pages audit it: where connection changes go is worth a trace.
    audit.record(
        "webhooks.endpoint_created",
        now=g.now,
        actor=None,
        label=current_key().label,
        details=f"endpoint {endpoint.id}: {endpoint.url} ({endpoint.event_types})",
    )
    return {**_described(endpoint), "secret": secret}, 201, NO_STORE


@bp.route("/webhooks/<int:endpoint_id>", methods=["DELETE"])
@csrf.exempt  # server to server: the bearer key is the proof of origin, and no cookie is ever read
@bp.response(204)
@bp.alt_response(404, response="NOT_FOUND")
@require_scope("webhooks:manage")
def disable_webhook(endpoint_id: int):
    """Disable a webhook endpoint: nothing more is sent to it

    Needs the scope `webhooks:manage`. Disabling one that is already disabled changes nothing.
    """
    db.get_or_404(WebhookEndpoint, endpoint_id, description="There is no webhook endpoint with that number.")
    if webhooks.disable_endpoint(endpoint_id, g.now):  # False when it already was: the same answer
        audit.record(
            "webhooks.endpoint_disabled",
            now=g.now,
            actor=None,
            label=current_key().label,
            details=f"endpoint {endpoint_id}",
        )
    return "", 204
