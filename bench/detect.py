"""Detection benchmark: from a revocation at Meta to the merchant's card and mail, on PostgreSQL.

    .venv/bin/python -m bench.detect --connections 10000 --sample 200

A fleet of healthy Instagram Login connections in steady state (tokens of every age up to a week,
health checks spread evenly over one interval) and the fault-injecting Meta stub. A random sample of
tokens is revoked at Meta (code 190, subcode 460, as a password change does) and the benchmark times
how long each merchant waits until their card says so and their mail has gone, two ways:

- `reports`: in real time, with the web app (gunicorn) and two worker processes running. The platform
  service that uses the token gets Meta's refusal and reports it through the Platform API
  (`POST /api/v1/shops/<id>/errors`); the confirming call, the state change, the mail (to a local
  SMTP server) follow. The card is what `GET /card` renders from the connection's state; an open page
  shows it at its next poll, up to STATUS_POLL_SECONDS later.
- `checks`: no reports, only the worker's health checks, in simulated time (the app's clock is moved
  in steps of --step seconds, and the real worker runs until idle at each step against the stub), over
  --hours of fleet time. This also counts Meta calls per connection per day.

DESIGN.md's budgets: p95 under 60 s with reports, under 60 minutes from checks alone, at most 30 Meta
calls per connection per day. Uses (and resets) the database named by --database-url, `bench_detect`
on the local server by default.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests
from cryptography.fernet import Fernet
from sqlalchemy import create_engine, insert, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.sweep import ensure_database, environment  # noqa: E402
from testbed.meta_stub import MetaStub  # noqa: E402
from testbed.servers import free_port  # noqa: E402
from webapp.config import load_config, normalise_database_url  # noqa: E402
from webapp.models import InstagramConnection, Shop, User  # noqa: E402
from webapp.services.meta.client import LONG_LIVED_TOKEN_LIFETIME  # noqa: E402
from webapp.services.token_vault import fingerprint  # noqa: E402

BIN = Path(sys.executable).parent
MERCHANT_PASSWORD = "detect-bench-2026"


# --- the fleet -----------------------------------------------------------------------------------


def seed_steady_fleet(database_uri: str, count: int, key: str, now: datetime, check_interval: timedelta) -> None:
    """`count` shops, each with one merchant and a healthy connection, as a fleet looks on an ordinary day.

    Tokens were issued at any moment of the last week (so refreshes come due all the time) and the
    next health checks are spread evenly over one check interval.
    """
    from werkzeug.security import generate_password_hash

    fernet = Fernet(key.encode())
    password_hash = generate_password_hash(MERCHANT_PASSWORD)
    rng = random.Random(17)
    engine = create_engine(database_uri)
    with engine.begin() as connection:
        for offset in range(0, count, 2000):
            ids = range(offset + 1, min(offset + 2000, count) + 1)
            connection.execute(
                insert(Shop.__table__),
                [{"id": i, "name": f"Shop {i}", "domain": f"shop{i}.example", "created_at": now} for i in ids],
            )
            connection.execute(
                insert(User.__table__),
                [
                    {
                        "id": i,
                        "email": merchant_address(i),
                        "name": f"Merchant {i}",
                        "password_hash": password_hash,
                        "role": "merchant",
                        "shop_id": i,
                        "active": True,
                        "notify_reminders": True,
                        "notify_expiry_warnings": True,
                        "created_at": now,
                    }
                    for i in ids
                ],
            )
            rows = []
            for i in ids:
                issued = now - timedelta(seconds=rng.uniform(0, 7 * 86400))
                refresh_due = issued + timedelta(days=7) * rng.uniform(0.9, 1.1)
                check_due = now + check_interval * rng.random()
                token = MetaStub.seed_token(i)
                rows.append(
                    {
                        "id": i,
                        "shop_id": i,
                        "state": "healthy",
                        "instagram_user_id": str(i),
                        "username": f"shop{i}",
                        "granted_permissions": "instagram_business_basic",
                        "token_ciphertext": fernet.encrypt(token.encode()).decode(),
                        "token_fingerprint": fingerprint(token),
                        "token_issued_at": issued,
                        "token_expires_at": issued + LONG_LIVED_TOKEN_LIFETIME,
                        "connected_at": issued,
                        "last_checked_at": check_due - check_interval,
                        "refresh_due_at": refresh_due,
                        "check_due_at": check_due,
                        "due_at": min(refresh_due, check_due),
                        "version": 0,
                        "consecutive_failures": 0,
                        "failure_days": 0,
                        "refresh_failures": 0,
                        "created_at": issued,
                    }
                )
            connection.execute(insert(InstagramConnection.__table__), rows)
        for table in ("shops", "users", "instagram_connections"):
            connection.execute(text(f"SELECT setval('{table}_id_seq', (SELECT max(id) FROM {table}))"))
    engine.dispose()


def merchant_address(shop_id: int) -> str:
    return f"merchant{shop_id}@detect.example"


class Inbox:
    """A local SMTP server that notes when each merchant's mail arrived."""

    def __init__(self):
        from aiosmtpd.controller import Controller

        self.arrived: dict[str, float] = {}
        self.lock = threading.Lock()
        inbox = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
                with inbox.lock:
                    for address in envelope.rcpt_tos:
                        inbox.arrived.setdefault(address, time.monotonic())
                return "250 OK"

        self.controller = Controller(Handler(), hostname="127.0.0.1", port=free_port())
        self.url = f"smtp://127.0.0.1:{self.controller.port}?tls=none"

    def __enter__(self) -> Inbox:
        self.controller.start()
        return self

    def __exit__(self, *exc) -> None:
        self.controller.stop()


