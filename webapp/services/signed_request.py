"""Verify Meta's `signed_request` (deauthorize and data-deletion callbacks)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re

_BASE64URL = re.compile(r"^[A-Za-z0-9_-]+={0,2}$")


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
        payload = json.loads(_b64url_decode(encoded_payload))
    except (ValueError, UnicodeDecodeError) as exc:
        raise SignedRequestError("payload is not JSON") from exc
    if not isinstance(payload, dict):
        raise SignedRequestError("payload is not an object")
    if str(payload.get("algorithm", "")).upper() != "HMAC-SHA256":
        raise SignedRequestError("algorithm must be HMAC-SHA256")
    user_id = payload.get("user_id")
    if user_id is None or str(user_id).strip() == "":
        raise SignedRequestError("user_id is missing")
    issued_at = payload.get("issued_at", 0)
    if not isinstance(issued_at, int) or isinstance(issued_at, bool):
        raise SignedRequestError("issued_at must be a whole number")
    payload["user_id"] = str(user_id)
    return payload
