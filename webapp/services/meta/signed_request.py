"""Verify Meta's `signed_request` (deauthorize and data-deletion callbacks)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re

from webapp.services.meta import bounded_json

_BASE64URL = re.compile(r"^[A-Za-z0-9_-]+={0,2}$")
_USER_ID = re.compile(r"[A-Za-z0-9_-]+")
USER_ID_MAX_LENGTH = 64  # the width of every instagram_user_id column
ISSUED_AT_MAX = 253_402_300_799  # 9999-12-31T23:59:59Z, the last second a datetime holds


class SignedRequestError(ValueError):
    """The signed_request is malformed, unsigned, wrongly signed or incomplete."""


def _b64url_decode(segment: str) -> bytes:
    if not segment or not _BASE64URL.match(segment):
        raise SignedRequestError("segment is not base64url")
    try:
        # Meta strips the padding; put it back before decoding.
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError) as exc:
        raise SignedRequestError("segment is not base64url") from exc


def b64url_encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def sign(payload: dict, secret: str) -> str:
    """Build a signed_request the way Meta does (the sandbox and tests use this)."""
    body = b64url_encode(json.dumps(payload, separators=(",", ":")).encode())
    signature = hmac.new(secret.encode(), body.encode(), hashlib.sha256).digest()
    return f"{b64url_encode(signature)}.{body}"


def parse(signed_request: str | None, secret: str) -> dict:
    """Return the verified payload; raise SignedRequestError for anything else.

    The signature is checked (in constant time) before the payload is parsed as JSON.
    """
    if not signed_request or not isinstance(signed_request, str):
        raise SignedRequestError("signed_request is missing")
    if not secret:
        raise SignedRequestError("no app secret is configured")
    parts = signed_request.split(".")
    if len(parts) != 2:
        raise SignedRequestError("signed_request must have exactly two segments")
    encoded_signature, encoded_payload = parts
    signature = _b64url_decode(encoded_signature)
    _b64url_decode(encoded_payload)
    expected = hmac.new(secret.encode(), encoded_payload.encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(signature, expected):
        raise SignedRequestError("signature does not match")
    try:
        payload = bounded_json.loads(_b64url_decode(encoded_payload))
    except ValueError as exc:  # also bad UTF-8 and nesting too deep to be Meta's
        raise SignedRequestError("payload is not JSON") from exc
    if not isinstance(payload, dict):
        raise SignedRequestError("payload is not an object")
    algorithm = payload.get("algorithm")
    if not isinstance(algorithm, str) or algorithm.upper() != "HMAC-SHA256":
        raise SignedRequestError("algorithm must be HMAC-SHA256")
    payload["user_id"] = _user_id(payload.get("user_id"))
    payload["issued_at"] = _issued_at(payload.get("issued_at", 0))
    return payload


def _user_id(value: object) -> str:
    """Meta's id for the person as text; a signed payload can still carry any JSON type here."""
    if value is None or (isinstance(value, str) and value.strip() == ""):
        raise SignedRequestError("user_id is missing")
    # Meta sends a string of digits; a whole number is the same id (bool is an int in Python, not an id).
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        value = str(value)
    if not isinstance(value, str):
        raise SignedRequestError("user_id must be text")
    if len(value) > USER_ID_MAX_LENGTH:
        raise SignedRequestError(f"user_id is longer than {USER_ID_MAX_LENGTH} characters")
    if not _USER_ID.fullmatch(value):
        raise SignedRequestError("user_id may hold only letters, digits, '-' and '_'")
    return value


def _issued_at(value: object) -> int:
    """The Unix time Meta signed the request at: a whole number of seconds a datetime can hold."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise SignedRequestError("issued_at must be a whole number")
    if not 0 <= value <= ISSUED_AT_MAX:
        raise SignedRequestError("issued_at is not a time Meta could have signed at")
    return value
