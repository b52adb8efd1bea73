"""Login throttling (promises 30 and 38): per client address, and per account without locking the owner out.

Each client address has its own budget. Each account has one too, so an attacker spread over many
addresses is slowed as well; but a browser that has already signed in to the account (it carries a
signed "known browser" cookie naming it) gets a budget of its own for that account. Hammering an
account therefore exhausts only the strangers' budget: the owner's usual browser still gets in, and
a new browser is told truthfully how long to wait. A correct password never skips a check, so the
limits cannot be probed for which guess was right.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import time

from flask import current_app, request
from itsdangerous import BadSignature, URLSafeTimedSerializer
from werkzeug.wrappers import Response as BaseResponse

from webapp.extensions import limiter

KNOWN_BROWSER_COOKIE = "known_browser"
KNOWN_BROWSER_DAYS = 180
KNOWN_BROWSER_ACCOUNTS = 5  # a shared computer remembers a few accounts, the latest first
ACCOUNT_KEY_PREFIX = "login-account:"


def address_limit() -> str:
    return current_app.config["LOGIN_RATE_LIMIT"]


def account_limit() -> str:
    return current_app.config["LOGIN_ACCOUNT_RATE_LIMIT"]


def _account_digest(email: str) -> str:
    # Throttle storage (Redis) never holds the address itself.
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]


def _serializer() -> URLSafeTimedSerializer:
    secret_key = current_app.secret_key
    if not secret_key:  # load_config always sets one; a test config could drop it
        raise RuntimeError("SECRET_KEY is not set; the known-browser cookie cannot be signed.")
    return URLSafeTimedSerializer(secret_key, salt="known-browser")


def _known_browser() -> dict | None:
    raw = request.cookies.get(KNOWN_BROWSER_COOKIE)
    if not raw:
        return None
    try:
        payload = _serializer().loads(raw, max_age=KNOWN_BROWSER_DAYS * 86400)
    except BadSignature:
        return None
    if not isinstance(payload, dict) or not isinstance(payload.get("browser"), str):
        return None
    if not isinstance(payload.get("accounts"), list):
        return None
    return payload


def account_key() -> str:
    """The per-account bucket of this attempt: the account's own, or this known browser's for it."""
    account = _account_digest(request.form.get("email", ""))
    browser = _known_browser()
    if browser is not None and account in browser["accounts"]:
        return f"{ACCOUNT_KEY_PREFIX}{account}:browser:{browser['browser']}"
    return f"{ACCOUNT_KEY_PREFIX}{account}"


def remember_browser(response: BaseResponse, email: str) -> BaseResponse:
    """After a successful login, mark this browser as one the account's owner uses."""
    browser = _known_browser() or {"browser": secrets.token_urlsafe(16), "accounts": []}
    account = _account_digest(email)
    accounts = [account] + [known for known in browser["accounts"] if known != account]
    value = _serializer().dumps({"browser": browser["browser"], "accounts": accounts[:KNOWN_BROWSER_ACCOUNTS]})
    response.set_cookie(
        KNOWN_BROWSER_COOKIE,
        value,
        max_age=KNOWN_BROWSER_DAYS * 86400,
        path="/login",
        secure=current_app.config["SESSION_COOKIE_SECURE"],
        httponly=True,
        samesite="Lax",
    )
    return response


def refusal_message() -> str:
    """What a refused login is told: the true wait of the limit it hit, and what else works."""
    breached = [limit for limit in limiter.current_limits if limit.breached]
    if not breached:
        return "Too many attempts. Wait a minute, then try again."
    seconds = max(limit.window[0] for limit in breached) - time.time()  # reset_at adds a second
    wait = _in_words(seconds)
    if any(ACCOUNT_KEY_PREFIX in limit.key and ":browser:" not in limit.key for limit in breached):
        return (
            f"Too many failed attempts to log in to this account. Try again in {wait}, "
            "or log in from a browser you have logged in with before."
        )
    return f"Too many login attempts from your network. Try again in {wait}."


def _in_words(seconds: float) -> str:
    if seconds <= 60:
        return "a minute"
    minutes = math.ceil(seconds / 60)
    return f"{minutes} minutes"
