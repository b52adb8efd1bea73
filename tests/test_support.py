"""Support: fleet, search, shop detail, view-as-merchant, audit log, staff (promises 25-29)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DatabaseError

from testbed.client import AuthActions
from tests.factories import DEFAULT_PASSWORD, make_connection, make_shop, make_user
from webapp.models import (
    AuditEntry,
    ConnectionEvent,
    Impersonation,
    InstagramConnection,
    Notification,
    OutboundMail,
    User,
)
from webapp.services.accounts import revoke_all_sessions


@pytest.fixture
def shop():
    shop = make_shop(name="Bloom & Stem", domain="bloom.example")
    make_user(shop=shop, email="maya@bloom.example", name="Maya")
    make_connection(shop, username="bloom_and_stem", token="IGAAsupport-canary-99")
    return shop


@pytest.fixture
def agent(auth):
    user = make_user(role="support", email="sam@support.example", name="Sam")
    auth.login_as(user)
    return user


def impersonate(client, auth, shop, reason="Ticket 4411: merchant cannot connect", password=DEFAULT_PASSWORD):
    token = auth.csrf_token(f"/support/shops/{shop.id}")
    return client.post(
        f"/support/shops/{shop.id}/impersonate", data={"csrf_token": token, "reason": reason, "password": password}
    )


def audit_actions(db) -> list[str]:
    db.session.expire_all()
    return [row.action for row in db.session.scalars(select(AuditEntry).order_by(AuditEntry.id))]


# ---- promise 25 ---------------------------------------------------------------------------------


def test_agent_views_the_shop_as_its_merchant(client, auth, db, shop, agent):
    """Promise 25/26: start with reason and password, land on the merchant's dashboard with a banner."""
    response = impersonate(client, auth, shop)
    assert response.status_code == 302 and response.headers["Location"] == "/"
    page = client.get("/").get_data(as_text=True)
    assert "<h1>Bloom &amp; Stem</h1>" in page
    assert 'id="impersonation-banner"' in page and "You are viewing <strong>Bloom &amp; Stem</strong> as Maya" in page
    assert "IGAAsupport-canary-99" not in page  # promise 16: only the fingerprint
    impersonation = db.session.scalar(select(Impersonation))
    assert impersonation.reason == "Ticket 4411: merchant cannot connect"
    assert impersonation.expires_at - impersonation.started_at == timedelta(minutes=30)


def test_merchants_cannot_impersonate(client, auth, db, shop):
    """Promise 25: only support staff impersonate."""
    other_merchant = make_user(shop=make_shop())
    auth.login_as(other_merchant)
    assert impersonate(client, auth, shop).status_code == 403
    assert db.session.scalar(select(func.count(Impersonation.id))) == 0


def test_shop_without_a_merchant_cannot_be_viewed(client, auth, db, agent):
    """Promise 25: only merchants are impersonated."""
    empty = make_shop(name="No logins")
    response = impersonate(client, auth, empty)
    assert response.status_code == 302
    assert "no active merchant login" in client.get(response.headers["Location"]).get_data(as_text=True)


def test_never_nested(client, auth, db, shop, agent):
    """Promise 25: while viewing as a merchant, staff pages (and a second start) are refused."""
    impersonate(client, auth, shop)
    second = make_shop(name="Second")
    make_user(shop=second)
    token = auth.csrf_token("/")
    refused = client.post(
        f"/support/shops/{second.id}/impersonate",
        data={"csrf_token": token, "reason": "another ticket 12", "password": DEFAULT_PASSWORD},
    )
    assert refused.status_code == 403
    assert client.get("/support/").status_code == 403
    assert db.session.scalar(select(func.count(Impersonation.id))) == 1


# ---- promise 26 ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reason,password,message",
    [
        ("", DEFAULT_PASSWORD, "Give a reason"),
        ("short", DEFAULT_PASSWORD, "at least 8 characters"),
        ("Ticket 4411: merchant asks", "not-my-password", "Your password is not correct"),
        ("Ticket 4411: merchant asks", "", "Enter your own password"),
    ],
)
def test_start_needs_a_reason_and_the_agents_password(client, auth, db, shop, agent, reason, password, message):
    """Promise 26."""
    response = impersonate(client, auth, shop, reason=reason, password=password)
    assert response.status_code == 302
    assert message in client.get(response.headers["Location"]).get_data(as_text=True)
    assert db.session.scalar(select(func.count(Impersonation.id))) == 0


def test_start_and_stop_are_post_with_csrf(client, auth, shop, agent):
    """Promise 26."""
    assert client.get(f"/support/shops/{shop.id}/impersonate").status_code == 405
    no_csrf = client.post(
        f"/support/shops/{shop.id}/impersonate", data={"reason": "Ticket 4411 x", "password": DEFAULT_PASSWORD}
    )
    assert no_csrf.status_code == 400
    impersonate(client, auth, shop)
    assert client.get("/support/impersonation/stop").status_code == 405
    assert client.post("/support/impersonation/stop").status_code == 400


