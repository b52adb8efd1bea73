"""The status card, the what-happened panel, the timeline, the strip, the explainer: fragment and page pairs."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from tests.factories import make_connection, make_user
from webapp import clock
from webapp.models import ChecklistTick, ConnectionEvent
from webapp.services.connections.state import connection_for
from webapp.services.notify.compose import compose_notice
from webapp.services.notify.planning import Notice

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
# Events below are placed relative to NOW and the app reads the same NOW, whenever the run happens.
pytestmark = pytest.mark.usefixtures("pinned_clock")


@pytest.fixture
def now() -> datetime:
    return NOW


def add_event(db, connection, kind, when, **fields):
    db.session.add(ConnectionEvent(connection_id=connection.id, kind=kind, occurred_at=when, **fields))
    db.session.commit()


def break_connection(db, connection, cause="password_changed", code=190, subcode=460, days_ago=0.0):
    when = NOW - timedelta(days=days_ago)
    connection.state, connection.cause = "needs_reconnect", cause
    connection.state_changed_at = when
    connection.last_error_code, connection.last_error_subcode = code, subcode
    connection.last_error_message = (
        "Error validating access token: The session has been invalidated because the user changed their password."
    )
    db.session.commit()
    add_event(
        db,
        connection,
        "check_failed",
        when,
        cause=cause,
        meta_code=code,
        meta_subcode=subcode,
        state_after="needs_reconnect",
        actor_kind="meta",
    )


def test_card_fragment_and_page(client, merchant, db):
    make_connection(merchant.shop, issued_at=NOW - timedelta(days=12), expires_at=NOW + timedelta(days=48))
    fragment = client.get("/card", headers={"HX-Request": "true"})
    body = fragment.get_data(as_text=True)
    assert fragment.status_code == 200 and "<html" not in body and "HX-Request" in fragment.headers["Vary"]
    assert "HX-Trigger" not in fragment.headers  # polling must not trigger the other widgets
    assert 'hx-trigger="poll"' in body and 'data-poll-seconds="30"' in body
    assert "12 days" in body and "Lifetime used: 12 of 60 days" in body
    assert re.search(r'class="countdown" data-expires-at="[^"]+">4[78] days, \d+ hours?, \d+ minutes?<', body)
    assert 'value="12"' in body and "<progress" in body
    page = client.get("/")
    assert page.status_code == 200 and 'id="instagram-card"' in page.get_data(as_text=True)
    assert client.get("/card").headers["Location"] == "/"


def test_state_is_words_and_icon_not_colour_alone(client, merchant, db):
    connection = make_connection(merchant.shop)
    for state, words in [
        ("healthy", "Connected"),
        ("degraded", "Having trouble, retrying"),
        ("expiring", "Expiring soon"),
        ("needs_reconnect", "Disconnected by Instagram"),
    ]:
        connection.state = state
        db.session.commit()
        body = client.get("/card", headers={"HX-Request": "true"}).get_data(as_text=True)
        badge = re.search(r'<span class="state-badge[^>]*>(.*?)</span>\s*</header>', body, re.S).group(1)
        assert words in badge and 'aria-hidden="true"' in badge


@pytest.mark.parametrize(
    "state,sentence",
    [
        ("healthy", "Everything is working. We renew the connection automatically, long before it expires."),
        ("expiring", "The connection still works, but we could not renew it yet and it ends soon. We keep trying"),
        ("degraded", "Instagram is not answering properly right now. Your connection is still valid"),
        ("needs_reconnect", "Instagram has ended this connection. Products are not syncing until you reconnect."),
    ],
)
def test_card_says_in_a_sentence_what_the_state_means(client, merchant, db, state, sentence):
    make_connection(merchant.shop, state=state)
    body = client.get("/card", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert re.search(r'<p class="card-sentence">([^<]*)</p>', body).group(1).startswith(sentence)


def test_card_without_a_connection_asks_to_connect(client, merchant):
    body = client.get("/card", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "Connect your Instagram professional account so your products can appear in your feed" in body


def test_last_meta_error_sits_in_a_disclosure(client, merchant, db):
    connection = make_connection(merchant.shop)
    break_connection(db, connection)
    body = client.get("/card", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "<details" in body and "code 190, subcode 460" in body


def test_panel_shows_cause_confidence_evidence_and_checklist(client, merchant, db):
    connection = make_connection(merchant.shop, issued_at=NOW - timedelta(days=12))
    break_connection(db, connection)
    page = client.get("/").get_data(as_text=True)
    assert "What happened" in page and "The Instagram password was changed" in page
    # 190/460's own text names two reasons (a password change or a security reset): strong, not certain.
    assert "Most likely" in page and "subcode 460" in page and "names two reasons" in page
    assert "Certain" not in page
    assert "12 days old when it stopped working" in page
    assert "Reconnect Instagram" in page and "To keep it from happening again" in page
    assert 'href="/help/why-instagram-disconnects#password_changed"' in page


def test_panel_absent_when_healthy(client, merchant):
    make_connection(merchant.shop)
    assert "What happened" not in client.get("/").get_data(as_text=True)


def test_diagnosis_fragment_and_page(client, merchant, db):
    connection = make_connection(merchant.shop)
    break_connection(db, connection)
    fragment = client.get("/what-happened", headers={"HX-Request": "true"})
    body = fragment.get_data(as_text=True)
    assert fragment.status_code == 200 and "<html" not in body and 'id="diagnosis-panel"' in body
    assert 'hx-trigger="connection-changed from:body"' in body
    assert client.get("/what-happened").headers["Location"] == "/"


def tick(client, auth, item, incident, htmx=True):
    token = auth.csrf_token("/")
    headers = {"HX-Request": "true"} if htmx else {}
    return client.post("/checklist", data={"csrf_token": token, "item": item, "incident": incident}, headers=headers)


def current_incident(client) -> str:
    return re.search(r'name="incident" value="([^"]+)"', client.get("/").get_data(as_text=True)).group(1)


def test_checklist_ticks_are_kept_per_incident(client, auth, merchant, db):
    connection = make_connection(merchant.shop)
    break_connection(db, connection, days_ago=1)
    incident = current_incident(client)
    body = tick(client, auth, 0, incident).get_data(as_text=True)
    assert 'aria-pressed="true"' in body and "<html" not in body
    assert 'aria-pressed="true"' in client.get("/").get_data(as_text=True)  # kept across page loads
    # Without JavaScript the same form posts and comes back to the dashboard.
    response = tick(client, auth, 1, incident, htmx=False)
    assert response.status_code == 302 and response.headers["Location"] == "/"
    assert db.session.scalar(select(ChecklistTick.item).where(ChecklistTick.item == 1)) == 1
    tick(client, auth, 0, incident)  # untick
    assert {t.item for t in db.session.scalars(select(ChecklistTick))} == {1}
    # A new incident starts with a clean list.
    connection.state = "healthy"
    db.session.commit()
    break_connection(db, connection, cause="session_invalidated", subcode=467, days_ago=0)
    assert current_incident(client) != incident
    assert 'aria-pressed="true"' not in client.get("/").get_data(as_text=True)


@pytest.mark.parametrize("item", ["-1", "999", "abc"])
def test_bad_checklist_item_is_a_400(client, auth, merchant, db, item):
    connection = make_connection(merchant.shop)
    break_connection(db, connection)
    response = tick(client, auth, item, current_incident(client), htmx=False)
    assert response.status_code == 400


def test_history_is_paginated_and_filterable(client, merchant, db):
    connection = make_connection(merchant.shop)
    for day in range(30):
        add_event(
            db, connection, "checked", NOW - timedelta(days=day, hours=1), state_after="healthy", message=f"check {day}"
        )
    add_event(
        db, connection, "check_failed", NOW - timedelta(minutes=5), state_after="degraded", cause="provider_error"
    )
    page = client.get("/history").get_data(as_text=True)
    assert "31 events" in page and "Page 1 of 2" in page
    assert page.index("Health check failed") < page.index("check 0")
    problems = client.get("/history?group=problems").get_data(as_text=True)
    assert "1 event" in problems and "check 3" not in problems
    assert client.get("/history?group=nonsense").status_code == 404
    assert client.get("/history?page=9").status_code == 404


def test_health_strip_has_90_labelled_days(client, merchant, db):
    connection = make_connection(merchant.shop)
    add_event(db, connection, "connected", NOW - timedelta(days=10), state_after="healthy")
    add_event(db, connection, "check_failed", NOW - timedelta(days=5), state_after="degraded")
    add_event(db, connection, "checked", NOW - timedelta(days=4, hours=-1), state_after="healthy")
    add_event(db, connection, "check_failed", NOW - timedelta(days=2), state_after="needs_reconnect")
    page = client.get("/activity", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "<html" not in page
    strip = re.search(r'<figure class="health-strip".*?</figure>', page, re.S).group(0)
    cells = re.findall(r'class="day-(\w+)"><title>([^<]+)</title>', strip)
    assert len(cells) == 90
    statuses = [status for status, _ in cells]
    assert statuses[:79] == ["not_connected"] * 79
    assert statuses[79] == "healthy" and statuses[84] == "degraded" and statuses[87] == "disconnected"
    assert statuses[-1] == "disconnected"
    assert cells[-1][1].endswith(": disconnected") and 'role="img"' in strip


def test_explainer_page_is_public_and_in_our_words(client):
    page = client.get("/help/why-instagram-disconnects").get_data(as_text=True)
    assert "Why does Instagram disconnect?" in page
    for anchor in ("password_changed", "app_removed", "session_invalidated", "account_checkpoint", "many_devices"):
        assert f'id="{anchor}"' in page


def test_staff_explain_page(client, auth):
    auth.login_as(make_user(role="support"))
    token = auth.csrf_token("/support/explain")
    response = client.post(
        "/support/explain",
        data={
            "csrf_token": token,
            "raw_error": '{"error": {"message": "x", "type": "OAuthException", "code": 190, "error_subcode": 458}}',
        },
    )
    page = response.get_data(as_text=True)
    assert (
        response.status_code == 200
        and "Our app was removed from the Instagram account" in page
        and "app_removed" in page
    )
    empty = client.post("/support/explain", data={"csrf_token": token, "raw_error": ""})
    assert empty.status_code == 400 and "Paste an error" in empty.get_data(as_text=True)


def test_merchants_cannot_use_the_staff_explain_page(client, merchant):
    assert client.get("/support/explain").status_code == 403


def test_reconnect_after_break_says_connection_restored(client, auth, merchant, db, requests_mock):
    from tests.instagram_helpers import FakeInstagram, connect

    FakeInstagram(requests_mock).install()
    connect(client, auth)
    connection = connection_for(merchant.shop)
    break_connection(db, connection)
    connect(client, auth, code="code-2")
    page = client.get("/").get_data(as_text=True)
    assert "Connection restored" in page and "What happened" not in page
    activity = client.get("/activity", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "Reconnected" in activity


def test_activity_fragment_and_page(client, merchant, db):
    make_connection(merchant.shop)
    page = client.get("/").get_data(as_text=True)
    assert 'hx-get="/activity"' in page and 'href="/history"' in page  # works without JS too
    fragment = client.get("/activity", headers={"HX-Request": "true"})
    assert fragment.status_code == 200 and "Last 90 days" in fragment.get_data(as_text=True)
    assert client.get("/activity").headers["Location"] == "/history"


def seen_by(body: str) -> str:
    return re.search(r'hx-get="/card\?seen=([^"&]+)', body).group(1)


def next_poll(body: str) -> str:
    """The URL the card's next poll asks for, as htmx would."""
    return html.unescape(re.search(r'hx-get="(/card\?[^"]+)"', body).group(1))


