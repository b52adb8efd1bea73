"""The Meta client against Meta's real URLs (requests-mock; anything unregistered fails)."""

from __future__ import annotations

import json

import pytest
import requests

from webapp.services.meta.classifier import classify_error
from webapp.services.meta.client import (
    AccountNotProfessional,
    InstagramClient,
    MetaApiError,
    parse_error_body,
)

API = "https://api.instagram.com"
GRAPH = "https://graph.instagram.com"


@pytest.fixture
def client():
    return InstagramClient(client_id="123", client_secret="shh", api_base=API, graph_base=GRAPH, timeout=7.5)


@pytest.mark.parametrize(
    "body",
    [
        {
            "data": [
                {
                    "access_token": "IGQshort",
                    "user_id": "1020",
                    "permissions": "instagram_business_basic,instagram_business_manage_comments",
                }
            ]
        },
        {
            "access_token": "IGQshort",
            "user_id": 1020,
            "permissions": ["instagram_business_basic", "instagram_business_manage_comments"],
        },
    ],
    ids=["documented-data-shape", "flat-shape"],
)
def test_exchange_code_parses_both_documented_shapes(client, requests_mock, body):
    requests_mock.post(f"{API}/oauth/access_token", json=body)
    grant = client.exchange_code("the-code#_", "https://shop.example/instagram/callback")
    assert grant.access_token == "IGQshort"
    assert grant.user_id == "1020"
    assert grant.permissions == ("instagram_business_basic", "instagram_business_manage_comments")
    sent = requests_mock.last_request
    form = dict(pair.split("=") for pair in sent.text.split("&"))
    assert form["code"] == "the-code"  # Meta's "#_" suffix is not part of the code
    assert form["grant_type"] == "authorization_code"
    assert form["redirect_uri"] == "https%3A%2F%2Fshop.example%2Finstagram%2Fcallback"
    assert sent.timeout == 7.5


def test_long_lived_exchange_and_refresh(client, requests_mock):
    requests_mock.get(
        f"{GRAPH}/access_token?grant_type=ig_exchange_token",
        json={"access_token": "IGAAlong", "token_type": "bearer", "expires_in": 5183944},
    )
    requests_mock.get(
        f"{GRAPH}/refresh_access_token?grant_type=ig_refresh_token",
        json={"access_token": "IGAAnewer", "token_type": "bearer", "expires_in": 5184000},
        headers={"X-App-Usage": '{"call_count":93,"total_cputime":1,"total_time":2}'},
    )
    long_grant = client.exchange_for_long_lived("IGQshort")
    assert (long_grant.access_token, long_grant.expires_in, long_grant.token_type) == ("IGAAlong", 5183944, "bearer")
    assert requests_mock.last_request.qs["client_secret"] == ["shh"]
    refreshed = client.refresh("IGAAlong")
    assert refreshed.access_token == "IGAAnewer"
    assert refreshed.usage.highest_percent == 93 and long_grant.usage.highest_percent == 0
    assert requests_mock.last_request.method == "GET"
    assert all(request.timeout == 7.5 for request in requests_mock.request_history)


def test_me_reads_the_profile_and_usage(client, requests_mock):
    requests_mock.get(
        f"{GRAPH}/v23.0/me",
        json={"user_id": "17841405822304914", "username": "bloom", "name": "Bloom", "account_type": "BUSINESS"},
        headers={
            "X-App-Usage": '{"call_count":2,"total_cputime":0,"total_time":8}',
            "X-Business-Use-Case-Usage": json.dumps(
                {
                    "1784": [
                        {
                            "type": "instagram",
                            "call_count": 91,
                            "total_cputime": 4,
                            "total_time": 5,
                            "estimated_time_to_regain_access": 12,
                        }
                    ]
                }
            ),
        },
    )
    profile = client.me("IGAAlong")
    assert profile.user_id == "17841405822304914" and profile.username == "bloom"
    assert profile.profile_picture_url is None
    assert profile.usage.highest_percent == 91
    assert profile.usage.regain_access_minutes == 12
    assert "user_id" in requests_mock.last_request.qs["fields"][0]