def test_time_box_ends_it_on_the_next_request(client, auth, db, shop, agent):
    """Promise 26: the hard time limit."""
    impersonate(client, auth, shop)
    impersonation = db.session.scalar(select(Impersonation))
    impersonation.expires_at = datetime.now(UTC) - timedelta(seconds=1)
    db.session.commit()
    assert client.get("/").headers["Location"] == "/support/"
    page = client.get("/support/").get_data(as_text=True)
    assert "Your time viewing the shop as its merchant ran out" in page
    db.session.expire_all()
    assert db.session.scalar(select(Impersonation)).ended_reason == "expired"
    assert audit_actions(db)[-1] == "impersonation.stop"


def test_banner_is_on_fragments_too(client, auth, shop, agent):
    """Promise 26: the banner shows on every fragment (out of band)."""
    impersonate(client, auth, shop)
    fragment = client.get("/card", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "<html" not in fragment
    assert 'id="impersonation-banner"' in fragment and 'hx-swap-oob="true"' in fragment


def test_stop_returns_to_the_shop_page(client, auth, db, shop, agent):
    impersonate(client, auth, shop)
    response = client.post("/support/impersonation/stop", data={"csrf_token": auth.csrf_token("/")})
    assert response.headers["Location"] == f"/support/shops/{shop.id}"
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Stopped viewing Bloom &amp; Stem" in page and 'id="impersonation-banner"' not in page


# ---- promise 27 ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "method,path",
    [
        ("POST", "/instagram/connect"),
        ("GET", "/instagram/disconnect"),
        ("POST", "/instagram/disconnect"),
        ("GET", "/instagram/switch"),
        ("POST", "/instagram/switch/cancel"),
        ("GET", "/instagram/callback?code=x&state=y"),
        ("GET", "/account/password"),
        ("POST", "/account/password"),
        ("GET", "/account/notifications"),
        ("GET", "/instagram/reconnect/sometoken"),
    ],
)
def test_owner_only_actions_are_refused(client, auth, db, shop, agent, method, path):
    """Promises 27 and 28: no connecting, disconnecting, or changing the merchant's account; each try is audited."""
    impersonate(client, auth, shop)
    token = auth.csrf_token("/")
    response = client.open(
        path,
        method=method,
        data={
            "csrf_token": token,
            "confirm": "y",
            "current_password": DEFAULT_PASSWORD,
            "new_password": "x" * 12,
            "confirm_password": "x" * 12,
        },
    )
    assert response.status_code == 403
    page = response.get_data(as_text=True)
    assert "Only the shop&#39;s owner can do this; you are viewing as support." in page
    assert "Send reconnect link" in page and "This attempt is in the audit log." in page
    db.session.expire_all()
    connection = db.session.scalar(select(InstagramConnection))
    assert connection.state == "healthy" and connection.has_token
    # Promise 28: the refused attempt is on the record, naming the agent, the shop and the view.
    refused = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "impersonation.refused")).all()
    assert len(refused) == 1
    viewing = db.session.scalar(select(Impersonation))
    assert refused[0].actor_id == agent.id and refused[0].actor_label == "sam@support.example (support)"
    assert refused[0].subject_shop_id == shop.id and refused[0].impersonation_id == viewing.id
    assert refused[0].details.startswith(f"{method} {path.split('?')[0]} (")
    assert "impersonation.write" not in audit_actions(db)


OWNER_ONLY_REASON = "Only the shop&#39;s owner can do this; you are viewing as support."


def disabled_buttons(page: str) -> list[tuple[str, str]]:
    """Each disabled button's label, with the id of the text that says why, in page order."""
    found = re.findall(r'<button [^>]*disabled aria-describedby="([\w-]+)"[^>]*>([^<]+)</button>', page)
    return [(label, reason_id) for reason_id, label in found]


def break_the_connection(db) -> None:
    connection = db.session.scalar(select(InstagramConnection))
    connection.state, connection.cause = "needs_reconnect", "password_changed"
    connection.last_error_code, connection.last_error_subcode = 190, 460
    db.session.add(
        ConnectionEvent(
            connection_id=connection.id,
            kind="check_failed",
            occurred_at=datetime.now(UTC),
            cause="password_changed",
            meta_code=190,
            meta_subcode=460,
            state_after="needs_reconnect",
            actor_kind="meta",
        )
    )
    db.session.commit()


