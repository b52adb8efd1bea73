"""The Platform API under /api/v1/: connection status, the token, error reports, the list; keys, scopes, limits."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from sqlalchemy import select

from tests.api_helpers import ME, PROBLEM, make_key, meta_error, profile
from tests.factories import make_connection, make_facebook_connection, make_shop, make_user
from webapp.models import AuditEntry, ConnectionEvent, InstagramConnection, OutboundMail
from webapp.services import api_keys
from webapp.services.connections.state import set_state

pytestmark = pytest.mark.usefixtures("pinned_clock")

IG_USER = "17841400000000077"
# Not token-shaped on purpose: the log filter's pattern must not be what keeps it out of the logs.
CANARY = "canary-token-7f3a9b2c"


@pytest.fixture
def shop():
    shop = make_shop(name="Tea House")
    make_user(shop=shop, email="owner@tea.example")
    return shop


@pytest.fixture
def connection(shop):
    return make_connection(shop, token=CANARY, instagram_user_id=IG_USER, username="tea_house")


@pytest.fixture
def headers():
    return make_key()[1]


def report(client, shop_id, headers, body, key="report-1"):
    return client.post(f"/api/v1/shops/{shop_id}/errors", headers={**headers, "Idempotency-Key": key}, json=body)


def assert_problem(response, status: int, type_suffix: str | None = None) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM
    body = response.get_json()
    assert body["status"] == status and body["title"] and body["detail"]
    assert body["type"] == (f"/api/v1/problems/{type_suffix}" if type_suffix else "about:blank")
    return body


# A shop's connection


def test_a_healthy_shops_connection(client, connection, shop, headers, now):
    response = client.get(f"/api/v1/shops/{shop.id}/connection", headers=headers)
    assert response.status_code == 200
    body = response.get_json()
    assert body["state"] == "healthy" and body["cause"] is None and body["login_path"] == "instagram"
    assert body["account"] == {
        "username": "tea_house",
        "instagram_user_id": IG_USER,
        "facebook_page_id": None,
        "facebook_page_name": None,
    }
    assert body["token_age_seconds"] == 8 * 86400  # the factory's token was issued 8 days ago
    assert body["expiry_kind"] == "token" and body["token_expires_at"].startswith("2027-01-")
    assert body["diagnosis"] is None
    assert CANARY not in response.get_data(as_text=True)
    assert response.headers["Cache-Control"] == "no-store"


def test_a_facebook_login_connection_names_its_page_and_data_access_window(client, headers):
    connection = make_facebook_connection(page_name="Tea House Page", page_id="104200000000009")
    body = client.get(f"/api/v1/shops/{connection.shop_id}/connection", headers=headers).get_json()
    assert body["login_path"] == "facebook"
    assert body["account"]["facebook_page_id"] == "104200000000009"
    assert body["account"]["facebook_page_name"] == "Tea House Page"
    assert body["expiry_kind"] == "data_access_window"


def test_a_shop_that_never_connected_reads_not_connected(client, shop, headers):
    body = client.get(f"/api/v1/shops/{shop.id}/connection", headers=headers).get_json()
    assert body["state"] == "not_connected" and body["token_expires_at"] is None and body["diagnosis"] is None


@pytest.mark.parametrize("shop_id", ["999", "2147483648", "99999999999999999999"])
def test_an_unknown_shop_is_a_404_problem(client, headers, shop_id):
    """Promise 39 too: ids no column can hold are refused as unknown, never a 500."""
    assert_problem(client.get(f"/api/v1/shops/{shop_id}/connection", headers=headers), 404)


def test_a_broken_connection_carries_its_stored_diagnosis(client, db, connection, shop, headers, requests_mock):
    requests_mock.get(ME, **meta_error(190, "Error validating access token: the user changed their password.", 460))
    report(client, shop.id, headers, {"code": 190, "error_subcode": 460, "message": "password changed"})
    body = client.get(f"/api/v1/shops/{shop.id}/connection", headers=headers).get_json()
    assert body["state"] == "needs_reconnect" and body["cause"] == "password_changed"
    diagnosis = body["diagnosis"]
    assert diagnosis["cause"] == "password_changed" and diagnosis["confidence"] in ("certain", "likely", "possible")
    assert diagnosis["evidence"] and diagnosis["checklist"] and diagnosis["diagnosed_at"]
    stored = db.session.get(InstagramConnection, connection.id).diagnosis
    assert stored["causes"][0]["cause"] == "password_changed"  # the stored record, not worked out per request


# The token


def test_the_token_while_usable_is_served_uncached_and_audited_by_fingerprint(client, db, connection, shop):
    key, headers = make_key("token:read", name="feed sync")
    response = client.get(f"/api/v1/shops/{shop.id}/token", headers=headers)
    assert response.status_code == 200
    body = response.get_json()
    assert body["access_token"] == CANARY and body["token_fingerprint"] == connection.token_fingerprint
    assert response.headers["Cache-Control"] == "no-store"
    entry = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "api.token_read")).one()
    assert entry.actor_label == f"API key {key.key_id} (feed sync)" and entry.subject_shop_id == shop.id
    assert connection.token_fingerprint in entry.details and CANARY not in (entry.details or "")


@pytest.mark.parametrize("state", ["healthy", "expiring", "degraded"])
def test_the_token_is_served_in_each_usable_state(client, db, connection, shop, headers, now, state):
    set_state(connection, state, now, cause="provider_error" if state == "degraded" else None)
    db.session.commit()
    assert client.get(f"/api/v1/shops/{shop.id}/token", headers=headers).get_json()["access_token"] == CANARY


def test_no_token_once_meta_refused_it(client, db, connection, shop, headers, now):
    set_state(connection, "needs_reconnect", now, cause="app_removed")
    db.session.commit()
    body = assert_problem(client.get(f"/api/v1/shops/{shop.id}/token", headers=headers), 409, "token-unavailable")
    assert body["state"] == "needs_reconnect" and body["cause"] == "app_removed"
    assert CANARY not in str(body)
    refused = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "api.token_refused")).one()
    assert "needs_reconnect/app_removed" in refused.details


def test_no_token_past_its_end_date_even_before_the_worker_marks_it(client, shop, headers, now):
    make_connection(shop, token=CANARY, issued_at=now - timedelta(days=61), expires_at=now - timedelta(minutes=1))
    body = assert_problem(client.get(f"/api/v1/shops/{shop.id}/token", headers=headers), 409, "token-unavailable")
    assert body["state"] == "healthy" and body["cause"] == "token_expired"


def test_no_token_for_a_shop_that_never_connected(client, shop, headers):
    body = assert_problem(client.get(f"/api/v1/shops/{shop.id}/token", headers=headers), 409, "token-unavailable")
    assert body["state"] == "not_connected" and body["cause"] is None


def test_an_unreadable_token_is_a_409_naming_our_side_not_a_500(client, db, connection, shop, headers):
    connection.token_ciphertext = "gAAAAA-not-a-fernet-token"
    db.session.commit()
    body = assert_problem(client.get(f"/api/v1/shops/{shop.id}/token", headers=headers), 409, "token-unavailable")
    assert body["cause"] == "app_misconfigured"


def test_the_token_is_never_in_a_log_record_or_an_audit_row(client, db, connection, shop, headers, caplog, now):
    """Promise 15: every logger at DEBUG while the token is fetched, refused and reported; the canary is nowhere."""
    caplog.set_level(logging.DEBUG)
    for name in ("werkzeug", "urllib3", "flask_limiter", "webapp", "sqlalchemy.engine"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    assert client.get(f"/api/v1/shops/{shop.id}/token", headers=headers).status_code == 200
    report(client, shop.id, headers, {"code": 4, "message": f"Rate limited while using {CANARY}"})
    set_state(connection, "needs_reconnect", now, cause="password_changed")
    db.session.commit()
    assert client.get(f"/api/v1/shops/{shop.id}/token", headers=headers).status_code == 409
    assert caplog.records, "nothing was logged: the check would prove nothing"
    assert not [record for record in caplog.records if CANARY in record.getMessage()]
    for entry in db.session.scalars(select(AuditEntry)):
        assert CANARY not in f"{entry.action} {entry.actor_label} {entry.details} {entry.reason}"
    for event in db.session.scalars(select(ConnectionEvent)):
        assert CANARY not in event.message  # the report quoted it; the scrubber took it out


# Keys, scopes, revocation


ENDPOINTS = [
    ("GET", "/api/v1/shops/{shop}/connection", "status:read"),
    ("GET", "/api/v1/shops/{shop}/token", "token:read"),
    ("POST", "/api/v1/shops/{shop}/errors", "errors:write"),
    ("GET", "/api/v1/connections", "status:read"),
]


@pytest.mark.parametrize(("method", "path", "scope"), ENDPOINTS)
def test_each_endpoint_refuses_a_key_without_its_scope(client, connection, shop, method, path, scope):
    others = [other for other in ("status:read", "token:read", "errors:write", "webhooks:manage") if other != scope]
    _, headers = make_key(*others)
    response = client.open(
        path.format(shop=shop.id), method=method, headers={**headers, "Idempotency-Key": "x"}, json={"code": 190}
    )
    body = assert_problem(response, 403, "scope")
    assert body["required_scope"] == scope


@pytest.mark.parametrize(("method", "path", "scope"), ENDPOINTS)
def test_each_endpoint_answers_a_key_with_its_scope(client, connection, shop, method, path, scope, requests_mock):
    requests_mock.get(ME, **profile(IG_USER))
    _, headers = make_key(scope)
    response = client.open(
        path.format(shop=shop.id), method=method, headers={**headers, "Idempotency-Key": "x"}, json={"code": 190}
    )
    assert response.status_code == 200


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Basic dXNlcjpwYXNz",
        "Bearer",
        "Bearer ",
        "Bearer garbage",
        "Bearer ihk_000000000000_not-the-secret",
        "Token ihk_000000000000_not-the-secret",
        "Bearer " + "x" * 5000,
    ],
)
def test_a_missing_or_garbage_authorization_is_a_401_problem(client, connection, shop, authorization):
    headers = {} if authorization is None else {"Authorization": authorization}
    response = client.get(f"/api/v1/shops/{shop.id}/token", headers=headers)
    assert_problem(response, 401, "api-key")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_known_key_id_with_the_wrong_secret_is_refused(client, connection, shop):
    key, _ = make_key()
    forged = {"Authorization": f"Bearer ihk_{key.key_id}_{'A' * 43}"}
    assert_problem(client.get(f"/api/v1/shops/{shop.id}/connection", headers=forged), 401, "api-key")


def test_a_revoked_key_is_refused_at_once(client, db, connection, shop, now):
    key, headers = make_key()
    assert client.get(f"/api/v1/shops/{shop.id}/connection", headers=headers).status_code == 200
    api_keys.revoke(key, actor=None, now=now, label="tests")
    body = assert_problem(client.get(f"/api/v1/shops/{shop.id}/connection", headers=headers), 401, "api-key")
    assert "revoked" in body["detail"]


def test_a_session_cookie_counts_for_nothing(client, auth, connection, shop):
    """The API reads no cookie: a logged-in admin's browser without a key is refused like anyone."""
    auth.login_as(make_user(role="admin"))
    assert_problem(client.get(f"/api/v1/shops/{shop.id}/token"), 401, "api-key")


