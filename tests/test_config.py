"""Configuration from the environment fails fast in production."""

from __future__ import annotations

import pytest

from webapp.config import ConfigError, load_config, normalise_database_url

# Everything production needs, each value acceptable; tests remove or spoil one at a time.
PRODUCTION_ENV = {
    "APP_ENV": "production",
    "SECRET_KEY": "s" * 40,
    "DATABASE_URL": "postgres://user:pw@db.internal:5432/shop",
    "INSTAGRAM_CLIENT_ID": "123",
    "INSTAGRAM_CLIENT_SECRET": "abc",
    "TOKEN_ENCRYPTION_KEYS": "k1,k2",
    "PUBLIC_BASE_URL": "https://dashboard.example.com/",
    "REDIS_URL": "rediss://:pw@redis.internal:6380",
}


def test_production_refuses_to_start_without_secrets():
    with pytest.raises(ConfigError, match="set SECRET_KEY, DATABASE_URL, TOKEN_ENCRYPTION_KEYS, INSTAGRAM_CLIENT_ID"):
        load_config({"APP_ENV": "production"})
    with pytest.raises(ConfigError, match="set SECRET_KEY as"):
        load_config({**PRODUCTION_ENV, "SECRET_KEY": ""})


@pytest.mark.parametrize("name", ["INSTAGRAM_CLIENT_ID", "INSTAGRAM_CLIENT_SECRET"])
def test_production_refuses_to_start_without_instagram_credentials(name):
    """Finding 10: the README says the Instagram app's id and secret are required in production."""
    env = {key: value for key, value in PRODUCTION_ENV.items() if key != name}
    with pytest.raises(ConfigError, match=f"^Production start refused: set {name} as config vars"):
        load_config(env)


def test_production_refuses_a_short_secret_key():
    """Finding 10: a one-character SECRET_KEY signs sessions anyone can forge; 32 characters at least."""
    for short in ("x", "s" * 31):
        with pytest.raises(ConfigError, match="SECRET_KEY must be at least 32 characters") as refusal:
            load_config({**PRODUCTION_ENV, "SECRET_KEY": short})
        assert "secrets.token_hex(32)" in str(refusal.value) and "\n" not in str(refusal.value)
    assert load_config({**PRODUCTION_ENV, "SECRET_KEY": "s" * 32})["SECRET_KEY"] == "s" * 32


@pytest.mark.parametrize(
    "value,message",
    [
        (None, "set PUBLIC_BASE_URL as"),
        ("", "set PUBLIC_BASE_URL as"),
        ("http://dashboard.example.com", "PUBLIC_BASE_URL must be this app's https origin"),
        ("https://", "PUBLIC_BASE_URL must be this app's https origin"),
        ("dashboard.example.com", "PUBLIC_BASE_URL must be this app's https origin"),
    ],
)
def test_production_requires_an_https_public_base_url(value, message):
    """Finding 10: without PUBLIC_BASE_URL mailed links pointed at 127.0.0.1."""
    env = {**PRODUCTION_ENV, "PUBLIC_BASE_URL": value}
    if value is None:
        del env["PUBLIC_BASE_URL"]
    with pytest.raises(ConfigError, match=message):
        load_config(env)


@pytest.mark.parametrize("value", [None, "", "memory://", "http://redis.internal:6379"])
def test_production_requires_shared_throttle_storage(value):
    """Promise 38: every gunicorn process and dyno must count login attempts in one place (Redis).

    An in-memory count is one per process: 14 wrong passwords spread over the processes were never
    refused. The app cannot know how many dynos run, so production needs REDIS_URL outright.
    """
    env = {**PRODUCTION_ENV, "REDIS_URL": value}
    if value is None:
        del env["REDIS_URL"]
    with pytest.raises(ConfigError, match="REDIS_URL"):
        load_config(env)
    config = load_config({**PRODUCTION_ENV, "WEB_CONCURRENCY": "1"})
    assert config["RATELIMIT_STORAGE_URI"] == PRODUCTION_ENV["REDIS_URL"]


