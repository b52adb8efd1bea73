"""While an agent views a shop as its merchant: a banner on every page and fragment, every write audited."""

from __future__ import annotations

from flask import Flask, Response, g, render_template, request

from webapp.htmx import is_fragment_request
from webapp.services import audit
from webapp.services.fingerprint import ip_prefix

UNAUDITED_ENDPOINTS = {"support.stop_impersonation"}  # it writes its own audit row


def add_banner_to_fragments(response: Response) -> Response:
    """htmx fragments carry the banner out of band, so it shows however the page was reached."""
    if g.get("impersonation") is None or not is_fragment_request() or response.mimetype != "text/html":
        return response
    if response.status_code >= 300 or response.direct_passthrough:
        return response
    banner = render_template("support/_impersonation_banner.html", impersonation=g.impersonation, oob=True)
    response.set_data(response.get_data(as_text=True) + banner)
    return response


def audit_writes(response: Response) -> Response:
    """Every state-changing request during impersonation leaves an audit row (promise 28)."""
    impersonation = g.get("impersonation")
    if impersonation is None or request.method in ("GET", "HEAD", "OPTIONS") or response.status_code >= 400:
        return response
    if request.endpoint in UNAUDITED_ENDPOINTS:
        return response
    audit.record(
        "impersonation.write",
        now=g.now,
        actor=impersonation.agent,
        subject_user=impersonation.subject,
        subject_shop_id=impersonation.shop_id,
        impersonation_id=impersonation.id,
        ip_prefix=ip_prefix(request.remote_addr),
        details=f"{request.method} {request.path} -> {response.status_code}",
    )
    return response


def register(app: Flask) -> None:
    app.after_request(add_banner_to_fragments)
    app.after_request(audit_writes)