def test_a_poll_tells_the_open_page_when_the_connection_changed(client, merchant, db):
    """Issue 13, item 1: whatever changes the connection, the page's other parts follow within one poll."""
    connection = make_connection(merchant.shop, issued_at=NOW - timedelta(days=2))
    htmx = {"HX-Request": "true"}
    seen = seen_by(client.get("/card", headers=htmx).get_data(as_text=True))

    unchanged = client.get(f"/card?seen={seen}", headers=htmx)
    assert "HX-Trigger" not in unchanged.headers
    assert seen_by(unchanged.get_data(as_text=True)) == seen

    break_connection(db, connection)  # a worker, a callback or support wrote the row meanwhile
    changed = client.get(f"/card?seen={seen}", headers=htmx)
    body = changed.get_data(as_text=True)
    assert "connection-changed" in changed.headers["HX-Trigger"]
    assert "Instagram just ended the connection" in body
    assert seen_by(body) != seen

    # The next poll carries the new value: the rest of the page is told once, not on every poll.
    again = client.get(next_poll(body), headers=htmx)
    assert "HX-Trigger" not in again.headers


def test_a_change_notice_stays_on_the_card_for_a_while(client, merchant, db, app):
    """A merchant who looks away for one poll still reads what changed (CHANGE_NOTICE_SECONDS)."""
    app.config["CHANGE_NOTICE_SECONDS"] = 120
    connection = make_connection(merchant.shop, issued_at=NOW - timedelta(days=2))
    htmx = {"HX-Request": "true"}
    seen = seen_by(client.get("/card", headers=htmx).get_data(as_text=True))
    break_connection(db, connection)
    body = client.get(f"/card?seen={seen}", headers=htmx).get_data(as_text=True)
    assert "Instagram just ended the connection" in body

    for later in (30, 119):
        clock.pin(NOW + timedelta(seconds=later))
        response = client.get(next_poll(body), headers=htmx)
        body = response.get_data(as_text=True)
        assert "Instagram just ended the connection" in body, later
        assert "HX-Trigger" not in response.headers  # the rest of the page was told once

    clock.pin(NOW + timedelta(seconds=121))
    body = client.get(next_poll(body), headers=htmx).get_data(as_text=True)
    assert "just ended" not in body and 'class="flash' not in body
    assert "told=" not in next_poll(body)


