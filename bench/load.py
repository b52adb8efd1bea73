"""Load benchmark: a trivial route, the live status fragment and the full dashboard, one run.

    .venv/bin/python -m bench.load --shops 10000 --events-per-shop 100 --seconds 15 --clients 8

Seeds PostgreSQL (10k shops, 1M events by default), starts gunicorn exactly as the Procfile does
(production config), and drives it from a second process with keep-alive HTTP clients on loopback.
Prints p50/p99, requests per second, the ratios to the trivial route and the gunicorn workers'
memory after the run. DESIGN.md's budgets: fragment at most 2x, dashboard at most 3x the trivial route,
for a broken shop (its diagnosis stored as the worker stores it) and a healthy shop alike. A second
broken shop without a stored diagnosis shows what working it out on every request would cost.
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cryptography.fernet import Fernet  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402
from werkzeug.security import generate_password_hash  # noqa: E402

from bench.fleet import seed  # noqa: E402
from bench.sweep import ensure_database  # noqa: E402
from testbed.servers import free_port, wait_for_http  # noqa: E402
from webapp.config import normalise_database_url  # noqa: E402

BIN = Path(sys.executable).parent
MERCHANT_EMAIL, MERCHANT_PASSWORD = "owner42@shop42.example", "load-test-merchant-1"
HEALTHY_EMAIL = "owner43@shop43.example"
UNSTORED_EMAIL = "owner44@shop44.example"
# The worker stores a broken connection's diagnosis in the transaction that records the failure; the
# seed writes rows directly, so the bench stores it for shop 42 the same way (shop 44 keeps none).
STORE_DIAGNOSIS = """
from sqlalchemy import select
from webapp import clock, create_app
from webapp.extensions import db
from webapp.models import InstagramConnection
from webapp.services.connections.diagnosis import store_diagnosis
app = create_app()
with app.app_context():
    connection = db.session.scalar(select(InstagramConnection).where(InstagramConnection.shop_id == 42))
    store_diagnosis(connection, clock.now())
    db.session.commit()
"""


def login(port: int, email: str = MERCHANT_EMAIL) -> str:
    """Log in as a seeded merchant and return the session cookie (set by hand: it is Secure)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/login")
    response = conn.getresponse()
    page = response.read().decode()
    cookie = re.search(r"session=([^;]+)", response.getheader("Set-Cookie")).group(1)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    body = f"csrf_token={token}&email={email}&password={MERCHANT_PASSWORD}"
    conn.request(
        "POST",
        "/login",
        body=body,
        headers={"Content-Type": "application/x-www-form-urlencoded", "Cookie": f"session={cookie}"},
    )
    response = conn.getresponse()
    response.read()
    assert response.status == 302, f"login failed: {response.status}"
    return re.search(r"session=([^;]+)", response.getheader("Set-Cookie")).group(1)