def test_owner_only_actions_look_unavailable_while_viewing(client, auth, db, shop, agent):
    """Promise 27: the card and the panel show the owner's actions disabled, each saying why."""
    break_the_connection(db)
    impersonate(client, auth, shop)
    page = client.get("/").get_data(as_text=True)
    assert disabled_buttons(page) == [
        ("Change password", "menu-owner-only"),
        ("Mail settings", "menu-owner-only"),
        ("Reconnect", "card-owner-only"),
        ("Disconnect", "card-owner-only"),
        ("Reconnect Instagram", "diagnosis-owner-only"),
    ]
    for reason_id in ("card-owner-only", "diagnosis-owner-only"):
        assert f'<p id="{reason_id}" class="owner-only-reason">{OWNER_ONLY_REASON}</p>' in page
    assert 'href="/instagram/disconnect"' not in page and 'href="/account/password"' not in page
    # What still works for support stays live: testing the connection, sending a link, stopping.
    assert re.search(r'<button type="submit" class="secondary outline">Test connection now</button>', page)
    fragment = client.get("/card", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert disabled_buttons(fragment) == [("Reconnect", "card-owner-only"), ("Disconnect", "card-owner-only")]


def test_the_merchant_sees_their_actions_live(client, auth, db, shop):
    break_the_connection(db)
    auth.login_as(db.session.scalar(select(User).where(User.email == "maya@bloom.example")))
    page = client.get("/").get_data(as_text=True)
    assert disabled_buttons(page) == [] and "owner-only-reason" not in page
    assert 'href="/instagram/disconnect"' in page and 'href="/account/password"' in page


def test_the_agent_stays_themselves_in_the_account_menu(client, auth, db, shop, agent):
    """The menu names the agent, never the merchant as "you"; the merchant's name is in the banner."""
    impersonate(client, auth, shop)
    page = client.get("/").get_data(as_text=True)
    summary = re.search(
        r'<details class="dropdown account-menu">\s*(?:\{#.*?#\}\s*)?<summary>(.*?)</summary>', page, re.S
    )
    assert re.sub(r"<[^>]+>", "", summary.group(1)) == "Viewing as Bloom &amp; Stem, you are sam@support.example"
    assert "Viewing as Bloom &amp; Stem — you are sam@support.example (support)" in page
    assert "(you)" not in page and "Maya <small>(you are viewing as them)</small>" in page
    assert "Stop viewing as merchant" in page.split('class="dropdown account-menu"')[1]


def test_notifications_keep_their_reconnect_links_for_the_owner(client, auth, db, shop, agent):
    """Promise 27: a notice's reconnect link is the owner's; support sees it disabled."""
    from webapp.services.notify.planning import incident_prefix

    merchant = db.session.scalar(select(User).where(User.email == "maya@bloom.example"))
    connection = db.session.scalar(select(InstagramConnection))
    connection.state, connection.cause = "needs_reconnect", "password_changed"
    connection.incident_started_at = datetime.now(UTC)
    db.session.add(
        Notification(
            user_id=merchant.id,
            # The notice of the incident that is still open: its Reconnect applies.
            idempotency_key=f"{incident_prefix(connection.id, connection.incident_started_at)}:disconnected:u{merchant.id}",
            kind="disconnected",
            title="Instagram is disconnected",
            body="Reconnect to keep your products in your feed.",
            link="/instagram/reconnect/sometoken",
            created_at=datetime.now(UTC),
        )
    )
    db.session.commit()
    impersonate(client, auth, shop)
    page = client.get("/notifications").get_data(as_text=True)
    assert disabled_buttons(page)[2:] == [
        ("Reconnect", "notifications-owner-only"),
        ("Mail settings", "notifications-owner-only"),
    ]
    assert 'href="/instagram/reconnect/sometoken"' not in page and OWNER_ONLY_REASON in page


def test_agent_can_send_a_reconnect_link_and_test_while_viewing(client, auth, db, shop, agent, requests_mock):
    impersonate(client, auth, shop)
    token = auth.csrf_token("/")
    sent = client.post(f"/support/shops/{shop.id}/reconnect-link", data={"csrf_token": token})
    assert sent.status_code == 302 and sent.headers["Location"] == "/"
    assert "Reconnect link sent to 1 merchant login(s)" in client.get("/").get_data(as_text=True)
    assert db.session.scalar(select(OutboundMail.kind)) == "reconnect_link"
    connection = db.session.scalar(select(InstagramConnection))
    requests_mock.get("https://graph.instagram.com/v23.0/me", json={"user_id": connection.instagram_user_id})
    tested = client.post("/instagram/test", headers={"HX-Request": "true", "X-CSRFToken": token})
    assert tested.status_code == 200 and "everything works" in tested.get_data(as_text=True)


def test_viewing_does_not_mark_the_merchants_notifications_read(client, auth, db, shop, agent):
    impersonate(client, auth, shop)
    response = client.post("/notifications/read", headers={"HX-Request": "true", "X-CSRFToken": auth.csrf_token("/")})
    assert response.status_code == 204 and "HX-Trigger" not in response.headers


# ---- promise 28 ---------------------------------------------------------------------------------


def test_everything_is_attributable(client, auth, db, shop, agent, requests_mock):
    """Promise 28: start, every write, stop: audit rows with the real actor and the subject."""
    impersonate(client, auth, shop)
    connection = db.session.scalar(select(InstagramConnection))
    requests_mock.get("https://graph.instagram.com/v23.0/me", json={"user_id": connection.instagram_user_id})
    token = auth.csrf_token("/")
    client.post("/instagram/test", data={"csrf_token": token})
    client.post("/support/impersonation/stop", data={"csrf_token": token})
    db.session.expire_all()
    rows = db.session.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
    assert [r.action for r in rows] == [
        "staff.login",
        "impersonation.start",
        "impersonation.write",
        "impersonation.stop",
    ]
    for row in rows[1:]:
        assert row.actor_id == agent.id and row.actor_label == "sam@support.example (support)"
        assert row.subject_shop_id == shop.id and row.impersonation_id is not None
    assert rows[1].reason == "Ticket 4411: merchant cannot connect" and rows[1].ip_prefix == "127.0.0.0/24"
    assert "POST /instagram/test" in rows[2].details
    # Merchants see in their timeline that support viewed their shop.
    event = db.session.scalar(select(ConnectionEvent).where(ConnectionEvent.kind == "support_viewed"))
    assert event.actor_kind == "support" and "Ticket 4411" in event.message


@pytest.mark.parametrize(
    "agent_name,who",
    [("Sam Rivera", "Sam from our support team"), ("", "A support agent")],
)
def test_the_merchant_reads_who_viewed_their_dashboard_and_why(app, client, auth, db, shop, agent_name, who):
    """Promise 28, in the merchant's words: the visit, the agent's first name and the reason they gave (which the
    start form announces); never the agent's email, never "Support viewed by support"."""
    agent = make_user(role="support", email="sam@support.example", name=agent_name)
    auth.login_as(agent)
    impersonate(client, auth, shop)
    client.post("/support/impersonation/stop", data={"csrf_token": auth.csrf_token("/")})
    merchant_client = app.test_client()
    AuthActions(merchant_client).login_as(db.session.scalar(select(User).where(User.email == "maya@bloom.example")))
    history = merchant_client.get("/history").get_data(as_text=True)
    entry = re.search(r'<li class="event event-support_viewed">(.*?)</li>', history, re.S).group(1)
    words = " ".join(re.sub(r"<[^>]+>", " ", entry).split())
    assert words.endswith(
        "Dashboard viewed by support "
        f"{who} viewed your dashboard as you, for at most 30 minutes. "
        "Reason given: Ticket 4411: merchant cannot connect"
    )
    assert "sam@support.example" not in history and "Support viewed" not in history


def test_the_start_form_says_the_merchant_reads_the_reason(client, shop, agent):
    page = client.get(f"/support/shops/{shop.id}").get_data(as_text=True)
    assert "The merchant sees this reason in their shop&#39;s history, with your first name." in page


def test_audit_log_is_append_only_in_the_database(db, shop, agent):
    """Promise 28: the database itself refuses updates and deletes."""
    assert db.session.scalar(select(func.count(AuditEntry.id))) >= 1
    for statement in ("UPDATE audit_log SET action = 'forged'", "DELETE FROM audit_log"):
        with pytest.raises(DatabaseError, match="append-only"):
            db.session.execute(text(statement))
        db.session.rollback()
    assert "forged" not in audit_actions(db)


# ---- promise 29 ---------------------------------------------------------------------------------


def test_deactivating_the_agent_ends_the_impersonation_on_the_next_request(app, client, auth, db, shop, agent):
    """Promise 29."""
    impersonate(client, auth, shop)
    admin = make_user(role="admin")
    admin_client = app.test_client()
    AuthActions(admin_client).login_as(admin)
    token = AuthActions(admin_client).csrf_token("/admin/staff")
    admin_client.post(f"/admin/staff/{agent.id}/active", data={"csrf_token": token, "active": "0"})
    response = client.get("/")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")
    db.session.expire_all()
    impersonation = db.session.scalar(select(Impersonation))
    assert impersonation.ended_at is not None and impersonation.ended_reason == "role_revoked"


def test_losing_the_staff_role_ends_it_too(client, auth, db, shop, agent):
    """Promise 29: a role taken away directly in the database also ends it on the next request."""
    impersonate(client, auth, shop)
    db.session.refresh(agent)
    agent.role, agent.shop_id = "merchant", make_shop().id
    db.session.commit()
    client.get("/")
    db.session.expire_all()
    assert db.session.scalar(select(Impersonation)).ended_reason == "role_revoked"
    assert 'id="impersonation-banner"' not in client.get("/").get_data(as_text=True)


def test_an_agent_whose_session_was_revoked_out_of_band_ends_it_on_the_next_request(client, auth, db, shop, agent):
    """Promise 29: role and sessions taken away by hand (no service call) still end it, with a stop row."""
    impersonate(client, auth, shop)
    db.session.refresh(agent)
    agent.active = False
    db.session.commit()
    revoke_all_sessions(agent, datetime.now(UTC))  # what a console operator would do; no end_all_for
    assert db.session.scalar(select(Impersonation)).ended_at is None

    response = client.get("/")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")
    db.session.expire_all()
    ended = db.session.scalar(select(Impersonation))
    assert ended.ended_at is not None and ended.ended_reason == "role_revoked"
    stop = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "impersonation.stop"))
    assert (stop.reason, stop.actor_id, stop.impersonation_id) == ("role_revoked", agent.id, ended.id)


