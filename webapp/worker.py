"""The keep-alive worker: claim due connections, call Meta with bounded concurrency, write back.

Run it with `flask --app wsgi worker`. Several can run against one PostgreSQL (leases with
FOR UPDATE SKIP LOCKED keep them apart); on SQLite only one may run.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import UTC, datetime, timedelta

import requests
from flask import Flask
from sqlalchemy import delete, select

from webapp.extensions import db
from webapp.models import WorkerProcess
from webapp.services import lifecycle, notifications
from webapp.services.instagram_client import InstagramClient
from webapp.services.schedule import Policy

log = logging.getLogger(__name__)


# Outcomes after which the merchant may need to hear from us right away.
NOTIFY_AT_ONCE = frozenset({"needs_reconnect", "expired", "recovered"})


class WorkerRefused(RuntimeError):
    """This worker must not start (e.g. a second worker on SQLite)."""


def utc_now() -> datetime:
    return datetime.now(UTC)


def worker_client(app: Flask, concurrency: int) -> InstagramClient:
    """A Meta client whose connection pool fits the worker's concurrency."""
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=max(concurrency, 10))
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    config = app.config
    return InstagramClient(
        client_id=config["INSTAGRAM_CLIENT_ID"],
        client_secret=config["INSTAGRAM_CLIENT_SECRET"],
        api_base=config["INSTAGRAM_API_BASE"],
        graph_base=config["INSTAGRAM_GRAPH_BASE"],
        graph_version=config["INSTAGRAM_GRAPH_VERSION"],
        timeout=config["INSTAGRAM_HTTP_TIMEOUT"],
        session=session,
    )