def test_me_asks_for_documented_fields_and_keeps_both_ids(client, requests_mock):
    """Issue 14, parts 5 and 7: user_id and username, then optional fields; /me's id is a different number."""
    requests_mock.get(
        f"{GRAPH}/v23.0/me", json={"user_id": "17841405822304914", "id": "9912345678901234", "username": "bloom"}
    )
    profile = client.me("IGAAlong")
    fields = requests_mock.last_request.qs["fields"][0].split(",")
    assert fields[:2] == ["user_id", "username"]
    assert set(fields) == {"user_id", "username", "id", "name", "profile_picture_url", "account_type"}
    assert (profile.user_id, profile.scoped_id) == ("17841405822304914", "9912345678901234")


NONEXISTING_FIELD = {
    "error": {
        "message": "(#100) Tried accessing nonexisting field (account_type) on node type (User)",
        "type": "IGApiException",
        "code": 100,
        "fbtrace_id": "AxY",
    }
}


def test_a_refused_optional_field_is_dropped_once_and_not_asked_again(client, requests_mock):
    """Issue 14, part 7: one retry with the required fields; this client then stops asking for it."""

    def answer(request, context):
        if "account_type" in request.qs["fields"][0]:
            context.status_code = 400
            return NONEXISTING_FIELD
        return {"user_id": "17841405822304914", "username": "bloom", "id": "99"}

    requests_mock.get(f"{GRAPH}/v23.0/me", json=answer)
    assert client.me("IGAAlong").user_id == "17841405822304914"
    asked = [request.qs["fields"][0] for request in requests_mock.request_history]
    assert len(asked) == 2 and asked[1] == "user_id,username"
    assert client.refused_profile_fields == {"account_type"}

    profile = client.me("IGAAlong")
    assert requests_mock.call_count == 3
    assert requests_mock.last_request.qs["fields"][0] == "user_id,username,id,name,profile_picture_url"
    assert profile.scoped_id == "99" and profile.account_type is None


def test_a_field_refusal_that_names_no_field_we_asked_drops_every_optional_one(client, requests_mock):
    refusal = {"error": {**NONEXISTING_FIELD["error"], "message": "(#100) Tried accessing nonexisting field ()"}}
    requests_mock.get(
        f"{GRAPH}/v23.0/me",
        [{"status_code": 400, "json": refusal}, {"json": {"user_id": "1784", "username": "bloom"}}],
    )
    assert client.me("IGAAlong").username == "bloom"
    assert client.refused_profile_fields == {"id", "name", "profile_picture_url", "account_type"}


@pytest.mark.parametrize(
    "message",
    [
        "(#100) Tried accessing nonexisting field (user_id) on node type (User)",  # a required field
        "(#100) The parameter fields is invalid",  # code 100, but no field refused
    ],
)
def test_other_refusals_are_not_retried(client, requests_mock, message):
    body = {"error": {**NONEXISTING_FIELD["error"], "message": message}}
    requests_mock.get(f"{GRAPH}/v23.0/me", status_code=400, json=body)
    with pytest.raises(MetaApiError, match="#100"):
        client.me("IGAAlong")
    assert requests_mock.call_count == 1 and client.refused_profile_fields == frozenset()


def test_a_retry_that_fails_too_raises_its_own_error(client, requests_mock):
    token_error = {"error": {"message": "Error validating access token", "type": "OAuthException", "code": 190}}
    requests_mock.get(
        f"{GRAPH}/v23.0/me",
        [{"status_code": 400, "json": NONEXISTING_FIELD}, {"status_code": 400, "json": token_error}],
    )
    with pytest.raises(MetaApiError) as caught:
        client.me("IGAAlong")
    assert caught.value.code == 190 and requests_mock.call_count == 2


@pytest.mark.parametrize("account_type", ["BUSINESS", "MEDIA_CREATOR", "SOMETHING_NEW", None])
def test_professional_or_unknown_account_types_pass(client, requests_mock, account_type):
    body = {"user_id": "1784", "username": "bloom", "account_type": account_type}
    requests_mock.get(f"{GRAPH}/v23.0/me", json={k: v for k, v in body.items() if v})
    assert client.me("IGAAlong").account_type == account_type