def test_use_moves_last_used_at(client, db, connection, shop, now):
    key, headers = make_key()
    assert key.last_used_at is None
    client.get(f"/api/v1/shops/{shop.id}/connection", headers=headers)
    db.session.refresh(key)
    assert key.last_used_at == now


# Rate limit per key


@pytest.mark.options(API_RATE_LIMIT="3 per minute")
def test_each_key_has_its_own_budget_across_the_api(client, connection, shop):
    _, first = make_key()
    _, second = make_key(name="feed sync")
    urls = [f"/api/v1/shops/{shop.id}/connection", "/api/v1/connections", f"/api/v1/shops/{shop.id}/connection"]
    for url in urls:
        assert client.get(url, headers=first).status_code == 200
    refused = client.get("/api/v1/connections", headers=first)
    assert_problem(refused, 429)
    assert "Retry-After" in refused.headers
    assert client.get("/api/v1/connections", headers=second).status_code == 200


@pytest.mark.options(API_RATE_LIMIT="3 per minute")
def test_refused_requests_are_not_counted(client, connection, shop):
    """Promise 38: counted only after the permission check, so a caller without the scope spends nothing."""
    key_id_headers = make_key("status:read")[1]
    for _ in range(5):
        assert client.get(f"/api/v1/shops/{shop.id}/token", headers=key_id_headers).status_code == 403
    assert client.get(f"/api/v1/shops/{shop.id}/connection", headers=key_id_headers).status_code == 200