def test_an_agent_signed_out_elsewhere_ends_it_too(client, auth, db, shop, agent):
    """Promise 40: the impersonating browser's session dies elsewhere (password change): a stop row follows."""
    impersonate(client, auth, shop)
    revoke_all_sessions(agent, datetime.now(UTC))
    client.get("/")
    db.session.expire_all()
    assert db.session.scalar(select(Impersonation)).ended_reason == "session_ended"
    assert audit_actions(db).count("impersonation.stop") == 1


# ---- promise 40 ---------------------------------------------------------------------------------


def test_logging_out_while_impersonating_ends_it_with_a_stop_row(client, auth, db, shop, agent):
    """Promise 40: logout closes the view as the merchant; the audit log says so."""
    impersonate(client, auth, shop)
    assert auth.logout().status_code == 302
    db.session.expire_all()
    ended = db.session.scalar(select(Impersonation))
    assert ended.ended_at is not None and ended.ended_reason == "logged_out"
    stop = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "impersonation.stop"))
    assert stop.reason == "logged_out" and stop.actor_id == agent.id and stop.impersonation_id == ended.id
    assert audit_actions(db)[-1] == "impersonation.stop"  # no stray "write" row after it


def test_session_timeout_while_impersonating_ends_it_with_a_stop_row(app, client, auth, db, shop, agent):
    """Promise 40: an idle timeout ends the view as the merchant with its stop row."""
    impersonate(client, auth, shop)
    with client.session_transaction() as session:
        session["seen_at"] = (datetime.now(UTC) - timedelta(minutes=app.config["SESSION_IDLE_MINUTES"] + 1)).timestamp()
    assert client.get("/").status_code == 302
    db.session.expire_all()
    assert db.session.scalar(select(Impersonation)).ended_reason == "session_expired"


