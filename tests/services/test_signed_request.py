"""Meta's signed_request (promise 23)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest

from webapp.services.meta import signed_request
from webapp.services.meta.signed_request import SignedRequestError, b64url_encode, parse, sign

SECRET = "app-secret"
PAYLOAD = {"user_id": "17841400000000001", "algorithm": "HMAC-SHA256", "issued_at": 1795680000}


def signed_with(body: bytes, secret: str = SECRET) -> str:
    encoded = b64url_encode(body)
    signature = hmac.new(secret.encode(), encoded.encode(), hashlib.sha256).digest()
    return f"{b64url_encode(signature)}.{encoded}"


def test_valid_request_parses():
    payload = parse(sign(PAYLOAD, SECRET), SECRET)
    assert payload["user_id"] == "17841400000000001" and payload["issued_at"] == 1795680000


def test_numeric_user_id_is_read_as_text():
    assert parse(sign({**PAYLOAD, "user_id": 42}, SECRET), SECRET)["user_id"] == "42"


def test_padding_is_optional():
    """Promise 23: Meta strips '=' padding; both forms are accepted."""
    unpadded = sign(PAYLOAD, SECRET)
    signature, body = unpadded.split(".")
    padded_body = body + "=" * (-len(body) % 4)
    padded_sig = signature + "=" * (-len(signature) % 4)
    resigned = hmac.new(SECRET.encode(), padded_body.encode(), hashlib.sha256).digest()
    assert parse(f"{b64url_encode(resigned)}.{padded_body}", SECRET)["user_id"]
    assert parse(f"{padded_sig}.{body}", SECRET)["user_id"]


@pytest.mark.parametrize(
    "raw,reason",
    [
        (None, "missing"),
        ("", "missing"),
        ("onlyonesegment", "exactly two segments"),
        ("a.b.c", "exactly two segments"),
        ("!!!.abc", "base64url"),
        ("abc.%%%", "base64url"),
        (sign(PAYLOAD, "other-secret"), "signature does not match"),
        (signed_with(json.dumps({**PAYLOAD, "algorithm": "HMAC-SHA1"}).encode()), "algorithm"),
        (signed_with(json.dumps({"user_id": "1", "issued_at": 1}).encode()), "algorithm"),
        (signed_with(json.dumps({"algorithm": "HMAC-SHA256", "issued_at": 1}).encode()), "user_id is missing"),
        (signed_with(json.dumps({**PAYLOAD, "user_id": ""}).encode()), "user_id is missing"),
        (signed_with(b"not json"), "not JSON"),
        (signed_with(b"[1, 2]"), "not an object"),
        (signed_with(json.dumps({**PAYLOAD, "issued_at": "yesterday"}).encode()), "issued_at"),
    ],
)
def test_invalid_requests_are_refused(raw, reason):
    with pytest.raises(SignedRequestError, match=reason):
        parse(raw, SECRET)


def test_json_is_never_parsed_before_the_signature_verifies(monkeypatch):
    """Promise 23: a forged payload never reaches the JSON parser."""
    calls = []
    monkeypatch.setattr(signed_request.json, "loads", lambda *a, **k: calls.append(a) or {})
    forged = b64url_encode(b"x" * 32) + "." + b64url_encode(json.dumps(PAYLOAD).encode())
    with pytest.raises(SignedRequestError, match="signature does not match"):
        parse(forged, SECRET)
    assert calls == []


def test_comparison_is_constant_time(monkeypatch):
    """Promise 23: the signature is compared with hmac.compare_digest."""
    seen = []
    real = hmac.compare_digest
    monkeypatch.setattr(signed_request.hmac, "compare_digest", lambda a, b: seen.append((a, b)) or real(a, b))
    parse(sign(PAYLOAD, SECRET), SECRET)
    assert len(seen) == 1


def test_standard_base64_characters_are_refused():
    body = base64.b64encode(json.dumps(PAYLOAD).encode()).decode().replace("=", "") + "+/"
    with pytest.raises(SignedRequestError):
        parse("abc." + body, SECRET)


def _signed_payload(**fields) -> str:
    return sign({**PAYLOAD, **fields}, SECRET)


@pytest.mark.parametrize(
    "fields,reason",
    [
        ({"user_id": [1]}, "user_id must be text"),
        ({"user_id": {"id": "1"}}, "user_id must be text"),
        ({"user_id": True}, "user_id must be text"),
        ({"user_id": 1.5}, "user_id must be text"),
        ({"user_id": 1e30}, "user_id must be text"),
        ({"user_id": -7}, "user_id must be text"),
        ({"user_id": None}, "user_id is missing"),
        ({"user_id": "   "}, "user_id is missing"),
        ({"user_id": "7" * 10_000}, "user_id is longer than 64 characters"),
        ({"user_id": "1\x00"}, "user_id may hold only"),
        ({"user_id": "../1"}, "user_id may hold only"),
        ({"issued_at": 10**30}, "issued_at"),  # past 18 digits the parser reads a number as null
        ({"issued_at": 10**12}, "issued_at is not a time"),
        ({"issued_at": -1}, "issued_at is not a time"),
        ({"issued_at": 1e30}, "issued_at must be a whole number"),
        ({"issued_at": "abc"}, "issued_at must be a whole number"),
        ({"issued_at": [1]}, "issued_at must be a whole number"),
        ({"issued_at": True}, "issued_at must be a whole number"),
        ({"algorithm": ["HMAC-SHA256"]}, "algorithm must be HMAC-SHA256"),
        ({"algorithm": None}, "algorithm must be HMAC-SHA256"),
        ({"algorithm": {"name": "HMAC-SHA256"}}, "algorithm must be HMAC-SHA256"),
    ],
)
def test_fields_of_the_wrong_type_or_length_are_refused(fields, reason):
    """Promise 39 and 23: a signed payload can still carry any JSON in any field; each is a clear refusal."""
    with pytest.raises(SignedRequestError, match=reason):
        parse(_signed_payload(**fields), SECRET)


@pytest.mark.parametrize(
    "body",
    [b"[" * 100_000, b'{"user_id": "1", "x": ' + b"[" * 5000 + b"}", b'{"user_id": ' + b"9" * 5000 + b"}"],
    ids=["deeply-nested", "deep-field", "5000-digit-number"],
)
def test_payloads_json_cannot_parse_safely_are_refused(body):
    """Promise 39: deep nesting (RecursionError) and huge numbers (ValueError) are a refusal, not a crash."""
    with pytest.raises(SignedRequestError):
        parse(signed_with(body), SECRET)


def test_a_timestamp_up_to_year_9999_and_a_64_character_id_are_accepted():
    """Promise 39: the bounds refuse only what no real request has."""
    payload = parse(_signed_payload(user_id="1" * 64, issued_at=253_402_300_799), SECRET)
    assert payload["user_id"] == "1" * 64 and payload["issued_at"] == 253_402_300_799