def test_production_config_from_heroku_style_vars():
    config = load_config(PRODUCTION_ENV)
    assert config["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg://user:pw@db.internal:5432/shop"
    assert config["SESSION_COOKIE_SECURE"] is True
    assert config["INSTAGRAM_SANDBOX"] is False
    assert config["INSTAGRAM_AUTHORIZE_URL"] == "https://www.instagram.com/oauth/authorize"
    assert config["PUBLIC_BASE_URL"] == "https://dashboard.example.com"
    assert config["RATELIMIT_STORAGE_URI"] == "rediss://:pw@redis.internal:6380"


@pytest.mark.parametrize(
    "env,hops",
    [
        ({}, 0),
        ({"APP_ENV": "production"}, 1),
        ({"PROXY_FIX_HOPS": "2"}, 2),
        ({"APP_ENV": "production", "PROXY_FIX_HOPS": "0"}, 0),
    ],
)
def test_trusted_proxy_hops_default_to_the_platform(env, hops):
    """Promise 38: 0 hops when reached directly (local), 1 in production (Heroku's router)."""
    assert load_config({**(PRODUCTION_ENV if env.get("APP_ENV") else {}), **env})["PROXY_FIX_HOPS"] == hops


def test_proxy_hops_must_be_a_small_whole_number():
    with pytest.raises(ConfigError, match="PROXY_FIX_HOPS must be between 0 and 5"):
        load_config({"PROXY_FIX_HOPS": "-1"})


def test_sandbox_cannot_be_switched_on_in_production():
    with pytest.raises(ConfigError, match="INSTAGRAM_SANDBOX"):
        load_config({**PRODUCTION_ENV, "INSTAGRAM_SANDBOX": "1"})


def test_development_defaults_to_sqlite_in_the_instance_folder(tmp_path):
    config = load_config({}, instance_path=str(tmp_path))
    assert config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path / 'dashboard.sqlite3'}"
    assert config["INSTAGRAM_SANDBOX"] is True
    assert config["INSTAGRAM_AUTHORIZE_URL"].endswith("/sandbox/oauth/authorize")


def test_real_credentials_turn_the_sandbox_off_by_default():
    config = load_config({"INSTAGRAM_CLIENT_ID": "1", "INSTAGRAM_CLIENT_SECRET": "2"})
    assert config["INSTAGRAM_SANDBOX"] is False


@pytest.mark.parametrize(
    "url,expected",
    [
        ("postgres://u@h/d", "postgresql+psycopg://u@h/d"),
        ("postgresql://u@h/d", "postgresql+psycopg://u@h/d"),
        ("postgresql+psycopg://u@h/d", "postgresql+psycopg://u@h/d"),
        ("sqlite:///x.db", "sqlite:///x.db"),
    ],
)
def test_database_url_rewrite(url, expected):
    assert normalise_database_url(url) == expected


def test_bad_number_is_a_clear_error():
    with pytest.raises(ConfigError, match="SESSION_IDLE_MINUTES must be a whole number"):
        load_config({"SESSION_IDLE_MINUTES": "ten"})


def test_wsgi_module_refuses_production_without_secrets(tmp_path):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in PRODUCTION_ENV}
    env["APP_ENV"] = "production"
    result = subprocess.run(
        [sys.executable, "-c", "import wsgi"], env=env, capture_output=True, text=True, cwd=os.getcwd()
    )
    assert result.returncode != 0
    assert "Production start refused: set SECRET_KEY, DATABASE_URL" in result.stderr
    assert "REDIS_URL" in result.stderr.splitlines()[-1]


@pytest.mark.parametrize("env", [PRODUCTION_ENV, {}, {**PRODUCTION_ENV, "PASSWORD_HASH_METHOD": "plain"}])
def test_passwords_hash_with_werkzeugs_default_outside_tests(env):
    """Only a test config cheapens the hash; the environment cannot."""
    assert load_config(env)["PASSWORD_HASH_METHOD"] == "scrypt"


def test_a_hash_made_with_any_method_still_verifies(app):
    from webapp.models import User

    user = User()
    user.set_password("an-old-scrypt-pass", "scrypt")
    assert user.password_hash.startswith("scrypt:")
    assert user.check_password("an-old-scrypt-pass")
    user.set_password("a-test-config-pass")
    assert user.password_hash.startswith(f"{app.config['PASSWORD_HASH_METHOD']}$")
    assert user.check_password("a-test-config-pass")
    assert not user.check_password("an-old-scrypt-pass")


