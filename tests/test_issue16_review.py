"""Adversarial review of issue 16 (Platform API and webhooks): each test names the bug it shows."""

from __future__ import annotations

import json
import time

import pytest
from sqlalchemy import select

from tests.api_helpers import ME, PROBLEM, make_key, profile
from tests.conftest import TEST_CLIENT_SECRET
from tests.factories import make_connection, make_shop
from tests.instagram_helpers import FakeInstagram, connect
from webapp.extensions import db as _db
from webapp.models import ConnectionEvent, WebhookEvent
from webapp.services import webhooks
from webapp.services.meta.signed_request import sign

IG_USER = "17841400000000077"
TOKEN = "IGAAshop-token-of-the-tea-house-0123456789abcdef"


@pytest.fixture
def shop():
    return make_shop(name="Tea House")


@pytest.fixture
def connection(shop):
    return make_connection(shop, token=TOKEN, instagram_user_id=IG_USER, username="tea_house")


def report(client, shop_id, headers, body, key="report-1"):
    return client.post(f"/api/v1/shops/{shop_id}/errors", headers={**headers, "Idempotency-Key": key}, json=body)


def all_stored_text() -> str:
    """Every column of every event and webhook event, as one string to search."""
    rows = [
        (e.kind, e.message, e.meta_user_title, e.meta_user_message, e.instagram_user_id)
        for e in _db.session.scalars(select(ConnectionEvent))
    ]
    rows += [(w.type, json.dumps(w.payload)) for w in _db.session.scalars(select(WebhookEvent))]
    return repr(rows)


@pytest.mark.usefixtures("pinned_clock")
@pytest.mark.parametrize(
    "fbtrace_id", [TOKEN, "EAAGm0PX4ZCpsBAKZAbcdefghij0123456789", "IGQWRMcopied-from-another-shop-0123456789"]
)
def test_a_token_reported_as_the_fbtrace_id_is_not_stored(client, db, connection, shop, fbtrace_id):
    """Bug: an error report's message is scrubbed of the shop's token and of anything token-shaped, but its
    `fbtrace_id` is not, and the shop's history event quotes it: a buggy caller that puts the token (or any
    token) in that field has it stored in connection_events and shown on the merchant's timeline (promise 34)."""
    _, headers = make_key("errors:write")
    response = report(client, shop.id, headers, {"code": 4, "message": "slow down", "fbtrace_id": fbtrace_id})
    assert response.status_code == 200
    db.session.expire_all()
    assert fbtrace_id not in all_stored_text()
    assert fbtrace_id[:24] not in all_stored_text()