# Error reports


def test_a_buggy_report_of_a_revocation_leaves_a_healthy_shop_healthy(
    client, db, connection, shop, headers, requests_mock
):
    """One caller's wrong report cannot disconnect a shop: Meta is asked at once with the stored token."""
    me = requests_mock.get(ME, **profile(IG_USER))
    response = report(client, shop.id, headers, {"code": 190, "error_subcode": 460, "message": "password changed"})
    assert response.status_code == 200
    body = response.get_json()
    assert body["classification"]["cause"] == "password_changed" and body["classification"]["needs_reconnect"]
    assert body["action"] == "not_confirmed"
    assert body["connection"] == {"state": "healthy", "cause": None}
    assert me.call_count == 1 and me.last_request.qs["access_token"] == [CANARY.lower()]
    db.session.expire_all()
    assert db.session.get(InstagramConnection, connection.id).state == "healthy"
    assert db.session.scalars(select(OutboundMail)).all() == []


def test_a_confirmed_revocation_disconnects_with_the_stored_diagnosis_and_a_mail(
    client, db, connection, shop, headers, requests_mock
):
    requests_mock.get(
        ME,
        **meta_error(
            190,
            "Error validating access token: The session has been invalidated because the user changed their password.",
            460,
        ),
    )
    body = report(client, shop.id, headers, {"code": 190, "error_subcode": 460, "message": "x"}).get_json()
    assert body["action"] == "confirmed_disconnected"
    assert body["connection"] == {"state": "needs_reconnect", "cause": "password_changed"}
    db.session.expire_all()
    row = db.session.get(InstagramConnection, connection.id)
    assert row.state == "needs_reconnect" and row.diagnosis and row.diagnosis["cause"] == "password_changed"
    mails = db.session.scalars(select(OutboundMail)).all()
    assert [(mail.kind, mail.to_address) for mail in mails] == [("disconnected", "owner@tea.example")]
    kinds = [event.kind for event in row.events.order_by(ConnectionEvent.id)]
    assert kinds[-2:] == ["check_failed", "error_reported"]


