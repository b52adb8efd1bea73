"""Crawl every route with hostile input as every kind of visitor: nothing answers 5xx (promise 39)."""

from __future__ import annotations

import re
import time
from urllib.parse import quote, urlencode

import pytest

from testbed.client import AuthActions, csrf_token_from
from tests.conftest import TEST_CLIENT_SECRET
from tests.factories import make_connection, make_shop, make_user
from webapp.services.meta.signed_request import sign

# Routes the crawl leaves out, and why. Nothing streams forever, so nothing is left out today.
EXCLUDED_ENDPOINTS: dict[str, str] = {}
# Asked last for each visitor, because they end the session the rest of the crawl needs.
LAST_ENDPOINTS = ("auth.logout",)

HUGE = str(10**30)
HOSTILE_PATH_VALUES = [
    HUGE,
    str(2**31),  # one past PostgreSQL's integer
    "-1",
    "0",
    "a%00b",
    "x" * 10_000,
    quote("é🙂ß中"),
    "..%2F..%2Fetc%2Fpasswd",
]
HOSTILE_QUERIES = [
    f"page={HUGE}",
    "page=-1",
    "page=abc",
    f"page={'9' * 5000}",
    f"shop={HUGE}&actor=%25_%5C&action=x",
    f"q={'x' * 10_000}&group={'g' * 10_000}&page=2",
    "q=%00&group=%00&next=%00&code=%00&state=%00&a%00=1",
]
DEEP_JSON = "[" * 3000  # Python's json gives up (RecursionError) near 1000 levels
HUGE_NUMBER_JSON = '{"error": {"code": 1e999, "error_subcode": ' + "9" * 5000 + ', "type": 1e999, "message": 1}}'
# Lone surrogates are valid JSON escapes and no page can print them; error_data is parsed a second time.
ODD_FIELDS_JSON = (
    '{"error": {"code": 190, "type": "\\udfff", "message": "\\ud800", "error_data": "' + "[" * 3000 + '"}}'
)


def _signed(**fields) -> str:
    return sign(
        {"user_id": "17841400000000001", "algorithm": "HMAC-SHA256", "issued_at": 1, **fields}, TEST_CLIENT_SECRET
    )


HOSTILE_SIGNED_REQUESTS = [
    _signed(user_id=[1]),
    _signed(user_id={"a": 1}),
    _signed(user_id=None),
    _signed(user_id=True),
    _signed(user_id=1e30),
    _signed(user_id="7" * 10_000),
    _signed(user_id="1\x00"),
    _signed(issued_at=10**30),
    _signed(issued_at=1e30),
    _signed(issued_at="abc"),
    _signed(issued_at=[1]),
    _signed(algorithm=["HMAC-SHA256"]),
    _signed(algorithm=None),
]
FORM_FIELDS = [
    "email",
    "password",
    "next",
    "current_password",
    "new_password",
    "confirm_password",
    "reason",
    "raw_error",
    "role",
    "active",
    "item",
    "incident",
    "signed_request",
    "name",
    "notify_reminders",
    "notify_expiry_warnings",
    "confirm",
    "decision",
    "username",
    "new_username",
    "account_id",
    "days",
    "back",
]


def _hostile_forms() -> list[str]:
    """URL-encoded bodies that fill every field any of our forms reads with one kind of trouble."""
    kinds = [
        "\x00",
        "x" * 10_000,
        HUGE,
        "-1",
        "é🙂ß中\u202e",
        DEEP_JSON,
        HUGE_NUMBER_JSON,
        ODD_FIELDS_JSON,
        "1e999",
    ]
    forms = [{field: value for field in FORM_FIELDS} for value in kinds]
    forms.append({field: ["1", "2"] for field in FORM_FIELDS})  # every field twice
    return [urlencode(form, doseq=True) for form in forms]


HOSTILE_FORMS = _hostile_forms()  # encoded once: encoding them is most of the crawl's cost otherwise


def _paths(rule, values) -> list[str]:
    if not rule.arguments:
        return [rule.rule]
    return [re.sub(r"<[^>]+>", value, rule.rule) for value in values]


