"""The sandbox's Facebook side answers as Facebook Login and the Graph API do, and each button breaks the next call."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from sqlalchemy import select

from testbed.client import csrf_token_from
from webapp.config import SANDBOX_FACEBOOK_APP_ID as SANDBOX_APP_ID
from webapp.config import SANDBOX_FACEBOOK_APP_SECRET as SANDBOX_APP_SECRET
from webapp.sandbox.facebook import PAGE_NOT_ACCESSIBLE, PAGE_ROLE_GONE, PAGE_TASKS_TOO_LOW
from webapp.sandbox.models import SandboxFacebookPage, SandboxFacebookUser
from webapp.services.meta import signed_request

GRAPH = "/sandbox/facebook/graph/v23.0"
REDIRECT_URI = "http://localhost/facebook/callback"
DEAUTHORIZE_URL = "http://localhost/facebook/deauthorize"
ACCOUNT_FIELDS = "id,name,access_token,tasks,instagram_business_account{id,username}"


@pytest.fixture
def app_config(app_config):
    # The sandbox's own Facebook app, as config.py sets it when no real credentials are given.
    return {
        **app_config,
        "INSTAGRAM_SANDBOX": True,
        "FACEBOOK_APP_ID": SANDBOX_APP_ID,
        "FACEBOOK_APP_SECRET": SANDBOX_APP_SECRET,
    }


def dialog_url(**params) -> str:
    query = {"client_id": SANDBOX_APP_ID, "redirect_uri": REDIRECT_URI, "state": "s1", "config_id": "cfg1"}
    return "/sandbox/facebook/v23.0/dialog/oauth?" + urlencode({**query, **params})


def authorize(client, name: str, **params) -> str:
    """Create (or reuse) a user by name in the dialog, press Continue, return the code."""
    url = dialog_url(**params)
    token = csrf_token_from(client.get(url).get_data(as_text=True))
    response = client.post(url, data={"csrf_token": token, "new_name": name, "decision": "allow"})
    assert response.status_code == 302
    location = response.headers["Location"]
    assert location.startswith(REDIRECT_URI + "?") and location.endswith("#_=_")
    query = parse_qs(urlsplit(location).query)
    assert query["state"] == ["s1"]
    return query["code"][0]


def graph(client, path: str, method: str = "GET", **params):
    return client.open(f"{GRAPH}{path}", method=method, query_string=params)


def exchange(client, code: str, method: str = "GET") -> dict:
    params = {
        "client_id": SANDBOX_APP_ID,
        "client_secret": SANDBOX_APP_SECRET,
        "redirect_uri": REDIRECT_URI,
        "code": code,
    }
    if method == "POST":
        response = client.post(f"{GRAPH}/oauth/access_token", data=params)
    else:
        response = graph(client, "/oauth/access_token", **params)
    assert response.status_code == 200, response.json
    return response.json


def long_lived(client, short_token: str) -> dict:
    response = graph(
        client,
        "/oauth/access_token",
        grant_type="fb_exchange_token",
        client_id=SANDBOX_APP_ID,
        client_secret=SANDBOX_APP_SECRET,
        fb_exchange_token=short_token,
    )
    assert response.status_code == 200, response.json
    return response.json


def connect(client, name: str = "Ana Lima") -> dict:
    """The whole path: dialog, code, long-lived user token, the Pages with their tokens."""
    short = exchange(client, authorize(client, name))
    user_token = long_lived(client, short["access_token"])["access_token"]
    pages = graph(client, "/me/accounts", access_token=user_token, fields=ACCOUNT_FIELDS).json["data"]
    linked = next(p for p in pages if "instagram_business_account" in p)
    unlinked = next(p for p in pages if "instagram_business_account" not in p)
    return {"user_token": user_token, "linked": linked, "unlinked": unlinked, "short": short["access_token"]}


def error_of(response) -> tuple:
    error = response.json["error"]
    assert error["fbtrace_id"]
    return response.status_code, error["code"], error.get("error_subcode"), error["type"], error["message"]


def press(client, kind: str, target_id: int, action: str):
    token = csrf_token_from(client.get("/sandbox/facebook/").get_data(as_text=True))
    response = client.post(f"/sandbox/facebook/{kind}/{target_id}/{action}", data={"csrf_token": token})
    assert response.status_code == 302
    return response


def user_named(db, name: str) -> SandboxFacebookUser:
    return db.session.scalar(select(SandboxFacebookUser).where(SandboxFacebookUser.name == name))


def page_with_id(db, page_id: str) -> SandboxFacebookPage:
    return db.session.scalar(select(SandboxFacebookPage).where(SandboxFacebookPage.page_id == page_id))


def debug(client, token: str) -> dict:
    response = graph(client, "/debug_token", input_token=token, access_token=f"{SANDBOX_APP_ID}|{SANDBOX_APP_SECRET}")
    assert response.status_code == 200
    return response.json["data"]


def test_demo_seed_gives_a_user_with_two_linked_pages_and_one_unlinked(runner, client):
    assert runner.invoke(args=["demo", "seed"]).exit_code == 0
    assert runner.invoke(args=["demo", "seed"]).exit_code == 0  # safe to run again
    page = client.get(dialog_url()).get_data(as_text=True)
    assert "Demo Merchant" in page
    assert "Instagram @tea_house<" in page.replace("</span>", "<")
    assert "Tea House Outlet" in page and "Instagram @tea_house_outlet" in page
    assert "Tea House Events" in page and "no Instagram account linked" in page


def test_picking_one_of_two_pages_grants_only_that_page(client, db):
    authorize(client, "Bo Chen")  # creates the user with both Pages granted
    user = user_named(db, "Bo Chen")
    chosen = user.pages[1].page_id
    url = dialog_url(config_id="", scope="instagram_basic,pages_show_list", auth_type="reauthorize")
    page = client.get(url).get_data(as_text=True)
    assert "Confirm it&#39;s you to renew access" in page
    response = client.post(
        url,
        data={
            "csrf_token": csrf_token_from(page),
            "user_id": user.id,
            f"pages_{user.id}": chosen,
            "decision": "allow",
        },
    )
    code = parse_qs(urlsplit(response.headers["Location"]).query)["code"][0]
    token = exchange(client, code)["access_token"]
    pages = graph(client, "/me/accounts", access_token=token).json["data"]
    assert [p["id"] for p in pages] == [chosen]
    assert debug(client, token)["scopes"] == ["public_profile", "instagram_basic", "pages_show_list"]


def test_cancel_redirects_with_facebooks_denial(client):
    url = dialog_url()
    token = csrf_token_from(client.get(url).get_data(as_text=True))
    response = client.post(url, data={"csrf_token": token, "decision": "cancel"})
    query = parse_qs(urlsplit(response.headers["Location"]).query)
    assert query["error"] == ["access_denied"] and query["error_reason"] == ["user_denied"]
    assert query["state"] == ["s1"]


@pytest.mark.parametrize(
    "params,message",
    [
        ({"client_id": "instagram-app"}, "Invalid App ID"),
        ({"redirect_uri": "javascript:alert(1)"}, "URL blocked"),
    ],
)
def test_the_dialog_refuses_a_wrong_app_or_redirect(client, params, message):
    response = client.get(dialog_url(**params))
    assert response.status_code == 400 and message in response.get_data(as_text=True)


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_code_exchange_gives_a_short_lived_user_token_once(client, method):
    code = authorize(client, "Cy Dube")
    body = exchange(client, code, method)
    assert set(body) == {"access_token", "token_type", "expires_in"}
    assert body["token_type"] == "bearer" and body["expires_in"] == 3600
    reused = graph(
        client,
        "/oauth/access_token",
        client_id=SANDBOX_APP_ID,
        client_secret=SANDBOX_APP_SECRET,
        redirect_uri=REDIRECT_URI,
        code=code,
    )
    assert error_of(reused)[1:] == (100, None, "OAuthException", "This authorization code has been used.")


def test_code_exchange_refuses_a_wrong_secret(client):
    code = authorize(client, "Di Eze")
    response = graph(
        client, "/oauth/access_token", client_id=SANDBOX_APP_ID, client_secret="x", redirect_uri=REDIRECT_URI, code=code
    )
    assert error_of(response)[1:] == (1, None, "OAuthException", "Error validating client secret.")


def test_fb_exchange_token_gives_a_60_day_user_token(client):
    short = exchange(client, authorize(client, "Ed Fox"))["access_token"]
    body = long_lived(client, short)
    assert body["token_type"] == "bearer" and body["expires_in"] == 60 * 24 * 3600
    assert body["access_token"] != short
    assert graph(client, "/me", access_token=body["access_token"]).status_code == 200


def test_me_and_me_accounts_answer_in_graphs_shape(client, db):
    connected = connect(client, "Flo Gray")
    user = user_named(db, "Flo Gray")
    me = graph(client, "/me", access_token=connected["user_token"]).json
    assert me == {"id": user.facebook_user_id, "name": "Flo Gray"}
    response = graph(client, "/me/accounts", access_token=connected["user_token"], fields=ACCOUNT_FIELDS).json
    assert [p["name"] for p in response["data"]] == ["Flo Gray Shop", "Flo Gray Outlet"]
    linked = response["data"][0]
    assert set(linked) == {"id", "name", "access_token", "tasks", "instagram_business_account"}
    assert linked["tasks"] == ["ANALYZE", "ADVERTISE", "MODERATE", "CREATE_CONTENT", "MANAGE"]
    assert linked["instagram_business_account"] == {
        "id": user.pages[0].instagram_account_id,
        "username": "flo_gray_shop",
    }
    assert set(response["paging"]["cursors"]) == {"before", "after"} and "next" not in response["paging"]
    default = graph(client, "/me/accounts", access_token=connected["user_token"]).json["data"][0]
    assert set(default) == {"access_token", "category", "name", "id", "tasks"}


def test_me_accounts_pages_through_with_cursors(client):
    token = connect(client)["user_token"]
    first = graph(client, "/me/accounts", access_token=token, limit="1").json
    assert len(first["data"]) == 1 and "next" in first["paging"]
    second = graph(client, "/me/accounts", access_token=token, limit="1", after=first["paging"]["cursors"]["after"])
    assert len(second.json["data"]) == 1 and second.json["data"][0]["id"] != first["data"][0]["id"]
    assert "next" not in second.json["paging"]


def test_page_node_answers_its_instagram_business_account(client):
    connected = connect(client)
    page, instagram = connected["linked"], connected["linked"]["instagram_business_account"]
    for token in (connected["user_token"], page["access_token"]):
        body = graph(client, f"/{page['id']}", access_token=token, fields="instagram_business_account").json
        assert body == {"instagram_business_account": {"id": instagram["id"]}, "id": page["id"]}
    unlinked = connected["unlinked"]
    body = graph(
        client, f"/{unlinked['id']}", access_token=connected["user_token"], fields="instagram_business_account"
    )
    assert body.json == {"id": unlinked["id"]}
    account = graph(client, f"/{instagram['id']}", access_token=page["access_token"], fields="id,username").json
    assert account == instagram


def test_debug_token_tells_validity_expiry_data_access_and_targets(client, db):
    connected = connect(client, "Gil Hart")
    user = user_named(db, "Gil Hart")
    data = debug(client, connected["user_token"])
    assert data["is_valid"] is True and data["type"] == "USER" and data["app_id"] == SANDBOX_APP_ID
    assert data["user_id"] == user.facebook_user_id
    assert data["expires_at"] > data["issued_at"]
    assert data["data_access_expires_at"] == int(user.data_access_expires_at.timestamp())
    assert "instagram_basic" in data["scopes"] and "public_profile" in data["scopes"]
    targets = {g["scope"]: g.get("target_ids") for g in data["granular_scopes"]}
    assert targets["instagram_basic"] == [connected["linked"]["instagram_business_account"]["id"]]
    assert sorted(targets["pages_show_list"]) == sorted([connected["linked"]["id"], connected["unlinked"]["id"]])
    assert targets["public_profile"] is None
    page_data = debug(client, connected["linked"]["access_token"])
    assert page_data["type"] == "PAGE" and page_data["expires_at"] == 0
    assert page_data["profile_id"] == connected["linked"]["id"]


def test_a_page_token_from_a_short_lived_user_token_expires_with_it(client):
    short = exchange(client, authorize(client, "Hal Ito"))["access_token"]
    page = graph(client, "/me/accounts", access_token=short).json["data"][0]
    assert debug(client, page["access_token"])["expires_at"] == debug(client, short)["expires_at"] > 0


def test_debug_token_needs_the_app_token(client):
    token = connect(client)["user_token"]
    response = graph(client, "/debug_token", input_token=token, access_token=token)
    assert error_of(response)[1:3] == (100, None)
    assert "You must provide an app access token" in error_of(response)[4]


def test_appsecret_proof_is_checked_when_sent(client):
    token = connect(client)["user_token"]
    proof = hmac.new(SANDBOX_APP_SECRET.encode(), token.encode(), hashlib.sha256).hexdigest()
    assert graph(client, "/me", access_token=token, appsecret_proof=proof).status_code == 200
    wrong = graph(client, "/me", access_token=token, appsecret_proof="0" * 64)
    assert error_of(wrong) == (
        400,
        100,
        None,
        "GraphMethodException",
        "Invalid appsecret_proof provided in the API argument",
    )


@pytest.mark.parametrize(
    "kind,action,call,expected",
    [
        ("users", "change_password", "me", (190, 460, "OAuthException", "changed their password")),
        ("users", "checkpoint", "me", (190, 459, "OAuthException", "log in to www.facebook.com")),
        ("users", "remove_app", "me", (190, 458, "OAuthException", "has not authorized application")),
        ("users", "expire_data_access", "me", (190, 493, "OAuthException", "longer than 90 days")),
        ("pages", "lower_tasks", "page_node", (200, None, "OAuthException", PAGE_TASKS_TOO_LOW)),
        ("pages", "remove_role", "page_token_me", (190, None, "OAuthException", PAGE_ROLE_GONE)),
        ("pages", "unpublish", "page_token_me", (190, None, "OAuthException", PAGE_NOT_ACCESSIBLE)),
        ("pages", "unpublish", "page_node", (100, 33, "GraphMethodException", "Unsupported get request.")),
        ("pages", "delete", "page_node", (100, 33, "GraphMethodException", "Unsupported get request.")),
        ("pages", "unlink_instagram", "instagram_node", (100, 33, "GraphMethodException", "Unsupported get request.")),
    ],
)
def test_each_button_makes_the_next_call_fail_as_meta_does(client, db, requests_mock, kind, action, call, expected):
    requests_mock.post(DEAUTHORIZE_URL, status_code=200)
    connected = connect(client, "Ida Jones")
    page = connected["linked"]
    calls = {
        "me": lambda: graph(client, "/me", access_token=connected["user_token"]),
        "page_token_me": lambda: graph(client, "/me", access_token=page["access_token"]),
        "page_node": lambda: graph(
            client, f"/{page['id']}", access_token=connected["user_token"], fields="instagram_business_account"
        ),
        "instagram_node": lambda: graph(
            client, f"/{page['instagram_business_account']['id']}", access_token=page["access_token"]
        ),
    }
    assert calls[call]().status_code == 200
    target = user_named(db, "Ida Jones").id if kind == "users" else page_with_id(db, page["id"]).id
    press(client, kind, target, action)
    status, code, subcode, error_type, message = error_of(calls[call]())
    assert (status, code, subcode, error_type) == (400, *expected[:3])
    assert expected[3] in message
    if action != "remove_app" and action != "change_password":
        press(client, "users", user_named(db, "Ida Jones").id, "reset")
        assert calls[call]().status_code == 200


def test_removing_the_role_or_deleting_the_page_drops_it_from_me_accounts(client, db):
    connected = connect(client)
    press(client, "pages", page_with_id(db, connected["linked"]["id"]).id, "remove_role")
    press(client, "pages", page_with_id(db, connected["unlinked"]["id"]).id, "delete")
    assert graph(client, "/me/accounts", access_token=connected["user_token"]).json == {"data": []}


def test_unlinking_instagram_empties_the_pages_link_and_the_target_ids(client, db):
    connected = connect(client)
    page = connected["linked"]
    press(client, "pages", page_with_id(db, page["id"]).id, "unlink_instagram")
    body = graph(client, f"/{page['id']}", access_token=page["access_token"], fields="instagram_business_account")
    assert body.json == {"id": page["id"]}
    accounts = graph(client, "/me/accounts", access_token=connected["user_token"], fields=ACCOUNT_FIELDS).json
    assert all("instagram_business_account" not in p for p in accounts["data"])
    targets = {g["scope"]: g.get("target_ids") for g in debug(client, connected["user_token"])["granular_scopes"]}
    assert targets["instagram_basic"] == []


def test_lapsed_data_access_shows_in_debug_token_and_renewing_restores_it(client, db):
    connected = connect(client, "Jo King")
    press(client, "users", user_named(db, "Jo King").id, "expire_data_access")
    data = debug(client, connected["user_token"])
    assert data["data_access_expires_at"] < datetime.now(UTC).timestamp()
    assert data["is_valid"] is False and data["error"]["subcode"] == 493
    authorize(client, "Jo King", auth_type="reauthorize")  # "Renew access"
    assert debug(client, connected["user_token"])["is_valid"] is True


def test_removing_the_app_sends_a_deauthorize_signed_with_the_facebook_apps_secret(client, db, requests_mock):
    requests_mock.post(DEAUTHORIZE_URL, status_code=200)
    connect(client, "Kai Lund")
    user = user_named(db, "Kai Lund")
    response = press(client, "users", user.id, "remove_app")
    assert requests_mock.call_count == 1
    sent = parse_qs(requests_mock.last_request.text)
    payload = signed_request.parse(sent["signed_request"][0], SANDBOX_APP_SECRET)
    assert payload["user_id"] == user.facebook_user_id and payload["algorithm"] == "HMAC-SHA256"
    with pytest.raises(signed_request.SignedRequestError):
        signed_request.parse(sent["signed_request"][0], "sandbox-app-secret")  # not the Instagram app's
    panel = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Deauthorize callback delivered (HTTP 200)." in panel


def test_no_token_or_code_appears_in_the_panel(client):
    code = authorize(client, "Lu Moss")
    short = exchange(client, code)["access_token"]
    user_token = long_lived(client, short)["access_token"]
    pages = graph(client, "/me/accounts", access_token=user_token).json["data"]
    panel = client.get("/sandbox/facebook/").get_data(as_text=True)
    assert "Lu Moss Shop" in panel and "Lu Moss Outlet" in panel
    for secret in (code, short, user_token, *(p["access_token"] for p in pages), SANDBOX_APP_SECRET):
        assert secret not in panel


def test_a_button_makes_the_dashboard_check_the_connections_it_broke(client, db, now):
    from datetime import timedelta

    from tests import factories
    from webapp.models import LoginPath

    code = authorize(client, "Nudge Owner")
    assert code
    user = db.session.scalar(select(SandboxFacebookUser).where(SandboxFacebookUser.name == "Nudge Owner"))
    linked_page, other_page = user.pages
    later = now + timedelta(hours=5)
    on_page = factories.make_connection(
        login_path=LoginPath.FACEBOOK, facebook_page_id=linked_page.page_id, check_due_at=later
    )
    elsewhere = factories.make_connection(
        login_path=LoginPath.FACEBOOK, facebook_page_id="999", facebook_user_id="888", check_due_at=later
    )
    press(client, "pages", linked_page.id, "unlink_instagram")
    db.session.expire_all()
    assert on_page.check_due_at <= datetime.now(UTC) and elsewhere.check_due_at == later
    on_user = factories.make_connection(
        login_path=LoginPath.FACEBOOK, facebook_user_id=user.facebook_user_id, check_due_at=later
    )
    press(client, "users", user.id, "change_password")
    db.session.expire_all()
    assert on_user.check_due_at <= datetime.now(UTC) and elsewhere.check_due_at == later


def test_linking_instagram_to_the_second_page_gives_the_merchant_two_pages_to_choose_from(client, db):
    connected = connect(client, "Two Pages")
    press(client, "pages", page_with_id(db, connected["unlinked"]["id"]).id, "link_instagram")
    pages = graph(client, "/me/accounts", access_token=connected["user_token"], fields=ACCOUNT_FIELDS).json["data"]
    linked = [p["instagram_business_account"] for p in pages if "instagram_business_account" in p]
    assert len(linked) == 2 and linked[0]["id"] != linked[1]["id"]
    assert {account["username"] for account in linked} == {"two_pages_shop", "two_pages_outlet"}
