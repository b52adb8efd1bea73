"""Start the real server processes (gunicorn, honcho) for end-to-end tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
ARTIFACTS = PROJECT_ROOT / "test-artifacts"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, timeout: float = 30.0, process: subprocess.Popen | None = None) -> int:
    """Poll `url` until it answers; return its status code."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited early with code {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


def flask_command(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "flask"), "--app", "wsgi", *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )


def dev_environment(database_url: str, port: int, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INSTAGRAM_", "APP_ENV", "FLASK_"))}
    env.update(
        {
            "DATABASE_URL": database_url,
            "PORT": str(port),
            "LOCAL_BASE_URL": f"http://127.0.0.1:{port}",
            "SECRET_KEY": "browser-test-secret",
            # Many logins from one address in a short run; the throttle has its own tests.
            "LOGIN_RATE_LIMIT": "1000 per minute",
            "LOGIN_ACCOUNT_RATE_LIMIT": "1000 per minute",
            "MANUAL_ACTION_RATE_LIMIT": "1000 per minute",
            "TOKEN_ENCRYPTION_KEYS": "Xo0ZxJ1m9bVb3vH8w7cU2ZQ2r9n3tq5l1s8k0j6h4gA=",
            "PATH": f"{BIN}:{env.get('PATH', '')}",
        }
    )
    env.update(extra)
    return env


@contextmanager
def running(command: list[str], env: dict, health_url: str, log_path: Path):
    """Run `command` in its own process group until the block ends."""
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            command, cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            wait_for_http(health_url, process=process)
            yield process
        finally:
            if process.poll() is None:
                os.killpg(process.pid, 15)
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, 9)
                    process.wait()


def run_worker_cycle(env: dict) -> str:
    """One `flask worker --until-idle` run: everything due now, then exit. Returns its output."""
    result = subprocess.run(
        [str(BIN / "flask"), "--app", "wsgi", "worker", "--until-idle"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout + result.stderr


@contextmanager
def live_dashboard_server(folder: Path, **extra_env: str):
    """A migrated, seeded dev server (SQLite in `folder`, the sandbox) under gunicorn: yields (base_url, env)."""
    port = free_port()
    env = dev_environment(f"sqlite:///{folder / 'db.sqlite3'}", port, **extra_env)
    flask_command("db", "upgrade", env=env)
    flask_command("demo", "seed", env=env)
    base_url = f"http://127.0.0.1:{port}"
    command = [str(BIN / "gunicorn"), "--config", "gunicorn.conf.py", "--workers", "1", "wsgi:app"]
    try:
        with running(command, env, f"{base_url}/healthz", folder / "server.log"):
            yield base_url, env
    finally:
        ARTIFACTS.mkdir(exist_ok=True)
        if (folder / "server.log").exists():
            (ARTIFACTS / f"{folder.name}-server.log").write_text((folder / "server.log").read_text())
