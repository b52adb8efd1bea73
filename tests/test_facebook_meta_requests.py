"""Meta's deauthorize and data-deletion callbacks from the Facebook app (Facebook Login for Business).

Same contract as the Instagram app's (tests/test_meta_requests.py), verified with FACEBOOK_APP_SECRET,
and reaching only connections made through Facebook Login, found by the Facebook user's id.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from tests.conftest import TEST_CLIENT_SECRET, TEST_FACEBOOK_APP_SECRET
from tests.factories import make_connection, make_shop
from webapp.models import ConnectionEvent, InstagramConnection, MetaCallback, PendingFacebookLogin
from webapp.services.meta.signed_request import sign

FACEBOOK_USER_ID = "10222000000000001"
# An Instagram-Login connection whose Instagram id happens to equal the Facebook user's id.
SAME_NUMBER = FACEBOOK_USER_ID


def signed(user_id=FACEBOOK_USER_ID, issued_at=None, secret=TEST_FACEBOOK_APP_SECRET):
    payload = {"user_id": user_id, "algorithm": "HMAC-SHA256", "issued_at": issued_at or int(time.time())}
    return sign(payload, secret)


@pytest.fixture
def facebook_connection(app, db):
    """A shop connected through Facebook Login: its Page's linked Instagram account, by this Facebook user."""
    connection = make_connection(
        make_shop(name="Bloom & Stem"),
        token="EAAHpageTOKENbloomXX1",
        username="bloom_and_stem",
        instagram_user_id="17841405822304914",
        login_path="facebook",
        facebook_user_id=FACEBOOK_USER_ID,
        issued_at=datetime.now(UTC) - timedelta(days=2),
    )
    db.session.commit()
    return connection.id


@pytest.fixture
def instagram_connection(app, db):
    """An Instagram-Login connection whose every id coincides with the Facebook user's id."""
    connection = make_connection(
        make_shop(name="Tea House"),
        username="tea_house",
        instagram_user_id=SAME_NUMBER,
        instagram_scoped_id=SAME_NUMBER,
        login_user_id=SAME_NUMBER,
        issued_at=datetime.now(UTC) - timedelta(days=2),
    )
    db.session.commit()
    return connection.id


def row(db, connection_id) -> InstagramConnection:
    db.session.expire_all()
    return db.session.get(InstagramConnection, connection_id)


def test_facebook_deauthorize_disconnects_the_facebook_connection(client, db, facebook_connection):
    response = client.post("/facebook/deauthorize", data={"signed_request": signed()})
    assert response.status_code == 200 and response.get_json()["connections_changed"] == 1
    connection = row(db, facebook_connection)
    assert (connection.state, connection.cause, connection.token_ciphertext) == ("needs_reconnect", "app_removed", None)
    event = db.session.scalar(select(ConnectionEvent).where(ConnectionEvent.kind == "deauthorized"))
    assert event.actor_kind == "meta" and event.instagram_user_id == "17841405822304914"
    callback = db.session.scalar(select(MetaCallback))
    assert (callback.login_path, callback.kind, callback.instagram_user_id) == (
        "facebook",
        "deauthorize",
        FACEBOOK_USER_ID,
    )


@pytest.mark.parametrize("path", ["/facebook/deauthorize", "/facebook/data-deletion"])
def test_a_facebook_callback_never_touches_an_instagram_login_connection_with_an_equal_id(
    client, db, instagram_connection, path
):
    response = client.post(path, data={"signed_request": signed(user_id=SAME_NUMBER)})
    assert response.status_code == 200
    connection = row(db, instagram_connection)
    assert connection.state == "healthy" and connection.has_token
    assert connection.instagram_user_id == connection.login_user_id == SAME_NUMBER


@pytest.mark.parametrize("path", ["/instagram/deauthorize", "/instagram/data-deletion"])
def test_an_instagram_callback_never_touches_a_facebook_login_connection(client, db, facebook_connection, path):
    """The Instagram app's ids are another numbering: even the linked account's own id is not its business."""
    for user_id in (FACEBOOK_USER_ID, "17841405822304914"):
        response = client.post(path, data={"signed_request": signed(user_id=user_id, secret=TEST_CLIENT_SECRET)})
        assert response.status_code == 200
    connection = row(db, facebook_connection)
    assert connection.state == "healthy" and connection.has_token and connection.facebook_user_id == FACEBOOK_USER_ID