def percentiles(values: list[float]) -> str:
    if not values:
        return "none"
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * len(ordered))) - 1)]
    return f"p50 {statistics.median(ordered):8.1f}   p95 {p95:8.1f}   max {ordered[-1]:8.1f}   (n={len(ordered)})"


def p95_of(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.95 * len(ordered))) - 1)] if ordered else float("inf")


def bench_environment(url: str, stub: MetaStub, key: str, inbox: Inbox) -> dict:
    env = environment(url, stub, key)
    env.update({"MAIL_URL": inbox.url, "MAIL_FROM": "alerts@detect.example", "WORKER_POLL_SECONDS": "1"})
    return env


def migrate(env: dict) -> None:
    subprocess.run(
        [str(BIN / "flask"), "--app", "wsgi", "db", "upgrade"], cwd=ROOT, env=env, check=True, capture_output=True
    )


# --- (a) with error reports, in real time ----------------------------------------------------------


def run_reports(args, url: str, key: str) -> tuple[list[float], list[float], dict]:
    """Revoke `sample` tokens one by one over --spread seconds; the platform reports each refusal."""
    with MetaStub(latency=args.latency) as stub, Inbox() as inbox:
        env = bench_environment(url, stub, key, inbox)
        check_interval = timedelta(minutes=load_config(env)["CHECK_INTERVAL_MINUTES"])
        print("  migrating and seeding ...", flush=True)
        migrate(env)
        seed_steady_fleet(normalise_database_url(url), args.connections, key, datetime.now(UTC), check_interval)
        api_key = create_api_key(env)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        web_env = {**env, "PORT": str(port), "WEB_CONCURRENCY": "2"}
        logs = Path(tempfile.mkdtemp(prefix="bench-detect-"))
        processes = [
            subprocess.Popen(
                [str(BIN / "gunicorn"), "--config", "gunicorn.conf.py", "wsgi:app"],
                cwd=ROOT,
                env=web_env,
                stdout=open(logs / "web.log", "w"),  # noqa: SIM115 (closed with the process)
                stderr=subprocess.STDOUT,
            )
        ]
        processes += [
            subprocess.Popen(
                [str(BIN / "flask"), "--app", "wsgi", "worker"],
                cwd=ROOT,
                env=env,
                stdout=open(logs / f"worker{n}.log", "w"),  # noqa: SIM115
                stderr=subprocess.STDOUT,
            )
            for n in range(2)
        ]
        try:
            wait_for(f"{base}/healthz")
            print(f"  web on {base}, 2 workers; logs in {logs}", flush=True)
            rng = random.Random(5)
            sample = rng.sample(range(1, args.connections + 1), args.sample)
            revoked_at: dict[int, float] = {}
            actions: dict[str, int] = {}
            lock = threading.Lock()
            session = requests.Session()
            bearer = {"Authorization": f"Bearer {api_key}"}

            def platform_service(shop_id: int, delay: float) -> None:
                time.sleep(delay)
                token = session.get(f"{base}/api/v1/shops/{shop_id}/token", headers=bearer, timeout=30)
                if token.status_code != 200:
                    with lock:
                        actions[f"token {token.status_code}"] = actions.get(f"token {token.status_code}", 0) + 1
                    return
                access_token = token.json()["access_token"]
                stub.add_fault("revoked", connection_id=MetaStub.connection_of(access_token), times=None)
                started = time.monotonic()
                with lock:
                    revoked_at[shop_id] = started
                # The service's next call with the token, as a product sync would make it.
                refusal = requests.get(f"{stub.base_url}/me", params={"access_token": access_token}, timeout=30)
                error = refusal.json()["error"]
                report = session.post(
                    f"{base}/api/v1/shops/{shop_id}/errors",
                    headers={**bearer, "Idempotency-Key": uuid.uuid4().hex},
                    json={**error, "http_status": refusal.status_code},
                    timeout=60,
                )
                action = report.json().get("action", f"HTTP {report.status_code}")
                with lock:
                    actions[action] = actions.get(action, 0) + 1

            threads = [
                threading.Thread(target=platform_service, args=(shop_id, rng.uniform(0, args.spread)))
                for shop_id in sample
            ]
            for thread in threads:
                thread.start()
            card, mail = watch(url, sample, revoked_at, inbox, timeout=args.spread + 180)
            for thread in threads:
                thread.join()
            calls = sum(stub.calls.values())
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(30)
    return card, mail, {"actions": actions, "meta calls": calls}


