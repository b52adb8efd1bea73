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


def log_in(app, merchant, now=NOW, policy: Policy = Policy()) -> linking.Linked:
    return linking.complete_connect(
        shop=merchant.shop,
        user=merchant,
        short_grant=TokenGrant(access_token="IGQVshort"),
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


def test_a_personal_account_is_refused_at_connect_and_nothing_is_stored(app, merchant, requests_mock):
    from webapp.services.meta.client import AccountNotProfessional

    FakeInstagram(requests_mock, account_type="PERSONAL").install()
    with pytest.raises(AccountNotProfessional):
        log_in(app, merchant)
    connection = merchant.shop.instagram_connection
    assert connection is None or (connection.state == "not_connected" and not connection.has_token)