def test_a_change_notice_goes_when_the_connection_changes_back(client, merchant, db):
    connection = make_connection(merchant.shop, issued_at=NOW - timedelta(days=2))
    htmx = {"HX-Request": "true"}
    seen = seen_by(client.get("/card", headers=htmx).get_data(as_text=True))
    break_connection(db, connection)
    body = client.get(f"/card?seen={seen}", headers=htmx).get_data(as_text=True)
    connection.state, connection.cause = "healthy", None  # reconnected in another tab
    db.session.commit()
    body = client.get(next_poll(body), headers=htmx).get_data(as_text=True)
    assert "just ended" not in body and "works again" in body


def test_a_tampered_notice_in_the_poll_url_is_ignored(client, merchant):
    make_connection(merchant.shop, issued_at=NOW - timedelta(days=2))
    htmx = {"HX-Request": "true"}
    seen = seen_by(client.get("/card", headers=htmx).get_data(as_text=True))
    for query in ("told=<script>&until=9999999999", "told=1-needs_reconnect&until=soon", "told=&until="):
        response = client.get(f"/card?seen={seen}&{query}", headers=htmx)
        assert response.status_code == 200
        assert "<script>" not in response.get_data(as_text=True)


def test_a_change_within_the_same_state_refreshes_without_a_notice(client, merchant, db):
    connection = make_connection(merchant.shop, issued_at=NOW - timedelta(days=2))
    htmx = {"HX-Request": "true"}
    seen = seen_by(client.get("/card", headers=htmx).get_data(as_text=True))
    connection.last_checked_at = NOW  # a passing health check: the activity has a new line
    db.session.commit()
    response = client.get(f"/card?seen={seen}", headers=htmx)
    assert "connection-changed" in response.headers["HX-Trigger"]
    assert 'class="flash' not in response.get_data(as_text=True)


