"""Connecting through Facebook Login for Business (issue 15, part 1): the dialog, the callback, the Page picker."""

from __future__ import annotations

import hashlib
import hmac
import html
import logging
import re
import time
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import func, select

from tests.conftest import TEST_FACEBOOK_APP_ID, TEST_FACEBOOK_APP_SECRET
from tests.facebook_helpers import (
    ADMIN_TASKS,
    FACEBOOK_USER_ID,
    GRAPH,
    LONG_USER_TOKEN,
    SHORT_USER_TOKEN,
    TEA_HOUSE,
    TEA_HOUSE_IG,
    TEA_HOUSE_OUTLET,
    FakeFacebook,
    facebook_connect,
    fake_page,
    start_facebook_connect,
)
from tests.instagram_helpers import FakeInstagram, connect
from webapp.config import DEFAULT_FACEBOOK_SCOPES
from webapp.models import ConnectionEvent, InstagramConnection, PendingFacebookLogin
from webapp.services.connections import connect_errors
from webapp.services.runtime import token_vault

GARDEN = fake_page("104000000000003", "Garden Room", instagram_id="17841400000000888", username="garden_room")
CALLBACK = "http://localhost/facebook/callback"


@pytest.fixture
def facebook(requests_mock, pinned_clock):
    return FakeFacebook(requests_mock, pinned_clock).install()


def connection_of(db, user) -> InstagramConnection | None:
    db.session.expire_all()
    return db.session.scalar(select(InstagramConnection).where(InstagramConnection.shop_id == user.shop_id))


def pending_count(db) -> int:
    db.session.expire_all()
    return db.session.scalar(select(func.count()).select_from(PendingFacebookLogin))


