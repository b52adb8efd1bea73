"""The Procfile really runs: release migrates Postgres, web answers /healthz (issue 2, deployment)."""

from __future__ import annotations

import os
import shlex
import subprocess
import time

import pytest

from testbed import servers
from tests.conftest import TEST_DATABASE_URL

pytestmark = [
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.skipif(not TEST_DATABASE_URL, reason="TEST_DATABASE_URL is not set (CI sets it to a real PostgreSQL)"),
]


def procfile_entries() -> dict[str, str]:
    entries = {}
    for line in (servers.PROJECT_ROOT / "Procfile").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, command = line.split(":", 1)
            entries[name.strip()] = command.strip()
    return entries


def test_procfile_declares_release_and_web():
    entries = procfile_entries()
    assert entries["release"] == "flask --app wsgi db upgrade"
    assert entries["web"].startswith("gunicorn ")
    assert entries["worker"] == "flask --app wsgi worker"


def test_procfile_runs_against_postgres_in_production_mode(migrated_database, tmp_path):
    port = servers.free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INSTAGRAM_", "FLASK_"))}
    env.update(
        {
            "APP_ENV": "production",
            # Heroku hands out postgres:// URLs; the app must rewrite them itself.
            "DATABASE_URL": TEST_DATABASE_URL.replace("postgresql://", "postgres://", 1),
            "SECRET_KEY": "procfile-test-secret-" + "s" * 32,
            "PUBLIC_BASE_URL": "https://dashboard.example.com",
            # Production needs shared throttle storage; nothing here logs in, so it is never reached.
            "REDIS_URL": os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
            "INSTAGRAM_CLIENT_ID": "1234567890",
            "INSTAGRAM_CLIENT_SECRET": "procfile-test-client-secret",
            "TOKEN_ENCRYPTION_KEYS": "Xo0ZxJ1m9bVb3vH8w7cU2ZQ2r9n3tq5l1s8k0j6h4gA=",
            "PORT": str(port),
            "WEB_CONCURRENCY": "2",
            "PATH": f"{servers.BIN}:{os.environ.get('PATH', '')}",
        }
    )
    release = subprocess.run(
        [str(servers.BIN / "honcho"), "run", *shlex.split(procfile_entries()["release"])],
        cwd=servers.PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert release.returncode == 0, release.stdout + release.stderr
    command = [str(servers.BIN / "honcho"), "start", "web", "worker"]
    log = tmp_path / "honcho.log"
    with servers.running(command, env, f"http://127.0.0.1:{port}/healthz", log):
        assert servers.wait_for_http(f"http://127.0.0.1:{port}/healthz") == 200
        assert servers.wait_for_http(f"http://127.0.0.1:{port}/login") == 200
        deadline = time.monotonic() + 30
        while "started: concurrency" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "started: concurrency" in log.read_text(), log.read_text()[-2000:]
