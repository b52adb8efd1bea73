"""Error pages in the site layout; htmx requests get a small fragment instead."""

from __future__ import annotations

import logging

from flask import Flask, jsonify, make_response, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError

from webapp.extensions import db
from webapp.htmx import is_fragment_request

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
    413: ("Too much data", "What you sent is larger than we accept."),
    429: ("Too many attempts", "You tried that too often. Wait a minute, then try again."),
    500: ("Something went wrong on our side", "The error has been logged. Try again in a moment."),
}


def _render(status: int, detail: str | None = None):
    title, message = MESSAGES.get(status, (f"Error {status}", ""))
    if request.blueprint == "callbacks" and request.method == "POST":  # Meta reads JSON, not pages
        return jsonify(error=title, detail=detail or message), status
    if is_fragment_request():
        # Never swap an error into the widget that asked: show it in the page's error slot.
        response = make_response(
            render_template("errors/_error.html", status=status, title=title, message=detail or message), status
        )
        response.headers["HX-Retarget"] = "#htmx-errors"
        response.headers["HX-Reswap"] = "innerHTML"
        return response
    return render_template("errors/error.html", status=status, title=title, message=detail or message), status


def register(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def csrf_error(error: CSRFError):
        return _render(400, "The form expired or was sent from somewhere else. Reload the page and try again.")

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
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
        db.session.rollback()
        log.exception("unhandled error on %s %s", request.method, request.path)
        return _render(InternalServerError.code)
