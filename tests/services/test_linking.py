"""A finished login or switch says what it did, so the view only has to word it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.factories import make_shop, make_user
from tests.instagram_helpers import FakeInstagram
from webapp.services.connections import linking
from webapp.services.fingerprint import ClientFingerprint
from webapp.services.keepalive.policy import Policy
from webapp.services.meta.client import TokenGrant

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
FINGERPRINT = ClientFingerprint("203.0.113.0/24", "Firefox on Linux")


@pytest.fixture
def merchant():
    return make_user(shop=make_shop(name="Bloom & Stem"))


def log_in(app, merchant, now=NOW, short_grant: TokenGrant | None = None, policy: Policy = Policy()) -> linking.Linked:
    return linking.complete_connect(
        shop=merchant.shop,
        user=merchant,
        short_grant=short_grant or TokenGrant(access_token="IGQVshort"),
        client=app.extensions["instagram_client"],
        vault=app.extensions["token_vault"],
        now=now,
        client_fingerprint=FINGERPRINT,
        policy=policy,
    )


def test_first_login_then_the_same_account_again(app, merchant, requests_mock):
    FakeInstagram(requests_mock).install()
    first = log_in(app, merchant)
    assert first.kind == "connected" and first.connection.username == "bloom_and_stem"
    again = log_in(app, merchant, NOW + timedelta(days=3))
    assert again.kind == "reconnected" and again.connection.id == first.connection.id


def test_a_confirmed_switch_says_switched_account(app, merchant, requests_mock):
    meta = FakeInstagram(requests_mock).install()
    log_in(app, merchant)
    meta.user_id, meta.username = "17841499999999999", "other_shop"
    meta.install()
    with pytest.raises(linking.AccountSwitchRequired):
        log_in(app, merchant, NOW + timedelta(minutes=1))
    switched = linking.confirm_switch(
        shop=merchant.shop,
        user=merchant,
        vault=app.extensions["token_vault"],
        now=NOW + timedelta(minutes=2),
        client_fingerprint=FINGERPRINT,
        policy=Policy(),
    )
    assert switched.kind == "switched_account" and switched.connection.username == "other_shop"


def test_a_new_connection_follows_the_configured_policy(app, merchant, requests_mock):
    """The first renewal and check come from the app's policy (REFRESH_AFTER_HOURS ...), not the default."""
    FakeInstagram(requests_mock).install()
    policy = Policy(refresh_after=timedelta(days=2), check_interval=timedelta(minutes=30), jitter=0.0)
    connection = log_in(app, merchant, policy=policy).connection
    assert connection.refresh_due_at == NOW + timedelta(days=2)
    assert connection.check_due_at == NOW + timedelta(minutes=30)


def connection_with(**ids):
    from webapp.models import InstagramConnection

    return InstagramConnection(**ids)


@pytest.mark.parametrize(
    "stored,login,expected",
    [
        # The account's own id decides when both sides have it, even if an app-scoped id changed.
        ({"instagram_user_id": "1784A", "instagram_scoped_id": "OLD"}, None, True),
        ({"instagram_user_id": "1784B"}, "LOGIN", False),
        # Connections from before the other ids were kept compare what they have, kind with kind.
        ({"instagram_scoped_id": "SCOPED"}, None, True),
        ({"login_user_id": "LOGIN"}, "LOGIN", True),
        ({"login_user_id": "OTHER"}, "LOGIN", False),
        # Never across kinds: an account id equal to another kind's number is not the same account.
        ({"instagram_user_id": "LOGIN"}, "LOGIN", False),
        ({}, "LOGIN", None),
    ],
)
def test_same_account_compares_ids_kind_with_kind(stored, login, expected):
    from webapp.services.meta.client import Profile

    profile = Profile(user_id="1784A", scoped_id="SCOPED")
    assert linking.same_account(connection_with(**stored), profile, login) is expected