# ---- promise 38 ---------------------------------------------------------------------------------


def test_reconnect_link_limit_counts_only_after_the_permission_check(app, client, auth, db, shop, agent):
    """Promise 38: another shop's merchant cannot spend this shop's reconnect-link budget."""
    outsider = app.test_client()
    AuthActions(outsider).login_as(make_user(email="mallory@elsewhere.example"))
    token = AuthActions(outsider).csrf_token("/")
    refused = [
        outsider.post(f"/support/shops/{shop.id}/reconnect-link", data={"csrf_token": token}).status_code
        for _ in range(7)
    ]
    assert refused == [403] * 7
    sent = client.post(f"/support/shops/{shop.id}/reconnect-link", data={"csrf_token": auth.csrf_token("/support/")})
    assert sent.status_code == 302
    assert db.session.scalar(select(func.count(OutboundMail.id))) == 1


def test_a_support_test_that_finds_a_revocation_tells_the_merchant_at_once(
    client, auth, db, shop, agent, requests_mock
):
    requests_mock.get(
        "https://graph.instagram.com/v23.0/me",
        status_code=400,
        json={"error": {"message": "Error validating access token", "type": "OAuthException", "code": 190}},
    )
    tested = client.post(f"/support/shops/{shop.id}/test", data={"csrf_token": auth.csrf_token("/support/")})
    assert tested.status_code == 302 and tested.headers["Location"] == f"/support/shops/{shop.id}"
    assert "Instagram refused the connection" in client.get(tested.headers["Location"]).get_data(as_text=True)
    maya = next(user for user in shop.users if user.email == "maya@bloom.example")
    assert [(n.kind, n.user_id) for n in db.session.scalars(select(Notification))] == [("disconnected", maya.id)]


@pytest.mark.options(PUBLIC_BASE_URL="https://dashboard.example.com")
def test_mailed_links_use_the_public_base_url(app, client, auth, db, shop, agent):
    """Finding 10: links in mails start with PUBLIC_BASE_URL (production requires it), never 127.0.0.1."""
    client.post(f"/support/shops/{shop.id}/reconnect-link", data={"csrf_token": auth.csrf_token("/support/")})
    mail = db.session.scalar(select(OutboundMail))
    links = re.findall(r"https?://[^\s\"<>]+", mail.text_body + mail.html_body)
    assert links and all(link.startswith("https://dashboard.example.com/") for link in links), links
    assert "127.0.0.1" not in mail.text_body + mail.html_body


# ---- authorisation matrix -----------------------------------------------------------------------

STAFF_PAGES = [
    ("GET", "/support/"),
    ("GET", "/support/?q=bloom"),
    ("GET", "/support/shops/{shop}"),
    ("GET", "/support/explain"),
    ("GET", "/support/outbox"),
    ("GET", "/shops"),
    ("POST", "/support/shops/{shop}/test"),
]
ADMIN_PAGES = [("GET", "/admin/staff"), ("GET", "/admin/audit")]


def client_as(app, role, shop):
    client = app.test_client()
    actions = AuthActions(client)
    if role == "anonymous":
        return client, None
    if role == "impersonating":
        agent = make_user(role="support")
        actions.login_as(agent)
        token = actions.csrf_token(f"/support/shops/{shop.id}")
        client.post(
            f"/support/shops/{shop.id}/impersonate",
            data={"csrf_token": token, "reason": "matrix test 1234", "password": DEFAULT_PASSWORD},
        )
        return client, actions
    user = make_user(role=role, shop=shop if role == "merchant" else None)
    actions.login_as(user)
    return client, actions


EXPECTED = {
    "anonymous": {"staff": 302, "admin": 302},
    "merchant": {"staff": 403, "admin": 403},
    "impersonating": {"staff": 403, "admin": 403},
    "support": {"staff": 200, "admin": 403},
    "admin": {"staff": 200, "admin": 200},
}


@pytest.mark.parametrize("role", list(EXPECTED))
def test_authorisation_matrix(app, db, shop, role, requests_mock):
    client, actions = client_as(app, role, shop)
    connection = db.session.scalar(select(InstagramConnection))
    requests_mock.get("https://graph.instagram.com/v23.0/me", json={"user_id": connection.instagram_user_id})
    for kind, pages in (("staff", STAFF_PAGES), ("admin", ADMIN_PAGES)):
        for method, path in pages:
            url = path.format(shop=shop.id)
            data = {"csrf_token": actions.csrf_token("/")} if (actions and method == "POST") else {}
            status = client.open(url, method=method, data=data).status_code
            expected = EXPECTED[role][kind]
            if method == "POST" and expected == 200:
                expected = 302  # actions redirect back to the page
            if method == "POST" and role == "anonymous":
                expected = 400  # no session, no CSRF token: refused before anything else
            assert status == expected, (role, method, url, status)


