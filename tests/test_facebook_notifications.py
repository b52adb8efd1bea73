"""Mails and in-app notices by login path (issue 15): a Facebook Login shop is warned before its data-access
window ends and asked to renew access; its disconnect mails use Facebook's words and name the Page; an
Instagram Login shop's mails never mention a Page."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from tests.factories import make_connection, make_facebook_connection, make_shop, make_user
from webapp.models import ConnectionEvent, Notification, OutboundMail
from webapp.services.connections.state import set_state
from webapp.services.notify import planning
from webapp.services.notify.compose import compose_notice
from webapp.services.notify.planning import Notice

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
CANARY = "EAAmail-canary-page-token-15"


@pytest.fixture
def shop_with_merchants():
    shop = make_shop(name="Bloom & Stem")
    owner = make_user(shop=shop, name="Maya", email="maya@bloom.example")
    partner = make_user(shop=shop, name="Leo", email="leo@bloom.example")
    return shop, owner, partner


def mails_after(app, when) -> list[OutboundMail]:
    """Plan at `when` and return the mails it recorded (kept in the outbox: no MAIL_URL in tests)."""
    before = {mail.id for mail in OutboundMail.query.all()}
    planning.plan(app, when)
    return [mail for mail in OutboundMail.query.order_by(OutboundMail.id) if mail.id not in before]


def break_it(db, connection, when, cause="password_changed", subcode=460):
    set_state(connection, "needs_reconnect", when, cause=cause)
    connection.last_error_code, connection.last_error_subcode = 190, subcode
    db.session.add(
        ConnectionEvent(
            connection_id=connection.id,
            kind="check_failed",
            occurred_at=when,
            cause=cause,
            meta_code=190,
            meta_subcode=subcode,
            state_after="needs_reconnect",
            actor_kind="meta",
        )
    )
    db.session.commit()


def test_a_facebook_shop_is_warned_before_its_access_ends_without_any_failure(app, db, shop_with_merchants):
    shop, owner, partner = shop_with_merchants
    partner.notify_expiry_warnings = False
    db.session.commit()
    connection = make_facebook_connection(
        shop, issued_at=NOW - timedelta(days=75), expires_at=NOW + timedelta(days=15), username="bloom_and_stem"
    )
    assert connection.refresh_failures == 0 and connection.refresh_due_at is None  # nothing renews it but the merchant
    sent = {day: mails_after(app, NOW + timedelta(days=day)) for day in (0, 4, 5, 6, 11, 12, 13)}
    assert [day for day, mails in sent.items() if mails] == [5, 12]
    # Keyed per warning (10 and 3 days before), worded with the window's own end.
    assert [mail.subject for mail in sent[5]] == ["Renew access: Instagram for Bloom & Stem stops on 11 Dec 2026"]
    assert [mail.subject for mail in sent[12]] == ["Renew access: Instagram for Bloom & Stem stops on 11 Dec 2026"]
    assert [mail.idempotency_key.split(":")[2] for mail in sent[5] + sent[12]] == ["expiry10", "expiry3"]
    assert all(mail.to_address == "maya@bloom.example" for day in sent.values() for mail in day)  # preferences hold
    mail = sent[5][0]
    for body in (mail.text_body, mail.html_body):
        assert "Bloom &amp; Stem" in body or "Bloom & Stem" in body
        assert "its Instagram account (@bloom_and_stem) through your Facebook Page “Tea House”." in body
        assert "it ends on 11 Dec 2026 at 12:00 UTC" in body
        assert "Renew access" in body and "log in with Facebook" in body
        assert "we keep trying" not in body and "automatically" not in body and "60-day" not in body
    assert re.search(r"Renew access: http://127\.0\.0\.1:5000/instagram/reconnect/[\w.\-]+", mail.text_body)
    assert ">Renew access</a>" in mail.html_body and ">Renew access before 11 Dec 2026</h1>" in mail.html_body
    note = db.session.scalar(select(Notification).where(Notification.kind == "expiry_warning"))
    assert note.title == "Renew access to Instagram through Facebook" and note.link.startswith("http://127.0.0.1:5000/")


def test_renewing_the_window_ends_the_warning_and_starts_a_new_count(app, db, client, auth, shop_with_merchants):
    shop, owner, _ = shop_with_merchants
    connection = make_facebook_connection(shop, issued_at=NOW - timedelta(days=82), expires_at=NOW + timedelta(days=8))
    assert [mail.kind for mail in mails_after(app, NOW)] == ["expiry_warning", "expiry_warning"]
    auth.login_as(owner)
    page = client.get("/notifications").get_data(as_text=True)
    assert page.count(">Renew access</a>") == 1 and ">Reconnect</a>" not in page
    # Renew access: a new Page token, a new window (what the Facebook login leaves behind).
    connection.token_issued_at, connection.token_expires_at = NOW, NOW + timedelta(days=90)
    db.session.commit()
    assert mails_after(app, NOW + timedelta(hours=1)) == []
    page = client.get("/notifications").get_data(as_text=True)
    assert ">Renew access</a>" not in page and "This warning no longer applies." in page
    assert [mail.subject for mail in mails_after(app, NOW + timedelta(days=80))] == [
        "Renew access: Instagram for Bloom & Stem stops on 24 Feb 2027"
    ] * 2


@pytest.mark.parametrize("state", ["needs_reconnect", "not_connected"])
def test_no_renew_warning_for_a_facebook_connection_that_is_not_working(app, db, shop_with_merchants, state):
    shop, _, _ = shop_with_merchants
    connection = make_facebook_connection(shop, issued_at=NOW - timedelta(days=85), expires_at=NOW + timedelta(days=5))
    if state == "needs_reconnect":
        break_it(db, connection, NOW - timedelta(days=1), cause="permissions_changed", subcode=492)
    else:
        set_state(connection, "not_connected", NOW - timedelta(days=1))
        db.session.commit()
    assert [mail.kind for mail in mails_after(app, NOW) if mail.kind == "expiry_warning"] == []


def test_a_facebook_disconnect_mail_uses_facebooks_words_and_names_the_page(app, db, shop_with_merchants):
    shop, owner, _ = shop_with_merchants
    connection = make_facebook_connection(shop, token=CANARY, username="bloom_and_stem", page_name="Bloom Page")
    break_it(db, connection, NOW)
    mails = mails_after(app, NOW)
    assert [mail.subject for mail in mails] == ["Instagram is disconnected from Bloom & Stem: please reconnect"] * 2
    mail = mails[0]
    for body in (mail.text_body, mail.html_body):
        assert "The Facebook password was changed" in body and "Instagram password" not in body
        assert "(@bloom_and_stem, through your Facebook Page “Bloom Page”) has stopped working" in body
        assert "reconnect through Facebook" in body
        assert "log in with Facebook and choose the Page" in body  # the checklist's Facebook step
        assert "Instagram has ended" not in body and CANARY not in body
    assert "Reconnect through Facebook (the link works for 7 days, once):" in mail.text_body
    assert ">Reconnect through Facebook</a>" in mail.html_body


def test_a_facebook_reminder_and_support_link_point_to_facebook(app, db, shop_with_merchants):
    shop, owner, _ = shop_with_merchants
    connection = make_facebook_connection(shop)
    break_it(db, connection, NOW, cause="page_unlinked", subcode=None)
    for kind in ("reminder", "reconnect_link"):
        mail = compose_notice(app, Notice(kind, "k", 2), connection, owner, NOW)
        assert "Reconnect through Facebook:" in mail["text"] and ">Reconnect through Facebook</a>" in mail["html"]


def test_a_facebook_restored_mail_says_until_when_access_runs(app, db, shop_with_merchants):
    shop, owner, _ = shop_with_merchants
    connection = make_facebook_connection(shop, username="bloom_and_stem")
    connection.token_expires_at = NOW + timedelta(days=90)
    db.session.commit()
    mail = compose_notice(app, Notice("restored", "k"), connection, owner, NOW)
    for body in (mail["text"], mail["html"]):
        assert "(@bloom_and_stem, through your Facebook Page “Tea House”) works again" in body
        assert "Access runs until 24 Feb 2027; we will remind you before it ends." in body


def test_instagram_mails_never_mention_a_page_or_facebook(app, db, shop_with_merchants):
    shop, owner, _ = shop_with_merchants
    connection = make_connection(shop, username="bloom_and_stem", issued_at=NOW - timedelta(days=51))
    set_state(connection, "expiring", NOW, cause="provider_error")
    connection.refresh_failures = 2
    db.session.commit()
    warning = mails_after(app, NOW)[0]
    assert warning.subject == "Instagram connection for Bloom & Stem ends in 10 days"
    assert "we keep trying" in warning.text_body and ">Reconnect Instagram</a>" in warning.html_body
    break_it(db, connection, NOW + timedelta(hours=1))
    disconnected = mails_after(app, NOW + timedelta(hours=1))[0]
    assert "Instagram has ended the connection with Bloom & Stem (@bloom_and_stem)." in disconnected.text_body
    assert "The Instagram password was changed" in disconnected.text_body
    restored = compose_notice(app, Notice("restored", "k"), connection, owner, NOW)
    for mail in (warning, disconnected):
        for body in (mail.subject, mail.text_body, mail.html_body):
            assert "Page" not in body and "Facebook" not in body and "Renew access" not in body
    for body in (restored["text"], restored["html"]):
        assert "Page" not in body and "Facebook" not in body and "Nothing else to do." in body