def test_a_login_stores_all_three_ids(app, merchant, requests_mock):
    meta = FakeInstagram(requests_mock).install()
    connection = log_in(app, merchant, short_grant=TokenGrant(access_token="IGQVshort", user_id=meta.login_user_id))
    connection = connection.connection
    assert (connection.instagram_user_id, connection.instagram_scoped_id, connection.login_user_id) == (
        meta.user_id,
        meta.scoped_id,
        meta.login_user_id,
    )


def test_a_login_whose_other_ids_are_new_is_still_the_same_account(app, merchant, requests_mock):
    """A new Meta app gives new app-scoped ids; the account's own id says it is the same account."""
    meta = FakeInstagram(requests_mock).install()
    log_in(app, merchant, short_grant=TokenGrant(access_token="IGQVshort", user_id=meta.login_user_id))
    meta.scoped_id, meta.login_user_id = "9170000000000999", "2710000000000999"
    meta.install()
    again = log_in(
        app, merchant, NOW + timedelta(days=1), TokenGrant(access_token="IGQVshort", user_id="2710000000000999")
    )
    assert again.kind == "reconnected"
    assert (again.connection.instagram_scoped_id, again.connection.login_user_id) == (
        "9170000000000999",
        "2710000000000999",
    )


def test_a_switch_replaces_every_id_with_the_new_accounts(app, merchant, requests_mock):
    meta = FakeInstagram(requests_mock).install()
    log_in(app, merchant, short_grant=TokenGrant(access_token="IGQVshort", user_id=meta.login_user_id))
    meta.user_id, meta.scoped_id, meta.username = "17841499999999999", None, "other_shop"
    meta.install()
    with pytest.raises(linking.AccountSwitchRequired):
        log_in(app, merchant, NOW + timedelta(minutes=1), TokenGrant(access_token="IGQVshort", user_id="2719"))
    switched = linking.confirm_switch(
        shop=merchant.shop,
        user=merchant,
        vault=app.extensions["token_vault"],
        now=NOW + timedelta(minutes=2),
        client_fingerprint=FINGERPRINT,
        policy=Policy(),
    ).connection
    # The old account's app-scoped id must not stay behind: a callback for it would hit the new account.
    assert (switched.instagram_user_id, switched.instagram_scoped_id, switched.login_user_id) == (
        "17841499999999999",
        None,
        "2719",
    )


def test_a_personal_account_is_refused_at_connect_and_nothing_is_stored(app, merchant, requests_mock):
    from webapp.services.meta.client import AccountNotProfessional

    FakeInstagram(requests_mock, account_type="PERSONAL").install()
    with pytest.raises(AccountNotProfessional):
        log_in(app, merchant)
    connection = merchant.shop.instagram_connection
    assert connection is None or (connection.state == "not_connected" and not connection.has_token)


def test_an_instagram_login_leaves_nothing_of_an_earlier_facebook_login(app, merchant, requests_mock, db):
    """Either path's login replaces what the other left: no Page, Facebook user or user token stays behind."""
    from webapp.models import InstagramConnection

    FakeInstagram(requests_mock).install()
    first = log_in(app, merchant)
    vault = app.extensions["token_vault"]
    db.session.execute(
        db.update(InstagramConnection).values(
            login_path="facebook",
            facebook_user_id="10229000000000042",
            facebook_page_id="104000000000001",
            facebook_page_name="Bloom & Stem",
            facebook_page_tasks="MANAGE",
            user_token_ciphertext=vault.encrypt("EAAGlongUSERsecret"),
            user_token_expires_at=NOW + timedelta(days=60),
        )
    )
    db.session.commit()
    again = log_in(app, merchant, NOW + timedelta(days=1))
    assert again.kind == "reconnected" and again.connection.id == first.connection.id
    connection = again.connection
    assert connection.login_path == "instagram" and not connection.via_facebook
    assert (connection.facebook_user_id, connection.facebook_page_id, connection.facebook_page_name) == (None,) * 3
    assert connection.page_tasks == [] and connection.user_token_ciphertext is connection.user_token_expires_at is None
