"""Configuration from the environment fails fast in production."""

from __future__ import annotations

import pytest

from webapp.config import ConfigError, load_config, normalise_database_url


def test_production_refuses_to_start_without_secrets():
    with pytest.raises(ConfigError, match="set SECRET_KEY, DATABASE_URL, TOKEN_ENCRYPTION_KEYS as"):
        load_config({"APP_ENV": "production"})
    with pytest.raises(ConfigError, match="set SECRET_KEY as"):
        load_config({"APP_ENV": "production", "DATABASE_URL": "postgres://u@h/db", "TOKEN_ENCRYPTION_KEYS": "k"})


def test_production_config_from_heroku_style_vars():
    config = load_config(
        {
            "APP_ENV": "production",
            "SECRET_KEY": "s" * 40,
            "DATABASE_URL": "postgres://user:pw@db.internal:5432/shop",
            "INSTAGRAM_CLIENT_ID": "123",
            "INSTAGRAM_CLIENT_SECRET": "abc",
            "TOKEN_ENCRYPTION_KEYS": "k1,k2",
        }
    )
    assert config["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg://user:pw@db.internal:5432/shop"
    assert config["SESSION_COOKIE_SECURE"] is True
    assert config["INSTAGRAM_SANDBOX"] is False
    assert config["INSTAGRAM_AUTHORIZE_URL"] == "https://www.instagram.com/oauth/authorize"


def test_sandbox_cannot_be_switched_on_in_production():
    with pytest.raises(ConfigError, match="INSTAGRAM_SANDBOX"):
        load_config(
            {
                "APP_ENV": "production",
                "SECRET_KEY": "s",
                "DATABASE_URL": "postgres://x/y",
                "TOKEN_ENCRYPTION_KEYS": "k",
                "INSTAGRAM_SANDBOX": "1",
            }
        )


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

    env = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "DATABASE_URL")}
    env["APP_ENV"] = "production"
    result = subprocess.run(
        [sys.executable, "-c", "import wsgi"], env=env, capture_output=True, text=True, cwd=os.getcwd()
    )
    assert result.returncode != 0
    assert "Production start refused: set SECRET_KEY, DATABASE_URL" in result.stderr
