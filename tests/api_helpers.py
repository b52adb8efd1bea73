"""Platform API keys and requests as the platform's services make them."""

from __future__ import annotations

from webapp import clock
from webapp.models import API_SCOPES
from webapp.services import api_keys

PROBLEM = "application/problem+json"
ME = "https://graph.instagram.com/v23.0/me"


def make_key(*scopes: str, name: str = "product sync") -> tuple[object, dict[str, str]]:
    """A key with `scopes` (all of them when none given) and the headers that send it."""
    key, full_key = api_keys.create_key(
        name=name, scopes=scopes or API_SCOPES, created_by=None, now=clock.now(), label="tests"
    )
    return key, {"Authorization": f"Bearer {full_key}"}


def meta_error(code: int, message: str, subcode: int | None = None, error_type: str = "OAuthException") -> dict:
    """Meta's error answer as requests-mock registers it."""
    error = {"message": message, "type": error_type, "code": code, "fbtrace_id": "AbCdEf"}
    if subcode is not None:
        error["error_subcode"] = subcode
    return {"json": {"error": error}, "status_code": 400}


def profile(user_id: str = "17841400000000001", username: str = "shop_account") -> dict:
    """/me's answer for a working token."""
    return {"json": {"id": "9170000000000001", "user_id": user_id, "username": username, "account_type": "BUSINESS"}}