def test_every_process_of_a_local_run_links_to_the_same_origin():
    """honcho gives the worker PORT=5100; its mails must still link to the web's origin (issue 13, item 2)."""
    web = load_config({"PORT": "5001", "LOCAL_BASE_URL": "http://127.0.0.1:5001"})
    worker = load_config({"PORT": "5101", "LOCAL_BASE_URL": "http://127.0.0.1:5001"})
    assert web["LOCAL_BASE_URL"] == worker["LOCAL_BASE_URL"] == "http://127.0.0.1:5001"
    assert worker["SANDBOX_BASE_URL"] == "http://127.0.0.1:5001/sandbox"
    assert load_config({"PORT": "5100"})["LOCAL_BASE_URL"] == "http://127.0.0.1:5000"


@pytest.mark.parametrize(("value", "minutes"), [(None, 10), ("0", 0), ("30", 30)])
def test_the_quiet_period_is_a_config_value(value, minutes):
    assert load_config({} if value is None else {"NOTICE_QUIET_MINUTES": value})["NOTICE_QUIET_MINUTES"] == minutes


def test_a_negative_quiet_period_is_refused():
    with pytest.raises(ConfigError, match="NOTICE_QUIET_MINUTES"):
        load_config({"NOTICE_QUIET_MINUTES": "-5"})


@pytest.mark.parametrize(("value", "version"), [(None, "v23.0"), ("", "v23.0"), ("v24.0", "v24.0"), (" v9.1 ", "v9.1")])
def test_the_graph_api_version_is_a_config_value(value, version):
    env = {} if value is None else {"INSTAGRAM_GRAPH_VERSION": value}
    assert load_config(env)["INSTAGRAM_GRAPH_VERSION"] == version


@pytest.mark.parametrize("value", ["23.0", "v23", "V23.0", "v23.0/", "v123.0", "v23.0.1", "latest", "v23.0/me?x="])
def test_a_malformed_graph_api_version_stops_start_up(value):
    """Issue 14, part 7: a bad version would make every health check call a path Meta does not serve."""
    with pytest.raises(
        ConfigError, match="^INSTAGRAM_GRAPH_VERSION must be a Graph API version such as v23.0"
    ) as refusal:
        load_config({"INSTAGRAM_GRAPH_VERSION": value})
    assert repr(value.strip()) in str(refusal.value) and "\n" not in str(refusal.value)
    with pytest.raises(ConfigError, match="INSTAGRAM_GRAPH_VERSION"):
        load_config({**PRODUCTION_ENV, "INSTAGRAM_GRAPH_VERSION": value})


FACEBOOK_CREDENTIALS = {"FACEBOOK_APP_ID": "551100", "FACEBOOK_APP_SECRET": "fb-secret"}
INSTAGRAM_CREDENTIALS = {"INSTAGRAM_CLIENT_ID": "123", "INSTAGRAM_CLIENT_SECRET": "abc"}


@pytest.mark.parametrize(
    ("env", "paths"),
    [
        ({}, ("instagram", "facebook")),  # the sandbox plays both apps
        (INSTAGRAM_CREDENTIALS, ("instagram",)),
        (FACEBOOK_CREDENTIALS, ("facebook",)),
        ({**INSTAGRAM_CREDENTIALS, **FACEBOOK_CREDENTIALS}, ("instagram", "facebook")),
        ({"LOGIN_PATHS": "facebook"}, ("facebook",)),
        ({"LOGIN_PATHS": " Facebook , instagram,facebook "}, ("facebook", "instagram")),
        ({**FACEBOOK_CREDENTIALS, "LOGIN_PATHS": "facebook"}, ("facebook",)),
    ],
)
def test_login_paths_default_to_the_paths_with_credentials(env, paths):
    assert load_config(env)["LOGIN_PATHS"] == paths


def test_facebook_credentials_alone_turn_the_sandbox_off_by_default():
    config = load_config(FACEBOOK_CREDENTIALS)
    assert config["INSTAGRAM_SANDBOX"] is False
    assert (config["FACEBOOK_APP_ID"], config["FACEBOOK_APP_SECRET"]) == ("551100", "fb-secret")
    assert config["FACEBOOK_GRAPH_BASE"] == "https://graph.facebook.com"
    assert config["FACEBOOK_AUTHORIZE_URL"] == "https://www.facebook.com/v23.0/dialog/oauth"


