"""docs/platform_loop.py really works: run against web + worker started as `make run` starts them (issue 16's "Done when").

The dashboard runs under honcho with Procfile.dev on its own SQLite file and a free port, migrated
and seeded first, exactly as the Makefile's `run` target does; the script runs as a reader would
run it, in a process of its own, and what it printed is checked.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from testbed import servers

SCRIPT = servers.PROJECT_ROOT / "docs" / "platform_loop.py"
ALL_SCOPES = ("status:read", "token:read", "errors:write", "webhooks:manage")


def run_script(env: dict, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        cwd=servers.PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def make_key(env: dict, *scopes: str) -> str:
    command = ["apikeys", "create", "--name", "test service"]
    for scope in scopes:
        command += ["--scope", scope]
    return servers.flask_command(*command, env=env).stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def make_run(tmp_path_factory):
    """Web and worker as `make run` starts them: db upgrade, demo seed, honcho with Procfile.dev."""
    folder = tmp_path_factory.mktemp("platform-loop")
    port = servers.free_port()
    env = servers.dev_environment(f"sqlite:///{folder / 'db.sqlite3'}", port)
    env.pop("SHOP_HEALTH_API_KEY", None)
    servers.flask_command("db", "upgrade", env=env)
    servers.flask_command("demo", "seed", env=env)
    base_url = f"http://127.0.0.1:{port}"
    command = [str(servers.BIN / "honcho"), "-f", "Procfile.dev", "start"]
    try:
        with servers.running(command, env, f"{base_url}/healthz", folder / "honcho.log"):
            yield base_url, env
    finally:
        servers.ARTIFACTS.mkdir(exist_ok=True)
        (servers.ARTIFACTS / "platform-loop-honcho.log").write_text((folder / "honcho.log").read_text())


@pytest.mark.slow
def test_the_script_shows_the_whole_loop_and_leaves_nothing_usable_behind(make_run):
    base_url, env = make_run
    done = run_script(env, "--base-url", base_url, "--create-key", "--wait", "150")
    printed = done.stdout
    assert done.returncode == 0, printed[-3000:] + done.stderr[-2000:]
    # The merchant connected first (the demo shop starts unconnected), then the platform's loop.
    assert "Instagram connected: @bloom_and_stem." in printed
    assert re.search(r"GET /api/v1/shops/\d+/token -> a token of \d+ characters", printed)
    assert '-> HTTP 200: {"id": ' in printed  # Graph accepted the token the API gave
    assert '"error_subcode": 460' in printed  # ... and refused it after the password change
    assert '"action": "confirmed_disconnected"' in printed
    assert "Idempotent-Replayed: true, action confirmed_disconnected" in printed
    assert "signature verified" in printed
    assert "healthy -> needs_reconnect, cause password_changed" in printed
    assert "Disconnected by Instagram" in printed  # the merchant's card
    assert "state needs_reconnect, cause password_changed" in printed  # the API, read again
    assert "The whole loop worked" in printed
    # Never a secret on the screen: the token, the signing secret, the key's secret part.
    assert not re.search(r"IG(AA|QV)[\w-]{20,}", printed)
    assert not re.search(r"whsec_[A-Za-z0-9+/=]{8,}", printed)
    assert not re.search(r"ihk_[0-9a-f]{12}_[\w-]{20,}", printed)
    # The key it made for itself is revoked, and its webhook endpoint disabled.
    key_id = re.search(r"Made key ([0-9a-f]{12})", printed).group(1)
    listed = servers.flask_command("apikeys", "list", env=env).stdout
    (row,) = [line for line in listed.splitlines() if line.startswith(key_id)]
    assert row.rstrip().endswith("UTC") and row.count("UTC") >= 3  # created, last used, revoked
    assert "webhook endpoint" in printed and "disabled (DELETE" in printed

    again = run_script(env, "--base-url", base_url, "--create-key", "--wait", "150")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-2000:]
    assert "the shop is needs_reconnect; connecting it first" in again.stdout
    assert "Connection restored: @bloom_and_stem is connected again." in again.stdout


@pytest.mark.slow
def test_a_key_without_a_scope_the_loop_needs_stops_it_with_a_sentence(make_run):
    base_url, env = make_run
    key = make_key(env, "status:read", "token:read", "errors:write")
    done = run_script({**env, "SHOP_HEALTH_API_KEY": key}, "--base-url", base_url)
    assert done.returncode == 1
    assert "Failed: The API key lacks a scope this loop needs" in done.stderr
    assert "webhooks:manage" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.slow
def test_without_a_key_the_script_says_how_to_make_one(make_run):
    base_url, env = make_run
    done = run_script(env, "--base-url", base_url)
    assert done.returncode == 1
    assert "No API key: pass --api-key or set SHOP_HEALTH_API_KEY" in done.stderr
    assert "flask --app wsgi apikeys create" in done.stderr


@pytest.mark.slow
def test_without_the_worker_the_wait_for_the_webhook_ends_with_a_sentence(tmp_path):
    """The web server alone (gunicorn, no worker): the report is confirmed, but nobody sends the webhook."""
    with servers.live_dashboard_server(tmp_path) as (base_url, env):
        key = make_key(env, *ALL_SCOPES)
        done = run_script({**env, "SHOP_HEALTH_API_KEY": key}, "--base-url", base_url, "--wait", "3")
    assert done.returncode == 1, done.stdout[-3000:]
    assert '"action": "confirmed_disconnected"' in done.stdout
    assert "No webhook about shop" in done.stderr and "Is the worker running?" in done.stderr


def test_with_no_dashboard_running_the_script_says_to_start_it():
    port = servers.free_port()  # nothing listens on it
    done = run_script({}, "--base-url", f"http://127.0.0.1:{port}", "--api-key", "ihk_x_y", timeout=60)
    assert done.returncode == 1
    assert f"Nothing answers at http://127.0.0.1:{port}: start the dashboard with `make run`" in done.stderr