def test_meta_may_name_another_cause_than_the_report(client, db, connection, shop, headers, requests_mock):
    requests_mock.get(ME, **meta_error(190, "Error validating access token: user has not authorized application.", 458))
    body = report(client, shop.id, headers, {"code": 190, "error_subcode": 460, "message": "x"}).get_json()
    assert body["classification"]["cause"] == "password_changed"  # what the report said
    assert body["connection"] == {"state": "needs_reconnect", "cause": "app_removed"}  # what Meta said


def test_a_transient_report_counts_toward_degraded_once_a_day_without_calling_meta(
    client, db, connection, shop, headers, requests_mock
):
    """Promise 5: transient trouble never disconnects, and counts at most once a day."""
    first = report(client, shop.id, headers, {"code": 4, "message": "Application request limit reached"}, key="a")
    second = report(client, shop.id, headers, {"code": 2, "message": "Service temporarily unavailable"}, key="b")
    assert first.get_json()["action"] == second.get_json()["action"] == "recorded_transient"
    assert requests_mock.call_count == 0
    db.session.expire_all()
    row = db.session.get(InstagramConnection, connection.id)
    assert row.state == "degraded" and row.cause == "provider_error"
    assert row.failure_days == 1 and row.consecutive_failures == 2 and row.retry_at is not None
    reported = row.events.filter(ConnectionEvent.kind == "error_reported").all()
    assert [event.cause for event in reported] == ["rate_limited", "provider_error"]


def test_a_transient_report_does_not_move_a_row_a_worker_holds(client, db, connection, shop, headers, now):
    """The worker's write-back is fenced on the version: moving it now would throw its answer away."""
    connection.lease_owner, connection.lease_expires_at = "worker-1", now + timedelta(minutes=2)
    db.session.commit()
    version = connection.version
    body = report(client, shop.id, headers, {"code": 4, "message": "limit"}).get_json()
    assert body["action"] == "recorded_transient" and body["connection"]["state"] == "healthy"
    db.session.expire_all()
    assert db.session.get(InstagramConnection, connection.id).version == version


