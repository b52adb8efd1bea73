"""Times on pages: UTC in the HTML (what a reader without JavaScript sees), local in the browser."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from tests.factories import make_connection
from webapp.templating import format_datetime, relative_phrase, time_element

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def test_a_time_is_utc_in_the_html_for_the_browser_to_make_local(app):
    assert str(time_element(datetime(2026, 11, 26, 14, 5, 9, tzinfo=UTC))) == (
        '<time datetime="2026-11-26T14:05:09Z" title="26 Nov 2026, 14:05 UTC" data-local="absolute">'
        "26 Nov 2026, 14:05 UTC</time>"
    )
    assert time_element(None) == "never" and time_element(None, "not yet") == "not yet"


@pytest.mark.parametrize(
    ("offset", "phrase"),
    [
        (timedelta(hours=-2, minutes=-5), "2 hours ago"),
        (timedelta(seconds=-20), "less than a minute ago"),
        (timedelta(days=-1), "1 day ago"),
        (timedelta(days=3, hours=1), "in 3 days"),
        (timedelta(minutes=1), "in 1 minute"),
    ],
)
def test_the_relative_phrase(offset, phrase):
    assert relative_phrase(NOW + offset, NOW) == phrase


def test_a_relative_time_carries_its_phrase_as_of_the_request(app, pinned_clock):
    html = str(time_element(NOW - timedelta(hours=2), relative=True))
    assert 'data-local="relative"' in html and ">26 Nov 2026, 10:00 UTC (2 hours ago)</time>" in html


def test_mails_say_utc_whatever_zone_a_time_was_given_in():
    tokyo = timezone(timedelta(hours=9))
    assert format_datetime(datetime(2026, 11, 27, 8, 5, tzinfo=tokyo)) == "26 Nov 2026, 23:05 UTC"


def test_the_card_says_how_long_ago_without_javascript(client, merchant, db, pinned_clock):
    connection = make_connection(
        merchant.shop, issued_at=NOW - timedelta(days=3), last_checked_at=NOW - timedelta(hours=2)
    )
    connection.last_check_ok = True
    db.session.commit()
    card = client.get("/card", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "26 Nov 2026, 10:00 UTC (2 hours ago)</time> · passed" in card
    assert 'Connected since <time datetime="2026-11-23T12:00:00Z"' in card