def test_a_personal_account_is_refused_as_not_professional(client, requests_mock):
    """account_type PERSONAL is the same fact as Meta's '(#10) The user is not an Instagram Business'."""
    requests_mock.get(f"{GRAPH}/v23.0/me", json={"user_id": "1784", "username": "bloom", "account_type": "PERSONAL"})
    with pytest.raises(AccountNotProfessional) as caught:
        client.me("IGAAlong")
    assert caught.value.account_type == "PERSONAL" and "PERSONAL" in str(caught.value)
    classification = classify_error(caught.value)
    assert classification.cause == "account_not_professional" and classification.needs_reconnect


@pytest.mark.parametrize("body", [{"id": "99", "username": "bloom"}, {"user_id": {"id": "1"}}, {"user_id": ""}])
def test_a_profile_without_the_account_id_is_malformed(client, requests_mock, body):
    """/me's id is the app-scoped id, not the account's: it never stands in for a missing user_id."""
    requests_mock.get(f"{GRAPH}/v23.0/me", json=body)
    with pytest.raises(MetaApiError) as caught:
        client.me("IGAAlong")
    assert caught.value.failure == "malformed"


@pytest.mark.parametrize(
    "status,body,expected",
    [
        (
            400,
            {
                "error_type": "OAuthException",
                "code": 400,
                "error_message": "Matching code was not found or was already used",
            },
            {
                "code": 400,
                "type": "OAuthException",
                "subcode": None,
                "message": "Matching code was not found or was already used",
            },
        ),
        (
            400,
            {
                "error": {
                    "message": "Error validating access token: The user has not authorized application 123.",
                    "type": "OAuthException",
                    "code": 190,
                    "error_subcode": 458,
                    "fbtrace_id": "AbC",
                }
            },
            {"code": 190, "subcode": 458, "type": "OAuthException", "fbtrace_id": "AbC"},
        ),
        (
            400,
            {
                "error": {
                    "message": "Unsupported get request.",
                    "type": "IGApiException",
                    "code": 100,
                    "error_subcode": 33,
                    "fbtrace_id": "x",
                }
            },
            {"code": 100, "subcode": 33, "type": "IGApiException"},
        ),
        (
            400,
            {
                "error": {
                    "message": "The user is enrolled in a blocking, logged-in checkpoint",
                    "type": "OAuthException",
                    "code": 190,
                    "error_data": '{"error_subcode": 490}',
                }
            },
            {"code": 190, "subcode": 490},
        ),
        (
            400,
            {
                "meta": {
                    "error_type": "OAuthAccessTokenException",
                    "code": 400,
                    "error_message": "The access_token provided is invalid.",
                }
            },
            {"type": "OAuthAccessTokenException", "code": 400},
        ),
        (
            400,
            {"message": "Business and user permissions are mutually exclusive", "status": "fail"},
            {"message": "Business and user permissions are mutually exclusive", "code": None},
        ),
        (
            500,
            {
                "error": {
                    "message": "An unexpected error has occurred. Please retry your request later.",
                    "type": "OAuthException",
                    "is_transient": True,
                    "code": 2,
                }
            },
            {"code": 2, "is_transient": True, "http_status": 500},
        ),
    ],
    ids=[
        "flat-oauth",
        "graph-190-458",
        "ig-api-exception",
        "error-data-string",
        "legacy-v1",
        "status-fail",
        "transient-500",
    ],
)
def test_every_error_shape_becomes_one_typed_exception(client, requests_mock, status, body, expected):
    requests_mock.get(f"{GRAPH}/v23.0/me", status_code=status, json=body)
    with pytest.raises(MetaApiError) as caught:
        client.me("IGAAtoken")
    error = caught.value
    for attribute, value in expected.items():
        assert getattr(error, attribute) == value, attribute
    assert error.http_status == status
    assert error.failure == "error_response"