@pytest.mark.parametrize(
    ("body", "cause"),
    [
        ({"code": 100, "message": "Unsupported get request. Object with ID '1' does not exist"}, "request_error"),
        ({"code": 1, "message": "Error validating client secret."}, "app_misconfigured"),
        ({"message": "something odd happened"}, "unknown"),
        ({}, "unknown"),
    ],
)
def test_errors_not_about_the_token_change_nothing(client, db, connection, shop, headers, requests_mock, body, cause):
    answer = report(client, shop.id, headers, body).get_json()
    assert answer["classification"]["cause"] == cause and answer["action"] == "ignored"
    assert answer["connection"] == {"state": "healthy", "cause": None} and requests_mock.call_count == 0


def test_a_report_about_a_broken_connection_calls_nobody(client, db, connection, shop, headers, now, requests_mock):
    set_state(connection, "needs_reconnect", now, cause="app_removed")
    db.session.commit()
    body = report(client, shop.id, headers, {"code": 190, "error_subcode": 460, "message": "x"}).get_json()
    assert body["action"] == "ignored" and requests_mock.call_count == 0


def test_the_same_report_twice_is_applied_once_and_answered_the_same(
    client, db, connection, shop, headers, requests_mock
):
    me = requests_mock.get(ME, **profile(IG_USER))
    body = {"code": 190, "error_subcode": 460, "message": "password changed", "fbtrace_id": "Ab1"}
    first = report(client, shop.id, headers, body, key="retry-me")
    again = report(client, shop.id, headers, dict(reversed(list(body.items()))), key="retry-me")
    assert first.status_code == again.status_code == 200
    assert again.get_json() == first.get_json() and again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert me.call_count == 1
    assert len(db.session.get(InstagramConnection, connection.id).events.filter_by(kind="error_reported").all()) == 1


def test_the_same_key_with_another_body_is_a_422_problem(client, connection, shop, headers):
    report(client, shop.id, headers, {"code": 4, "message": "limit"}, key="k")
    assert_problem(
        report(client, shop.id, headers, {"code": 17, "message": "limit"}, key="k"), 422, "idempotency-key-reused"
    )


def test_idempotency_keys_belong_to_one_api_key(client, connection, shop, headers):
    report(client, shop.id, headers, {"code": 4, "message": "limit"}, key="k")
    other = make_key("errors:write", name="feed sync")[1]
    assert report(client, shop.id, other, {"code": 17, "message": "limit"}, key="k").status_code == 200


@pytest.mark.parametrize("key", [None, "", "with space", "ä", "x" * 256])
def test_a_report_without_a_usable_idempotency_key_is_a_400_problem(client, connection, shop, headers, key):
    extra = {} if key is None else {"Idempotency-Key": key}
    response = client.post(
        f"/api/v1/shops/{shop.id}/errors", headers={**headers, **extra}, json={"code": 4, "message": "limit"}
    )
    assert_problem(response, 400, "idempotency-key-missing")


@pytest.mark.parametrize(
    "body",
    [
        {"code": "190"},
        {"code": 190.5},
        {"code": 2**40},
        {"message": "a\x00b"},
        {"message": "x" * 2001},
        {"code": 190, "http_status": 99},
        {"code": 190, "is_transient": 1},
        {"code": 190, "is_transient": "yes"},
        [1, 2],
    ],
)
def test_a_malformed_report_is_a_422_problem(client, connection, shop, headers, body):
    body_problem = assert_problem(report(client, shop.id, headers, body), 422, "validation")
    assert body_problem["errors"]


def test_a_report_that_is_not_json_is_a_415_problem(client, connection, shop, headers):
    response = client.post(
        f"/api/v1/shops/{shop.id}/errors", headers={**headers, "Idempotency-Key": "k"}, data="code=190"
    )
    assert_problem(response, 415)


def test_meta_fields_we_do_not_read_are_accepted(client, connection, shop, headers):
    body = {"code": 4, "message": "limit", "error_data": {"blame_field_specs": [["x"]]}, "is_transient": True}
    assert report(client, shop.id, headers, body).status_code == 200


