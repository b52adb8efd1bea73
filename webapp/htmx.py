"""How views speak htmx: fragment-or-page, and the response headers that steer the browser."""

from __future__ import annotations

from typing import TypeVar

from flask import request
from werkzeug.wrappers import Response as BaseResponse

# Flask's own Response and the plain werkzeug one `redirect()` returns
AnyResponse = TypeVar("AnyResponse", bound=BaseResponse)


def is_fragment_request() -> bool:
    """True for an htmx request that wants a fragment (not a history restore, which needs the page)."""
    return request.headers.get("HX-Request") == "true" and request.headers.get("HX-History-Restore-Request") != "true"


def vary_on_htmx(response: AnyResponse) -> AnyResponse:
    """Mark a response that differs by HX-Request so caches keep page and fragment apart."""
    response.vary.add("HX-Request")
    return response


def hx_redirect(response: AnyResponse, location: str) -> AnyResponse:
    """Ask htmx to load `location` as a full page (e.g. the login page after a session ended)."""
    response.headers["HX-Redirect"] = location
    return response


def hx_trigger(response: AnyResponse, event: str) -> AnyResponse:
    """Fire a client-side event that listening widgets refresh on (e.g. `connection-changed`)."""
    existing = response.headers.get("HX-Trigger")
    response.headers["HX-Trigger"] = f"{existing}, {event}" if existing else event
    return response


ERROR_SLOT = "#htmx-errors"


def hx_retarget_to_error_slot(response: AnyResponse) -> AnyResponse:
    """Show an error answer in the page's error slot, never inside the widget that asked for it."""
    response.headers["HX-Retarget"] = ERROR_SLOT
    response.headers["HX-Reswap"] = "innerHTML"
    return response