def test_every_part_that_depends_on_the_connection_listens_for_the_change(client, merchant, db):
    make_connection(merchant.shop, issued_at=NOW - timedelta(days=2))
    page = client.get("/").get_data(as_text=True)
    for part in ("diagnosis-panel", "recent-activity", "notification-count"):
        element = re.search(rf'<[^>]+id="{part}"[^>]*>', page).group(0)
        assert "connection-changed from:body" in element, part


def test_a_day_broken_then_reconnected_is_not_a_day_disconnected(client, merchant, db):
    """Issue 13, item 6: the strip showed a reconnect day as fully disconnected, and said "1 days"."""
    connection = make_connection(merchant.shop)
    add_event(db, connection, "connected", NOW - timedelta(days=3), state_after="healthy")
    add_event(db, connection, "check_failed", NOW - timedelta(days=1, hours=2), state_after="needs_reconnect")
    add_event(db, connection, "reconnected", NOW - timedelta(days=1, hours=1), state_after="healthy")
    page = client.get("/activity", headers={"HX-Request": "true"}).get_data(as_text=True)
    strip = re.search(r'<figure class="health-strip".*?</figure>', page, re.S).group(0)
    assert "disconnected, then reconnected</title>" in strip
    summary = re.search(r'<p id="strip-summary"[^>]*>(.*?)</p>', strip).group(1)
    assert "1 day disconnected, then reconnected" in summary and "1 days" not in summary


