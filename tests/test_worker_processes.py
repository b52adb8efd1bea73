"""Real worker processes against a Meta stub on loopback (promises 1, 3, 9; SIGTERM; SQLite's one worker)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from testbed import servers
from testbed.fleet import seed_due_connections
from testbed.meta_stub import MetaStub
from tests.conftest import TEST_DATABASE_URL, TEST_TOKEN_KEY

pytestmark = pytest.mark.slow
needs_postgres = pytest.mark.skipif(
    not TEST_DATABASE_URL, reason="TEST_DATABASE_URL is not set (CI sets it to a real PostgreSQL)"
)


def worker_env(database_uri: str, stub: MetaStub, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INSTAGRAM_", "APP_ENV", "FLASK_"))}
    env.update(
        {
            "DATABASE_URL": database_uri,
            "SECRET_KEY": "worker-test",
            "TOKEN_ENCRYPTION_KEYS": TEST_TOKEN_KEY,
            "INSTAGRAM_CLIENT_ID": "990011223344",
            "INSTAGRAM_CLIENT_SECRET": "worker-test-secret",
            "INSTAGRAM_GRAPH_BASE": stub.base_url,
            "INSTAGRAM_API_BASE": stub.base_url,
            "INSTAGRAM_HTTP_TIMEOUT": "5",
            "WORKER_LEASE_SECONDS": "30",
            "WORKER_POLL_SECONDS": "0.2",
            "DB_APPLICATION_NAME": "shop-health-worker",
            "PATH": f"{servers.BIN}:{env.get('PATH', '')}",
        }
    )
    env.update(extra)
    return env


def start_worker(env: dict, *args: str, log: Path) -> subprocess.Popen:
    handle = open(log, "a")  # noqa: SIM115 (closed with the process)
    return subprocess.Popen(
        [str(servers.BIN / "flask"), "--app", "wsgi", "worker", *args],
        cwd=servers.PROJECT_ROOT,
        env=env,
        stdout=handle,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def rows(database_uri: str, sql: str) -> list:
    engine = create_engine(database_uri)
    with engine.connect() as connection:
        result = connection.execute(text(sql)).all()
    engine.dispose()
    return result


def decrypt(ciphertext: str) -> str:
    from cryptography.fernet import Fernet

    return Fernet(TEST_TOKEN_KEY.encode()).decrypt(ciphertext.encode()).decode()


@pytest.fixture
def stub():
    with MetaStub(latency=0.02) as stub:
        yield stub


@needs_postgres
def test_several_worker_processes_refresh_each_connection_exactly_once(database_uri, stub, tmp_path):
    """Promise 1: 3 worker processes, 300 due connections, exactly one refresh per connection."""
    seed_due_connections(database_uri, 300, TEST_TOKEN_KEY)
    env = worker_env(database_uri, stub)
    workers = [
        start_worker(env, "--until-idle", "--concurrency", "4", "--batch-size", "10", log=tmp_path / f"w{i}.log")
        for i in range(3)
    ]
    for worker in workers:
        assert worker.wait(timeout=120) == 0, (tmp_path / "w0.log").read_text()[-2000:]
    assert len(stub.refreshes) == 300
    assert set(stub.refreshes.values()) == {1}, [cid for cid, n in stub.refreshes.items() if n > 1]
    states = rows(database_uri, "SELECT state, count(*) FROM instagram_connections GROUP BY state")
    assert states == [("healthy", 300)]
    for (ciphertext,) in rows(database_uri, "SELECT token_ciphertext FROM instagram_connections"):
        token = decrypt(ciphertext)
        assert token in stub.issued
    # Every worker got a share of the work.
    logs = [(tmp_path / f"w{i}.log").read_text() for i in range(3)]
    assert all("refreshed" in log for log in logs)


@needs_postgres
def test_no_transaction_is_open_while_meta_is_called(database_uri, tmp_path):
    """Promise 3: with a slow Meta, no worker connection sits idle in a transaction."""
    with MetaStub(latency=0.8) as slow:
        seed_due_connections(database_uri, 24, TEST_TOKEN_KEY)
        worker = start_worker(
            worker_env(database_uri, slow), "--until-idle", "--concurrency", "6", log=tmp_path / "w.log"
        )
        samples, idle_in_transaction = 0, []
        deadline = time.monotonic() + 60
        while worker.poll() is None and time.monotonic() < deadline:
            # A write-back is a short transaction between statements; one held across a 0.8 s call to
            # Meta would sit idle far longer than 0.2 s.
            found = rows(
                database_uri,
                "SELECT state, query, now() - state_change > interval '0.2 seconds' FROM pg_stat_activity "
                "WHERE application_name = 'shop-health-worker'",
            )
            samples += 1
            idle_in_transaction += [query for state, query, long in found if state == "idle in transaction" and long]
            time.sleep(0.05)
        assert worker.wait(timeout=60) == 0
    assert samples > 20
    assert idle_in_transaction == []
    assert sum(slow.refreshes.values()) == 24


@needs_postgres
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_crash_at_any_point_leaves_consistent_rows(database_uri, tmp_path, seed):
    """Promise 9: SIGKILL a worker at a random moment; every connection ends usable or explicit."""
    rng = random.Random(seed)
    with MetaStub(latency=0.3) as stub:
        seed_due_connections(database_uri, 40, TEST_TOKEN_KEY)
        env = worker_env(database_uri, stub)
        victim = start_worker(env, "--concurrency", "8", log=tmp_path / "victim.log")
        time.sleep(rng.uniform(1.0, 2.5))
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait()
        # Time passes: the dead worker's leases run out.
        engine = create_engine(database_uri)
        with engine.begin() as connection:
            connection.execute(
                text(
                    "UPDATE instagram_connections SET lease_expires_at = now() - interval '1 second' WHERE lease_owner IS NOT NULL"
                )
            )
            connection.execute(text("DELETE FROM worker_processes"))
        engine.dispose()
        survivor = start_worker(env, "--until-idle", "--concurrency", "8", log=tmp_path / "survivor.log")
        assert survivor.wait(timeout=120) == 0
        for state, ciphertext, lease_owner in rows(
            database_uri, "SELECT state, token_ciphertext, lease_owner FROM instagram_connections"
        ):
            assert state == "healthy" and lease_owner is None
            assert stub.valid(decrypt(ciphertext))
        assert max(stub.refreshes.values()) <= 2  # at most the one the crash interrupted, plus one


@needs_postgres
def test_sigterm_finishes_in_flight_work_within_heroku_grace(database_uri, tmp_path):
    """On SIGTERM the worker finishes or releases its work well inside Heroku's 30 s."""
    with MetaStub(latency=1.0) as stub:
        seed_due_connections(database_uri, 60, TEST_TOKEN_KEY)
        worker = start_worker(
            worker_env(database_uri, stub), "--concurrency", "5", "--batch-size", "20", log=tmp_path / "w.log"
        )
        # Start-up takes a moment on a busy machine; SIGTERM before the handler is in place kills outright.
        deadline = time.monotonic() + 30
        while "started" not in (tmp_path / "w.log").read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(2.5)
        started = time.monotonic()
        os.killpg(worker.pid, signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
        assert time.monotonic() - started < 10
    leased = rows(database_uri, "SELECT count(*) FROM instagram_connections WHERE lease_owner IS NOT NULL")[0][0]
    assert leased == 0
    assert "finishing calls in flight" in (tmp_path / "w.log").read_text()
    assert rows(database_uri, "SELECT count(*) FROM worker_processes")[0][0] == 0


def test_sqlite_refuses_a_second_worker(database_uri, stub, tmp_path):
    """SQLite runs one worker; a second is refused politely with a reason and exit code 1."""
    if TEST_DATABASE_URL:
        pytest.skip("SQLite-only behaviour")
    env = worker_env(database_uri, stub)
    first = start_worker(env, log=tmp_path / "first.log")
    try:
        deadline = time.monotonic() + 20
        while "started" not in (tmp_path / "first.log").read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
        second = subprocess.run(
            [str(servers.BIN / "flask"), "--app", "wsgi", "worker"],
            cwd=servers.PROJECT_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert second.returncode == 1
        assert "SQLite supports one worker" in second.stderr
    finally:
        os.killpg(first.pid, signal.SIGTERM)
        first.wait(timeout=30)


def test_sweep_command_reports_a_summary(database_uri, stub, tmp_path):
    seed_due_connections(database_uri, 25, TEST_TOKEN_KEY)
    result = subprocess.run(
        [str(servers.BIN / "flask"), "--app", "wsgi", "tokens", "sweep", "--concurrency", "5"],
        cwd=servers.PROJECT_ROOT,
        env=worker_env(database_uri, stub),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Sweeping 25 due connection(s)" in result.stdout
    assert "refreshed                   25" in result.stdout
    assert sum(stub.refreshes.values()) == 25


def test_threads_share_nothing_unsafe(stub):
    """The stub itself serves concurrent calls (sanity check for the fixtures above)."""
    import requests

    results = []
    threads = [
        threading.Thread(
            target=lambda: results.append(
                requests.get(f"{stub.base_url}/refresh_access_token?access_token=stub-1-0", timeout=5).status_code
            )
        )
        for _ in range(10)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [200] * 10 and stub.refreshes[1] == 10
