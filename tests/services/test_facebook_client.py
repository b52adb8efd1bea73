"""The Facebook Login client against graph.facebook.com (requests-mock; anything unregistered fails).

Response bodies are the shapes Meta documents; each test names its page.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from webapp.services.meta.client import MetaApiError
from webapp.services.meta.facebook import FacebookClient, Page, appsecret_proof

GRAPH = "https://graph.facebook.com/v23.0"
APP_ID = "551100223344"
APP_SECRET = "fb-app-secret-0f3c9a"  # noqa: S105
USER_TOKEN = "EAAHuserTOKENshortlivedZZ9"  # noqa: S105
LONG_TOKEN = "EAAHuserTOKENlonglivedQQ7"  # noqa: S105
PAGE_TOKEN = "EAAHpageTOKENbloomXX1"  # noqa: S105


@pytest.fixture
def client():
    return FacebookClient(app_id=APP_ID, app_secret=APP_SECRET, graph_base="https://graph.facebook.com", timeout=7.5)


def query(request) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(urlsplit(request.url).query).items()}


def proof(token: str) -> str:
    return hmac.new(APP_SECRET.encode(), token.encode(), hashlib.sha256).hexdigest()


def test_appsecret_proof_is_the_hmac_sha256_of_the_token_keyed_with_the_app_secret(client):
    # https://developers.facebook.com/docs/graph-api/securing-requests: hash_hmac('sha256', $access_token, $app_secret)
    assert appsecret_proof(USER_TOKEN, APP_SECRET) == proof(USER_TOKEN)
    assert client.appsecret_proof(USER_TOKEN) == proof(USER_TOKEN)
    assert len(proof(USER_TOKEN)) == 64


def test_exchange_code_gets_a_user_token(client, requests_mock):
    # https://developers.facebook.com/docs/facebook-login/guides/advanced/manual-flow#exchangecode
    requests_mock.get(
        f"{GRAPH}/oauth/access_token", json={"access_token": USER_TOKEN, "token_type": "bearer", "expires_in": 5183944}
    )
    grant = client.exchange_code("the-code", "https://shop.example/facebook/callback")
    assert (grant.access_token, grant.token_type, grant.expires_in) == (USER_TOKEN, "bearer", 5183944)
    sent = query(requests_mock.last_request)
    assert sent == {
        "client_id": APP_ID,
        "client_secret": APP_SECRET,
        "redirect_uri": "https://shop.example/facebook/callback",
        "code": "the-code",
    }
    assert requests_mock.last_request.timeout == 7.5


def test_long_lived_user_token_uses_fb_exchange_token(client, requests_mock):
    # https://developers.facebook.com/docs/facebook-login/guides/access-tokens/get-long-lived
    requests_mock.get(
        f"{GRAPH}/oauth/access_token", json={"access_token": LONG_TOKEN, "token_type": "bearer", "expires_in": 5183944}
    )
    grant = client.long_lived_user_token(USER_TOKEN)
    assert grant.access_token == LONG_TOKEN
    assert grant.expires_at(datetime(2026, 1, 1, tzinfo=UTC)) == datetime(2026, 3, 1, 23, 59, 4, tzinfo=UTC)
    sent = query(requests_mock.last_request)
    assert sent == {
        "grant_type": "fb_exchange_token",
        "client_id": APP_ID,
        "client_secret": APP_SECRET,
        "fb_exchange_token": USER_TOKEN,
    }


def test_a_token_answer_without_a_token_is_malformed(client, requests_mock):
    requests_mock.get(f"{GRAPH}/oauth/access_token", json={"token_type": "bearer"})
    with pytest.raises(MetaApiError) as raised:
        client.long_lived_user_token(USER_TOKEN)
    assert raised.value.failure == "malformed"


# The User accounts edge: https://developers.facebook.com/docs/graph-api/reference/user/accounts/
# (`data` of Pages with `access_token`, `tasks`, and the fields asked for; `paging` with cursors), and
# the Page's linked account as the Instagram Platform's Page reference shows it:
# https://developers.facebook.com/documentation/instagram-platform/instagram-graph-api/reference/page
FIRST_SCREEN = {
    "data": [
        {
            "id": "134895793791914",
            "name": "Bloom & Stem",
            "access_token": PAGE_TOKEN,
            "tasks": ["ADVERTISE", "ANALYZE", "CREATE_CONTENT", "MESSAGING", "MODERATE", "MANAGE"],
            "instagram_business_account": {"id": "17841405822304914", "username": "bloom_and_stem"},
        }
    ],
    "paging": {
        "cursors": {"before": "QVFIUmxtbG", "after": "QVFIUnRyb2"},
        "next": f"{GRAPH}/me/accounts?access_token={LONG_TOKEN}&limit=1&after=QVFIUnRyb2",
    },
}
LAST_SCREEN = {
    "data": [
        {
            "id": "201000000000002",
            "name": "Bloom & Stem Outlet",
            "access_token": "EAAHpageTOKENoutletYY2",
            "tasks": ["ANALYZE"],
        }
    ],
    "paging": {"cursors": {"before": "QVFIUnRyb2", "after": "QVFIUlastY"}},
}


def test_pages_reads_every_screen_with_tasks_and_the_linked_instagram_account(client, requests_mock):
    screens = requests_mock.get(f"{GRAPH}/me/accounts", [{"json": FIRST_SCREEN}, {"json": LAST_SCREEN}])
    pages = client.pages(LONG_TOKEN)
    assert pages == [
        Page(
            id="134895793791914",
            name="Bloom & Stem",
            access_token=PAGE_TOKEN,
            tasks=("ADVERTISE", "ANALYZE", "CREATE_CONTENT", "MESSAGING", "MODERATE", "MANAGE"),
            instagram_account_id="17841405822304914",
            instagram_username="bloom_and_stem",
        ),
        Page(
            id="201000000000002",
            name="Bloom & Stem Outlet",
            access_token="EAAHpageTOKENoutletYY2",
            tasks=("ANALYZE",),
        ),
    ]
    assert [page.has_instagram for page in pages] == [True, False]
    first, second = (query(request) for request in screens.request_history)
    assert first["fields"] == "id,name,access_token,tasks,instagram_business_account{id,username}"
    assert "after" not in first and second["after"] == "QVFIUnRyb2"
    # The user token travels with its proof on every screen, never through Meta's `next` URL.
    assert all(q["access_token"] == LONG_TOKEN and q["appsecret_proof"] == proof(LONG_TOKEN) for q in (first, second))
    assert [urlsplit(request.url).netloc for request in screens.request_history] == ["graph.facebook.com"] * 2


def test_a_next_url_on_another_host_is_never_followed(client, requests_mock):
    """The cursor is used with our own URL; a `next` naming another host would otherwise get the token."""
    screen = {**FIRST_SCREEN, "paging": {**FIRST_SCREEN["paging"], "next": "https://evil.example/steal"}}
    requests_mock.get(f"{GRAPH}/me/accounts", [{"json": screen}, {"json": LAST_SCREEN}])
    assert len(client.pages(LONG_TOKEN)) == 2  # evil.example is unregistered: a call there would fail


def test_a_cursor_that_never_moves_ends_the_listing(client, requests_mock):
    stuck = {**FIRST_SCREEN, "paging": {"cursors": {"after": "SAME"}, "next": f"{GRAPH}/me/accounts?after=SAME"}}
    screens = requests_mock.get(f"{GRAPH}/me/accounts", json=stuck)
    client.pages(LONG_TOKEN)
    assert screens.call_count == 2


def test_no_pages_and_odd_entries(client, requests_mock):
    requests_mock.get(
        f"{GRAPH}/me/accounts",
        json={"data": [{"name": "no id"}, "junk", {"id": 42, "instagram_business_account": []}], "paging": {}},
    )
    assert client.pages(LONG_TOKEN) == [Page(id="42", name=None, access_token=None)]
    requests_mock.get(f"{GRAPH}/me/accounts", json={"paging": {}})
    with pytest.raises(MetaApiError, match="without a data list"):
        client.pages(LONG_TOKEN)


# https://developers.facebook.com/docs/graph-api/reference/debug_token and the Facebook Login guide
# on debugging tokens: `data` with app_id, type, application, data_access_expires_at, expires_at
# (0 for a token with no end date), is_valid, issued_at, scopes, granular_scopes and user_id.
PAGE_TOKEN_DEBUG = {
    "data": {
        "app_id": APP_ID,
        "type": "PAGE",
        "application": "Shop Instagram Health",
        "data_access_expires_at": 1780000000,
        "expires_at": 0,
        "is_valid": True,
        "issued_at": 1772224000,
        "profile_id": "134895793791914",
        "scopes": ["instagram_basic", "pages_show_list", "pages_read_engagement", "business_management"],
        "granular_scopes": [
            {"scope": "instagram_basic", "target_ids": ["17841405822304914"]},
            {"scope": "pages_show_list", "target_ids": ["134895793791914", "201000000000002"]},
            {"scope": "business_management"},
        ],
        "user_id": "10222000000000001",
    }
}


def test_debug_token_reads_validity_dates_scopes_and_targets_with_the_app_token(client, requests_mock):
    requests_mock.get(f"{GRAPH}/debug_token", json=PAGE_TOKEN_DEBUG)
    debug = client.debug_token(PAGE_TOKEN)
    assert debug.is_valid is True
    assert debug.expires_at is None  # 0: no end date
    assert debug.data_access_expires_at == datetime.fromtimestamp(1780000000, UTC)
    assert debug.issued_at == datetime.fromtimestamp(1772224000, UTC)
    assert debug.scopes == ("instagram_basic", "pages_show_list", "pages_read_engagement", "business_management")
    assert debug.targets("instagram_basic") == ("17841405822304914",)
    assert debug.targets("pages_show_list") == ("134895793791914", "201000000000002")
    assert debug.targets("business_management") == () and "business_management" in debug.granular_scopes
    assert (debug.user_id, debug.app_id, debug.token_type, debug.error) == ("10222000000000001", APP_ID, "PAGE", None)
    sent = query(requests_mock.last_request)
    assert sent == {"input_token": PAGE_TOKEN, "access_token": f"{APP_ID}|{APP_SECRET}"}


def test_debug_token_of_a_user_token_with_an_end_date(client, requests_mock):
    body = {"data": {**PAGE_TOKEN_DEBUG["data"], "type": "USER", "expires_at": 1777000000}}
    requests_mock.get(f"{GRAPH}/debug_token", json=body)
    assert client.debug_token(LONG_TOKEN).expires_at == datetime.fromtimestamp(1777000000, UTC)


def test_debug_token_of_an_invalid_token_keeps_metas_reason_without_the_token(client, requests_mock):
    body = {
        "data": {
            "app_id": APP_ID,
            "type": "USER",
            "expires_at": 1777000000,
            "is_valid": False,
            "error": {
                "code": 190,
                "message": "Error validating access token: The session has been invalidated because the user "
                f"changed their password or Facebook has changed the session for security reasons. ({LONG_TOKEN})",
                "subcode": 460,
            },
            "scopes": [],
            "user_id": "10222000000000001",
        }
    }
    requests_mock.get(f"{GRAPH}/debug_token", json=body)
    debug = client.debug_token(LONG_TOKEN)
    assert debug.is_valid is False and debug.scopes == ()
    assert (debug.error.code, debug.error.subcode) == (190, 460)
    assert "changed their password" in debug.error.message and LONG_TOKEN not in debug.error.message


@pytest.mark.parametrize("body", [{}, {"data": []}, {"data": {"is_valid": "yes"}}])
def test_a_debug_answer_without_validity_is_malformed(client, requests_mock, body):
    requests_mock.get(f"{GRAPH}/debug_token", json=body)
    with pytest.raises(MetaApiError) as raised:
        client.debug_token(PAGE_TOKEN)
    assert raised.value.failure == "malformed"


# Error shapes of this path (https://developers.facebook.com/docs/graph-api/guides/error-handling).
PAGE_ADMIN_190 = {  # snarfed/bridgy#596: a Page token whose user lost the Page role; 190 with no subcode
    "error": {
        "message": "The user must be an administrator of the page in order to impersonate it.",
        "type": "OAuthException",
        "code": 190,
        "fbtrace_id": "Ape3HWIhSoF",
    }
}
PERMISSION_200 = {
    "error": {
        "message": "(#200) The user does not have sufficient administrative permission for this action on this page.",
        "type": "OAuthException",
        "code": 200,
        "fbtrace_id": "AbCdEf12345",
    }
}
UNSUPPORTED_GET_100_33 = {
    "error": {
        "message": "Unsupported get request. Object with ID '134895793791914' does not exist, cannot be loaded due "
        "to missing permissions, or does not support this operation. Please read the Graph API documentation at "
        "https://developers.facebook.com/docs/graph-api",
        "type": "GraphMethodException",
        "code": 100,
        "error_subcode": 33,
        "fbtrace_id": "A1b2C3d4",
    }
}


@pytest.mark.parametrize(
    ("body", "code", "subcode", "error_type", "words"),
    [
        (PAGE_ADMIN_190, 190, None, "OAuthException", "administrator of the page"),
        (PERMISSION_200, 200, None, "OAuthException", "sufficient administrative permission"),
        (UNSUPPORTED_GET_100_33, 100, 33, "GraphMethodException", "does not exist"),
    ],
    ids=["190-page-admin", "200-permission", "100-33-unsupported-get"],
)
def test_this_paths_error_shapes_become_typed_errors(client, requests_mock, body, code, subcode, error_type, words):
    requests_mock.get(f"{GRAPH}/me/accounts", status_code=400, json=body)
    with pytest.raises(MetaApiError) as raised:
        client.pages(LONG_TOKEN)
    error = raised.value
    assert (error.http_status, error.code, error.subcode, error.type) == (400, code, subcode, error_type)
    assert words in error.message and error.fbtrace_id == body["error"]["fbtrace_id"]


ECHOES = {
    "token": f"Malformed access token {LONG_TOKEN}",
    "app-token": f"Invalid OAuth access token signature: {APP_ID}|{APP_SECRET}",
    "secret": f"Error validating client secret {APP_SECRET}",
    "proof": f"Invalid appsecret_proof provided in the API argument {proof(LONG_TOKEN)}",
}


@pytest.mark.parametrize("call", ["exchange_code", "long_lived_user_token", "pages", "debug_token"])
@pytest.mark.parametrize("echo", ECHOES.values(), ids=ECHOES.keys())
def test_no_token_or_secret_survives_in_any_error(client, requests_mock, call, echo):
    """Meta quotes what it was sent; whatever the call sent stays out of the exception's every text."""
    for path in ("oauth/access_token", "me/accounts", "debug_token"):
        requests_mock.get(
            f"{GRAPH}/{path}",
            status_code=400,
            json={"error": {"message": echo, "type": "OAuthException", "code": 190, "error_user_msg": echo}},
        )
    arguments = {
        "exchange_code": (USER_TOKEN, "https://shop.example/facebook/callback"),
        "long_lived_user_token": (USER_TOKEN,),
        "pages": (LONG_TOKEN,),
        "debug_token": (LONG_TOKEN,),
    }[call]
    if call == "exchange_code":
        echo = echo.replace(LONG_TOKEN, USER_TOKEN)
    with pytest.raises(MetaApiError) as raised:
        getattr(client, call)(*arguments)
    error = raised.value
    texts = [str(error), repr(error), error.message, error.user_message or "", str(error.args)]
    # Only /me/accounts carries a proof (of the user token); the others send the app secret itself.
    secrets = (USER_TOKEN, LONG_TOKEN, APP_SECRET) + ((proof(LONG_TOKEN),) if call == "pages" else ())
    for secret in secrets:
        assert not any(secret in text for text in texts), (secret, texts)


