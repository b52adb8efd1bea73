"""Error pages in the site layout; htmx requests get a small fragment instead.

Every error answer must come out even when the database is down: the layout reads the signed-in
user from it, so when drawing the layout fails the answer falls back to a page that reads nothing
(promise 39), still with the security headers and still retargeted for htmx.
"""

from __future__ import annotations

import logging

from flask import Flask, current_app, jsonify, make_response, render_template, request
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from werkzeug.exceptions import HTTPException, InternalServerError, ServiceUnavailable

from webapp.api import problems
from webapp.extensions import db
from webapp.htmx import hx_retarget_to_error_slot, is_fragment_request
from webapp.services.connections.state import ConnectionChanged

log = logging.getLogger(__name__)

MESSAGES = {
    400: (
        "Something in that request was not right",
        "The form or link was incomplete or malformed. Go back and try again.",
    ),
    401: ("Please log in", "You need to be logged in to see this."),
    403: ("Not allowed", "Your account cannot open this page or take this action."),
    404: ("Page not found", "The page or item you asked for does not exist, or no longer does."),
    405: ("Not allowed that way", "This address cannot be used like that. Use the buttons on the page."),
    409: (
        "Your Instagram connection changed meanwhile",
        "Something else updated it while we were saving your change, so nothing was saved. "
        "Reload the page to see where it stands, then try again.",
    ),
    413: ("Too much data", "What you sent is larger than we accept."),
    429: ("Too many attempts", "You tried that too often. Wait a minute, then try again."),
    500: ("Something went wrong on our side", "The error has been logged. Try again in a moment."),
    503: (
        "We cannot reach our database",
        "Nothing was changed. This is usually over within a minute or two: try again shortly.",
    ),
}
RETRY_AFTER_SECONDS = 30


def _database_unavailable(error: Exception) -> bool:
    """True when the database could not be reached or used at all (not when a query was wrong)."""
    if isinstance(error, (OperationalError, InterfaceError, PoolTimeoutError)):
        return True
    return isinstance(error, DBAPIError) and error.connection_invalidated


def _rollback() -> None:
    """Leave the session usable for the error page (and the next request), even if the database is gone."""
    try:
        db.session.rollback()
    except Exception:  # noqa: BLE001 - the connection may be dead; the answer must still go out
        log.warning("rolling back after an error failed too", exc_info=True)


def _render_standalone(template: str, **context) -> str:
    """Render a template that needs no user: skips the context processors, which load the user from the database."""
    return current_app.jinja_env.get_template(template).render(**context)


def _render(status: int, detail: str | None = None, *, layout: bool = True):
    title, message = MESSAGES.get(status, (f"Error {status}", ""))
    message = detail or message
    if problems.wanted():  # the Platform API answers in problem documents, never pages
        return problems.response(status, detail)
    if request.blueprint == "meta_requests" and request.method == "POST":  # Meta reads JSON, not pages
        return jsonify(error=title, detail=message), status
    if is_fragment_request():
        # Never swap an error into the widget that asked: show it in the page's error slot.
        html = _render_standalone("errors/_error.html", status=status, title=title, message=message)
        return hx_retarget_to_error_slot(make_response(html, status))
    if not layout:
        return _render_standalone("errors/plain.html", status=status, title=title, message=message), status
    try:
        return render_template("errors/error.html", status=status, title=title, message=message), status
    except Exception:  # noqa: BLE001 - the layout reads the user from the database, which may be what failed
        log.warning("the error page could not use the site layout; answering with the plain page", exc_info=True)
        _rollback()
        return _render_standalone("errors/plain.html", status=status, title=title, message=message), status


def register(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def csrf_error(error: CSRFError):
        return _render(400, "The form expired or was sent from somewhere else. Reload the page and try again.")

    @app.errorhandler(ConnectionChanged)
    def connection_changed(error: ConnectionChanged):
        _rollback()
        log.warning("%s %s: %s", request.method, request.path, error)
        return _render(409)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        if problems.wanted():
            return problems.for_http_error(error)
        detail = None
        if error.code == 429:
            detail = "Too many attempts. Wait a minute, then try again."
        elif error.description and error.description != type(error).description:
            detail = error.description  # our own abort(..., description) messages are written for people
        return _render(error.code or 500, detail)

    @app.errorhandler(Exception)
    def unexpected_error(error: Exception):
        if isinstance(error, HTTPException):
            return http_error(error)
        _rollback()
        if _database_unavailable(error):
            log.error("database unavailable on %s %s: %s", request.method, request.path, error)
            # Skip the layout: it would wait on the same database a second time.
            response = make_response(_render(ServiceUnavailable.code, layout=False))
            response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
            return response
        log.exception("unhandled error on %s %s", request.method, request.path)
        return _render(InternalServerError.code)