def test_timeout_connection_error_and_garbage_are_typed_too(client, requests_mock):
    requests_mock.get(f"{GRAPH}/refresh_access_token", exc=requests.ReadTimeout)
    with pytest.raises(MetaApiError) as caught:
        client.refresh("IGAAsecret-token-value")
    assert caught.value.failure == "timeout" and "7.5 s" in caught.value.message

    requests_mock.get(
        f"{GRAPH}/refresh_access_token",
        exc=requests.ConnectionError("url: /refresh_access_token?access_token=IGAAsecret-token-value"),
    )
    with pytest.raises(MetaApiError) as caught:
        client.refresh("IGAAsecret-token-value")
    assert caught.value.failure == "connection"
    assert "IGAAsecret" not in str(caught.value) and caught.value.__cause__ is None

    requests_mock.get(f"{GRAPH}/refresh_access_token", status_code=502, text="<html>Bad Gateway</html>")
    with pytest.raises(MetaApiError) as caught:
        client.refresh("IGAAsecret-token-value")
    assert (caught.value.failure, caught.value.http_status) == ("malformed", 502)

    requests_mock.get(f"{GRAPH}/refresh_access_token", json={"token_type": "bearer"})
    with pytest.raises(MetaApiError) as caught:
        client.refresh("IGAAsecret-token-value")
    assert caught.value.failure == "malformed"

    requests_mock.get(f"{GRAPH}/refresh_access_token", json=["not", "an", "object"])
    with pytest.raises(MetaApiError) as caught:
        client.refresh("IGAAsecret-token-value")
    assert caught.value.failure == "malformed"


def test_parse_error_body_ignores_success_bodies():
    assert parse_error_body({"access_token": "x"}) is None
    assert parse_error_body("text") is None


def test_a_token_quoted_at_the_edge_of_an_error_page_leaves_no_half_behind(client, requests_mock):
    """Promise 34: secrets come out of a non-JSON error page before it is cut to 200 characters."""
    token = "zz-plain-token-4f9d81c2aa7e"
    page = "<html>" + "x" * 185 + f" token={token}</html>"  # the cut at 200 falls inside the token
    requests_mock.get("https://graph.instagram.com/refresh_access_token", status_code=502, text=page)
    with pytest.raises(MetaApiError) as raised:
        client.refresh(token)
    assert "zz-plain" not in raised.value.message and token[-8:] not in raised.value.message


@pytest.mark.parametrize(
    "text, kept",
    [
        ("Health check passed for @IGNITE_fitness_studio_berlin_official", True),
        ("(#100) Tried accessing nonexisting field (foo) on node type (IGUserMediaProductTagCollection)", True),
        ("appsecret_proof 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 invalid", True),
        (
            "https://scontent.cdninstagram.com/v/t51.2885-19/448_n.jpg?_nc_ohc=AbCdEfGhIjKlMnOpQrStUvWxYz0123456789ab",
            True,
        ),
        ("Malformed access token IGQVJWZAmRlZAl9xVGFfNkZAqSnJuZAFdwLTFtSUlYcW1lUnBCcHdq", False),
        ("Invalid OAuth access token: IGAAJZBkqh7LjdBZAE1SR2xJNm9abcdEFGh0 (code 190)", False),
        ("session key EAAGm0PX4ZCpsBAKZCr3VEbIyZBB4eZCZBb6GZAhSVZBcdD4bgo was invalidated", False),
        ("Invalid token 990011223344|5f4dcc3b5aa765d61d8327deb882cf99", False),
        ("tokenIGQVJWZAmRlZAl9xVGFfNkZAqSnJuZAFd", False),
    ],
)
def test_redact_removes_token_shapes_and_keeps_the_words_people_read(text, kept):
    """Promise 34/15: anything shaped like a Meta token goes; usernames, type names, hashes and URLs stay."""
    from webapp.logging_filters import redact

    assert (redact(text) == text) is kept


@pytest.mark.parametrize(
    "text",
    [
        "[" * 100_000 + "]" * 100_000,
        '{"error": {"message": "x", "code": 1e999, "error_subcode": 99999999999999999999999}}',
        '{"error": {"message": "x", "code": 190, "error_data": "' + "[" * 50_000 + '"}}',
        '{"user_id": NaN}',
    ],
    ids=["deep-body", "huge-numbers", "deep-error-data", "nan"],
)
def test_hostile_bodies_from_meta_become_typed_errors(client, requests_mock, text):
    """Promise 5/39: a body Meta (or a proxy) should never send is a MetaApiError, never a crash."""
    requests_mock.get(f"{GRAPH}/v23.0/me", status_code=400, text=text)
    with pytest.raises(MetaApiError):
        client.me("IGQVtoken")