def test_a_broken_card_says_since_when_and_an_expired_one_offers_no_test(client, merchant, db):
    connection = make_connection(merchant.shop, issued_at=NOW - timedelta(days=61))
    connection.state, connection.cause, connection.state_changed_at = "needs_reconnect", "token_expired", NOW
    db.session.commit()
    card = client.get("/card", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "Expired" in card and "Disconnected by Instagram" not in card
    assert "Stopped working" in card and "Connected for" not in card
    assert "Test connection now" not in card  # no call can revive an expired token


def diagnosis_panel(page: str) -> str:
    return re.search(r'<section id="diagnosis-panel".*?</section>', page, re.S).group(0)


def test_no_confidence_word_stands_beside_evidence_that_refutes_it(app, client, merchant, db):
    """Issue 13: "Data access expired, certain: 90 days without use" on a one-minute-old connection."""
    connection = make_connection(merchant.shop, issued_at=NOW - timedelta(minutes=1))
    break_connection(db, connection, cause="data_access_expired", code=190, subcode=493)
    panel = diagnosis_panel(client.get("/").get_data(as_text=True))
    assert "Access lapsed after 90 days without use" in panel
    assert '<span class="confidence confidence-possible">Possible</span>' in panel
    assert "Certain" not in panel and "Most likely" not in panel and "exactly" not in panel
    assert "What does not fit" in panel
    assert "But this shop connected only 1 minute before it stopped working" in panel
    mail = compose_notice(app, Notice("disconnected", "k"), connection, merchant, NOW)
    assert "Possible reason: Access lapsed after 90 days without use." in mail["text"]
    assert "Most likely" not in mail["text"] and "Most likely" not in mail["html"]


def test_checkpoint_panel_leads_with_the_checkpoint_not_with_the_merchants_fixes(client, merchant, db):
    """Issue 13: reconnects that fixed earlier, separately explained incidents are not "re-made several times"."""
    connection = make_connection(merchant.shop, issued_at=NOW - timedelta(days=2))
    for days, kind, fields in (
        (20, "connected", {}),
        (9, "check_failed", {"cause": "session_invalidated", "state_after": "needs_reconnect"}),
        (8.9, "reconnected", {}),
        (5, "check_failed", {"cause": "password_changed", "state_after": "needs_reconnect"}),
        (2, "reconnected", {}),
    ):
        add_event(db, connection, kind, NOW - timedelta(days=days), **fields)
    break_connection(db, connection, cause="account_checkpoint", code=190, subcode=459)
    panel = diagnosis_panel(client.get("/").get_data(as_text=True))
    assert "re-made several times" not in panel and "Frequent log-ins" not in panel
    lead_in = re.search(r"</header>\s*<p>([^<]*)</p>", panel).group(1)
    assert lead_in.startswith("Instagram&#39;s security systems paused the account")
    first_step = re.search(r'<ol class="checklist">.*?<span>([^<]*)</span>', panel, re.S).group(1)
    assert first_step.startswith("Open the Instagram app")


def test_technical_details_do_not_list_a_removed_permission_as_granted(client, auth, merchant, db, requests_mock):
    """Issue 13: after Instagram refused a permission, the card still said it was granted."""
    make_connection(merchant.shop, issued_at=NOW - timedelta(days=2))
    requests_mock.get(
        "https://graph.instagram.com/v23.0/me",
        status_code=400,
        json={
            "error": {
                "message": "(#10) Application does not have permission for this action",
                "type": "OAuthException",
                "code": 10,
            }
        },
    )
    client.post("/instagram/test", headers={"HX-Request": "true", "X-CSRFToken": auth.csrf_token("/")})
    card = client.get("/card", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "Disconnected by Instagram" in card
    assert "<dt>Permissions granted</dt><dd>none</dd>" in card
    assert "<dt>Permissions removed</dt><dd>instagram_business_basic (granted at the last connect" in card
    panel = diagnosis_panel(client.get("/").get_data(as_text=True))
    assert (
        "At the last connect Instagram granted instagram_business_basic; now it refuses instagram_business_basic."
        in panel
    )


def test_the_explain_page_does_not_send_you_to_the_explain_page(client, auth):
    """Issue 13: the unknown cause's note for support told you to paste into the tool you were in."""
    auth.login_as(make_user(role="support"))
    token = auth.csrf_token("/support/explain")
    page = client.post("/support/explain", data={"csrf_token": token, "raw_error": "the printer is on fire"})
    body = page.get_data(as_text=True)
    assert "We could not tell what happened" in body
    assert "explain tool" not in body and "Send engineering the whole error" in body


def test_nothing_to_do_is_said_not_offered_as_a_step_to_tick(client, merchant, db):
    """Issue 13, item 6: "Nothing to do" was a tickable box."""
    connection = make_connection(merchant.shop)
    connection.state, connection.cause = "degraded", "provider_error"
    connection.last_error_code, connection.last_error_message = 2, "Service temporarily unavailable"
    db.session.commit()
    add_event(db, connection, "check_failed", NOW, cause="provider_error", meta_code=2, state_after="degraded")
    panel = client.get("/what-happened", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "Instagram is having trouble" in panel
    assert "<strong>Nothing to do.</strong> We retry automatically, with growing pauses." in panel
    assert 'class="tick"' not in panel


def test_every_cause_has_steps_or_says_there_is_nothing_to_do():
    from webapp.services.connections.causes import CAUSES

    for cause in CAUSES.values():
        assert bool(cause.checklist) != bool(cause.nothing_to_do), cause.id
        assert not any(step.lower().startswith("nothing to do") for step in cause.checklist), cause.id


def test_a_disconnected_card_does_not_say_connected_since(client, merchant, db):
    connection = make_connection(merchant.shop, username="tea_house")
    connection.state, connection.token_ciphertext, connection.token_fingerprint = "not_connected", None, None
    db.session.commit()
    card = client.get("/card", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "Not connected" in card and "@tea_house" in card
    assert "Connected since" not in card and "Was connected until it was disconnected" in card


@pytest.mark.parametrize("seen", ["", "-", "nodash", "x-x-x", "A" * 5000, "<script>-x", "99999999999999999-healthy"])
def test_a_poll_with_a_seen_value_not_of_our_making_changes_nothing(client, merchant, db, seen):
    make_connection(merchant.shop)
    response = client.get("/card", query_string={"seen": seen}, headers={"HX-Request": "true"})
    assert response.status_code == 200 and "HX-Trigger" not in response.headers
    assert 'class="flash' not in response.get_data(as_text=True)


def test_a_card_whose_token_meta_took_says_since_when_it_stopped(client, merchant, db):
    connection = make_connection(merchant.shop, username="tea_house")
    connection.state, connection.cause, connection.state_changed_at = "needs_reconnect", "app_removed", NOW
    connection.token_ciphertext = connection.token_fingerprint = None
    db.session.commit()
    card = client.get("/card", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "Stopped working" in card and "Connected since" not in card