# ---- fleet, search, pagination ------------------------------------------------------------------


def test_fleet_counts_causes_and_longest_first(client, auth, db, agent):
    now = datetime.now(UTC)
    specs = [("healthy", None, 0)] * 3 + [
        ("degraded", "provider_error", 2),
        ("needs_reconnect", "password_changed", 5),
        ("needs_reconnect", "app_removed", 1),
        ("expiring", "provider_error", 3),
    ]
    for index, (state, cause, days) in enumerate(specs):
        connection = make_connection(make_shop(name=f"Shop {index:02d}"), state=state, username=f"shop{index}")
        connection.cause, connection.state_changed_at = cause, now - timedelta(days=days)
        if cause:
            db.session.add(
                ConnectionEvent(
                    connection_id=connection.id,
                    kind="check_failed",
                    cause=cause,
                    occurred_at=now - timedelta(days=days),
                )
            )
    make_shop(name="Never connected")
    db.session.commit()
    page = client.get("/support/").get_data(as_text=True)
    caption = re.search(r'<figcaption id="state-chart-caption">(.*?)</figcaption>', page).group(1)
    assert (
        caption
        == "8 shops: 2 disconnected by Instagram, 1 expiring soon, 1 having trouble, 3 connected, 1 not connected."
    )
    attention = re.findall(r'<td><a href="/support/shops/\d+">(Shop \d+)</a>', page)
    assert attention == ["Shop 04", "Shop 06", "Shop 03", "Shop 05"]  # longest in trouble first
    assert "provider_error" in page and "password_changed" in page


@pytest.mark.parametrize("query", ["bloom", "BLOOM.EXAMPLE", "@bloom_and", "maya@bloom"])
def test_search_by_name_domain_username_and_email(client, auth, shop, agent, query):
    make_shop(name="Other Shop")
    page = client.get(f"/support/?q={query}").get_data(as_text=True)
    assert "1 found" in page and "Bloom &amp; Stem" in page and "Other Shop" not in page


def test_needs_attention_is_paginated(client, auth, db, agent):
    for index in range(55):
        make_connection(make_shop(name=f"Broken {index:02d}"), state="needs_reconnect").cause = "invalid_token"
    db.session.commit()
    first = client.get("/support/").get_data(as_text=True)
    assert "Page 1 of 2" in first and first.count('href="/support/shops/') == 50
    second = client.get("/support/?page=2").get_data(as_text=True)
    assert second.count('href="/support/shops/') == 5
    assert client.get("/support/?page=0").status_code == 404


def test_unknown_shop_is_a_404(client, agent):
    assert client.get("/support/shops/999999").status_code == 404


def test_staff_management_and_role_changes_end_sessions(app, client, auth, db):
    """Promise 20: a role change invalidates the old cookies of that user."""
    admin = make_user(role="admin")
    auth.login_as(admin)
    token = auth.csrf_token("/admin/staff")
    created = client.post(
        "/admin/staff",
        data={"csrf_token": token, "email": "new@support.example", "role": "support", "password": "a-solid-first-pass"},
    )
    assert created.status_code == 302
    weak = client.post(
        "/admin/staff",
        data={"csrf_token": token, "email": "weak@support.example", "role": "support", "password": "short"},
    )
    assert weak.status_code == 400 and "Use at least 10 characters." in weak.get_data(as_text=True)
    newbie = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "staff.created"))
    assert newbie is not None
    other = app.test_client()
    from webapp.models import User

    new_user = db.session.scalar(select(User).where(User.email == "new@support.example"))
    AuthActions(other).login_as(new_user, password="a-solid-first-pass")
    assert other.get("/support/").status_code == 200
    client.post(f"/admin/staff/{new_user.id}/role", data={"csrf_token": token, "role": "admin"})
    assert other.get("/support/").status_code == 302  # their session ended
    db.session.expire_all()
    assert db.session.get(User, new_user.id).role == "admin"
    assert "staff.role_changed" in audit_actions(db)
    assert (
        client.post(f"/admin/staff/{admin.id}/role", data={"csrf_token": token, "role": "support"}).status_code == 302
    )
    assert db.session.get(User, admin.id).role == "admin"  # not yourself


def test_audit_page_filters(client, auth, db, shop):
    admin = make_user(role="admin", email="boss@support.example")
    auth.login_as(admin)
    page = client.get("/admin/audit?actor=boss").get_data(as_text=True)
    assert "staff.login" in page and "boss@support.example (admin)" in page
    assert "1 entries" in page or "entries" in page
    assert client.get("/admin/audit?page=99").status_code == 404


