"""Facebook Login's pieces that need no request: the Page token's date and what the picker makes of a parked login."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from webapp.models import PendingFacebookLogin
from webapp.services.connections.facebook_linking import PagePicker, ParkedPage, access_ends_at
from webapp.services.meta.facebook import TokenDebug

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def parked(**fields) -> PendingFacebookLogin:
    return PendingFacebookLogin(pages_json="[]", secrets_ciphertext="x", expires_at=NOW, **fields)


@pytest.mark.parametrize(
    ("page_expires", "page_window", "user_window", "expected"),
    [
        (None, NOW + 90 * DAY, NOW + 80 * DAY, NOW + 90 * DAY),  # no date of its own: the Page's window
        (NOW + 30 * DAY, NOW + 90 * DAY, None, NOW + 30 * DAY),  # both: the earlier
        (NOW + 95 * DAY, NOW + 90 * DAY, None, NOW + 90 * DAY),
        (None, None, NOW + 80 * DAY, NOW + 80 * DAY),  # Meta said nothing of the Page: the user token's window
        (None, None, None, NOW + 90 * DAY),  # nothing at all: the documented 90 days from now
    ],
)
def test_a_page_tokens_date_is_the_earlier_of_its_expiry_and_the_data_access_window(
    page_expires, page_window, user_window, expected
):
    debug = TokenDebug(is_valid=True, expires_at=page_expires, data_access_expires_at=page_window)
    assert access_ends_at(debug, parked(data_access_expires_at=user_window), NOW) == expected


def page(page_id: str, instagram_id: str | None, tasks=("MANAGE",)) -> ParkedPage:
    return ParkedPage(page_id, f"Page {page_id}", tuple(tasks), instagram_id, instagram_id and f"ig_{instagram_id}")


def test_the_picker_sorts_pages_and_knows_which_pick_replaces_the_current_account():
    pages = (page("1", "171"), page("2", None), page("3", "173", tasks=("ANALYZE",)))
    picker = PagePicker(parked(granted_permissions="instagram_basic,pages_show_list"), pages, "ig_171", "171")
    assert [p.id for p in picker.choices] == ["1", "3"] and [p.id for p in picker.unlinked] == ["2"]
    assert picker.is_current(pages[0]) and not picker.replaces(pages[0])
    assert picker.replaces(pages[2]) and not pages[2].role_enough and pages[2].role == "Analyst"
    assert picker.missing_permissions == []
    nobody_connected = PagePicker(parked(granted_permissions="instagram_basic"), pages)
    assert not nobody_connected.replaces(pages[0]) and nobody_connected.missing_permissions == ["pages_show_list"]


def test_a_reconnect_keeps_the_shops_own_page_and_a_first_connect_needs_one_obvious_page():
    pages = (page("1", "171"), page("2", "172"), page("3", None))
    picking = parked(granted_permissions="instagram_basic,pages_show_list")
    # Reconnecting (or renewing) a shop on Page 1 that still reaches its account: nothing to choose.
    assert PagePicker(picking, pages, "ig_171", "171", "1").obvious == pages[0]
    # Page 1 now reaches another account: the merchant chooses.
    moved = (page("1", "179"), page("2", "172"))
    assert PagePicker(picking, moved, "ig_171", "171", "1").obvious is None
    # Page 1's role can no longer act for it: the merchant sees the picker and why.
    lowered = (page("1", "171", tasks=("ANALYZE",)), page("2", "172"))
    assert PagePicker(picking, lowered, "ig_171", "171", "1").obvious is None
    # A first connect with two linked Pages: a choice; with one: that one.
    assert PagePicker(picking, pages).obvious is None
    assert PagePicker(picking, (page("1", "171"), page("3", None))).obvious.id == "1"