@pytest.fixture
def app_config(app_config):
    # Count a crash as the 500 a visitor sees instead of letting it stop the crawl.
    return {**app_config, "PROPAGATE_EXCEPTIONS": False, "LOGIN_RATE_LIMIT": "1000 per minute"}


def _visitors(app) -> dict[str, object]:
    """Anonymous, a merchant with a connected shop, a support agent and an admin, each in its own client."""
    shop = make_shop()
    merchant = make_user(shop=shop)
    make_connection(
        shop, state="needs_reconnect", cause="password_changed", last_error_code=190, last_error_subcode=460
    )
    visitors = {"anonymous": app.test_client()}
    for name, user in (
        ("merchant", merchant),
        ("support", make_user(role="support")),
        ("admin", make_user(role="admin")),
    ):
        client = app.test_client()
        AuthActions(client).login_as(user)
        visitors[name] = client
    return visitors


def _requests_for(rule, method: str):
    """(path, form body without its CSRF token, or None) for one rule and method: hostile paths, queries, bodies."""
    plain = _paths(rule, ["1"])[0]
    body = "" if method == "POST" else None
    for path in _paths(rule, HOSTILE_PATH_VALUES):
        yield path, body
    for query in HOSTILE_QUERIES if method == "GET" else HOSTILE_QUERIES[:1]:
        yield f"{plain}?{query}", body
    if method == "POST":
        for form in HOSTILE_FORMS:
            yield plain, form
    if rule.endpoint.startswith("meta_requests.") and method == "POST":
        for value in HOSTILE_SIGNED_REQUESTS:
            yield plain, urlencode({"signed_request": value})


def _csrf_token(client) -> str:
    return csrf_token_from(client.get("/login", follow_redirects=True).text)


class Visitor:
    """One client and its CSRF token, so each hostile body gets past CSRF to the view."""

    def __init__(self, client):
        self.client = client
        self.csrf_token = _csrf_token(client)

    def send(self, method: str, path: str, body: str | None) -> int | str:
        """Status of one request; a crash counts as the 500 a visitor would see."""
        try:
            response = self._open(method, path, body)
            if response.status_code == 400 and body is not None and "The form expired" in response.text:
                # Visiting a page that needs a login clears an anonymous session, and its token with it.
                self.csrf_token = _csrf_token(self.client)
                response = self._open(method, path, body)
            return response.status_code
        except Exception as error:  # noqa: BLE001 - a crash is what the crawl looks for
            return f"raised {type(error).__name__}: {str(error)[:120]}"

    def _open(self, method: str, path: str, body: str | None):
        if body is None:
            return self.client.open(path, method=method)
        data = f"csrf_token={self.csrf_token}&{body}"
        return self.client.open(path, method=method, data=data, content_type="application/x-www-form-urlencoded")


def test_no_input_gets_a_5xx(app, requests_mock):
    """Promise 39 (also 32 and 23): every route, every method, every visitor, hostile input: never a 5xx."""
    rules = [rule for rule in app.url_map.iter_rules() if rule.endpoint not in EXCLUDED_ENDPOINTS]
    assert EXCLUDED_ENDPOINTS == {}, "the crawl leaves out only what is listed, with a reason"
    assert len(rules) == len(list(app.url_map.iter_rules()))
    rules.sort(key=lambda rule: (rule.endpoint in LAST_ENDPOINTS, rule.rule))
    # The one call to Meta a visitor can cause without a token: the admins' "Check the app".
    requests_mock.post(
        "https://api.instagram.com/oauth/access_token",
        status_code=400,
        json={"error_type": "OAuthException", "code": 400, "error_message": "Matching code was not found"},
    )
    started = time.monotonic()
    made, failures = 0, []
    for name, client in _visitors(app).items():
        visitor = Visitor(client)
        for rule in rules:
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                for path, body in _requests_for(rule, method):
                    made += 1
                    status = visitor.send(method, path, body)
                    if not isinstance(status, int) or status >= 500:
                        failures.append(f"{name} {method} {path[:90]} {(body or '')[:60]!r} -> {status}")
    elapsed = time.monotonic() - started
    print(f"\nhostile crawl: {made} requests in {elapsed:.1f} s, {len(failures)} answered 5xx")
    assert made > 1000
    assert not failures, f"{len(failures)} of {made} requests answered 5xx:\n" + "\n".join(failures[:60])
