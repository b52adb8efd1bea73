"""Refresh-sweep benchmark: N due connections, W worker processes x C concurrent calls, a Meta stub.

    .venv/bin/python -m bench.sweep --connections 10000 --workers 4 --concurrency 8 --latency 0.1

Prints throughput, the ratio of the measured time to the ideal (N x latency / (W x C)) and the
number of duplicate refreshes (a connection refreshed more than once). DESIGN.md's budget: within
1.25x of the ideal, zero duplicates with 4 workers. Needs PostgreSQL; uses (and resets) the
database named by --database-url, `bench` on the local server by default.

The W `flask --app wsgi worker` processes are started first and the clock starts when the N
connections fall due (one commit) while they poll, as in a deployment whose worker dynos run for
days; it stops when the last new token is written back. Their start-up (about 1.5 s of CPU each to
import the app) is printed on its own. `--cold-start` times instead from spawning `--until-idle`
workers over already-due rows to their exit, start-up included (how this script measured before).
It also prints the CPU time per refresh of the workers, of their PostgreSQL backends (read from
/proc, so the database must run on this machine) and of the stub, and the load average.

`--fault KIND=COUNT` (repeatable) makes the stub misbehave on COUNT refresh calls, as testbed/meta_stub.py
describes (trickle, status, reset, malformed, app_rate_limit, account_rate_limit, echo_token); the
run then reports how the workers coped (no connection worked twice at once, no token lost) instead of
the time budget, since failed calls back off for minutes (always timed as with --cold-start).
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
from cryptography.fernet import Fernet
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.cpu import BackendWatch, process_cpu  # noqa: E402
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


def worker_command(args) -> list[str]:
    return [
        str(BIN / "flask"),
        "--app",
        "wsgi",
        "worker",
        "--concurrency",
        str(args.concurrency),
        "--batch-size",
        str(args.batch_size),
    ]


def spawn(command: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def sweep_cold(args, env: dict, url: str, key: str, stub: MetaStub) -> dict:
    """Seed, then spawn `--until-idle` workers and time them from spawn to exit (their start-up included)."""
    seed_due_connections(url, args.connections, key)
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with BackendWatch(args.database_url, APPLICATION_NAME) as backends:
        started = time.monotonic()
        workers = [spawn(worker_command(args) + ["--until-idle"], env) for _ in range(args.workers)]
        failures = [w for w in workers if w.wait() != 0]
        elapsed = time.monotonic() - started
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "elapsed": elapsed,
        "start_up": (stub.first_call_at or started) - started,
        "workers_cpu": children.ru_utime + children.ru_stime - children_before.ru_utime - children_before.ru_stime,
        "backends_cpu": backends.seconds,
        "failures": failures,
    }


def sweep_warm(args, env: dict, url: str, key: str, stub: MetaStub) -> dict:
    """Start the workers, wait until each polls, then make N connections due at once and time until all are written.

    This is a sweep as a deployment sees it: its worker dynos run for days, so their start-up
    (importing the app: about 1.5 s of CPU each) is paid once per deploy, not once per sweep.
    """
    engine = create_engine(url)
    spawned = time.monotonic()
    workers = [spawn(worker_command(args), env) for _ in range(args.workers)]
    try:
        with engine.connect() as connection:
            while connection.scalar(text("SELECT count(*) FROM worker_processes")) < args.workers:
                if any(w.poll() is not None for w in workers) or time.monotonic() - spawned > 300:
                    raise RuntimeError("the workers did not start")
                connection.commit()
                time.sleep(0.1)
        start_up = time.monotonic() - spawned
        with BackendWatch(args.database_url, APPLICATION_NAME) as backends:
            cpu_before = sum(process_cpu(w.pid) or 0.0 for w in workers)
            fell_due = seed_due_connections(url, args.connections, key)
            limit = fell_due + 20 * args.connections * args.latency / (args.workers * args.concurrency) + 60
            with engine.connect() as connection:
                while time.monotonic() < limit:
                    written = connection.scalar(
                        text(
                            "SELECT count(*) FROM instagram_connections WHERE token_issued_at > now() - interval '1 hour'"
                        )
                    )
                    connection.commit()
                    if written >= args.connections:
                        break
                    time.sleep(0.1)
            done_at = time.monotonic()
            workers_cpu = sum(process_cpu(w.pid) or 0.0 for w in workers) - cpu_before
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        failures = [w for w in workers if w.wait(timeout=120) != 0]
        engine.dispose()
    return {
        "elapsed": done_at - fell_due,
        "start_up": start_up,
        "workers_cpu": workers_cpu,
        "backends_cpu": backends.seconds,
        "failures": failures,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--latency", type=float, default=0.1, help="seconds the stub waits per call")
    parser.add_argument("--fault", action="append", default=[], metavar="KIND=COUNT", help="inject a stub fault")
    parser.add_argument(
        "--cold-start",
        action="store_true",
        help="time from spawning `--until-idle` workers to their exit, their start-up included (always with --fault)",
    )
    parser.add_argument(
        "--database-url", default=os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/bench")
    )
    args = parser.parse_args()

    key = Fernet.generate_key().decode()
    url = normalise_database_url(args.database_url)
    cold = args.cold_start or bool(args.fault)
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
        own_before = time.process_time()
        load_before = os.getloadavg()[0]
        timing = (sweep_cold if cold else sweep_warm)(args, env, url, key, stub)
        stub_cpu = time.process_time() - own_before  # this process: the stub's threads, the seeding and the polls
        load_after = os.getloadavg()[0]
        for worker in timing["failures"]:
            print(worker.stderr.read().decode()[-2000:], file=sys.stderr)
        refreshes = stub.refreshes
        most_at_once = max(stub.most_at_once.values(), default=0)
        faults_served = dict(stub.faults_served)

    engine = create_engine(url)
    with engine.connect() as connection:
        healthy = connection.scalar(
            text(
                "SELECT count(*) FROM instagram_connections "
                "WHERE state = 'healthy' AND token_issued_at > now() - interval '1 hour'"
            )
        )
    engine.dispose()
    elapsed, failures = timing["elapsed"], timing["failures"]
    ideal = args.connections * args.latency / (args.workers * args.concurrency)
    duplicates = sum(count - 1 for count in refreshes.values() if count > 1)
    missed = args.connections - len(refreshes)
    ratio = elapsed / ideal
    print(f"connections        {args.connections}")
    print(f"workers x conc.    {args.workers} x {args.concurrency}")
    print(f"stub latency       {args.latency * 1000:.0f} ms")
    if cold:
        print(
            f"elapsed            {elapsed:.2f} s (spawn to exit: start-up included; first call at {timing['start_up']:.2f} s)"
        )
    else:
        print(
            f"worker start-up    {timing['start_up']:.2f} s (spawn until all {args.workers} poll; not part of the sweep)"
        )
        print(f"elapsed            {elapsed:.2f} s (from the rows falling due to the last one written back)")
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
        f"CPU per refresh    workers {timing['workers_cpu'] * 1000 / done:.2f} ms"
        + (" (start-up included)" if cold else "")
        + f", PostgreSQL backends {timing['backends_cpu'] * 1000 / done:.2f} ms, "
        f"stub and this script {stub_cpu * 1000 / done:.2f} ms"
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