def page_text(response) -> str:
    """The words a person reads: tags gone, entities decoded, white space as one space."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", response.get_data(as_text=True))).split())


def dashboard_text(client) -> str:
    return page_text(client.get("/"))


def not_connected(db, user) -> bool:
    connection = connection_of(db, user)
    return connection is None or (connection.token_ciphertext is None and connection.connected_at is None)


def events(db, kind: str | None = None) -> list[ConnectionEvent]:
    db.session.expire_all()
    query = select(ConnectionEvent).order_by(ConnectionEvent.id)
    if kind:
        query = query.where(ConnectionEvent.kind == kind)
    return list(db.session.scalars(query))


def pick(client, page_id: str):
    token = _csrf(client.get("/facebook/pages"))
    return client.post("/facebook/pages", data={"csrf_token": token, "page_id": page_id})


def _csrf(response) -> str:
    from testbed.client import csrf_token_from

    return csrf_token_from(response.get_data(as_text=True))


# --- Starting the login -------------------------------------------------------------------------


def test_connect_needs_a_post_with_a_csrf_token(client, auth, merchant, facebook):
    assert client.get("/facebook/connect").status_code == 405
    refused = client.post("/facebook/connect", data={})
    assert refused.status_code == 400 and "Location" not in refused.headers
    assert facebook.exchanged_codes == []


def test_connect_redirects_to_facebooks_dialog_with_the_scopes(client, auth, merchant):
    response, state, query = start_facebook_connect(client, auth.csrf_token("/"))
    assert response.status_code == 302
    location = urlsplit(response.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == "https://www.facebook.com/v23.0/dialog/oauth"
    assert query["client_id"] == [TEST_FACEBOOK_APP_ID]
    assert query["redirect_uri"] == [CALLBACK]
    assert query["response_type"] == ["code"]
    assert query["scope"] == [DEFAULT_FACEBOOK_SCOPES]
    assert "config_id" not in query and "auth_type" not in query
    assert len(state) >= 20
    with client.session_transaction() as session:
        assert f"_state_facebook_{state}" in session


@pytest.mark.options(FACEBOOK_LOGIN_CONFIG_ID="1203300000000042")
def test_a_login_configuration_replaces_the_scopes(client, auth, merchant):
    _, _, query = start_facebook_connect(client, auth.csrf_token("/"))
    assert query["config_id"] == ["1203300000000042"]
    assert "scope" not in query


def test_renewing_asks_facebook_to_confirm_the_person_again(client, auth, merchant):
    _, _, query = start_facebook_connect(client, auth.csrf_token("/"), renew="1")
    assert query["auth_type"] == ["reauthorize"]
    assert query["scope"] == [DEFAULT_FACEBOOK_SCOPES]


@pytest.mark.options(LOGIN_PATHS=("instagram",))
def test_every_page_of_the_login_is_refused_when_the_path_is_not_offered(client, auth, merchant):
    token = auth.csrf_token("/")
    for response in (
        client.post("/facebook/connect", data={"csrf_token": token}),
        client.get("/facebook/callback?code=c&state=s"),
        client.get("/facebook/pages"),
    ):
        assert response.status_code == 404
        assert "Connecting through Facebook is not offered here" in page_text(response)


def test_staff_cannot_connect_for_a_shop(client, auth):
    from tests.factories import make_user

    auth.login_as(make_user(role="support"))
    assert client.post("/facebook/connect", data={"csrf_token": auth.csrf_token("/")}).status_code == 403


# --- The reply ----------------------------------------------------------------------------------


@pytest.mark.parametrize("bad_state", ["missing", "wrong", "expired"])
def test_a_reply_this_browser_did_not_ask_for_is_refused_and_nothing_is_recorded(
    client, auth, merchant, facebook, db, requests_mock, bad_state
):
    _, state, _ = start_facebook_connect(client, auth.csrf_token("/"))
    if bad_state == "expired":
        with client.session_transaction() as session:
            session[f"_state_facebook_{state}"]["exp"] = time.time() - 1
            session.modified = True
    reply = {"missing": "", "wrong": "&state=not-the-state", "expired": f"&state={state}"}[bad_state]
    response = client.get(f"/facebook/callback?code=AQforged{reply}")
    assert response.status_code == 400
    assert connect_errors.worded(connect_errors.REPLY_NOT_OURS, "facebook") in page_text(response)
    assert requests_mock.call_count == 0  # Meta never heard of it
    assert not_connected(db, merchant) and events(db) == [] and pending_count(db) == 0


def test_cancelling_on_facebook_changes_nothing(client, auth, merchant, facebook, db):
    _, state, _ = start_facebook_connect(client, auth.csrf_token("/"))
    response = client.get(
        "/facebook/callback?error=access_denied&error_code=200&error_description=Permissions+error"
        f"&error_reason=user_denied&state={state}"
    )
    assert response.status_code == 302 and response.headers["Location"] == "/"
    assert "You cancelled the Facebook login. Nothing was changed." in dashboard_text(client)
    [refusal] = events(db)
    assert refusal.kind == connect_errors.REFUSAL_KINDS[connect_errors.Step.LOGIN_PAGE]
    assert refusal.message.startswith("Facebook Login: access_denied")
    assert facebook.exchanged_codes == [] and not_connected(db, merchant)


def test_the_whole_login_with_one_linked_page_connects_at_once(client, auth, merchant, facebook, db, requests_mock):
    response = facebook_connect(client, auth)
    assert response.status_code == 302 and response.headers["Location"] == "/"
    assert "Instagram connected: @tea_house, through your Facebook Page “Tea House”." in dashboard_text(client)
    assert facebook.exchanged_codes == [("AQfb-code-123", CALLBACK)]
    connection = connection_of(db, merchant)
    vault = token_vault()
    assert (connection.login_path, connection.state) == ("facebook", "healthy")
    assert (connection.instagram_user_id, connection.username) == (TEA_HOUSE_IG, "tea_house")
    assert (connection.facebook_user_id, connection.facebook_page_id) == (FACEBOOK_USER_ID, TEA_HOUSE["id"])
    assert (connection.facebook_page_name, connection.page_tasks) == ("Tea House", ADMIN_TASKS)
    assert vault.decrypt(connection.token_ciphertext) == TEA_HOUSE["access_token"]  # the Page's token
    assert vault.decrypt(connection.user_token_ciphertext) == LONG_USER_TOKEN
    assert connection.user_token_expires_at == facebook.now + timedelta(seconds=5183944)
    # The Page token has no end date of its own: the data access window's end is its date.
    assert connection.token_expires_at == facebook.data_access_expires_at
    assert connection.token_issued_at == connection.connected_at == facebook.now
    assert "instagram_basic" in connection.permissions and "pages_show_list" in connection.permissions
    [connected] = events(db)
    assert (connected.kind, connected.actor_kind, connected.instagram_user_id) == (
        "connected",
        "merchant",
        TEA_HOUSE_IG,
    )
    assert connected.message == "Connected @tea_house through the Facebook Page “Tea House”."
    assert facebook.debugged == [LONG_USER_TOKEN, TEA_HOUSE["access_token"]]
    assert pending_count(db) == 0


def test_every_call_made_with_a_user_or_page_token_carries_appsecret_proof(
    client, auth, merchant, facebook, requests_mock
):
    facebook_connect(client, auth)
    calls = {urlsplit(request.url).path.removeprefix("/v23.0/"): request for request in requests_mock.request_history}
    accounts = parse_qs(urlsplit(calls["me/accounts"].url).query)
    expected = hmac.new(TEST_FACEBOOK_APP_SECRET.encode(), LONG_USER_TOKEN.encode(), hashlib.sha256).hexdigest()
    assert accounts["appsecret_proof"] == [expected]
    # The others carry the app secret itself (the exchanges) or the app token (debug_token), server to server.
    debug = parse_qs(urlsplit(calls["debug_token"].url).query)
    assert debug["access_token"] == [f"{TEST_FACEBOOK_APP_ID}|{TEST_FACEBOOK_APP_SECRET}"]
    assert all(request.url.startswith(GRAPH) for request in requests_mock.request_history)


def test_no_database_transaction_is_open_while_meta_answers_the_login(client, auth, merchant, facebook, db):
    """Promise 3: the code exchange, the long-lived exchange, debug_token and /me/accounts run outside a transaction."""
    seen = []
    facebook.on_call = lambda: seen.append(db.session().in_transaction())
    assert facebook_connect(client, auth).status_code == 302
    assert len(seen) == 5 and not any(seen)


def test_the_earlier_of_the_page_tokens_expiry_and_the_data_access_window_is_its_date(
    client, auth, merchant, facebook, db
):
    facebook.page_expires_at = int((facebook.now + timedelta(days=30)).timestamp())
    facebook_connect(client, auth)
    assert connection_of(db, merchant).token_expires_at == facebook.now + timedelta(days=30)


# --- The picker ---------------------------------------------------------------------------------


def test_two_linked_pages_are_a_choice(client, auth, merchant, facebook, db):
    facebook.pages = [TEA_HOUSE, GARDEN, TEA_HOUSE_OUTLET]
    response = facebook_connect(client, auth)
    assert response.status_code == 302 and response.headers["Location"] == "/facebook/pages"
    assert not_connected(db, merchant) and pending_count(db) == 1
    picker = page_text(client.get("/facebook/pages"))
    assert "Which Page is your shop's?" in picker
    assert "Tea House · Instagram @tea_house" in picker
    assert "Garden Room · Instagram @garden_room" in picker
    assert picker.count("Your role on this Page: Admin.") == 2
    assert "Pages without an Instagram account" in picker and "Tea House Outlet" in picker
    response = pick(client, GARDEN["id"])
    assert response.status_code == 302 and response.headers["Location"] == "/"
    connection = connection_of(db, merchant)
    assert (connection.username, connection.facebook_page_name) == ("garden_room", "Garden Room")
    assert token_vault().decrypt(connection.token_ciphertext) == GARDEN["access_token"]
    assert facebook.debugged[-1] == GARDEN["access_token"]
    assert "Instagram connected: @garden_room, through your Facebook Page “Garden Room”." in dashboard_text(client)
    assert pending_count(db) == 0


def test_a_choice_that_is_not_on_the_list_is_refused(client, auth, merchant, facebook, db):
    facebook.pages = [TEA_HOUSE, GARDEN, TEA_HOUSE_OUTLET]
    facebook_connect(client, auth)
    response = pick(client, TEA_HOUSE_OUTLET["id"])  # a Page without an Instagram account is no choice
    assert response.status_code == 400
    assert not_connected(db, merchant) and pending_count(db) == 1


def test_pages_without_an_instagram_account_come_with_how_to_link_one(client, auth, merchant, facebook, db):
    facebook.pages = [TEA_HOUSE_OUTLET]
    response = facebook_connect(client, auth)
    assert response.headers["Location"] == "/facebook/pages"
    raw = client.get("/facebook/pages").get_data(as_text=True)
    picker = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", raw)).split())
    assert "No Page with an Instagram account yet" in picker
    assert "Tea House Outlet" in picker
    assert "Meta Business Suite" in picker and "Account type and tools" in picker
    assert "Business or Creator" in picker
    assert 'action="/facebook/connect"' in raw and "Try again" in picker
    assert 'name="page_id"' not in raw
    [refusal] = events(db, connect_errors.REFUSAL_KINDS[connect_errors.Step.FINISH])
    assert refusal.cause == "page_unlinked"
    assert not_connected(db, merchant)


def test_a_role_that_cannot_act_for_the_page_is_warned_of_and_refused(client, auth, merchant, facebook, db):
    analyst = fake_page("104000000000004", "Tea Annex", instagram_id="17841400000000999", username="tea_annex")
    analyst["tasks"] = ["ANALYZE"]
    facebook.pages = [analyst]
    response = facebook_connect(client, auth)
    assert response.headers["Location"] == "/facebook/pages"  # one Page, but not one the shop can use
    picker = page_text(client.get("/facebook/pages"))
    assert "Your role on this Page: Analyst." in picker
    assert "This role can look at the Page but not act for it" in picker
    response = pick(client, analyst["id"])
    assert response.status_code == 302 and response.headers["Location"] == "/facebook/pages"
    message = page_text(client.get("/facebook/pages"))
    assert "Your role on the Facebook Page “Tea Annex” is Analyst" in message
    assert "at least the Moderator role" in message
    assert not_connected(db, merchant) and pending_count(db) == 1
    assert analyst["access_token"] not in facebook.debugged  # refused before asking Meta
    [refusal] = events(db, connect_errors.REFUSAL_KINDS[connect_errors.Step.FINISH])
    assert refusal.cause == "permissions_changed" and "Analyst (ANALYZE)" in refusal.message


def test_picking_another_account_replaces_the_current_one_after_the_picker_says_so(
    client, auth, merchant, facebook, requests_mock, db
):
    FakeInstagram(requests_mock).install()
    connect(client, auth)
    assert connection_of(db, merchant).username == "bloom_and_stem"
    response = facebook_connect(client, auth)
    # One linked Page, but for another account: that is a switch, and it is confirmed on the picker.
    assert response.headers["Location"] == "/facebook/pages"
    picker = page_text(client.get("/facebook/pages"))
    assert "Your shop is connected to @bloom_and_stem now." in picker
    assert "Picking it replaces @bloom_and_stem." in picker
    assert "Cancel and keep @bloom_and_stem" in picker
    pick(client, TEA_HOUSE["id"])
    connection = connection_of(db, merchant)
    assert (connection.username, connection.login_path) == ("tea_house", "facebook")
    assert connection.display_name is None and connection.profile_picture_url is None  # not @bloom_and_stem's
    switched = events(db, "switched_account")[0]
    assert switched.message == "Switched from @bloom_and_stem to @tea_house through the Facebook Page “Tea House”."
    assert "Switched: your shop is now connected to @tea_house" in dashboard_text(client)


def test_cancelling_the_picker_keeps_the_current_connection(client, auth, merchant, facebook, requests_mock, db):
    FakeInstagram(requests_mock).install()
    connect(client, auth)
    facebook_connect(client, auth)
    token = _csrf(client.get("/facebook/pages"))
    response = client.post("/facebook/pages/cancel", data={"csrf_token": token})
    assert response.status_code == 302 and response.headers["Location"] == "/"
    assert pending_count(db) == 0
    connection = connection_of(db, merchant)
    assert (connection.username, connection.login_path) == ("bloom_and_stem", "instagram")


def test_an_expired_pick_goes_back_to_the_dashboard(client, auth, merchant, facebook, db):
    facebook.pages = [TEA_HOUSE, GARDEN]
    facebook_connect(client, auth)
    token = _csrf(client.get("/facebook/pages"))
    db.session.execute(db.update(PendingFacebookLogin).values(expires_at=facebook.now - timedelta(seconds=1)))
    db.session.commit()
    for response in (client.get("/facebook/pages"), client.post("/facebook/pages", data={"csrf_token": token})):
        assert response.status_code == 302 and response.headers["Location"] == "/"
    assert "That Facebook login has expired" in dashboard_text(client)
    assert not_connected(db, merchant)


def test_a_page_token_meta_calls_invalid_is_refused_in_facebooks_words(client, auth, merchant, facebook, db):
    facebook.page_token_valid = False
    facebook.page_token_error = {"code": 190, "subcode": 460, "message": "Error validating access token"}
    response = facebook_connect(client, auth)
    assert response.status_code == 302 and response.headers["Location"] == "/"
    assert connect_errors.FACEBOOK_WORDING[connect_errors.ACCESS_WITHDRAWN] in dashboard_text(client)
    assert not_connected(db, merchant)


# --- Changing paths -----------------------------------------------------------------------------


def test_the_same_account_moving_between_paths_leaves_nothing_of_the_other_path(
    client, auth, merchant, facebook, requests_mock, db
):
    instagram = FakeInstagram(requests_mock, user_id=TEA_HOUSE_IG, username="tea_house").install()
    connect(client, auth)
    before = connection_of(db, merchant)
    assert (before.instagram_scoped_id, before.login_user_id) == (instagram.scoped_id, instagram.login_user_id)

    # Instagram Login -> Facebook Login, same account: no choice to make, a reconnect.
    assert facebook_connect(client, auth).headers["Location"] == "/"
    connection = connection_of(db, merchant)
    assert (connection.login_path, connection.facebook_page_id) == ("facebook", TEA_HOUSE["id"])
    assert connection.instagram_scoped_id is None and connection.login_user_id is None  # the Instagram app's ids
    assert events(db)[-1].kind == "reconnected"

    # ... and back: nothing of the Page, the Facebook user or their token stays.
    connect(client, auth, code="code-2")
    connection = connection_of(db, merchant)
    assert connection.login_path == "instagram"
    assert (connection.facebook_user_id, connection.facebook_page_id, connection.facebook_page_name) == (None,) * 3
    assert connection.facebook_page_tasks == "" and connection.page_tasks == []
    assert connection.user_token_ciphertext is None and connection.user_token_expires_at is None
    assert token_vault().decrypt(connection.token_ciphertext) == instagram.long_token
    assert (connection.instagram_scoped_id, connection.login_user_id) == (instagram.scoped_id, instagram.login_user_id)
    assert [event.kind for event in events(db)] == ["connected", "reconnected", "reconnected"]


def test_a_disconnect_deletes_the_user_token_too(client, auth, merchant, facebook, db):
    facebook_connect(client, auth)
    token = auth.csrf_token("/instagram/disconnect")
    client.post("/instagram/disconnect", data={"csrf_token": token, "confirm": "y"})
    connection = connection_of(db, merchant)
    assert connection.token_ciphertext is None
    assert connection.user_token_ciphertext is None and connection.user_token_expires_at is None


# --- Secrets ------------------------------------------------------------------------------------


def test_no_token_reaches_a_page_a_flash_a_log_line_or_a_readable_column(client, auth, merchant, facebook, db, caplog):
    caplog.set_level(logging.DEBUG)
    analyst = fake_page("104000000000004", "Tea Annex", instagram_id="17841400000000999", username="tea_annex")
    analyst["tasks"] = ["ANALYZE"]
    facebook.pages = [TEA_HOUSE, GARDEN, analyst, TEA_HOUSE_OUTLET]
    secrets = [SHORT_USER_TOKEN, LONG_USER_TOKEN, *(page["access_token"] for page in facebook.pages)]
    seen = [facebook_connect(client, auth), client.get("/facebook/pages")]
    seen.append(pick(client, analyst["id"]))  # refused: a flash
    seen += [client.get("/facebook/pages"), pick(client, TEA_HOUSE["id"]), client.get("/"), client.get("/history")]
    assert connection_of(db, merchant).state == "healthy"
    texts = [response.get_data(as_text=True) for response in seen] + [caplog.text]
    texts += [event.message for event in events(db)]
    connection = connection_of(db, merchant)
    texts += [connection.token_ciphertext, connection.user_token_ciphertext]
    for text in texts:
        for secret in secrets:
            assert secret not in text


def test_a_parked_login_keeps_its_tokens_encrypted(client, auth, merchant, facebook, db):
    facebook.pages = [TEA_HOUSE, GARDEN]
    facebook_connect(client, auth)
    db.session.expire_all()
    pending = db.session.scalar(select(PendingFacebookLogin))
    readable = pending.pages_json + pending.secrets_ciphertext + pending.granted_permissions
    for secret in (SHORT_USER_TOKEN, LONG_USER_TOKEN, TEA_HOUSE["access_token"], GARDEN["access_token"]):
        assert secret not in readable
    assert (pending.facebook_user_id, pending.data_access_expires_at) == (
        FACEBOOK_USER_ID,
        facebook.data_access_expires_at,
    )
    assert pending.expires_at == facebook.now + timedelta(minutes=15)


def test_a_new_login_replaces_the_shops_earlier_parked_one(client, auth, merchant, facebook, db):
    facebook.pages = [TEA_HOUSE, GARDEN]
    facebook_connect(client, auth)
    facebook_connect(client, auth, code="AQfb-code-456")
    assert pending_count(db) == 1


# --- Reconnect links from mails -----------------------------------------------------------------


@pytest.fixture
def facebook_connected(client, auth, merchant, facebook, db):
    facebook_connect(client, auth)
    return connection_of(db, merchant)


def reconnect_link(app, connection, user) -> str:
    from webapp.services.notify.links import reconnect_token

    return f"/instagram/reconnect/{reconnect_token(app, connection.id, user.id)}"


@pytest.mark.parametrize(("cause", "renew"), [("password_changed", False), ("data_access_expired", True)])
def test_a_mailed_reconnect_link_starts_the_facebook_login_for_a_facebook_connection(
    app, client, merchant, facebook_connected, db, cause, renew
):
    db.session.execute(
        db.update(InstagramConnection).values(state="needs_reconnect", cause=cause, token_ciphertext=None)
    )
    db.session.commit()
    link = reconnect_link(app, facebook_connected, merchant)
    landing = client.get(link)
    assert "Continue with Facebook" in page_text(landing) and "“Tea House”" in page_text(landing)
    response = client.post(link, data={"csrf_token": _csrf(landing)})
    location = urlsplit(response.headers["Location"])
    assert location.netloc == "www.facebook.com"
    query = parse_qs(location.query)
    assert query["redirect_uri"] == [CALLBACK]
    assert ("auth_type" in query) is renew


def test_a_mailed_link_falls_back_to_instagram_when_facebook_login_is_no_longer_offered(
    app, client, merchant, facebook_connected
):
    link = reconnect_link(app, facebook_connected, merchant)
    app.config["LOGIN_PATHS"] = ("instagram",)
    landing = client.get(link)
    response = client.post(link, data={"csrf_token": _csrf(landing)})
    assert urlsplit(response.headers["Location"]).netloc == "www.instagram.com"


# --- Meta's requests for the Facebook user ------------------------------------------------------


def signed(path_secret: str, user_id: str = FACEBOOK_USER_ID) -> str:
    from webapp.services.meta.signed_request import sign

    return sign({"user_id": user_id, "algorithm": "HMAC-SHA256", "issued_at": int(time.time())}, path_secret)


@pytest.mark.parametrize("request_path", ["/facebook/data-deletion", "/facebook/deauthorize"])
def test_metas_request_for_the_facebook_user_drops_their_parked_login(
    client, auth, merchant, facebook, db, request_path
):
    facebook.pages = [TEA_HOUSE, GARDEN]
    facebook_connect(client, auth)
    assert pending_count(db) == 1
    response = client.post(request_path, data={"signed_request": signed(TEST_FACEBOOK_APP_SECRET)})
    assert response.status_code == 200
    assert pending_count(db) == 0
    assert client.get("/facebook/pages").headers["Location"] == "/"


def test_the_instagram_apps_request_for_the_same_number_leaves_the_parked_login(client, auth, merchant, facebook, db):
    from tests.conftest import TEST_CLIENT_SECRET

    facebook.pages = [TEA_HOUSE, GARDEN]
    facebook_connect(client, auth)
    response = client.post("/instagram/data-deletion", data={"signed_request": signed(TEST_CLIENT_SECRET)})
    assert response.status_code == 200
    assert pending_count(db) == 1  # the Instagram app's ids are another numbering: someone else


def test_a_data_deletion_from_the_facebook_app_forgets_the_page_and_the_user_token(
    client, auth, merchant, facebook, db
):
    facebook_connect(client, auth)
    response = client.post("/facebook/data-deletion", data={"signed_request": signed(TEST_FACEBOOK_APP_SECRET)})
    assert response.status_code == 200
    connection = connection_of(db, merchant)
    assert connection.state == "not_connected" and connection.token_ciphertext is None
    assert connection.user_token_ciphertext is None and connection.user_token_expires_at is None
    assert (connection.facebook_user_id, connection.facebook_page_id, connection.facebook_page_name) == (None,) * 3
    assert connection.facebook_page_tasks == ""
    assert not any("Tea House" in event.message for event in events(db))


def test_key_rotation_re_encrypts_the_user_token_and_the_parked_logins_too(
    app_config, client, auth, merchant, facebook, db
):
    """Promise 13 for Facebook Login's extra secrets: after a rotation, the old key can go."""
    import json

    from cryptography.fernet import Fernet

    from tests.conftest import TEST_TOKEN_KEY
    from webapp import create_app
    from webapp.services.connections.key_rotation import rotate_token_keys
    from webapp.services.token_vault import TokenVault, parse_keys

    facebook_connect(client, auth)
    # Parked: two Pages to choose from (the shop's own Page can no longer be kept: its role is too low).
    facebook.pages = [{**TEA_HOUSE, "tasks": ["ANALYZE"]}, GARDEN]
    facebook_connect(client, auth, code="AQfb-code-456")
    assert db.session.scalar(select(PendingFacebookLogin)) is not None
    new_key = Fernet.generate_key().decode()
    deploy = create_app({**app_config, "TOKEN_ENCRYPTION_KEYS": f"{new_key},{TEST_TOKEN_KEY}"})
    with deploy.app_context():
        report = rotate_token_keys(deploy.extensions["token_vault"])
    assert (report.rotated, report.failed) == (3, [])  # the Page token, the user token, the parked login
    only_new = TokenVault(parse_keys(new_key))
    connection = connection_of(db, merchant)
    assert only_new.decrypt(connection.token_ciphertext) == TEA_HOUSE["access_token"]
    assert only_new.decrypt(connection.user_token_ciphertext) == LONG_USER_TOKEN
    pending = db.session.scalar(select(PendingFacebookLogin))
    assert json.loads(only_new.decrypt(pending.secrets_ciphertext))["user_token"] == LONG_USER_TOKEN