@pytest.mark.parametrize(
    ("path", "secret"),
    [
        ("/facebook/deauthorize", TEST_CLIENT_SECRET),
        ("/facebook/data-deletion", TEST_CLIENT_SECRET),
        ("/instagram/deauthorize", TEST_FACEBOOK_APP_SECRET),
        ("/instagram/data-deletion", TEST_FACEBOOK_APP_SECRET),
    ],
    ids=[
        "fb-deauth-signed-by-instagram",
        "fb-deletion-signed-by-instagram",
        "ig-deauth-signed-by-facebook",
        "ig-deletion-signed-by-facebook",
    ],
)
def test_each_app_s_urls_accept_only_its_own_signature(
    client, db, facebook_connection, instagram_connection, path, secret
):
    user_id = FACEBOOK_USER_ID
    response = client.post(path, data={"signed_request": signed(user_id=user_id, secret=secret)})
    assert response.status_code == 400
    assert response.get_json() == {"error": "invalid signed_request", "detail": "signature does not match"}
    assert db.session.scalar(select(func.count(MetaCallback.id))) == 0
    assert row(db, facebook_connection).has_token and row(db, instagram_connection).has_token


def test_facebook_deauthorize_issued_before_the_latest_connect_is_a_no_op(client, db, facebook_connection):
    long_ago = int((datetime.now(UTC) - timedelta(days=3)).timestamp())
    response = client.post("/facebook/deauthorize", data={"signed_request": signed(issued_at=long_ago)})
    assert response.status_code == 200 and response.get_json()["connections_changed"] == 0
    assert row(db, facebook_connection).state == "healthy"


def test_a_replayed_facebook_deauthorize_changes_the_connection_once(client, db, facebook_connection):
    request = signed()
    answers = [client.post("/facebook/deauthorize", data={"signed_request": request}) for _ in range(3)]
    assert [a.get_json()["connections_changed"] for a in answers] == [1, 0, 0]
    assert db.session.scalars(select(ConnectionEvent.kind)).all().count("deauthorized") == 1


@pytest.mark.parametrize("path", ["/facebook/deauthorize", "/facebook/data-deletion"])
def test_an_unknown_facebook_user_is_accepted(client, db, path):
    response = client.post(path, data={"signed_request": signed(user_id="10222999999999999")})
    assert response.status_code == 200


def test_the_same_id_and_second_from_each_app_are_two_requests(client, db, facebook_connection, instagram_connection):
    """Neither is taken for a repeat of the other, and each gets its own confirmation code."""
    issued_at = int(time.time())
    instagram = client.post(
        "/instagram/data-deletion",
        data={"signed_request": signed(user_id=SAME_NUMBER, issued_at=issued_at, secret=TEST_CLIENT_SECRET)},
    ).get_json()
    facebook = client.post(
        "/facebook/data-deletion", data={"signed_request": signed(user_id=SAME_NUMBER, issued_at=issued_at)}
    ).get_json()
    assert instagram["confirmation_code"] != facebook["confirmation_code"]
    assert row(db, instagram_connection).state == row(db, facebook_connection).state == "not_connected"


def test_facebook_data_deletion_deletes_and_answers_its_own_status_url(app, client, db, facebook_connection):
    response = client.post("/facebook/data-deletion", data={"signed_request": signed()})
    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == {"url", "confirmation_code"} and body["confirmation_code"].isalnum()
    assert body["url"] == f"http://localhost/facebook/data-deletion/{body['confirmation_code']}"
    connection = row(db, facebook_connection)
    assert connection.token_ciphertext is None and connection.state == "not_connected"
    assert (connection.facebook_user_id, connection.instagram_user_id, connection.username) == (None, None, None)
    assert all(event.instagram_user_id is None for event in db.session.scalars(select(ConnectionEvent)))
    status = app.test_client().get(f"/facebook/data-deletion/{body['confirmation_code']}")
    page = status.get_data(as_text=True)
    assert status.status_code == 200 and "Completed on" in page and body["confirmation_code"] in page
    assert "Facebook and Instagram data" in page and "bloom_and_stem" not in page and "Bloom &amp; Stem" not in page
    # A code shows under its own app's URL only.
    assert app.test_client().get(f"/instagram/data-deletion/{body['confirmation_code']}").status_code == 404


