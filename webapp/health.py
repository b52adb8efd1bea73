"""`GET /healthz` for the platform's router and uptime checks; `/favicon.ico` for clients that ask for it."""

from __future__ import annotations

import logging

from flask import Blueprint, current_app, jsonify, send_from_directory
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from webapp.extensions import db

bp = Blueprint("health", __name__)
log = logging.getLogger(__name__)


@bp.get("/healthz")
def healthz():
    try:
        db.session.execute(text("SELECT 1"))
    except SQLAlchemyError as error:
        db.session.rollback()
        log.error("health check: database unreachable: %s", type(error).__name__)
        return jsonify(status="error", database="unreachable"), 503
    return jsonify(status="ok", database="ok")


@bp.get("/favicon.ico")
def favicon():
    """Pages name the SVG icon; tools and older clients still ask for /favicon.ico by convention."""
    return send_from_directory(
        current_app.static_folder or "static", "img/favicon.svg", mimetype="image/svg+xml", max_age=86400
    )
