"""The merchant's card by login path (issue 15): a Facebook Login card names the Page, the role and the
data-access window; an Instagram Login card stays as it was; the choice of paths when not connected."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from flask import url_for

from tests.factories import make_connection, make_facebook_connection, make_user
from webapp.dashboard import presenter

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
CANARY = "EAAcard-canary-page-token-7"
pytestmark = pytest.mark.usefixtures("pinned_clock")


@pytest.fixture
def now() -> datetime:
    return NOW


def card(client) -> str:
    return client.get("/card", headers={"HX-Request": "true"}).get_data(as_text=True)


def forms(html: str) -> list[str]:
    return re.findall(r"<form .*?</form>", html, re.S)


def form_with(html: str, button: str) -> str:
    """The one form whose button says `button`."""
    found = [form for form in forms(html) if re.search(rf">\s*{re.escape(button)}\s*</button>", form)]
    assert len(found) == 1, (button, found)
    return found[0]


def action(form: str) -> str:
    return re.search(r'action="([^"]+)"', form).group(1)


def button_class(form: str) -> str:
    return re.search(r'<button type="submit"(?: class="([^"]*)")?', form).group(1) or ""


def test_a_facebook_card_names_the_path_the_page_and_the_role(client, merchant, app):
    make_facebook_connection(merchant.shop, issued_at=NOW - timedelta(days=12), page_name="Tea House")
    body = card(client)
    assert "Connected through Facebook · Page: <strong>Tea House</strong> · your role: Admin" in body
    assert "Connected through Instagram" not in body
    page = client.get("/").get_data(as_text=True)
    assert "Connected through Facebook · Page: <strong>Tea House</strong>" in page  # the page includes the fragment


def test_a_facebook_card_counts_down_the_data_access_window_and_shows_no_renewals(client, merchant):
    make_facebook_connection(merchant.shop, issued_at=NOW - timedelta(days=12))
    body = card(client)
    assert re.search(
        r'<dt>Data access ends in</dt><dd><span class="countdown" data-expires-at="[^"]+">78 days, 0 hours, 0 minutes<',
        body,
    )
    assert "Data access used: 12 of 90 days" in body and 'max="90" value="12"' in body
    assert "We renew the connection automatically" not in body
    assert "Facebook gives the shop access for 90 days at a time" in body
    for refresh_words in ("Expires in", "Last renewed", "Next renewal", "Renew now", "Lifetime used", "of 60 days"):
        assert refresh_words not in body
    assert "<dt>Last check</dt>" in body


def test_a_facebook_card_posts_reconnect_and_renew_access_to_facebook_login(client, merchant, app):
    make_facebook_connection(merchant.shop, issued_at=NOW - timedelta(days=12))
    body = card(client)
    with app.test_request_context():
        facebook_connect, test_now = url_for("facebook.connect"), url_for("instagram.test_now")
    reconnect, renew = form_with(body, "Reconnect"), form_with(body, "Renew access")
    assert action(reconnect) == facebook_connect and 'name="renew"' not in reconnect
    assert action(renew) == facebook_connect and '<input type="hidden" name="renew" value="1">' in renew
    for form in (reconnect, renew):
        assert 'name="csrf_token"' in form
    assert button_class(renew) == "secondary outline"  # far from the end: a quiet option
    assert action(form_with(body, "Test connection now")) == test_now


@pytest.mark.parametrize(
    ("state", "days_left", "emphasis"),
    [
        ("healthy", 30, "secondary outline"),
        ("healthy", 10, ""),  # EXPIRY_WARNING_DAYS: the filled button
        ("healthy", 2, ""),
        ("degraded", 5, ""),
        ("expiring", 20, ""),  # the worker says it ends soon, whatever our own count
    ],
)
def test_renew_access_comes_first_once_access_ends_soon(client, merchant, state, days_left, emphasis):
    make_facebook_connection(
        merchant.shop,
        state=state,
        issued_at=NOW - timedelta(days=90 - days_left),
        expires_at=NOW + timedelta(days=days_left),
    )
    body = card(client)
    assert button_class(form_with(body, "Renew access")) == emphasis
    assert button_class(form_with(body, "Reconnect")) == "secondary outline"
    sentence = re.search(r'<p class="card-sentence">([^<]*)</p>', body).group(1)
    assert sentence.startswith("The connection works, but access ends soon. Press Renew access") == (emphasis == "")


def test_the_warning_period_follows_the_policy(client, merchant, app):
    make_facebook_connection(merchant.shop, issued_at=NOW - timedelta(days=70), expires_at=NOW + timedelta(days=20))
    assert button_class(form_with(card(client), "Renew access")) == "secondary outline"
    app.config["EXPIRY_WARNING_DAYS"] = 21
    assert button_class(form_with(card(client), "Renew access")) == ""


def test_a_broken_facebook_card_offers_reconnect_through_facebook_and_facebook_words(client, merchant, db, app):
    connection = make_facebook_connection(merchant.shop)
    connection.state, connection.cause, connection.state_changed_at = "needs_reconnect", "password_changed", NOW
    connection.last_error_code, connection.last_error_subcode = 190, 460
    db.session.commit()
    with app.test_request_context():
        facebook_connect = url_for("facebook.connect")
    body = card(client)
    assert button_class(form_with(body, "Reconnect")) == "" and action(form_with(body, "Reconnect")) == facebook_connect
    assert "Renew access" not in body and "Renew now" not in body
    assert "reconnect with Facebook" in body and "Disconnected by Instagram" not in body
    assert "Last error from Facebook" in body
    page = client.get("/").get_data(as_text=True)
    panel = re.search(r'<section id="diagnosis-panel".*?</section>', page, re.S).group(0)
    assert "The Facebook password was changed" in panel and "Instagram password" not in panel
    assert action(form_with(panel, "Reconnect through Facebook")) == facebook_connect


@pytest.mark.parametrize("cause", ["data_access_expired", "token_expired"])
def test_a_facebook_window_that_ran_out_says_so(client, merchant, db, cause):
    connection = make_facebook_connection(merchant.shop, issued_at=NOW - timedelta(days=91))
    connection.state, connection.cause, connection.state_changed_at = "needs_reconnect", cause, NOW
    db.session.commit()
    body = card(client)
    assert "Expired" in body and "Access ended: Facebook gives the shop 90 days at a time" in body
    assert "Test connection now" not in body and "Renew access" not in body
    assert form_with(body, "Reconnect")


def test_technical_details_of_a_facebook_card_name_the_page_never_the_token(client, merchant):
    make_facebook_connection(merchant.shop, token=CANARY, page_id="104882991122334")
    body = card(client)
    details = re.search(r'<details class="technical">.*?</details>', body, re.S).group(0)
    assert "<dt>Facebook Page id</dt><dd>104882991122334</dd>" in details
    assert "<dt>Page access token</dt><dd>fingerprint <code>" in details
    assert "<dt>Data access until</dt>" in details and "Token valid until" not in details
    assert CANARY not in body


def test_a_role_that_cannot_act_for_the_page_is_named_and_flagged(client, merchant):
    make_facebook_connection(merchant.shop, tasks="ADVERTISE,ANALYZE")
    body = card(client)
    assert "your role: Advertiser" in body
    assert "ask an admin of the Page to give you at least the Moderator role" in body


def test_a_page_without_listed_tasks_shows_no_role(client, merchant):
    make_facebook_connection(merchant.shop, tasks="")
    body = card(client)
    assert "Page: <strong>Tea House</strong></p>" in body and "role:" not in body


def test_the_role_of_someone_else_in_the_shop_is_called_theirs(client, merchant):
    partner = make_user(shop=merchant.shop, name="Leo")
    make_facebook_connection(merchant.shop, connected_by=partner, tasks="CREATE_CONTENT,MODERATE")
    assert "Leo’s role: Editor" in card(client)


def test_an_instagram_card_keeps_its_renewals_and_60_days(client, merchant, app):
    make_connection(merchant.shop, issued_at=NOW - timedelta(days=12), expires_at=NOW + timedelta(days=48))
    body = card(client)
    with app.test_request_context():
        instagram_connect = url_for("instagram.connect")
    assert "<dt>Expires in</dt>" in body and "Lifetime used: 12 of 60 days" in body
    assert "<dt>Last renewed</dt>" in body and "<dt>Next renewal</dt>" in body
    assert form_with(body, "Renew now") and action(form_with(body, "Reconnect")) == instagram_connect
    assert "We renew the connection automatically" in body
    for facebook_words in ("Renew access", "Data access", "Page", "Facebook"):
        assert facebook_words not in body.replace("Connected through Instagram", "")
    assert "<dt>Access token</dt>" in body and "<dt>Token valid until</dt>" in body


@pytest.mark.parametrize(("paths", "said"), [(("instagram", "facebook"), True), (("instagram",), False)])
def test_an_instagram_card_names_its_path_only_where_facebook_was_on_offer(client, merchant, app, paths, said):
    app.config["LOGIN_PATHS"] = paths
    make_connection(merchant.shop)
    assert ("Connected through Instagram" in card(client)) is said


def test_not_connected_with_both_paths_offers_one_choice_of_two(client, merchant, app):
    body = card(client)
    with app.test_request_context():
        urls = url_for("instagram.connect"), url_for("facebook.connect")
    choice = re.search(r'<div class="connect-choice" role="group".*?</div>', body, re.S).group(0)
    assert "Choose how to connect" in choice
    instagram, facebook = form_with(choice, "Connect Instagram"), form_with(choice, "Connect through Facebook")
    assert (action(instagram), action(facebook)) == urls
    assert "Instagram login</strong> — for most shops: log in with the Instagram account itself." in instagram
    assert (
        "Facebook login</strong> — if your Instagram is managed through a Facebook Page or Meta Business Suite."
        in facebook
    )
    for form, path in ((instagram, "instagram"), (facebook, "facebook")):
        assert f'aria-describedby="connect-suits-{path}"' in form and f'id="connect-suits-{path}"' in form
    assert len(forms(body)) == 2  # nothing else to press before connecting


@pytest.mark.parametrize(
    ("paths", "button", "absent"),
    [
        (("instagram",), "Connect Instagram", "Facebook"),
        (("facebook",), "Connect through Facebook", "Connect Instagram"),
    ],
)
def test_not_connected_with_one_path_offers_its_button_alone(client, merchant, app, paths, button, absent):
    app.config["LOGIN_PATHS"] = paths
    body = card(client)
    with app.test_request_context():
        url = url_for(f"{paths[0]}.connect")
    assert action(form_with(body, button)) == url
    assert "connect-choice" not in body and "Choose how to connect" not in body and absent not in body


def test_with_facebook_login_switched_off_a_facebook_card_offers_no_dead_button(client, merchant, app):
    """An operator who stops offering Facebook Login: Reconnect leads to Instagram Login, Renew access is gone."""
    app.config["LOGIN_PATHS"] = ("instagram",)
    make_facebook_connection(
        merchant.shop, state="needs_reconnect", cause="page_unlinked", expires_at=NOW + timedelta(days=5)
    )
    body = card(client)
    with app.test_request_context():
        facebook_connect, instagram_connect = url_for("facebook.connect"), url_for("instagram.connect")
    assert action(form_with(body, "Reconnect")) == instagram_connect
    assert facebook_connect not in body and "Renew access" not in body


def test_an_open_page_hears_access_renewed_until_the_new_end(client, merchant, db):
    connection = make_facebook_connection(merchant.shop, state="expiring", issued_at=NOW - timedelta(days=85))
    seen = presenter.card_view(connection, NOW, timedelta(days=10)).seen
    connection.state, connection.token_issued_at = "healthy", NOW
    connection.token_expires_at = NOW + timedelta(days=90)
    db.session.commit()
    response = client.get(f"/card?seen={seen}", headers={"HX-Request": "true"})
    assert "Access renewed until 24 Feb 2027." in response.get_data(as_text=True)
    assert response.headers["HX-Trigger"] == "connection-changed"


def test_facebook_notices_of_an_open_page_speak_of_facebook(app):
    expiring = presenter.CardView(state="expiring", label="", icon="", sentence="", login_path="facebook")
    assert presenter.change_notice("3-healthy", expiring) == presenter.FACEBOOK_STATE_CHANGE_NOTICES["expiring"]
    assert "Renew access" in presenter.change_notice("3-healthy", expiring)
    instagram = presenter.CardView(state="expiring", label="", icon="", sentence="")
    assert presenter.change_notice("3-healthy", instagram) == presenter.STATE_CHANGE_NOTICES["expiring"]


def test_support_sees_the_merchants_role_not_their_own(client, auth):
    connection = make_facebook_connection(tasks="MANAGE")
    auth.login_as(make_user(role="support"))
    page = client.get(f"/support/shops/{connection.shop_id}").get_data(as_text=True)
    assert "Connected through Facebook · Page: <strong>Tea House</strong> · the merchant’s role: Admin" in page
    assert "your role" not in page


def test_the_explainer_tells_facebook_shops_to_renew_access(client):
    page = client.get("/help/why-instagram-disconnects").get_data(as_text=True)
    assert "Facebook gives the shop access for 90 days at a time, and only you can renew it" in page


def test_with_facebook_login_switched_off_a_facebook_card_reconnects_through_instagram(client, merchant, db, app):
    """A button never leads to "not offered here": Reconnect falls back to the path on offer; Renew access goes."""
    app.config["LOGIN_PATHS"] = ("instagram",)
    connection = make_facebook_connection(merchant.shop)
    connection.state, connection.cause, connection.state_changed_at = "needs_reconnect", "page_unlinked", NOW
    db.session.commit()
    body = card(client)
    assert action(form_with(body, "Reconnect")) == "/instagram/connect"
    assert "Renew access" not in body
    page = client.get("/").get_data(as_text=True)
    assert "/facebook/connect" not in page
