"""The sandbox's shortcut, switchable: a cause button makes the dashboard check at once, or Meta tells nobody.

docs/platform_loop.py turns the shortcut off so that the platform's error report, not the worker,
is what finds the revocation; a tester does the same with the panel's button.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from testbed.client import csrf_token_from
from tests.factories import make_connection, make_shop
from webapp.config import SANDBOX_FACEBOOK_APP_ID, SANDBOX_FACEBOOK_APP_SECRET
from webapp.models import InstagramConnection
from webapp.sandbox import emulator, facebook

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(hours=6)
pytestmark = pytest.mark.usefixtures("pinned_clock")


@pytest.fixture
def now() -> datetime:
    return NOW


@pytest.fixture
def app_config(app_config):
    return {
        **app_config,
        "INSTAGRAM_SANDBOX": True,
        "FACEBOOK_APP_ID": SANDBOX_FACEBOOK_APP_ID,
        "FACEBOOK_APP_SECRET": SANDBOX_FACEBOOK_APP_SECRET,
    }


@pytest.fixture
def linked(db):
    """A sandbox account and the healthy connection made with it, its next check six hours away."""
    account = emulator.new_account("nudge_shop", NOW)
    db.session.commit()
    connection = make_connection(
        make_shop(),
        instagram_user_id=account.instagram_user_id,
        issued_at=NOW - timedelta(hours=1),
        refresh_due_at=NOW + timedelta(days=7),
        check_due_at=LATER,
    )
    db.session.commit()
    return account.id, connection.id


def set_nudge(client, value: str, panel: str = "/sandbox/") -> str:
    token = csrf_token_from(client.get(panel).get_data(as_text=True))
    response = client.post("/sandbox/nudge", data={"csrf_token": token, "nudge": value, "back": panel})
    assert response.status_code == 302 and response.headers["Location"] == panel
    return client.get(panel).get_data(as_text=True)


def press(client, path: str) -> str:
    token = csrf_token_from(client.get("/sandbox/").get_data(as_text=True))
    response = client.post(path, data={"csrf_token": token}, follow_redirects=True)
    assert response.status_code == 200
    return response.get_data(as_text=True)


def check_due_at(db, connection_id: int) -> datetime:
    db.session.expire_all()
    return db.session.get(InstagramConnection, connection_id).check_due_at


def test_by_default_a_button_makes_the_dashboard_check_at_its_next_cycle(client, db, linked):
    account_id, connection_id = linked
    assert "Behave like real Meta" in client.get("/sandbox/").get_data(as_text=True)
    page = press(client, f"/sandbox/accounts/{account_id}/change_password")
    assert "worker will notice at its next cycle" in page
    assert check_due_at(db, connection_id) == NOW


def test_behaving_like_real_meta_leaves_the_dashboard_to_find_out(client, db, linked):
    account_id, connection_id = linked
    page = set_nudge(client, "off")
    assert "Meta tells nobody now" in page and "Tell the dashboard at once" in page
    page = press(client, f"/sandbox/accounts/{account_id}/change_password")
    assert "Meta tells nobody: the dashboard learns of it" in page
    assert check_due_at(db, connection_id) == LATER  # the six-hourly check stands
    # The revocation itself happened: Instagram refuses the token as before.
    assert db.session.get(emulator.SandboxAccount, account_id).password_version == 2

    page = set_nudge(client, "on")
    assert "Behave like real Meta" in page
    press(client, f"/sandbox/accounts/{account_id}/log_out_everywhere")
    assert check_due_at(db, connection_id) == NOW


def test_moving_the_clock_still_moves_the_dashboards_past(client, db, linked):
    account_id, connection_id = linked
    set_nudge(client, "off")
    token = csrf_token_from(client.get("/sandbox/").get_data(as_text=True))
    client.post(f"/sandbox/accounts/{account_id}/age_token", data={"csrf_token": token, "days": "3"})
    db.session.expire_all()
    connection = db.session.get(InstagramConnection, connection_id)
    assert connection.token_issued_at == NOW - timedelta(hours=1, days=3)


def test_the_facebook_panel_follows_the_same_choice(client, db):
    user = facebook.new_user("Nudge Tester", NOW)
    db.session.commit()
    connection = make_connection(make_shop(), check_due_at=LATER, facebook_user_id=user.facebook_user_id)
    db.session.commit()
    page = set_nudge(client, "off", panel="/sandbox/facebook/")
    assert "Tell the dashboard at once" in page
    page = press(client, f"/sandbox/facebook/users/{user.id}/checkpoint")
    assert "Meta tells nobody" in page
    assert check_due_at(db, connection.id) == LATER
    set_nudge(client, "on", panel="/sandbox/facebook/")
    press(client, f"/sandbox/facebook/users/{user.id}/checkpoint")
    assert check_due_at(db, connection.id) == NOW


def test_a_back_address_outside_the_sandbox_is_not_followed(client):
    token = csrf_token_from(client.get("/sandbox/").get_data(as_text=True))
    response = client.post(
        "/sandbox/nudge", data={"csrf_token": token, "nudge": "off", "back": "https://evil.example/"}
    )
    assert response.headers["Location"] == "/sandbox/"
