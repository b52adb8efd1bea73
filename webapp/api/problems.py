"""The Platform API's errors as RFC 9457 problem documents (`application/problem+json`).

Every answer under /api/ that is not a success is one of these, whoever raised it: our own
`Problem`s, Flask's and werkzeug's HTTP errors (404, 405, 413), webargs' 422, Flask-Limiter's 429,
and the app's 500 and 503 (webapp/errors.py sends API requests here). A problem of ours has a `type`
naming what went wrong (documented at that address, `GET /api/v1/problems/<slug>`); a plain HTTP
error is `about:blank` with the status's own title.
"""

from __future__ import annotations

import http
from dataclasses import dataclass

from flask import Response, json, request
from werkzeug.exceptions import HTTPException

PROBLEM_CONTENT_TYPE = "application/problem+json"
API_PREFIX = "/api/"
TYPE_PREFIX = "/api/v1/problems/"


@dataclass(frozen=True)
class ProblemType:
    slug: str
    title: str
    status: int
    description: str

    @property
    def uri(self) -> str:
        return TYPE_PREFIX + self.slug


PROBLEM_TYPES = {
    problem.slug: problem
    for problem in (
        ProblemType(
            "api-key",
            "Missing, invalid or revoked API key",
            401,
            "Send `Authorization: Bearer <api key>` with a key an administrator made that has not been revoked.",
        ),
        ProblemType(
            "scope",
            "The API key lacks the scope this endpoint needs",
            403,
            "The problem's `required_scope` names it; an administrator makes a key with that scope.",
        ),
        ProblemType(
            "token-unavailable",
            "The shop's token is not usable",
            409,
            "The connection is not healthy, expiring or degraded, or its token is past its expiry. `state` and "
            "`cause` say why; only the merchant can fix a `needs_reconnect`.",
        ),
        ProblemType(
            "not-connected",
            "The shop has no Instagram connection with a token",
            409,
            "Nothing was recorded: there is no token the error could be about.",
        ),
        ProblemType(
            "idempotency-key-missing",
            "Idempotency-Key header missing or malformed",
            400,
            "Error reports need an `Idempotency-Key` header of 1 to 255 visible ASCII characters, new for each "
            "report and the same when the report is retried.",
        ),
        ProblemType(
            "idempotency-key-reused",
            "Idempotency-Key already used for a different request",
            422,
            "The key was sent before with another body or for another shop; use a new key for a new report.",
        ),
        ProblemType(
            "idempotency-key-in-progress",
            "A request with this Idempotency-Key is still being processed",
            409,
            "Retry in a few seconds: the first request's answer is then returned.",
        ),
        ProblemType(
            "validation",
            "The request's parameters or body are not valid",
            422,
            "`errors` names each field that was refused and why.",
        ),
        ProblemType(
            "invalid-cursor",
            "The cursor is not one this API gave out",
            400,
            "Pass back the `next_cursor` of the previous page unchanged, or leave it out to start again.",
        ),
    )
}


class Problem(HTTPException):
    """An API error of a known type, with the detail for this occurrence and any extension members."""

    def __init__(self, slug: str, detail: str, *, headers: dict[str, str] | None = None, **extensions):
        problem_type = PROBLEM_TYPES[slug]
        self.code = problem_type.status
        super().__init__(description=detail)
        self.problem_type = problem_type
        self.extensions = extensions
        self.extra_headers = headers or {}


def wanted() -> bool:
    """True for requests to the API, which are answered with problem documents, never pages."""
    return request.path.startswith(API_PREFIX)


def response(
    status: int,
    detail: str | None = None,
    *,
    problem_type: ProblemType | None = None,
    headers: dict[str, str] | None = None,
    **extensions,
) -> Response:
    """A problem document with `status`; `about:blank` and the status's phrase unless a type is given."""
    body = {
        "type": problem_type.uri if problem_type else "about:blank",
        "title": problem_type.title if problem_type else _phrase(status),
        "status": status,
        "detail": detail or _phrase(status),
        **extensions,
    }
    answer = Response(json.dumps(body), status=status, mimetype=PROBLEM_CONTENT_TYPE)
    answer.headers["Cache-Control"] = "no-store"
    for name, value in (headers or {}).items():
        answer.headers[name] = value
    return answer


def for_http_error(error: HTTPException) -> Response:
    """The problem document for any HTTP error raised while answering an API request."""
    status = error.code or 500
    if isinstance(error, Problem):
        return response(
            status,
            error.description,
            problem_type=error.problem_type,
            headers=error.extra_headers,
            **error.extensions,
        )
    # Headers the error itself carries, e.g. 405's Allow; its Content-Type is for its HTML page.
    headers = {name: value for name, value in error.get_headers() if name.lower() != "content-type"}
    data = getattr(error, "data", None)  # webargs puts the refused fields here (flask-smorest's 422)
    if status == 422 and isinstance(data, dict) and "messages" in data:
        return response(
            status,
            "Some parameters were refused; `errors` names them.",
            problem_type=PROBLEM_TYPES["validation"],
            headers=headers,
            errors=data["messages"],
        )
    if status == 429:
        return response(status, "Too many requests with this API key. Wait, then try again.", headers=headers)
    described = error.description and error.description != type(error).description
    return response(status, error.description if described else None, headers=headers)


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Error"
