"""Keeping a Facebook Login connection alive: the Page check, its causes and the data-access window.

Meta is requests-mock at graph.facebook.com, answering with the shapes and texts the sandbox and the
public reports it cites use (webapp/sandbox/facebook.py).
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from tests import factories
from tests.conftest import TEST_FACEBOOK_APP_SECRET
from webapp.extensions import db
from webapp.models import ConnectionEvent, ConnectionState, LoginPath
from webapp.sandbox.facebook import PAGE_NOT_ACCESSIBLE, PAGE_ROLE_GONE, PAGE_TASKS_TOO_LOW
from webapp.services.connections.diagnosis import current_diagnosis
from webapp.services.connections.state import SYSTEM
from webapp.services.keepalive import manual, scheduler
from webapp.services.keepalive.leases import Work, claim_due, work_for
from webapp.services.keepalive.policy import Policy, schedule_after_success
from webapp.services.meta.facebook import appsecret_proof
from webapp.services.runtime import facebook_client, instagram_client, token_vault

GRAPH = "https://graph.facebook.com/v23.0"
PAGE_ID = "104200000000001"
IG_ID = "17841400000000001"
PAGE_TOKEN = "EAAGpage-token-QUOTED-1234567890"
USER_TOKEN = "EAAGuser-token-QUOTED-0987654321"
FULL_TASKS = ["ANALYZE", "ADVERTISE", "MODERATE", "CREATE_CONTENT", "MANAGE"]


def unix(moment: datetime) -> int:
    return int(moment.timestamp())


@pytest.fixture
def connection(app, now):
    vault = token_vault()
    connection = factories.make_connection(
        token=PAGE_TOKEN,
        username="tea_house",
        instagram_user_id=IG_ID,
        issued_at=now - timedelta(days=3),
        expires_at=now + timedelta(days=87),
        login_path=LoginPath.FACEBOOK,
        facebook_user_id="10000000000001",
        facebook_page_id=PAGE_ID,
        facebook_page_name="Tea House",
        facebook_page_tasks=",".join(FULL_TASKS),
        user_token_ciphertext=vault.encrypt(USER_TOKEN),
        user_token_expires_at=now + timedelta(days=57),
    )
    connection.granted_permissions = "instagram_basic,pages_show_list,pages_read_engagement,business_management"
    schedule_after_success(connection, now, Policy(), random.Random(1))
    db.session.commit()
    return connection


def debug_answer(now, *, valid=True, error=None, ig_targets=(IG_ID,), page_targets=(PAGE_ID,), data_access_days=85):
    data = {
        "app_id": "551100223344",
        "type": "PAGE",
        "is_valid": valid,
        "expires_at": 0,
        "data_access_expires_at": unix(now + timedelta(days=data_access_days)),
        "issued_at": unix(now - timedelta(days=3)),
        "scopes": ["instagram_basic", "pages_show_list", "pages_read_engagement", "business_management"],
        "granular_scopes": [
            {"scope": "instagram_basic", "target_ids": list(ig_targets)},
            {"scope": "pages_show_list", "target_ids": list(page_targets)},
            {"scope": "pages_read_engagement", "target_ids": list(page_targets)},
            {"scope": "business_management"},
        ],
        "user_id": "10000000000001",
    }
    if error:
        data["error"] = error
    return {"data": data}


def accounts_answer(tasks=FULL_TASKS, listed=True):
    page = {
        "id": PAGE_ID,
        "name": "Tea House",
        "access_token": "EAAGfresh-page-token",
        "tasks": list(tasks),
        "instagram_business_account": {"id": IG_ID, "username": "tea_house"},
    }
    return {"data": [page] if listed else []}


def page_answer(linked=IG_ID, username="tea_house"):
    body = {"id": PAGE_ID, "name": "Tea House"}
    if linked:
        body["instagram_business_account"] = {"id": linked, "username": username}
    return body


def graph_error(code, message, subcode=None, error_type="OAuthException"):
    error = {"message": message, "type": error_type, "code": code, "fbtrace_id": "AbCdEf"}
    if subcode is not None:
        error["error_subcode"] = subcode
    return {"json": {"error": error}, "status_code": 400}


def meta(requests_mock, now, *, debug=None, accounts=None, page=None):
    requests_mock.get(f"{GRAPH}/debug_token", json=debug or debug_answer(now))
    requests_mock.get(f"{GRAPH}/me/accounts", **(accounts or {"json": accounts_answer()}))
    requests_mock.get(f"{GRAPH}/{PAGE_ID}", **(page or {"json": page_answer()}))


def run_check(app, connection, now):
    return manual.run_now(
        app,
        connection.id,
        Work.CHECK,
        actor=SYSTEM,
        now=now,
        client=instagram_client(),
        facebook=facebook_client(),
        vault=token_vault(),
        policy=Policy(),
    )


def last_event(connection) -> ConnectionEvent:
    return connection.events.order_by(ConnectionEvent.id.desc()).first()


def test_a_facebook_connection_is_checked_never_refreshed(app, connection, now, requests_mock):
    assert connection.refresh_due_at is None
    # Even a week old, nothing is due but the check; Instagram Login would be refreshing by now.
    assert work_for(connection, now + timedelta(days=8), Policy()) == Work.CHECK
    meta(requests_mock, now)
    result = run_check(app, connection, now)
    assert result.summary == "checked"
    db.session.refresh(connection)
    assert connection.state == ConnectionState.HEALTHY
    assert connection.token_expires_at == datetime.fromtimestamp(unix(now + timedelta(days=85)), UTC)
    assert connection.refresh_due_at is None
    assert "“Tea House” still reaches @tea_house; your role there: Admin" in last_event(connection).message
    # Every call with a user or Page token carries its appsecret_proof; debug_token uses the app token.
    for call in requests_mock.request_history:
        query = parse_qs(urlsplit(call.url).query)
        if urlsplit(call.url).path.endswith("/debug_token"):
            assert query["input_token"] == [PAGE_TOKEN]
            continue
        token = query["access_token"][0]
        assert query["appsecret_proof"] == [appsecret_proof(token, TEST_FACEBOOK_APP_SECRET)]
    assert [urlsplit(c.url).path for c in requests_mock.request_history] == [
        "/v23.0/debug_token",
        "/v23.0/me/accounts",
        f"/v23.0/{PAGE_ID}",
    ]


def test_a_manual_renew_of_a_facebook_connection_is_explained_not_attempted(app, connection, now, requests_mock):
    result = manual.run_now(
        app,
        connection.id,
        Work.REFRESH,
        actor=SYSTEM,
        now=now,
        client=instagram_client(),
        facebook=facebook_client(),
        vault=token_vault(),
        policy=Policy(),
    )
    assert result.summary == "not_renewable"
    assert "Renew access" in result.message
    assert requests_mock.call_count == 0


@pytest.mark.parametrize(
    ("debug_error", "cause"),
    [
        (
            {
                "code": 190,
                "subcode": 460,
                "message": "The session has been invalidated because the user changed their password or Facebook has changed the session for security reasons.",
            },
            "password_changed",
        ),
        (
            {
                "code": 190,
                "subcode": 459,
                "message": "You cannot access the app till you log in to www.facebook.com and follow the instructions given.",
            },
            "account_checkpoint",
        ),
        (
            {"code": 190, "subcode": 458, "message": "The user has not authorized application 551100223344."},
            "app_removed",
        ),
        (
            {
                "code": 190,
                "subcode": 493,
                "message": "The access token is invalid since the user hasn't engaged the app in longer than 90 days.",
            },
            "data_access_expired",
        ),
        ({"code": 190, "message": PAGE_ROLE_GONE}, "permissions_changed"),
        ({"code": 190, "message": PAGE_NOT_ACCESSIBLE}, "page_unlinked"),
    ],
)
def test_a_token_meta_no_longer_accepts_names_its_cause(app, connection, now, requests_mock, debug_error, cause):
    meta(requests_mock, now, debug=debug_answer(now, valid=False, error=debug_error))
    result = run_check(app, connection, now)
    assert result.summary == "needs_reconnect"
    db.session.refresh(connection)
    assert (connection.state, connection.cause) == (ConnectionState.NEEDS_RECONNECT, cause)
    assert current_diagnosis(connection, now).primary.cause.id == cause
    assert requests_mock.call_count == 1  # an invalid token stops the check at once


def test_a_lowered_role_names_the_page_and_the_role_that_went(app, connection, now, requests_mock):
    meta(
        requests_mock,
        now,
        accounts={"json": accounts_answer(tasks=["ANALYZE"])},
        page=graph_error(200, PAGE_TASKS_TOO_LOW),
    )
    run_check(app, connection, now)
    db.session.refresh(connection)
    assert connection.cause == "permissions_changed"
    assert connection.page_tasks == ["ANALYZE"]  # the card shows the role as it is now
    event = last_event(connection)
    assert "Your role on the Facebook Page “Tea House” is now Analyst (ANALYZE); it was Admin." in event.message
    diagnosis = current_diagnosis(connection, now)
    assert (diagnosis.primary.cause.id, diagnosis.primary.confidence) == ("permissions_changed", "certain")
    assert diagnosis.primary.evidence[0] == (
        "Our check of the Facebook Page found: Your role on the Facebook Page “Tea House” is now Analyst "
        "(ANALYZE); it was Admin. The shop needs Admin, Editor or Moderator."
    )
    # Facebook Login has no 60-day token: the age is measured against the data-access window.
    assert any("90-day data access window" in line for line in diagnosis.primary.evidence)
    assert not any("60-day" in line or "Instagram" in line for line in diagnosis.primary.evidence)


def test_a_role_removed_from_the_page_is_a_permissions_change(app, connection, now, requests_mock):
    meta(requests_mock, now, accounts={"json": accounts_answer(listed=False)})
    run_check(app, connection, now)
    db.session.refresh(connection)
    assert connection.cause == "permissions_changed"
    assert "is now no role; it was Admin" in last_event(connection).message


def test_an_unlinked_instagram_account_is_page_unlinked(app, connection, now, requests_mock):
    meta(requests_mock, now, page={"json": page_answer(linked=None)})
    run_check(app, connection, now)
    db.session.refresh(connection)
    assert connection.cause == "page_unlinked"
    assert "“Tea House” no longer has an Instagram account linked" in last_event(connection).message


def test_a_page_linked_to_another_account_is_page_unlinked_and_keeps_the_username(app, connection, now, requests_mock):
    meta(requests_mock, now, page={"json": page_answer(linked="17841499999999999", username="someone_else")})
    run_check(app, connection, now)
    db.session.refresh(connection)
    assert connection.cause == "page_unlinked"
    assert connection.username == "tea_house"
    assert "now linked to @someone_else" in last_event(connection).message


def test_a_deleted_page_is_page_unlinked_not_a_request_error(app, connection, now, requests_mock):
    unsupported = (
        f"Unsupported get request. Object with ID '{PAGE_ID}' does not exist, cannot be loaded due to missing "
        "permissions, or does not support this operation."
    )
    meta(requests_mock, now, page=graph_error(100, unsupported, 33, "GraphMethodException"))
    run_check(app, connection, now)
    db.session.refresh(connection)
    assert (connection.state, connection.cause) == (ConnectionState.NEEDS_RECONNECT, "page_unlinked")
    assert "was deleted or unpublished" in last_event(connection).message


def test_a_permission_no_longer_covering_the_account_is_a_permissions_change(app, connection, now, requests_mock):
    meta(requests_mock, now, debug=debug_answer(now, ig_targets=("17841499999999999",)))
    run_check(app, connection, now)
    db.session.refresh(connection)
    assert connection.cause == "permissions_changed"
    assert "instagram_basic no longer covers the shop's Instagram account" in last_event(connection).message


def test_an_expired_user_token_does_not_fail_a_working_page_token(app, connection, now, requests_mock):
    meta(
        requests_mock,
        now,
        accounts=graph_error(190, "Error validating access token: Session has expired on Monday.", 463),
    )
    result = run_check(app, connection, now)
    assert result.summary == "checked"
    db.session.refresh(connection)
    assert connection.page_tasks == FULL_TASKS  # unknown this time: the last known tasks stay


def test_meta_quoting_the_tokens_back_reaches_no_event(app, connection, now, requests_mock):
    quoted = f"Invalid OAuth access token: {PAGE_TOKEN} / {USER_TOKEN}"
    meta(requests_mock, now, debug=debug_answer(now, valid=False, error={"code": 190, "message": quoted}))
    run_check(app, connection, now)
    for event in connection.events:
        assert PAGE_TOKEN not in event.message and USER_TOKEN not in event.message
    db.session.refresh(connection)
    assert PAGE_TOKEN not in (connection.last_error_message or "")
    assert PAGE_TOKEN not in str(connection.diagnosis)


def test_provider_trouble_leaves_a_facebook_connection_degraded(app, connection, now, requests_mock):
    requests_mock.get(f"{GRAPH}/debug_token", status_code=503, text="Service Unavailable")
    result = run_check(app, connection, now)
    assert result.summary == "transient"
    db.session.refresh(connection)
    assert connection.state == ConnectionState.DEGRADED


def test_the_end_of_the_data_access_window_is_data_access_expired(app, connection, now):
    connection.token_expires_at = now - timedelta(minutes=1)
    db.session.commit()
    scheduler.scheduler_tick("tick-owner", now, Policy())
    db.session.refresh(connection)
    assert (connection.state, connection.cause) == (ConnectionState.NEEDS_RECONNECT, "data_access_expired")
    assert "90-day data access window ended" in last_event(connection).message
    assert current_diagnosis(connection, now).primary.cause.id == "data_access_expired"


def test_the_worker_claim_carries_the_page_and_both_tokens(app, connection, now):
    connection.check_due_at = connection.due_at = now - timedelta(minutes=1)
    db.session.commit()
    (claim,) = claim_due(owner="w1", now=now, limit=5, policy=Policy(), vault=token_vault())
    assert claim.via_facebook and claim.work == Work.CHECK
    assert claim.page.page_id == PAGE_ID and claim.page.instagram_account_id == IG_ID
    assert claim.page.page_token == PAGE_TOKEN and claim.page.user_token == USER_TOKEN
    assert PAGE_TOKEN not in repr(claim) and USER_TOKEN not in repr(claim)


def test_a_lowered_role_is_not_reported_as_a_permission_taken_away(app, connection, now, requests_mock):
    from webapp.services.connections.diagnosis import permission_facts

    meta(requests_mock, now, accounts={"json": accounts_answer(tasks=["ANALYZE"])})
    run_check(app, connection, now)
    db.session.refresh(connection)
    assert connection.cause == "permissions_changed"
    assert permission_facts(connection).removed == []


def test_a_window_about_to_close_is_expiring_until_access_is_renewed(app, connection, now, requests_mock):
    meta(requests_mock, now, debug=debug_answer(now, data_access_days=5))
    assert run_check(app, connection, now).summary == "checked"
    db.session.refresh(connection)
    assert (connection.state, connection.cause, connection.diagnosis) == (ConnectionState.EXPIRING, None, None)
    # Still working: a second check is not a recovery, and nothing is explained as trouble.
    assert run_check(app, connection, now + timedelta(minutes=5)).summary == "checked"
    requests_mock.get(f"{GRAPH}/debug_token", json=debug_answer(now, data_access_days=89))
    assert run_check(app, connection, now + timedelta(minutes=10)).summary == "checked"
    db.session.refresh(connection)
    assert connection.state == ConnectionState.HEALTHY


def test_a_broken_connection_that_works_again_near_its_window_end_resolves_its_incident(
    app, connection, now, requests_mock
):
    meta(requests_mock, now, page={"json": page_answer(linked=None)})
    run_check(app, connection, now)
    db.session.refresh(connection)
    assert connection.incident_started_at is not None
    meta(requests_mock, now, debug=debug_answer(now, data_access_days=5))
    assert run_check(app, connection, now + timedelta(minutes=5)).summary == "recovered"
    db.session.refresh(connection)
    assert connection.state == ConnectionState.EXPIRING and connection.incident_started_at is None
    assert connection.resolved_incident_at is not None  # the "connected again" notice is due


def test_the_lease_check_counts_every_call_of_a_facebook_check():
    from webapp.config import FACEBOOK_CHECK_CALLS, ConfigError, check_lease
    from webapp.services.keepalive.facebook_check import PAGE_CHECK_CALLS

    assert PAGE_CHECK_CALLS == FACEBOOK_CHECK_CALLS
    check_lease({"INSTAGRAM_HTTP_TIMEOUT": 25.0, "WORKER_LEASE_SECONDS": 75, "LOGIN_PATHS": ("instagram",)})
    with pytest.raises(ConfigError, match="a Facebook Login check"):
        check_lease({"INSTAGRAM_HTTP_TIMEOUT": 25.0, "WORKER_LEASE_SECONDS": 75, "LOGIN_PATHS": ("facebook",)})


def test_a_rate_limit_on_the_role_lookup_pauses_instead_of_calling_on(app, connection, now, requests_mock):
    meta(
        requests_mock,
        now,
        accounts={
            **graph_error(4, "(#4) Application request limit reached"),
            "headers": {"X-App-Usage": '{"call_count": 100, "total_time": 40, "total_cputime": 30}'},
        },
    )
    assert run_check(app, connection, now).summary == "transient"
    db.session.refresh(connection)
    assert (connection.state, connection.cause) == (ConnectionState.DEGRADED, "rate_limited")
    assert not any(urlsplit(c.url).path == f"/v23.0/{PAGE_ID}" for c in requests_mock.request_history)


def test_the_pages_usage_headers_slow_the_shop_down(app, connection, now, requests_mock):
    meta(requests_mock, now)
    busy = {PAGE_ID: [{"type": "pages", "call_count": 97, "total_cputime": 5, "total_time": 5}]}
    import json as _json

    requests_mock.get(
        f"{GRAPH}/{PAGE_ID}", json=page_answer(), headers={"X-Business-Use-Case-Usage": _json.dumps(busy)}
    )
    assert run_check(app, connection, now).summary == "checked"
    db.session.refresh(connection)
    assert connection.usage_percent == 97 and connection.paused_until is not None


def test_new_pages_experience_admins_stay_connected(app, connection, now, requests_mock):
    meta(
        requests_mock,
        now,
        accounts={"json": accounts_answer(tasks=["PROFILE_PLUS_FULL_CONTROL", "PROFILE_PLUS_ANALYZE"])},
    )
    assert run_check(app, connection, now).summary == "checked"
    db.session.refresh(connection)
    assert connection.state == ConnectionState.HEALTHY and "your role there: Admin" in last_event(connection).message