class Worker:
    def __init__(
        self,
        app: Flask,
        *,
        concurrency: int | None = None,
        batch_size: int | None = None,
        poll_seconds: float | None = None,
        client: InstagramClient | None = None,
        clock: Callable[[], datetime] = utc_now,
        rng: random.Random | None = None,
    ):
        config = app.config
        self.app = app
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.concurrency = concurrency or config["WORKER_CONCURRENCY"]
        self.batch_size = batch_size or config["WORKER_BATCH_SIZE"]
        self.poll_seconds = config["WORKER_POLL_SECONDS"] if poll_seconds is None else poll_seconds
        self.client = client or worker_client(app, self.concurrency)
        self.clock = clock
        self.rng = rng or random.Random()
        self.policy = Policy.from_config(config)
        self.vault = app.extensions["token_vault"]
        self.totals: Counter = Counter()

    def register(self) -> None:
        """Announce this worker; on SQLite, refuse when another one is alive."""
        with self.app.app_context():
            now = self.clock()
            stale = now - self._heartbeat_grace()
            db.session.execute(delete(WorkerProcess).where(WorkerProcess.heartbeat_at < stale))
            others = db.session.scalars(select(WorkerProcess.owner)).all()
            if others and db.engine.dialect.name == "sqlite":
                db.session.rollback()
                raise WorkerRefused(
                    f"another worker ({others[0]}) is already running on this SQLite database. SQLite supports "
                    "one worker; use PostgreSQL (DATABASE_URL) to run several."
                )
            db.session.add(
                WorkerProcess(
                    owner=self.owner, hostname=socket.gethostname(), pid=os.getpid(), started_at=now, heartbeat_at=now
                )
            )
            db.session.commit()

    def unregister(self) -> None:
        with self.app.app_context():
            db.session.execute(delete(WorkerProcess).where(WorkerProcess.owner == self.owner))
            db.session.commit()

    def _heartbeat_grace(self) -> timedelta:
        return timedelta(seconds=3 * self.poll_seconds + 30) + self.policy.lease

    def heartbeat(self) -> None:
        with self.app.app_context():
            worker = db.session.get(WorkerProcess, self.owner)
            if worker is not None:
                worker.heartbeat_at = self.clock()
                db.session.commit()

    def tick(self) -> None:
        """Once a minute: expire, plan notices (only the worker that wins the tick), send mail (any)."""
        with self.app.app_context():
            now = self.clock()
            if lifecycle.scheduler_tick(self.owner, now, self.policy) is not None:
                notifications.plan(self.app, now)
            notifications.deliver(self.app, now)

    def claim(self, limit: int | None = None) -> list[lifecycle.Claim]:
        with self.app.app_context():
            now = self.clock()
            if lifecycle.app_paused_until(now):
                db.session.close()
                return []
            return lifecycle.claim_due(
                owner=self.owner, now=now, limit=limit or self.batch_size, policy=self.policy, vault=self.vault
            )

    def process(self, claim: lifecycle.Claim) -> str:
        """Do one claim's work in this thread: call Meta (no transaction open), then write back."""
        with self.app.app_context():
            outcome = None
            if claim.work != "expire" and not claim.unreadable:
                outcome = lifecycle.call_meta(claim, self.client)
            summary = lifecycle.record_outcome(
                claim, outcome, now=self.clock(), policy=self.policy, vault=self.vault, rng=self.rng
            )
        error = outcome.error if outcome else None
        detail = f" (code {error.code}, subcode {error.subcode})" if error is not None else ""
        log.info("connection %s %s: %s%s", claim.connection_id, claim.work, summary, detail)
        return summary

    def run(
        self,
        stop: threading.Event,
        *,
        until_idle: bool = False,
        on_result: Callable[[str], None] | None = None,
    ) -> Counter:
        """Work until `stop` is set (or, with until_idle, until nothing is due).

        The pool is kept fed: whenever fewer than `concurrency` calls are in flight, more due
        connections are claimed (up to twice the concurrency waiting), so no batch waits for its
        slowest call before the next one starts.
        """
        self.register()
        last_tick = None
        in_flight: dict[Future, lifecycle.Claim] = {}
        try:
            with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="keepalive") as pool:
                while not stop.is_set():
                    now = self.clock()
                    if last_tick is None or now - last_tick >= timedelta(seconds=60):
                        self.tick()
                        self.heartbeat()
                        last_tick = now
                    room = 2 * self.concurrency - len(in_flight)
                    topping_up = len(in_flight) <= self.concurrency
                    claims = self.claim(min(room, self.batch_size)) if topping_up else []
                    for claim in claims:
                        in_flight[pool.submit(self._guarded, claim, stop)] = claim
                    if not in_flight:
                        if until_idle:
                            break
                        stop.wait(self.poll_seconds)
                        continue
                    done, _ = wait(in_flight, timeout=self.poll_seconds, return_when=FIRST_COMPLETED)
                    self._collect(done, in_flight, on_result)
                # Stopping: calls already running finish (each bounded by the HTTP timeout); queued
                # ones return "released" at once and their leases are handed back.
                self._collect(list(in_flight), in_flight, on_result)
        finally:
            self.unregister()
        return self.totals

    def _collect(self, done, in_flight: dict, on_result) -> None:
        released, changed = [], []
        for future in done:
            claim = in_flight.pop(future)
            summary = future.result()
            if summary == "released":
                released.append(claim)
                continue
            if summary in NOTIFY_AT_ONCE:
                changed.append(claim.connection_id)
            self.totals[summary] += 1
            if on_result:
                on_result(summary)
        if released:
            with self.app.app_context():
                lifecycle.release(released)
        if changed:
            # A disconnect (or a recovery) is told at once, not at the next tick.
            with self.app.app_context():
                now = self.clock()
                notifications.plan(self.app, now, connection_ids=changed)
                notifications.deliver(self.app, now)

    def _guarded(self, claim: lifecycle.Claim, stop: threading.Event) -> str:
        if stop.is_set():
            return "released"  # stopping: hand the lease back instead of starting a new call
        try:
            return self.process(claim)
        except Exception:
            log.exception(
                "connection %s: unexpected error; the lease will expire and it is retried", claim.connection_id
            )
            return "error"