def test_the_shop_page_shows_every_instagram_id_for_support(client, shop, agent, db):
    """Issue 14, part 5: Meta's callbacks and merchants quote any of the account's numbers."""
    connection = shop.instagram_connection
    connection.instagram_scoped_id, connection.login_user_id = "9170000000000001", None
    db.session.commit()
    page = client.get(f"/support/shops/{shop.id}").get_data(as_text=True)
    ids = " ".join(page.split('id="instagram-ids">')[1].split("</p>")[0].split())
    assert ids == (
        f"Instagram ids: account {connection.instagram_user_id} (/me user_id) · "
        "app-scoped 9170000000000001 (/me id) · login unknown (code exchange user_id)"
    )


# ---- login paths (issue 15, part 6): counts, filter and column in the fleet; the shop's Page -----

FACEBOOK_PAGE_ID = "104000000000001"
FACEBOOK_USER_ID = "120000000000007"


def make_facebook_connection(shop, *, page_name="Tea House", tasks="MANAGE,CREATE_CONTENT", **fields):
    """A Facebook Login connection, built by setting the model's fields (as linking would store them)."""
    return make_connection(
        shop,
        token="EAAGfactory-page-token",
        login_path="facebook",
        facebook_page_id=fields.pop("facebook_page_id", FACEBOOK_PAGE_ID),
        facebook_page_name=page_name,
        facebook_page_tasks=tasks,
        facebook_user_id=fields.pop("facebook_user_id", FACEBOOK_USER_ID),
        **fields,
    )


def broken(connection, db, *, state="needs_reconnect", cause="page_unlinked", days=1):
    connection.state, connection.cause = state, cause
    connection.state_changed_at = datetime.now(UTC) - timedelta(days=days)
    db.session.commit()
    return connection


@pytest.fixture
def two_paths(db):
    """Shops on both login paths, some broken; one Facebook shop disconnected, one never connected."""
    shops = {}
    for name in ("Ivy Instagram", "Iris Instagram"):
        shops[name] = make_shop(name=name)
        make_connection(shops[name], username=name.split()[0].lower())
    shops["Ink Instagram"] = make_shop(name="Ink Instagram")
    broken(make_connection(shops["Ink Instagram"], username="ink"), db, cause="password_changed", days=3)
    shops["Tea House"] = make_shop(name="Tea House")
    make_facebook_connection(shops["Tea House"], username="tea_house")
    shops["Tea Garden"] = make_shop(name="Tea Garden")
    broken(make_facebook_connection(shops["Tea Garden"], page_name="Tea Garden Page", username="tea_garden"), db)
    shops["Fern Facebook"] = make_shop(name="Fern Facebook")
    broken(
        make_facebook_connection(shops["Fern Facebook"], page_name="Fern", username="fern"),
        db,
        state="degraded",
        cause="rate_limited",
        days=2,
    )
    shops["Tea Gone"] = make_shop(name="Tea Gone")
    make_facebook_connection(shops["Tea Gone"], page_name="Old Page", username="tea_gone", state="not_connected")
    shops["Never"] = make_shop(name="Never connected")
    return shops


def test_fleet_counts_connections_per_login_path(client, db, agent, two_paths):
    """Connected, disconnected by Meta and in any trouble, per path; not_connected is on no path."""
    from webapp.services import fleet

    counts = fleet.fleet_counts()
    assert counts.paths == {
        "instagram": fleet.PathCounts(connected=3, needs_reconnect=1, attention=1),
        "facebook": fleet.PathCounts(connected=3, needs_reconnect=1, attention=2),
    }
    assert counts.states == {
        "needs_reconnect": 2,
        "expiring": 0,
        "degraded": 1,
        "healthy": 3,
        "not_connected": 2,  # Tea Gone's disconnected row and the shop that never connected
    }
    page = client.get("/support/").get_data(as_text=True)
    table = page.split('id="path-counts">')[1].split("</table>")[0]
    rows = [re.sub(r"<[^>]+>", " ", row).split() for row in table.split("<tr>")[2:]]
    assert rows == [["Instagram", "Login", "3", "1", "1"], ["Facebook", "Login", "3", "1", "2"]]
    assert 'href="/support/?path=facebook"' in table


def test_the_path_counts_come_from_the_grouped_scan_that_counts_states(app, client, db, agent, two_paths):
    """The overview's query cost: one GROUP BY over the connections, and the filter adds no statement."""
    from sqlalchemy import event

    def statements(url):
        seen = []

        def record(_conn, _cursor, statement, *_args):
            seen.append(" ".join(statement.split()))

        event.listen(db.engine, "before_cursor_execute", record)
        try:
            assert client.get(url).status_code == 200
        finally:
            event.remove(db.engine, "before_cursor_execute", record)
        return seen

    everything = statements("/support/")
    grouped = [s for s in everything if "FROM instagram_connections GROUP BY" in s]
    assert len(grouped) == 1 and "login_path" in grouped[0]
    assert len(statements("/support/?path=facebook")) == len(everything)


