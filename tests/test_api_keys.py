"""Platform API keys: made with scopes, stored as a hash, shown once; admin pages and `flask apikeys`."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select, text

from tests.factories import make_user
from webapp.models import ApiKey, AuditEntry
from webapp.services import api_keys

pytestmark = pytest.mark.usefixtures("pinned_clock")
FULL_KEY = re.compile(r"ihk_[0-9a-f]{12}_[A-Za-z0-9_\-]{43}")


@pytest.fixture
def admin(auth):
    user = make_user(role="admin", email="boss@support.example")
    auth.login_as(user)
    return user


# The service


def test_only_a_hash_of_the_secret_is_stored(db, now):
    key, full_key = api_keys.create_key(name="sync", scopes=["status:read"], created_by=None, now=now, label="tests")
    assert FULL_KEY.fullmatch(full_key)
    secret = full_key.split("_", 2)[2]
    dump = " ".join(str(value) for row in db.session.execute(text("SELECT * FROM api_keys")) for value in row)
    assert secret not in dump and key.key_id in dump
    assert api_keys.authenticate(full_key, now) == key


def test_two_keys_never_share_a_secret_or_an_id(db, now):
    made = [api_keys.create_key(name=f"k{n}", scopes=["status:read"], created_by=None, now=now)[1] for n in range(5)]
    assert len(set(made)) == 5 and len({value.split("_")[1] for value in made}) == 5


@pytest.mark.parametrize(
    ("scopes", "message"),
    [
        ([], "at least one scope"),
        (["status:write"], "Unknown scope status:write"),
        (["status:read,tokens:read"], "Unknown scope tokens:read"),
    ],
)
def test_scopes_must_be_known_and_present(db, now, scopes, message):
    with pytest.raises(api_keys.ApiKeyError, match=message):
        api_keys.create_key(name="sync", scopes=scopes, created_by=None, now=now)


def test_scopes_are_kept_once_each_in_a_fixed_order(db, now):
    key, _ = api_keys.create_key(
        name="  product   sync ", scopes=["errors:write", "status:read,errors:write"], created_by=None, now=now
    )
    assert key.scope_list == ["status:read", "errors:write"] and key.name == "product sync"


def test_last_used_moves_at_most_once_a_minute(db, now):
    key, full_key = api_keys.create_key(name="sync", scopes=["status:read"], created_by=None, now=now)
    api_keys.authenticate(full_key, now)
    api_keys.authenticate(full_key, now + timedelta(seconds=30))
    assert key.last_used_at == now
    api_keys.authenticate(full_key, now + timedelta(minutes=2))
    assert key.last_used_at == now + timedelta(minutes=2)


# Admin pages


def test_an_admin_makes_a_key_and_sees_it_once(client, auth, db, admin):
    response = client.post(
        "/admin/api-keys",
        data={
            "csrf_token": auth.csrf_token("/admin/api-keys"),
            "name": "product sync",
            "scopes": ["status:read", "token:read"],
        },
    )
    assert response.status_code == 201
    assert response.headers["Cache-Control"] == "no-store"
    shown = FULL_KEY.findall(response.get_data(as_text=True))
    assert len(shown) == 1
    key = db.session.scalars(select(ApiKey)).one()
    assert key.scope_list == ["status:read", "token:read"] and key.created_by == "boss@support.example (admin)"
    assert key.created_by_id == admin.id
    listing = client.get("/admin/api-keys").get_data(as_text=True)
    assert key.key_id in listing and shown[0] not in listing and not FULL_KEY.search(listing)
    entry = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "api_key.created")).one()
    assert entry.actor_id == admin.id and key.key_id in entry.details and shown[0] not in entry.details


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"name": "", "scopes": ["status:read"]}, "Name the key"),
        ({"name": "sync"}, "Pick at least one scope"),
        ({"name": "sync", "scopes": ["root"]}, "is not a valid choice"),
    ],
)
def test_the_form_says_what_is_missing(client, auth, db, admin, form, message):
    response = client.post("/admin/api-keys", data={"csrf_token": auth.csrf_token("/admin/api-keys"), **form})
    assert response.status_code == 400 and message in response.get_data(as_text=True)
    assert db.session.scalars(select(ApiKey)).all() == []


def test_an_admin_revokes_a_key(client, auth, db, admin, now):
    key, _ = api_keys.create_key(name="sync", scopes=["status:read"], created_by=None, now=now)
    response = client.post(f"/admin/api-keys/{key.id}/revoke", data={"csrf_token": auth.csrf_token("/admin/api-keys")})
    assert response.status_code == 302
    db.session.refresh(key)
    assert key.revoked_at == now
    entry = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "api_key.revoked")).one()
    assert entry.actor_id == admin.id
    again = client.post(
        f"/admin/api-keys/{key.id}/revoke",
        data={"csrf_token": auth.csrf_token("/admin/api-keys")},
        follow_redirects=True,
    )
    assert "was already revoked" in again.get_data(as_text=True)


def test_revoking_an_unknown_key_is_a_404(client, auth, admin):
    response = client.post("/admin/api-keys/999/revoke", data={"csrf_token": auth.csrf_token("/admin/api-keys")})
    assert response.status_code == 404


@pytest.mark.parametrize("role", ["support", "merchant"])
def test_only_admins_see_the_keys(client, auth, db, role):
    auth.login_as(make_user(role=role))
    assert client.get("/admin/api-keys").status_code == 403


def test_the_admin_nav_links_to_the_keys(client, admin):
    assert 'href="/admin/api-keys"' in client.get("/admin/staff").get_data(as_text=True)


# flask apikeys


def test_cli_creates_a_key_and_prints_it_once(runner, db):
    result = runner.invoke(args=["apikeys", "create", "--name", "feed sync", "--scope", "status:read,errors:write"])
    assert result.exit_code == 0, result.output
    assert len(FULL_KEY.findall(result.output)) == 1
    key = db.session.scalars(select(ApiKey)).one()
    assert key.scope_list == ["status:read", "errors:write"] and key.created_by == "the command line"
    entry = db.session.scalars(select(AuditEntry)).one()
    assert entry.action == "api_key.created" and entry.actor_label == "the command line"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--name", "sync", "--scope", "admin"], "Unknown scope admin"),
        (["--name", "   ", "--scope", "status:read"], "Name the key"),
        (["--scope", "status:read"], "Missing option '--name'"),
        (["--name", "sync"], "Missing option '--scope'"),
    ],
)
def test_cli_refuses_bad_input_with_exit_2_and_a_sentence(runner, db, args, message):
    result = runner.invoke(args=["apikeys", "create", *args])
    assert result.exit_code == 2 and message in result.output
    assert db.session.scalars(select(ApiKey)).all() == []


def test_cli_lists_and_revokes(runner, db, now):
    key, full_key = api_keys.create_key(name="feed sync", scopes=["token:read"], created_by=None, now=now)
    listed = runner.invoke(args=["apikeys", "list"])
    assert listed.exit_code == 0 and key.key_id in listed.output and "feed sync" in listed.output
    assert full_key.split("_", 2)[2] not in listed.output
    revoked = runner.invoke(args=["apikeys", "revoke", key.key_id])
    assert revoked.exit_code == 0 and f"Revoked API key {key.key_id}" in revoked.output
    assert api_keys.authenticate(full_key, now).revoked_at is not None
    again = runner.invoke(args=["apikeys", "revoke", full_key])  # the whole key names it too
    assert again.exit_code == 0 and "already revoked" in again.output


def test_cli_revoke_of_an_unknown_key_is_exit_2(runner, db):
    result = runner.invoke(args=["apikeys", "revoke", "0123456789ab"])
    assert result.exit_code == 2 and "There is no API key '0123456789ab'" in result.output


def test_cli_list_with_no_keys_says_how_to_make_one(runner, db):
    result = runner.invoke(args=["apikeys", "list"])
    assert result.exit_code == 0 and "apikeys create" in result.output