def create_api_key(env: dict) -> str:
    made = subprocess.run(
        [
            str(BIN / "flask"),
            "--app",
            "wsgi",
            "apikeys",
            "create",
            "--name",
            "detect bench",
            "--scope",
            "token:read",
            "--scope",
            "errors:write",
        ],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    for word in made.stdout.split():
        if word.startswith("ihk_"):
            return word
    raise SystemExit(f"flask apikeys create printed no key:\n{made.stdout}\n{made.stderr}")


def wait_for(url: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=2).ok:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not answer within {seconds:.0f} s")


def watch(url: str, sample: list[int], revoked_at: dict[int, float], inbox: Inbox, timeout: float):
    """Poll the database (what the card renders) and the inbox until every sampled shop shows the break."""
    engine = create_engine(normalise_database_url(url))
    card_seen: dict[int, float] = {}
    deadline = time.monotonic() + timeout
    ids = ",".join(str(i) for i in sample)
    while time.monotonic() < deadline:
        now = time.monotonic()
        with engine.connect() as connection:
            broken = connection.execute(
                text(f"SELECT id FROM instagram_connections WHERE id IN ({ids}) AND state = 'needs_reconnect'")
            ).scalars()
            for shop_id in broken:
                card_seen.setdefault(shop_id, now)
        with inbox.lock:
            mailed = {shop_id for shop_id in sample if merchant_address(shop_id) in inbox.arrived}
        if len(card_seen) == len(sample) and len(mailed) == len(sample):
            break
        time.sleep(0.25)
    engine.dispose()
    card = [card_seen[i] - revoked_at[i] for i in sample if i in card_seen and i in revoked_at]
    with inbox.lock:
        mail = [
            inbox.arrived[merchant_address(i)] - revoked_at[i]
            for i in sample
            if merchant_address(i) in inbox.arrived and i in revoked_at
        ]
    return card, mail


# --- (b) from health checks alone, in simulated time -------------------------------------------------


def run_checks(args, url: str, key: str) -> tuple[list[float], list[float], dict]:
    """Move the app's clock --step seconds at a time over --hours; at each step the worker runs until idle."""
    with MetaStub(latency=0.0) as stub, Inbox() as inbox:
        env = bench_environment(url, stub, key, inbox)
        print("  migrating and seeding ...", flush=True)
        migrate(env)
        os.environ.update(env)
        from webapp import clock, create_app
        from webapp.extensions import db
        from webapp.models import OutboundMail
        from webapp.services.keepalive.policy import Policy
        from webapp.services.keepalive.worker import Worker

        app = create_app()
        policy = Policy.from_config(app.config)
        start = datetime.now(UTC).replace(microsecond=0)
        seed_steady_fleet(normalise_database_url(url), args.connections, key, start, policy.check_interval)
        print(f"  check interval {policy.check_interval}, jitter ±{policy.jitter:.0%}", flush=True)
        # Revocations fall in the first --hours; the run goes on for one longest check interval more.
        latest = timedelta(hours=args.hours)
        hours = latest + policy.check_interval * (1 + policy.jitter) + timedelta(minutes=2)
        rng = random.Random(11)
        sample = rng.sample(range(1, args.connections + 1), args.sample)
        plan = sorted((start + latest * rng.random(), shop_id) for shop_id in sample)
        revoked_at: dict[int, datetime] = {}
        worker = Worker(app, concurrency=args.concurrency, poll_seconds=0, clock=clock.now)
        step = timedelta(seconds=args.step)
        moment = start
        calls_before = 0
        started = time.monotonic()
        try:
            while moment <= start + hours:
                clock.pin(moment)
                while plan and plan[0][0] <= moment:
                    _, shop_id = plan.pop(0)
                    stub.add_fault("revoked", connection_id=shop_id, times=None)
                    revoked_at[shop_id] = moment
                worker.run(threading.Event(), until_idle=True)
                if (moment - start) % timedelta(minutes=30) == timedelta(0):
                    print(f"  {moment - start} of fleet time, {time.monotonic() - started:.0f} s real", flush=True)
                moment += step
            calls_before = sum(stub.calls.values())
            with app.app_context():
                changed = dict(
                    db.session.execute(
                        text(
                            "SELECT id, state_changed_at FROM instagram_connections "
                            "WHERE state = 'needs_reconnect' AND id = ANY(:ids)"
                        ),
                        {"ids": sample},
                    ).all()
                )
                sent = {
                    mail.user_id: mail.sent_at
                    for mail in db.session.scalars(
                        db.select(OutboundMail).where(
                            OutboundMail.kind == "disconnected", OutboundMail.user_id.in_(sample)
                        )
                    )
                    if mail.sent_at is not None
                }
        finally:
            clock.pin(None)
    card = [(changed[i] - revoked_at[i]).total_seconds() / 60 for i in sample if i in changed]
    mail = [(sent[i] - revoked_at[i]).total_seconds() / 60 for i in sample if i in sent]
    per_day = calls_before / args.connections / (hours / timedelta(days=1))
    return card, mail, {"meta calls": calls_before, "calls per connection per day": round(per_day, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--sample", type=int, default=200, help="tokens revoked at Meta")
    parser.add_argument("--mode", choices=["reports", "checks", "both"], default="both")
    parser.add_argument("--spread", type=float, default=120, help="reports: seconds over which tokens are revoked")
    parser.add_argument("--latency", type=float, default=0.1, help="reports: seconds the stub waits per call")
    parser.add_argument(
        "--hours", type=float, default=2, help="checks: hours of fleet time over which tokens are revoked"
    )
    parser.add_argument("--step", type=int, default=30, help="checks: seconds of fleet time per worker run")
    parser.add_argument("--concurrency", type=int, default=8, help="checks: calls in flight in the worker")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/bench_detect"),
    )
    args = parser.parse_args()
    key = Fernet.generate_key().decode()
    ok = True
    print(f"load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} cores", flush=True)
    if args.mode in ("reports", "both"):
        print(f"(a) with error reports: {args.connections} connections, {args.sample} revoked over {args.spread:.0f} s")
        ensure_database(args.database_url)
        card, mail, extra = run_reports(args, args.database_url, key)
        print(f"  card shows it (s)   {percentiles(card)}")
        print(f"  mail arrived (s)    {percentiles(mail)}")
        print(f"  {extra}")
        within = len(card) == len(mail) == args.sample and p95_of(card) < 60 and p95_of(mail) < 60
        print("  RESULT " + ("within budget (p95 < 60 s)" if within else "OUTSIDE budget (p95 < 60 s)"))
        ok &= within
    if args.mode in ("checks", "both"):
        print(
            f"(b) from health checks alone: {args.connections} connections, revoked over {args.hours:g} h of fleet time"
        )
        ensure_database(args.database_url)
        card, mail, extra = run_checks(args, args.database_url, key)
        print(f"  card shows it (min) {percentiles(card)}")
        print(f"  mail sent (min)     {percentiles(mail)}")
        print(f"  {extra}")
        per_day = extra["calls per connection per day"]
        within = len(card) == len(mail) == args.sample and p95_of(card) < 60 and p95_of(mail) < 60 and per_day <= 30
        print("  RESULT " + ("within budget (p95 < 60 min, ≤ 30 calls a day)" if within else "OUTSIDE budget"))
        ok &= within
    print(f"load average {os.getloadavg()[0]:.2f}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
