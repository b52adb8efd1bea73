"""Worker processes on PostgreSQL against a Meta that trickles and a database that goes away (promises 35, 36)."""

from __future__ import annotations

import os
import signal
import time
from urllib.parse import urlsplit

import pytest

from testbed.fleet import seed_due_connections
from testbed.meta_stub import MetaStub
from testbed.tcp_proxy import TcpProxy
from tests.conftest import TEST_TOKEN_KEY
from tests.test_worker_processes import decrypt, needs_postgres, rows, start_worker, worker_env

pytestmark = [pytest.mark.slow, needs_postgres]


def wait_until(predicate, timeout: float, every: float = 0.25) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return False


def refreshed_tokens(database_uri: str, stub: MetaStub) -> int:
    """How many connections hold a token Meta issued by refresh (not the seed they started with)."""
    tokens = [decrypt(c) for (c,) in rows(database_uri, "SELECT token_ciphertext FROM instagram_connections")]
    return sum(1 for token in tokens if token in stub.issued)


def stop(worker, log_path) -> str:
    os.killpg(worker.pid, signal.SIGTERM)
    assert worker.wait(timeout=30) == 0, log_path.read_text()[-3000:]
    return log_path.read_text()


def test_trickled_replies_end_at_the_deadline_and_no_row_is_worked_twice_at_once(database_uri, tmp_path):
    """Promise 35: replies trickled for a minute each end at the 3 s deadline, far inside the 30 s lease;
    two workers never have the same connection in flight at once, and every token is renewed."""
    with MetaStub(latency=0.0) as stub:
        seed_due_connections(database_uri, 6, TEST_TOKEN_KEY)
        stub.add_fault("trickle", path="refresh_access_token", times=6, interval=0.5)
        env = worker_env(
            database_uri, stub, INSTAGRAM_HTTP_TIMEOUT="3", WORKER_LEASE_SECONDS="30", BACKOFF_BASE_SECONDS="1"
        )
        logs = [tmp_path / f"w{i}.log" for i in range(2)]
        workers = [start_worker(env, "--concurrency", "3", "--batch-size", "3", log=log) for log in logs]
        started = time.monotonic()
        done = wait_until(lambda: refreshed_tokens(database_uri, stub) == 6, timeout=60)
        elapsed = time.monotonic() - started
        output = "".join(stop(worker, log) for worker, log in zip(workers, logs, strict=True))
    assert done, output[-3000:]
    assert elapsed < 30, f"took {elapsed:.1f} s: a trickled call outlived the lease"
    assert stub.faults_served["trickle"] == 6
    assert set(stub.most_at_once[cid] for cid in range(1, 7)) == {1}
    assert rows(database_uri, "SELECT DISTINCT state FROM instagram_connections") == [("healthy",)]
    assert output.count("transient") >= 6


def test_the_worker_outlives_a_database_outage_and_loses_no_token(database_uri, tmp_path):
    """Promise 36 (and 8): the database vanishes while Meta is answering four refreshes; the worker waits,
    never exits, writes those four tokens back once the database returns, and finishes the rest."""
    address = urlsplit(database_uri.replace("+psycopg", ""))
    with MetaStub(latency=0.0) as stub, TcpProxy((address.hostname, address.port or 5432)) as proxy:
        seed_due_connections(database_uri, 12, TEST_TOKEN_KEY)
        proxied = database_uri.replace(address.netloc, f"{address.username}@127.0.0.1:{proxy.port}")
        env = worker_env(proxied, stub, WORKER_LEASE_SECONDS="60")
        log = tmp_path / "worker.log"
        with stub.hold("refresh_access_token") as held:
            worker = start_worker(env, "--concurrency", "4", "--batch-size", "4", log=log)
            held.wait_for_call(timeout=30)
            assert wait_until(lambda: held.count >= 4, timeout=10)
            proxy.cut()
            held.release()  # Meta answers while the database is away
            time.sleep(20)  # longer than the write-back's own retries (about 6 s)
            assert worker.poll() is None, log.read_text()[-3000:]
            proxy.restore()
        done = wait_until(lambda: refreshed_tokens(database_uri, stub) == 12, timeout=60)
        output = stop(worker, log)
    assert done, output[-3000:]
    assert proxy.refused > 0  # the worker really tried while the database was gone
    assert "database unavailable" in output
    # The four answers Meta gave meanwhile are written once the database is back (the checks below):
    # kept after a write-back that failed ("written after the database came back"), or collected
    # only then when the outage found the loop waiting in a claim; which one depends on timing.
    assert "Worker stopped. refreshed: 12\n" in output
    assert sorted(stub.refreshes.values()) == [1] * 12  # no token lost, none refreshed twice
    assert rows(database_uri, "SELECT count(*) FROM instagram_connections WHERE lease_owner IS NOT NULL") == [(0,)]
    assert rows(database_uri, "SELECT DISTINCT state FROM instagram_connections") == [("healthy",)]
