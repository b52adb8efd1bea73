"""Fixtures: a fresh app and database per test, on SQLite or on PostgreSQL (TEST_DATABASE_URL)."""

from __future__ import annotations

import os
import shutil
import sqlite3
from datetime import UTC, datetime

import pytest
from flask import Flask
from jinja2.bccache import Bucket, BytecodeCache
from sqlalchemy import Engine, create_engine, event, text

from testbed import servers
from testbed.client import AuthActions, IsolatedClient
from tests import factories
from tests.instagram_helpers import FakeInstagram, connect
from webapp import clock, create_app
from webapp.config import normalise_database_url
from webapp.extensions import db as _db


def _per_worker_services() -> None:
    """Under pytest-xdist each worker process gets its own PostgreSQL database and Redis database.

    The URLs are rewritten in the environment before anything reads them, so tests, the servers they
    start and the subprocesses they run all use the worker's own (`test_gw1`, `/2`, ...).
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not worker:
        return
    number = int(worker.removeprefix("gw"))
    database_url = os.environ.get("TEST_DATABASE_URL")
    if database_url:
        base, _, name = database_url.rpartition("/")
        own = f"{name}_{worker}"
        engine = create_engine(normalise_database_url(database_url), isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            if not connection.scalar(text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": own}):
                connection.execute(text(f'CREATE DATABASE "{own}"'))
        engine.dispose()
        os.environ["TEST_DATABASE_URL"] = f"{base}/{own}"
    redis_url = os.environ.get("TEST_REDIS_URL")
    if redis_url:
        base, _, _index = redis_url.rpartition("/")
        os.environ["TEST_REDIS_URL"] = f"{base}/{1 + number % 15}"


_per_worker_services()
TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL")
TEST_TOKEN_KEY = "Xo0ZxJ1m9bVb3vH8w7cU2ZQ2r9n3tq5l1s8k0j6h4gA="
TEST_CLIENT_ID = "990011223344"
TEST_CLIENT_SECRET = "test-instagram-app-secret"
TEST_FACEBOOK_APP_ID = "551100223344"
TEST_FACEBOOK_APP_SECRET = "test-facebook-app-secret"
# Meta's real URLs: requests-mock answers there, and anything unregistered fails the test.
META_URLS = {
    "INSTAGRAM_AUTHORIZE_URL": "https://www.instagram.com/oauth/authorize",
    "INSTAGRAM_API_BASE": "https://api.instagram.com",
    "INSTAGRAM_GRAPH_BASE": "https://graph.instagram.com",
    "FACEBOOK_AUTHORIZE_URL": "https://www.facebook.com/v23.0/dialog/oauth",
    "FACEBOOK_GRAPH_BASE": "https://graph.facebook.com",
}


def _run_migrations(database_uri: str) -> None:
    from flask_migrate import upgrade

    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": database_uri})
    with app.app_context():
        upgrade()
        _db.engine.dispose()


class CompiledTemplates(BytecodeCache):
    """Templates compiled once per run, not once per test's app (a template's edit changes its checksum)."""

    def __init__(self) -> None:
        self.compiled: dict[str, bytes] = {}

    def load_bytecode(self, bucket: Bucket) -> None:
        if bucket.key in self.compiled:
            bucket.bytecode_from_string(self.compiled[bucket.key])

    def dump_bytecode(self, bucket: Bucket) -> None:
        self.compiled[bucket.key] = bucket.bytecode_to_string()


COMPILED_TEMPLATES = CompiledTemplates()


@event.listens_for(Engine, "connect")
def _skip_fsync_on_test_databases(dbapi_connection, _record) -> None:
    """A test database lives for one test: waiting for the disk on every commit only slows the suite."""
    if isinstance(dbapi_connection, sqlite3.Connection):
        dbapi_connection.execute("PRAGMA synchronous = OFF")


@pytest.fixture(scope="session")
def migrated_database(tmp_path_factory) -> str:
    """Migrate one database per test run with the real Alembic revisions; tests copy or truncate it."""
    if TEST_DATABASE_URL:
        uri = normalise_database_url(TEST_DATABASE_URL)
        engine = create_engine(uri)
        with engine.begin() as connection:
            connection.execute(text("DROP SCHEMA public CASCADE"))
            connection.execute(text("CREATE SCHEMA public"))
        engine.dispose()
        _run_migrations(uri)
        return uri
    path = tmp_path_factory.mktemp("db") / "template.sqlite3"
    _run_migrations(f"sqlite:///{path}")
    return str(path)


def _truncate_all(uri: str) -> None:
    engine = create_engine(uri)
    with engine.begin() as connection:
        # The audit log refuses TRUNCATE (promise 40); replica mode skips triggers for this cleanup only.
        connection.execute(text("SET LOCAL session_replication_role = replica"))
        tables = [t.name for t in reversed(_db.metadata.sorted_tables)]
        connection.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture
def database_uri(migrated_database, tmp_path) -> str:
    if TEST_DATABASE_URL:
        _truncate_all(migrated_database)
        return migrated_database
    copy = tmp_path / "test.sqlite3"
    shutil.copyfile(migrated_database, copy)
    return f"sqlite:///{copy}"


@pytest.fixture
def app_config(database_uri, tmp_path) -> dict:
    """The config mapping handed to the factory; tests may tweak it before `app` is built."""
    return {
        "TESTING": True,
        "SQLALCHEMY_DATABASE_URI": database_uri,
        "SECRET_KEY": "test-secret-key",
        "HTMX_CDN": False,
        "SERVER_NAME": None,
        "TOKEN_ENCRYPTION_KEYS": TEST_TOKEN_KEY,
        "INSTAGRAM_SANDBOX": False,
        "INSTAGRAM_CLIENT_ID": TEST_CLIENT_ID,
        "INSTAGRAM_CLIENT_SECRET": TEST_CLIENT_SECRET,
        "FACEBOOK_APP_ID": TEST_FACEBOOK_APP_ID,
        "FACEBOOK_APP_SECRET": TEST_FACEBOOK_APP_SECRET,
        "PASSWORD_HASH_METHOD": factories.TEST_PASSWORD_HASH_METHOD,
        **META_URLS,
    }


@pytest.fixture
def app(app_config) -> Flask:
    """The app under test, inside its app context.

    pytest-flask builds on it: its `client` fixture (an IsolatedClient here), `config`, a test request
    context around each test, and `@pytest.mark.options(KEY=value)` for settings the app reads per
    request. Settings read while the app is built go through `app_config` instead.
    """
    app = create_app(app_config)
    app.test_client_class = IsolatedClient
    app.jinja_env.bytecode_cache = COMPILED_TEMPLATES
    with app.app_context():
        yield app
        _db.session.remove()
        _db.engine.dispose()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def db(app):
    return _db


@pytest.fixture
def now() -> datetime:
    return datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


@pytest.fixture
def pinned_clock(now) -> datetime:
    """Pin the app's clock to `now`: views, column defaults and factories all read this one time."""
    clock.pin(now)
    yield now
    clock.pin(None)


@pytest.fixture
def auth(client) -> AuthActions:
    return AuthActions(client)


@pytest.fixture
def merchant(auth):
    """A merchant of the shop "Tea House", logged in through the login form."""
    user = factories.make_user(shop=factories.make_shop(name="Tea House"))
    auth.login_as(user)
    return user


@pytest.fixture
def instagram_account() -> dict:
    """FakeInstagram's settings for the account `connected` connects; a module overrides it to pick another."""
    return {}


@pytest.fixture
def connected(client, auth, merchant, requests_mock, instagram_account):
    """The logged-in merchant after the real connect flow, with Meta mocked at its real URLs."""
    FakeInstagram(requests_mock, **instagram_account).install()
    connect(client, auth)
    return merchant


@pytest.fixture(scope="session")
def live_dashboard(tmp_path_factory):
    """The dashboard as `make run` serves it, on a free port with its own SQLite file."""
    with servers.live_dashboard_server(tmp_path_factory.mktemp("live")) as (base_url, _env):
        yield base_url
