"""Property-based contract tests: the Platform API against its own OpenAPI document (schemathesis).

schemathesis reads /api/v1/openapi.json from the app itself and generates requests for every
operation, valid ones and invalid ones; each answer must be documented (status, content type,
headers, body schema) and none may be a 500. Meta answers the confirming calls error reports make.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import ignored_auth, negative_data_rejection, positive_data_acceptance

from tests.api_helpers import ME, make_key, profile
from tests.conftest import TEST_TOKEN_KEY
from tests.factories import make_connection, make_facebook_connection, make_shop, make_user
from tests.test_facebook_keepalive import IG_ID, PAGE_ID
from tests.test_facebook_keepalive import meta as facebook_meta
from webapp import create_app
from webapp.request_input import DATABASE_ID_MAX
from webapp.services.connections.state import set_state
from webapp.services.idempotency import valid_key

pytestmark = pytest.mark.usefixtures("pinned_clock")


@pytest.fixture
def fleet(app, db, now, requests_mock):
    """Shops in each state the API answers differently for, a key with every scope, and Meta saying yes."""
    requests_mock.get(ME, **profile())
    facebook_meta(requests_mock, now)  # the Page check answers too: the Page still reaches its account
    healthy = make_connection(make_shop(), token="contract-healthy-token")
    broken = make_connection(make_shop(), token="contract-broken-token")
    set_state(broken, "needs_reconnect", now, cause="password_changed")
    expired = make_connection(
        make_shop(),
        token="contract-expired-token",
        issued_at=now - timedelta(days=61),
        expires_at=now - timedelta(hours=1),
    )
    facebook = make_facebook_connection(page_id=PAGE_ID, instagram_user_id=IG_ID)
    never = make_shop()
    for connection in (healthy, broken):  # someone to mail when a confirmed report disconnects them
        make_user(shop=connection.shop)
    _, headers = make_key()
    return {"headers": headers, "shops": [healthy.shop_id, broken.shop_id, expired.shop_id, facebook.shop_id, never.id]}


def _served_document() -> dict:
    """/api/v1/openapi.json as the app serves it (the document needs no database)."""
    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": "sqlite://", "TOKEN_ENCRYPTION_KEYS": TEST_TOKEN_KEY})
    return app.test_client().get("/api/v1/openapi.json").get_json()


# Loaded once at collection; each test sends its cases to its own app (`app=`), with its own database.
# (schemathesis.pytest.from_fixture would load it per test, but its lazy loader does not run on pytest 9.)
schema = schemathesis.openapi.from_dict(_served_document())


@schema.parametrize()
@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_answer_matches_the_document(case, app, fleet):
    """Every documented operation, valid and invalid input: documented answers only, never a 500 (promise 39)."""
    app.config["API_RATE_LIMIT"] = "100000 per minute"  # thousands of requests with one key
    parameters = case.path_parameters or {}
    shop_id = parameters.get("shop_id")
    if isinstance(shop_id, int) and not isinstance(shop_id, bool) and 0 <= shop_id <= DATABASE_ID_MAX and shop_id % 4:
        # Most generated ids name no shop; steer three in four to the fleet's shops so that the
        # answers for each state are exercised too, and keep the rest as generated (unknown shops).
        parameters["shop_id"] = fleet["shops"][shop_id % len(fleet["shops"])]
    key = (case.headers or {}).get("Idempotency-Key")
    if isinstance(key, str) and valid_key(key) == key and len(key) < 200:
        # Hypothesis draws the same few keys again and again, each time with another body: that is
        # a reuse, rightly refused (test_platform_api tests it). Here each valid key is a new one.
        case.headers["Idempotency-Key"] = f"{key}-{uuid.uuid4().hex}"
    excluded = [ignored_auth]  # it probes without a key over the network; test_platform_api tests keys
    if "cursor" in (case.query or {}):
        excluded.append(positive_data_acceptance)  # a well-formed cursor we never gave out is rightly a 400
    if case.operation.method.upper() == "POST" and case.operation.path == "/api/v1/webhooks":
        # Which URLs a webhook may go to is the webhooks service's rule (e.g. no private addresses),
        # more than a document can say: a URL it refuses is rightly a 422.
        excluded.append(positive_data_acceptance)
    if any(value is None or value == [] for value in (case.query or {}).values()):
        excluded.append(negative_data_rejection)  # a parameter set to None or [] is never sent: nothing to reject
    case.call_and_validate(app=app, headers=fleet["headers"], excluded_checks=excluded)


def test_the_document_is_valid_openapi_3_1(app):
    loaded = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    assert loaded.raw_schema["openapi"] == "3.1.0"
    operations = {f"{op.ok().method.upper()} {op.ok().path}" for op in loaded.get_all_operations()}
    assert {
        "GET /api/v1/shops/{shop_id}/connection",
        "GET /api/v1/shops/{shop_id}/token",
        "POST /api/v1/shops/{shop_id}/errors",
        "GET /api/v1/connections",
    } <= operations