def test_timeouts_and_broken_connections_are_typed_and_quote_no_url(client, requests_mock):
    requests_mock.get(f"{GRAPH}/me/accounts", exc=requests.ConnectTimeout(f"{GRAPH}/me/accounts?access_token=x"))
    with pytest.raises(MetaApiError) as raised:
        client.pages(LONG_TOKEN)
    assert raised.value.failure == "timeout" and "7.5 s" in str(raised.value)
    requests_mock.get(
        f"{GRAPH}/debug_token", exc=requests.ConnectionError(f"{GRAPH}/debug_token?access_token={APP_SECRET}")
    )
    with pytest.raises(MetaApiError) as raised:
        client.debug_token(PAGE_TOKEN)
    assert raised.value.failure == "connection" and APP_SECRET not in str(raised.value)


def test_the_app_builds_its_facebook_client_from_config(app):
    from webapp.services.runtime import facebook_client

    built = facebook_client()
    assert (built.app_id, built.app_secret) == (app.config["FACEBOOK_APP_ID"], app.config["FACEBOOK_APP_SECRET"])
    assert (
        built.graph_base == "https://graph.facebook.com" and built.graph_version == app.config["FACEBOOK_GRAPH_VERSION"]
    )
    assert built.timeout == app.config["INSTAGRAM_HTTP_TIMEOUT"]