def test_the_fleet_filters_needs_attention_by_login_path_and_shows_the_path(client, db, agent, two_paths):
    attention = re.compile(r'<td><a href="/support/shops/\d+">([^<]+)</a>')
    everything = client.get("/support/").get_data(as_text=True)
    assert attention.findall(everything) == ["Ink Instagram", "Fern Facebook", "Tea Garden"]
    assert "<td>Facebook · Tea Garden Page</td>" in everything and "<td>Instagram</td>" in everything
    facebook = client.get("/support/?path=facebook").get_data(as_text=True)
    assert attention.findall(facebook) == ["Fern Facebook", "Tea Garden"]
    assert "Needs attention on Facebook Login" in facebook and '<option value="facebook" selected>' in facebook
    instagram = client.get("/support/?path=INSTAGRAM").get_data(as_text=True)
    assert attention.findall(instagram) == ["Ink Instagram"]
    assert attention.findall(client.get("/support/?path=myspace").get_data(as_text=True)) == attention.findall(
        everything
    )  # an unknown path filters nothing


def test_a_long_page_name_is_cut_short_in_the_fleet(client, db, agent):
    shop = make_shop(name="Long Page")
    broken(make_facebook_connection(shop, page_name="The Very Long Name Of A Tea House Page On Facebook"), db)
    page = client.get("/support/?path=facebook").get_data(as_text=True)
    name = "The Very Long Name Of A Tea House Page On Facebook"
    assert f'<td>Facebook · <span title="{name}">The Very Long Name Of A Tea H…</span></td>' in page


def test_search_combines_with_the_login_path(client, agent, two_paths):
    found = re.compile(r'<td><a href="/support/shops/\d+">([^<]+)</a></td>')
    assert found.findall(client.get("/support/?q=tea").get_data(as_text=True)) == [
        "Tea Garden",
        "Tea Gone",
        "Tea House",
    ]
    facebook = client.get("/support/?q=tea&path=facebook").get_data(as_text=True)
    assert found.findall(facebook) == ["Tea Garden", "Tea House"]  # Tea Gone is connected on no path now
    assert "2 found connected through Facebook Login" in facebook and "<td>Facebook · Tea House</td>" in facebook
    assert found.findall(client.get("/support/?q=tea&path=instagram").get_data(as_text=True)) == []
    assert found.findall(client.get("/support/?q=instagram&path=instagram").get_data(as_text=True)) == [
        "Ink Instagram",
        "Iris Instagram",
        "Ivy Instagram",
    ]


def test_the_filter_is_kept_across_pages(client, db, agent):
    for index in range(51):
        broken(make_facebook_connection(make_shop(name=f"Broken {index:02d}")), db)
    broken(make_connection(make_shop(name="Instagram broken")), db)
    first = client.get("/support/?path=facebook").get_data(as_text=True)
    assert "Page 1 of 2" in first and 'href="/support/?path=facebook&amp;page=2"' in first
    second = client.get("/support/?page=2&path=facebook").get_data(as_text=True)
    assert second.count('href="/support/shops/') == 1 and "Instagram broken" not in second


def facts(page: str) -> dict[str, str]:
    section = page.split('id="connection-facts"')[1].split("</section>")[0]
    pairs = re.findall(r"<dt>(.*?)</dt>\s*<dd[^>]*>(.*?)</dd>", section, re.S)
    return {term: " ".join(re.sub(r"<[^>]+>", "", value).split()) for term, value in pairs}


def test_the_shop_page_shows_the_facebook_page_the_role_and_the_data_access_window(client, db, agent):
    shop = make_shop(name="Tea House")
    window_ends = datetime(2027, 2, 20, 9, 30, tzinfo=UTC)
    make_facebook_connection(shop, instagram_user_id="17841400000000042", expires_at=window_ends)
    page = client.get(f"/support/shops/{shop.id}").get_data(as_text=True)
    shown = facts(page)
    assert shown["Login path"] == "Facebook Login for Business"
    assert shown["Page"] == f"Tea House · id {FACEBOOK_PAGE_ID}"
    assert shown["Merchant's role on the Page"] == "Admin (MANAGE, CREATE_CONTENT)"
    assert shown["Facebook user"].startswith(f"id {FACEBOOK_USER_ID} ")
    assert shown["Data-access window ends"].startswith("20 Feb 2027, 09:30 UTC")
    assert '<time datetime="2027-02-20T09:30:00Z"' in page
    assert shown["Instagram account"].startswith("id 17841400000000042")
    assert 'id="instagram-ids"' not in page  # Instagram Login's numbers do not apply


def test_a_role_too_weak_for_the_page_says_so(client, db, agent):
    shop = make_shop()
    make_facebook_connection(shop, tasks="ANALYZE")
    role = facts(client.get(f"/support/shops/{shop.id}").get_data(as_text=True))["Merchant's role on the Page"]
    assert role == "Analyst (ANALYZE): not enough to act for the Page's Instagram account (needs Moderator or higher)"


def test_the_shop_page_of_an_instagram_login_shows_no_page(client, shop, agent):
    page = client.get(f"/support/shops/{shop.id}").get_data(as_text=True)
    assert 'id="connection-facts"' not in page and "Page role" not in page and "Data-access window" not in page
    assert "Login path: Instagram Login (Business Login)" in page and 'id="instagram-ids"' in page


def test_a_disconnected_facebook_shop_shows_the_page_it_last_used(client, db, agent):
    shop = make_shop()
    make_facebook_connection(shop, state="not_connected")
    page = client.get(f"/support/shops/{shop.id}").get_data(as_text=True)
    assert "How it last connected" in page and facts(page)["Page"] == f"Tea House · id {FACEBOOK_PAGE_ID}"
