"""Refresh-sweep benchmark: N due connections, W worker processes x C concurrent calls, a Meta stub.

    .venv/bin/python -m bench.sweep --connections 10000 --workers 4 --concurrency 8 --latency 0.1

Prints throughput, the ratio of the measured time to the ideal (N x latency / (W x C)) and the
number of duplicate refreshes (a connection refreshed more than once). DESIGN.md's budget: within
1.25x of the ideal, zero duplicates with 4 workers. Needs PostgreSQL; uses (and resets) the
database named by --database-url, `bench` on the local server by default.

`--fault KIND=COUNT` (repeatable) makes the stub misbehave on COUNT refresh calls, as testbed/meta_stub.py
describes (trickle, status, reset, malformed, app_rate_limit, account_rate_limit, echo_token); the
run then reports how the workers coped (no connection worked twice at once, no token lost) instead of
the time budget, since failed calls back off for minutes.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import psycopg
from cryptography.fernet import Fernet
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.cpu import BackendWatch  # noqa: E402
from testbed.fleet import seed_due_connections  # noqa: E402
from testbed.meta_stub import MetaStub  # noqa: E402
from webapp.config import normalise_database_url  # noqa: E402

BIN = Path(sys.executable).parent
APPLICATION_NAME = "bench-sweep"  # how the workers' PostgreSQL backends are found for their CPU time


def ensure_database(url: str) -> None:
    """Create the benchmark database if needed and empty it."""
    name = url.rsplit("/", 1)[1]
    admin = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as connection:
        if not connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            connection.execute(f'CREATE DATABASE "{name}"')
    engine = create_engine(normalise_database_url(url))
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()


def environment(url: str, stub: MetaStub, key: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INSTAGRAM_", "APP_ENV", "FLASK_"))}
    env.update(
        {
            "DATABASE_URL": url,
            "SECRET_KEY": "bench",
            "TOKEN_ENCRYPTION_KEYS": key,
            "INSTAGRAM_CLIENT_ID": "bench-app",
            "INSTAGRAM_CLIENT_SECRET": "bench-secret",
            "INSTAGRAM_GRAPH_BASE": stub.base_url,
            "INSTAGRAM_API_BASE": stub.base_url,
            "LOG_LEVEL": "WARNING",
            "WORKER_POLL_SECONDS": "0.2",
            "DB_APPLICATION_NAME": APPLICATION_NAME,
        }
    )
    return env


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--latency", type=float, default=0.1, help="seconds the stub waits per call")
    parser.add_argument("--fault", action="append", default=[], metavar="KIND=COUNT", help="inject a stub fault")
    parser.add_argument(
        "--database-url", default=os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/bench")
    )
    args = parser.parse_args()

    key = Fernet.generate_key().decode()
    print(f"Preparing {args.connections} due connections in {args.database_url.rsplit('@', 1)[-1]} ...", flush=True)
    ensure_database(args.database_url)
    with MetaStub(latency=args.latency) as stub:
        for fault in args.fault:
            kind, _, count = fault.partition("=")
            stub.add_fault(kind, path="refresh_access_token", times=int(count or 1))
        env = environment(args.database_url, stub, key)
        subprocess.run(
            [str(BIN / "flask"), "--app", "wsgi", "db", "upgrade"], cwd=ROOT, env=env, check=True, capture_output=True
        )
        seed_due_connections(normalise_database_url(args.database_url), args.connections, key)
        command = [
            str(BIN / "flask"),
            "--app",
            "wsgi",
            "worker",
            "--until-idle",
            "--concurrency",
            str(args.concurrency),
            "--batch-size",
            str(args.batch_size),
        ]
        children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        own_before = time.process_time()
        load_before = os.getloadavg()[0]
        with BackendWatch(args.database_url, APPLICATION_NAME) as backends:
            started = time.monotonic()
            workers = [
                subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                for _ in range(args.workers)
            ]
            failures = [w for w in workers if w.wait() != 0]
            elapsed = time.monotonic() - started
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        workers_cpu = children.ru_utime + children.ru_stime - children_before.ru_utime - children_before.ru_stime
        stub_cpu = time.process_time() - own_before  # this process: the stub's threads, and the sampling
        load_after = os.getloadavg()[0]
        first_call = (stub.first_call_at or started) - started
        calls_span = (stub.last_answer_at or started) - (stub.first_call_at or started)
        for worker in failures:
            print(worker.stderr.read().decode()[-2000:], file=sys.stderr)
        refreshes = stub.refreshes
        most_at_once = max(stub.most_at_once.values(), default=0)
        faults_served = dict(stub.faults_served)

    engine = create_engine(normalise_database_url(args.database_url))
    with engine.connect() as connection:
        healthy = connection.scalar(
            text(
                "SELECT count(*) FROM instagram_connections "
                "WHERE state = 'healthy' AND token_issued_at > now() - interval '1 hour'"
            )
        )
    engine.dispose()
    ideal = args.connections * args.latency / (args.workers * args.concurrency)
    duplicates = sum(count - 1 for count in refreshes.values() if count > 1)
    missed = args.connections - len(refreshes)
    ratio = elapsed / ideal
    print(f"connections        {args.connections}")
    print(f"workers x conc.    {args.workers} x {args.concurrency}")
    print(f"stub latency       {args.latency * 1000:.0f} ms")
    print(f"elapsed            {elapsed:.2f} s (worker start-up included; first call at {first_call:.2f} s)")
    print(f"first to last call {calls_span:.2f} s (ratio {calls_span / ideal:.3f} without start-up and exit)")
    print(f"ideal              {ideal:.2f} s")
    print(f"ratio to ideal     {ratio:.3f}  (budget 1.25)")
    print(f"throughput         {args.connections / elapsed:.0f} refreshes/s")
    print(f"duplicate refreshes {duplicates}")
    print(f"not refreshed      {missed}")
    print(f"healthy, fresh     {healthy}")
    print(f"worker failures    {len(failures)}")
    print(f"most calls at once on one connection {most_at_once}")
    done = max(len(refreshes), 1)
    print(
        f"CPU per refresh    workers {workers_cpu * 1000 / done:.2f} ms (start-up included), "
        f"PostgreSQL backends {backends.seconds * 1000 / done:.2f} ms, stub {stub_cpu * 1000 / done:.2f} ms"
    )
    print(f"load average       {load_before:.2f} before, {load_after:.2f} after (1 min; 2 cores here)")
    if args.fault:
        print(f"faults served      {faults_served}")
        failed_calls = sum(faults_served.values())
        ok = most_at_once <= 1 and not failures and missed <= failed_calls
        print("RESULT             " + ("coped" if ok else "FAILED") + " (faults injected: no time budget)")
        return 0 if ok else 1
    ok = ratio <= 1.25 and duplicates == 0 and missed == 0 and not failures and most_at_once <= 1
    print("RESULT             " + ("within budget" if ok else "OUTSIDE budget"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