def test_a_replayed_facebook_data_deletion_answers_the_same_code(client, db, facebook_connection):
    request = signed()
    codes = {
        client.post("/facebook/data-deletion", data={"signed_request": request}).get_json()["confirmation_code"]
        for _ in range(3)
    }
    assert len(codes) == 1 and db.session.scalar(select(func.count(MetaCallback.id))) == 1


def test_instagram_status_pages_still_work_and_say_instagram(app, client, db, instagram_connection):
    body = client.post(
        "/instagram/data-deletion", data={"signed_request": signed(user_id=SAME_NUMBER, secret=TEST_CLIENT_SECRET)}
    ).get_json()
    assert body["url"].endswith(f"/instagram/data-deletion/{body['confirmation_code']}")
    page = app.test_client().get(f"/instagram/data-deletion/{body['confirmation_code']}").get_data(as_text=True)
    assert "the Instagram data and access tokens" in page
    assert app.test_client().get(f"/facebook/data-deletion/{body['confirmation_code']}").status_code == 404


def test_facebook_callbacks_need_no_login_or_csrf(app, db, facebook_connection):
    assert app.test_client().post("/facebook/deauthorize", data={"signed_request": signed()}).status_code == 200


@pytest.mark.parametrize("path", ["/facebook/deauthorize", "/facebook/data-deletion"])
def test_without_a_facebook_app_secret_every_facebook_callback_is_refused(app, client, db, facebook_connection, path):
    app.config["FACEBOOK_APP_SECRET"] = ""
    response = client.post(path, data={"signed_request": signed()})
    assert response.status_code == 400 and response.get_json()["detail"] == "no app secret is configured"
    assert row(db, facebook_connection).has_token


def park_login(db, facebook_user_id: str) -> int:
    """A Facebook login waiting for its merchant to pick a Page (tokens encrypted, as the callback parks them)."""
    from tests.factories import make_user

    user = make_user(shop=make_shop())
    pending = PendingFacebookLogin(
        shop_id=user.shop_id,
        user_id=user.id,
        facebook_user_id=facebook_user_id,
        pages_json="[]",
        secrets_ciphertext="encrypted",
        expires_at=datetime.now(UTC) + timedelta(minutes=15),
    )
    db.session.add(pending)
    db.session.commit()
    return pending.id


@pytest.mark.parametrize("path", ["/facebook/deauthorize", "/facebook/data-deletion"])
def test_a_facebook_request_drops_that_users_parked_page_pick_and_no_one_elses(client, db, path):
    theirs, someone_elses = park_login(db, FACEBOOK_USER_ID), park_login(db, "10222000000000002")
    assert client.post(path, data={"signed_request": signed()}).status_code == 200
    db.session.expire_all()
    assert db.session.get(PendingFacebookLogin, theirs) is None
    assert db.session.get(PendingFacebookLogin, someone_elses) is not None


@pytest.mark.parametrize("path", ["/instagram/deauthorize", "/instagram/data-deletion"])
def test_an_instagram_request_with_the_same_number_leaves_a_parked_facebook_login(client, db, path):
    parked = park_login(db, FACEBOOK_USER_ID)
    response = client.post(path, data={"signed_request": signed(secret=TEST_CLIENT_SECRET)})
    assert response.status_code == 200
    db.session.expire_all()
    assert db.session.get(PendingFacebookLogin, parked) is not None


@pytest.mark.parametrize("path", ["/facebook/deauthorize", "/facebook/data-deletion"])
def test_the_user_token_goes_with_the_page_token(client, db, facebook_connection, path):
    db.session.execute(
        db.update(InstagramConnection).values(
            user_token_ciphertext="encrypted-user-token",
            user_token_expires_at=datetime.now(UTC) + timedelta(days=50),
            facebook_page_id="134895793791914",
            facebook_page_name="Bloom & Stem",
            facebook_page_tasks="MANAGE,CREATE_CONTENT",
        )
    )
    db.session.commit()
    assert client.post(path, data={"signed_request": signed()}).status_code == 200
    connection = row(db, facebook_connection)
    assert connection.user_token_ciphertext is None and connection.user_token_expires_at is None
    if path.endswith("data-deletion"):  # the Page the person picked is their data too
        assert (connection.facebook_page_id, connection.facebook_page_name, connection.page_tasks) == (None, None, [])