def test_a_reconnect_keeps_the_shops_page_without_asking_again(client, auth, merchant, facebook, db):
    """One click restores: with two linked Pages, a reconnect finishes on the Page the shop already uses."""
    facebook_connect(client, auth)
    facebook.pages = [TEA_HOUSE, GARDEN]
    response = facebook_connect(client, auth, code="AQfb-code-789")
    assert response.headers["Location"].startswith("/") and "/facebook/pages" not in response.headers["Location"]
    connection = connection_of(db, merchant)
    assert (connection.facebook_page_id, connection.username) == (TEA_HOUSE["id"], "tea_house")
    assert pending_count(db) == 0


def test_one_merchants_parked_login_is_not_another_merchants_of_the_same_shop(client, auth, merchant, facebook, db):
    """Their Pages, roles and tokens stay theirs: a colleague sees no picker and cannot pick from it."""
    from tests import factories

    facebook.pages = [TEA_HOUSE, GARDEN]
    facebook_connect(client, auth)  # parked for `merchant`: two Pages to choose from
    assert pending_count(db) == 1
    colleague = factories.make_user(shop=merchant.shop)
    auth.logout()
    auth.login_as(colleague)
    response = client.get("/facebook/pages")
    assert response.status_code == 302 and "Tea House" not in response.get_data(as_text=True)
    token = auth.csrf_token("/")
    refused = client.post("/facebook/pages", data={"csrf_token": token, "page_id": TEA_HOUSE["id"]})
    assert refused.status_code == 302
    connection = connection_of(db, merchant)
    assert connection is None or connection.facebook_page_id is None
    assert pending_count(db) == 1  # the first merchant's pick still waits for them