def test_the_sandbox_stands_in_for_the_facebook_app():
    config = load_config({})
    assert config["FACEBOOK_APP_ID"] and config["FACEBOOK_APP_SECRET"]
    assert config["FACEBOOK_APP_SECRET"] != config["INSTAGRAM_CLIENT_SECRET"]
    assert config["FACEBOOK_GRAPH_BASE"].endswith("/sandbox/facebook/graph")


@pytest.mark.parametrize(
    ("env", "missing"),
    [
        ({"LOGIN_PATHS": "facebook"}, "FACEBOOK_APP_ID, FACEBOOK_APP_SECRET are not set"),
        ({"LOGIN_PATHS": "facebook", "FACEBOOK_APP_ID": "1"}, "FACEBOOK_APP_SECRET is not set"),
        ({"LOGIN_PATHS": "instagram,facebook", **FACEBOOK_CREDENTIALS}, "INSTAGRAM_CLIENT_ID, INSTAGRAM_CLIENT_SECRET"),
    ],
)
def test_a_listed_path_without_its_credentials_stops_start_up_outside_the_sandbox(env, missing):
    with pytest.raises(ConfigError, match=f"^LOGIN_PATHS offers .*{missing}") as refusal:
        load_config({**env, "INSTAGRAM_SANDBOX": "0"})
    assert "\n" not in str(refusal.value)
    # The sandbox stands in for both apps, so there the same list starts.
    listed = tuple(path.strip() for path in env["LOGIN_PATHS"].split(","))
    assert load_config({**env, "INSTAGRAM_SANDBOX": "1"})["LOGIN_PATHS"] == listed


@pytest.mark.parametrize("value", ["threads", "instagram,", "instagram;facebook", ","])
def test_an_unknown_login_path_stops_start_up(value):
    with pytest.raises(ConfigError, match="^LOGIN_PATHS must list instagram, facebook or both"):
        load_config({"LOGIN_PATHS": value})


def test_production_with_only_the_facebook_app_needs_no_instagram_credentials():
    env = {k: v for k, v in PRODUCTION_ENV.items() if not k.startswith("INSTAGRAM_")} | FACEBOOK_CREDENTIALS
    config = load_config(env)
    assert config["LOGIN_PATHS"] == ("facebook",) and config["INSTAGRAM_SANDBOX"] is False


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"LOGIN_PATHS": "instagram,facebook"}, "set FACEBOOK_APP_ID, FACEBOOK_APP_SECRET as config vars"),
        ({"FACEBOOK_APP_ID": "1"}, "set FACEBOOK_APP_SECRET as config vars"),
    ],
)
def test_production_refuses_a_path_without_its_credentials(extra, message):
    with pytest.raises(ConfigError, match=f"^Production start refused: {message}"):
        load_config({**PRODUCTION_ENV, **extra})


def test_facebook_scopes_and_login_configuration_are_config_values():
    config = load_config({})
    assert config["FACEBOOK_SCOPES"] == "instagram_basic,pages_show_list,pages_read_engagement,business_management"
    assert config["FACEBOOK_LOGIN_CONFIG_ID"] is None
    config = load_config({"FACEBOOK_SCOPES": "instagram_basic,pages_show_list", "FACEBOOK_LOGIN_CONFIG_ID": " 77 "})
    assert (config["FACEBOOK_SCOPES"], config["FACEBOOK_LOGIN_CONFIG_ID"]) == ("instagram_basic,pages_show_list", "77")


@pytest.mark.parametrize("value", ["24.0", "latest", "v24.0/"])
def test_a_malformed_facebook_graph_version_stops_start_up(value):
    with pytest.raises(ConfigError, match="^FACEBOOK_GRAPH_VERSION must be a Graph API version such as v23.0"):
        load_config({"FACEBOOK_GRAPH_VERSION": value})
    assert load_config({"FACEBOOK_GRAPH_VERSION": "v24.0"})["FACEBOOK_GRAPH_VERSION"] == "v24.0"
