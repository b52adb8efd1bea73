"""What one refresh costs in CPU time: the worker's HTTP client, Fernet, database work, and PostgreSQL's side.

    .venv/bin/python -m bench.refresh_cost --connections 3000 --concurrency 8

Runs one keep-alive worker in this process (the code `flask --app wsgi worker` runs) over N due
connections against the loopback Meta stub (in a process of its own), and splits the worker's CPU
time by where it was spent, measured with per-thread CPU clocks (`time.thread_time`), which other
processes' load on the machine distorts far less than wall time:

- HTTP client: `MetaHttp._call` (requests, urllib3, the deadline watch, Meta's JSON and headers);
- Fernet: `TokenVault.encrypt` / `decrypt`;
- database: the claim and the write-back on the worker's side (SQLAlchemy, psycopg), less Fernet;
- other: everything else in the process (the loop, the thread pool, app contexts, logging);
- and outside the worker: the CPU of its PostgreSQL backends and of the stub, read from /proc.

The sweep's wall-time budget is bench/sweep.py's; this script explains where the CPU goes.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import os
import pstats
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.cpu import BackendWatch, process_cpu  # noqa: E402
from bench.sweep import ensure_database  # noqa: E402
from testbed.fleet import seed_due_connections  # noqa: E402
from webapp.config import normalise_database_url  # noqa: E402

APPLICATION_NAME = "bench-refresh-cost"
STUB = (
    "import sys, time\n"
    "from testbed.meta_stub import MetaStub\n"
    "with MetaStub(latency=float(sys.argv[1])) as stub:\n"
    "    print(stub.base_url, flush=True)\n"
    "    sys.stdin.read()\n"
)


class Meter:
    """Exclusive per-thread CPU time by bucket: a bucket entered inside another is not counted twice."""

    def __init__(self) -> None:
        self.seconds: Counter = Counter()
        self.calls: Counter = Counter()
        self.lock = threading.Lock()
        self.local = threading.local()

    def wrap(self, owner, name: str, bucket: str) -> None:
        original = getattr(owner, name)
        meter = self

        @functools.wraps(original)
        def measured(*args, **kwargs):
            stack = getattr(meter.local, "stack", None)
            if stack is None:
                stack = meter.local.stack = []
                meter.local.buckets = []
            outermost = bucket not in meter.local.buckets  # a call inside its own bucket is not counted again
            stack.append(0.0)  # CPU spent in buckets nested inside this one
            meter.local.buckets.append(bucket)
            started = time.thread_time()
            try:
                return original(*args, **kwargs)
            finally:
                spent = time.thread_time() - started
                nested = stack.pop()
                meter.local.buckets.pop()
                if stack:
                    stack[-1] += spent
                with meter.lock:
                    meter.seconds[bucket] += spent - nested
                    meter.calls[bucket] += outermost

        setattr(owner, name, measured)


def profile_each_thread(owner, name: str, profiles: list[cProfile.Profile]) -> None:
    """Profile every call of owner.name with a CPU-time profiler of the calling thread's own."""
    original = getattr(owner, name)
    local = threading.local()

    @functools.wraps(original)
    def profiled(*args, **kwargs):
        profile = getattr(local, "profile", None)
        if profile is None:
            profile = local.profile = cProfile.Profile(time.thread_time)
            profiles.append(profile)
        profile.enable()
        try:
            return original(*args, **kwargs)
        finally:
            profile.disable()

    setattr(owner, name, profiled)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--profile", metavar="FILE", help="also write a cProfile of the worker's threads here")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/bench"),
    )
    args = parser.parse_args()

    key = Fernet.generate_key().decode()
    ensure_database(args.database_url)
    stub = subprocess.Popen(
        [sys.executable, "-c", STUB, str(args.latency)], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    base_url = stub.stdout.readline().decode().strip()
    os.environ.update(
        {
            "DATABASE_URL": args.database_url,
            "DB_APPLICATION_NAME": APPLICATION_NAME,
            "SECRET_KEY": "bench",
            "TOKEN_ENCRYPTION_KEYS": key,
            "INSTAGRAM_CLIENT_ID": "bench-app",
            "INSTAGRAM_CLIENT_SECRET": "bench-secret",
            "INSTAGRAM_GRAPH_BASE": base_url,
            "INSTAGRAM_API_BASE": base_url,
            "LOG_LEVEL": "WARNING",
            "WORKER_POLL_SECONDS": "0.2",
            "WORKER_CONCURRENCY": str(args.concurrency),
        }
    )
    for name in [n for n in os.environ if n.startswith("APP_ENV") or n.startswith("FLASK_")]:
        del os.environ[name]
    subprocess.run([str(Path(sys.executable).parent / "flask"), "--app", "wsgi", "db", "upgrade"], cwd=ROOT, check=True)
    seed_due_connections(normalise_database_url(args.database_url), args.connections, key)

    from webapp import create_app
    from webapp.services.keepalive import leases, outcomes, worker
    from webapp.services.meta.client import MetaHttp
    from webapp.services.token_vault import TokenVault

    meter = Meter()
    meter.wrap(MetaHttp, "_call", "http")
    for name in ("encrypt", "decrypt"):
        meter.wrap(TokenVault, name, "fernet")
    meter.wrap(leases, "claim_due", "database")
    meter.wrap(outcomes, "record_outcome", "database")
    if hasattr(outcomes, "record_outcomes"):
        meter.wrap(outcomes, "record_outcomes", "database")

    profiles: list[cProfile.Profile] = []
    if args.profile:
        # The pool threads' calls and the loop's turns (claims and write-backs), each thread its own profile.
        for name in ("_guarded", "_step"):
            profile_each_thread(worker.Worker, name, profiles)

    app = create_app()
    keepalive = worker.Worker(app, concurrency=args.concurrency, batch_size=args.batch_size)
    stub_before = process_cpu(stub.pid) or 0.0
    with BackendWatch(args.database_url, APPLICATION_NAME) as backends:
        cpu_before, wall_before = time.process_time(), time.monotonic()
        totals = keepalive.run(threading.Event(), until_idle=True)
        cpu, wall = time.process_time() - cpu_before, time.monotonic() - wall_before
        with app.app_context():
            from webapp.extensions import db

            db.session.remove()
            db.engine.dispose()
    stub_cpu = (process_cpu(stub.pid) or 0.0) - stub_before
    stub.stdin.close()
    stub.wait()

    done = totals["refreshed"]
    if done == 0:
        print(f"nothing refreshed: {dict(totals)}", file=sys.stderr)
        return 1
    measured = sum(meter.seconds.values())
    rows = [
        ("HTTP client", meter.seconds["http"]),
        ("Fernet", meter.seconds["fernet"]),
        ("database (worker side)", meter.seconds["database"]),
        ("other (loop, pool, contexts)", cpu - measured),
        ("worker process, total", cpu),
        ("PostgreSQL backends", backends.seconds),
        ("Meta stub (not the product)", stub_cpu),
    ]
    load = os.getloadavg()
    print(f"refreshed          {done} of {args.connections} ({dict(totals)})")
    print(f"concurrency        {args.concurrency}, batch {args.batch_size}, stub latency {args.latency * 1000:.0f} ms")
    print(f"wall               {wall:.1f} s, {done / wall:.0f} refreshes/s")
    print(f"load average       {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"backends seen      {len(backends.cpu)}")
    print(f"transactions       {meter.calls['database']} (claims and write-backs) for {done} refreshes")
    print(f"{'CPU per refresh':<32}{'ms':>8}")
    for label, seconds in rows:
        print(f"{label:<32}{seconds * 1000 / done:>8.2f}")
    if args.profile:
        merged = pstats.Stats(profiles[0])
        for profile in profiles[1:]:
            merged.add(profile)
        merged.dump_stats(args.profile)
        print(f"profile of the worker threads written to {args.profile}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