def test_a_report_for_a_shop_without_a_token_is_a_409_and_may_be_retried(client, shop, headers, requests_mock):
    assert_problem(report(client, shop.id, headers, {"code": 4, "message": "x"}, key="early"), 409, "not-connected")
    make_connection(shop, token=CANARY, instagram_user_id=IG_USER)
    assert report(client, shop.id, headers, {"code": 4, "message": "x"}, key="early").status_code == 200


# The list of connections


def test_the_list_pages_through_every_connection_once(client, headers):
    ids = [make_connection(make_shop()).shop_id for _ in range(5)]
    seen, cursor, pages = [], None, 0
    while True:
        query = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        body = client.get("/api/v1/connections", headers=headers, query_string=query).get_json()
        seen += [item["shop_id"] for item in body["connections"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == ids and pages == 3


def test_the_list_filters_by_state_and_cause(client, db, headers, now):
    broken = make_connection(make_shop())
    make_connection(make_shop())
    set_state(broken, "needs_reconnect", now, cause="password_changed")
    db.session.commit()
    by_state = client.get("/api/v1/connections?state=needs_reconnect", headers=headers).get_json()
    by_cause = client.get("/api/v1/connections?cause=password_changed", headers=headers).get_json()
    none = client.get("/api/v1/connections?cause=app_removed", headers=headers).get_json()
    assert [c["shop_id"] for c in by_state["connections"]] == [broken.shop_id]
    assert by_cause["connections"] == by_state["connections"] and none == {"connections": [], "next_cursor": None}


@pytest.mark.parametrize("cursor", ["garbage", "YzE6", "eDox", "YzE6LTE", "YzE6OTk5OTk5OTk5OTk5OTk5"])
def test_a_cursor_we_did_not_give_out_is_a_400_problem(client, headers, cursor):
    response = client.get("/api/v1/connections", headers=headers, query_string={"cursor": cursor})
    assert_problem(response, 400, "invalid-cursor")


@pytest.mark.parametrize("query", ["limit=0", "limit=201", "limit=ten", "state=broken", "cause=gremlins"])
def test_bad_list_parameters_are_a_422_problem(client, headers, query):
    assert_problem(client.get(f"/api/v1/connections?{query}", headers=headers), 422, "validation")


# The document and the edges


def test_the_openapi_document_is_3_1_and_needs_no_key(client):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    document = response.get_json()
    assert document["openapi"] == "3.1.0"
    assert {"/api/v1/shops/{shop_id}/connection", "/api/v1/shops/{shop_id}/token", "/api/v1/connections"} <= set(
        document["paths"]
    )
    assert document["paths"]["/api/v1/shops/{shop_id}/token"]["get"]["x-required-scope"] == "token:read"


def test_every_problem_type_is_explained_at_its_address(client):
    from webapp.api.problems import PROBLEM_TYPES

    for problem in PROBLEM_TYPES.values():
        body = client.get(problem.uri).get_json()
        assert body["type"] == problem.uri and body["status"] == problem.status
    assert_problem(client.get("/api/v1/problems/no-such-thing"), 404)


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/api/v1/nothing-here", 404),
        ("GET", "/api/v2/shops/1/connection", 404),
        ("DELETE", "/api/v1/connections", 405),
        ("PUT", "/api/v1/shops/1/errors", 405),
        ("GET", "/api/v1/connections?cursor=a%00b", 400),
    ],
)
def test_any_other_error_under_api_is_a_problem_never_a_page(client, headers, method, path, status):
    response = client.open(path, method=method, headers=headers)
    assert_problem(response, status)
    assert "<html" not in response.get_data(as_text=True)


def test_pages_outside_the_api_still_get_html_errors(client):
    response = client.get("/no-such-page")
    assert response.status_code == 404 and response.mimetype == "text/html"


def test_an_oversized_report_is_a_413_problem(client, connection, shop, headers):
    """Promise 32: too much data gets a clear answer, here a problem document."""
    response = report(client, shop.id, headers, {"code": 4, "message": "x" * (1024 * 1024 + 1)})
    assert_problem(response, 413)
