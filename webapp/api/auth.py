"""Bearer API keys on every Platform API endpoint: 401 without a live key, 403 without its scope, then the limit."""

from __future__ import annotations

from copy import deepcopy
from functools import wraps

from flask import current_app, g, request

from webapp.api.problems import Problem
from webapp.extensions import limiter
from webapp.models import ApiKey
from webapp.services import api_keys

# Responses every keyed endpoint may give, documented once here (components registered by PlatformApi).
KEYED_RESPONSES = {401: "UNAUTHORIZED", 403: "FORBIDDEN", 429: "TOO_MANY_REQUESTS"}
BEARER_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="api"'}


def api_rate_limit() -> str:
    return current_app.config["API_RATE_LIMIT"]


def _key_bucket() -> str:
    return f"api-key:{g.api_key.id}"


def current_key() -> ApiKey:
    """The key the request was authenticated with (inside a view that requires a scope)."""
    return g.api_key


def _authenticate(scope: str) -> ApiKey:
    header = request.headers.get("Authorization", "")
    scheme, _, presented = header.partition(" ")
    if not header:
        raise Problem("api-key", "Send the key as `Authorization: Bearer <api key>`.", headers=BEARER_CHALLENGE)
    if scheme.lower() != "bearer" or not presented.strip():
        raise Problem("api-key", "The Authorization header must read `Bearer <api key>`.", headers=BEARER_CHALLENGE)
    key = api_keys.authenticate(presented.strip(), g.now)
    if key is None:
        raise Problem("api-key", "This API key is not valid.", headers=BEARER_CHALLENGE)
    if key.revoked_at is not None:
        raise Problem("api-key", "This API key was revoked.", headers=BEARER_CHALLENGE)
    if not key.has_scope(scope):
        raise Problem(
            "scope",
            f"This API key does not have the scope {scope}, which this endpoint needs.",
            required_scope=scope,
        )
    return key


def require_scope(scope: str):
    """Let only a live key with `scope` in; count the request against that key's limit only then (promise 38).

    Place it below the route and response decorators and above `arguments`: a request is
    authenticated before its parameters are read.
    """

    def decorator(view):
        # Every key shares one budget across the API, whichever endpoints it calls.
        limited = limiter.shared_limit(api_rate_limit, scope="platform-api", key_func=_key_bucket)(view)

        @wraps(view)
        def wrapper(*args, **kwargs):
            g.api_key = _authenticate(scope)
            return limited(*args, **kwargs)

        wrapper._apidoc = deepcopy(getattr(view, "_apidoc", {}))  # type: ignore[attr-defined]
        responses = wrapper._apidoc.setdefault("response", {}).setdefault("responses", {})  # type: ignore[attr-defined]
        for status, name in KEYED_RESPONSES.items():
            responses.setdefault(status, []).append(name)
        manual = wrapper._apidoc.setdefault("manual_doc", {})  # type: ignore[attr-defined]
        manual["security"] = [{"bearerAuth": []}]
        manual["x-required-scope"] = scope
        return wrapper

    return decorator