def drive(port: int, path: str, headers: dict, seconds: float, clients: int, queue) -> None:
    """Run in a separate process: `clients` keep-alive connections hitting `path` for `seconds`."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine = []
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            response.read()
            mine.append(time.perf_counter() - started)
            if response.status != 200:
                errors[0] += 1
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    queue.put((latencies, errors[0], time.perf_counter() - started))


def measure(port: int, path: str, headers: dict, seconds: float, clients: int) -> dict:
    queue = multiprocessing.Queue()
    process = multiprocessing.Process(target=drive, args=(port, path, headers, seconds, clients, queue))
    process.start()
    latencies, errors, elapsed = queue.get()
    process.join()
    latencies.sort()
    return {
        "p50": statistics.median(latencies) * 1000,
        "p99": latencies[int(len(latencies) * 0.99) - 1] * 1000,
        "rps": len(latencies) / elapsed,
        "requests": len(latencies),
        "errors": errors,
    }


def worker_memory_mb(master_pid: int) -> list[float]:
    children = subprocess.run(["pgrep", "-P", str(master_pid)], capture_output=True, text=True).stdout.split()
    sizes = []
    for pid in children:
        status = Path(f"/proc/{pid}/status").read_text()
        sizes.append(int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024)
    return sizes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shops", type=int, default=10_000)
    parser.add_argument("--events-per-shop", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--skip-seed", action="store_true", help="reuse the data of the previous run")
    parser.add_argument(
        "--database-url", default=os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/bench")
    )
    args = parser.parse_args()

    key_file = Path(tempfile.gettempdir()) / "shop-health-bench-key"
    port = free_port()
    if not args.skip_seed or not key_file.exists():
        key_file.write_text(Fernet.generate_key().decode())
    key = key_file.read_text()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INSTAGRAM_", "FLASK_"))}
    env.update(
        {
            "APP_ENV": "production",
            "SECRET_KEY": "load-bench-" + "0123456789abcdef" * 2,
            "DATABASE_URL": args.database_url,
            "TOKEN_ENCRYPTION_KEYS": key,
            "INSTAGRAM_CLIENT_ID": "bench",
            "INSTAGRAM_CLIENT_SECRET": "bench",
            # Production wants an https origin for mailed links and shared throttle storage; the bench
            # talks to gunicorn directly, so no proxy hop is trusted.
            "PUBLIC_BASE_URL": "https://shop-health.example",
            "REDIS_URL": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/5"),
            "PROXY_FIX_HOPS": "0",
            "PORT": str(port),
            "WEB_CONCURRENCY": "2",
            "GUNICORN_THREADS": "4",
            "LOG_LEVEL": "WARNING",
            "LOGIN_RATE_LIMIT": "100 per minute",
            "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
        }
    )
    uri = normalise_database_url(args.database_url)
    if not args.skip_seed:
        print(f"Seeding {args.shops} shops and {args.shops * args.events_per_shop} events ...", flush=True)
        ensure_database(args.database_url)
        subprocess.run(
            [str(BIN / "flask"), "--app", "wsgi", "db", "upgrade"], cwd=ROOT, env=env, check=True, capture_output=True
        )
        seed(uri, args.shops, args.events_per_shop, key)
    engine = create_engine(uri)
    with engine.begin() as connection:
        for email in (MERCHANT_EMAIL, HEALTHY_EMAIL, UNSTORED_EMAIL):
            connection.execute(
                text("UPDATE users SET password_hash = :h WHERE email = :e"),
                {"h": generate_password_hash(MERCHANT_PASSWORD), "e": email},
            )
        connection.execute(text("UPDATE instagram_connections SET state = 'healthy', cause = NULL WHERE shop_id = 43"))
        connection.execute(
            text(
                "UPDATE instagram_connections SET state = 'needs_reconnect', cause = 'password_changed', "
                "last_error_code = 190, last_error_subcode = 460, diagnosis = NULL WHERE shop_id IN (42, 44)"
            )
        )
    engine.dispose()
    subprocess.run([sys.executable, "-c", STORE_DIAGNOSIS], cwd=ROOT, env=env, check=True)

    server = subprocess.Popen(
        ["gunicorn", "--config", "gunicorn.conf.py", "wsgi:app"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/healthz", process=server)
        cookie = login(port)
        with_session = {"Cookie": f"session={cookie}"}
        healthy_session = {"Cookie": f"session={login(port, HEALTHY_EMAIL)}"}
        unstored_session = {"Cookie": f"session={login(port, UNSTORED_EMAIL)}"}
        routes = {
            "trivial (/healthz)": ("/healthz", {}),
            "status fragment (/card, HX-Request)": (
                "/card",
                {**with_session, "HX-Request": "true"},
            ),
            "full dashboard (/), broken shop": ("/", with_session),
            "full dashboard (/), healthy shop": ("/", healthy_session),
            "dashboard, broken, diagnosis not stored": ("/", unstored_session),
            "history fragment (/activity)": ("/activity", {**with_session, "HX-Request": "true"}),
        }
        for path, headers in routes.values():  # warm every route once
            measure(port, path, headers, 1, 1)
        results = {
            name: measure(port, path, headers, args.seconds, args.clients) for name, (path, headers) in routes.items()
        }
        memory = worker_memory_mb(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)

    trivial = results["trivial (/healthz)"]
    print(
        f"shops {args.shops}, events {args.shops * args.events_per_shop}; gunicorn 2 workers x 4 threads; "
        f"{args.clients} keep-alive clients for {args.seconds:g} s per route"
    )
    print(f"{'route':48}{'p50 ms':>9}{'p99 ms':>9}{'req/s':>9}{'x trivial (p50)':>17}{'errors':>8}")
    for name, row in results.items():
        print(
            f"{name:48}{row['p50']:9.2f}{row['p99']:9.2f}{row['rps']:9.0f}{row['p50'] / trivial['p50']:17.2f}{row['errors']:8d}"
        )
    print("gunicorn worker memory after the run: " + ", ".join(f"{m:.0f} MB" for m in memory))
    fragment = results["status fragment (/card, HX-Request)"]["p50"] / trivial["p50"]
    broken = results["full dashboard (/), broken shop"]["p50"] / trivial["p50"]
    healthy = results["full dashboard (/), healthy shop"]["p50"] / trivial["p50"]
    ok = fragment <= 2 and broken <= 3 and healthy <= 3
    print(
        f"RESULT fragment {fragment:.2f}x (budget 2x), dashboard broken {broken:.2f}x / healthy {healthy:.2f}x "
        "(budget 3x): " + ("within budget" if ok else "OUTSIDE budget")
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
