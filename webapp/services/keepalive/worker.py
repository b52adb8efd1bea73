"""The keep-alive worker: claim due connections, call Meta with bounded concurrency, write back.

Run it with `flask --app wsgi worker`. Several can run against one PostgreSQL (leases with
FOR UPDATE SKIP LOCKED keep them apart); on SQLite only one may run.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import datetime, timedelta

from flask import Flask
from sqlalchemy import delete, select
from sqlalchemy.exc import SQLAlchemyError

from webapp import clock
from webapp.extensions import db
from webapp.models import WorkerProcess
from webapp.services import incidents, webhook_delivery
from webapp.services.keepalive import leases, outcomes, scheduler
from webapp.services.keepalive.policy import Policy
from webapp.services.meta.client import InstagramClient
from webapp.services.meta.facebook import FacebookClient
from webapp.services.meta.http_deadline import deadline_session
from webapp.services.notify import delivery, planning
from webapp.services.runtime import build_facebook_client, build_instagram_client

log = logging.getLogger(__name__)


# While the database is away the worker waits and tries again, never exits (promise 36).
DATABASE_RETRY_SECONDS = (1, 2, 4, 8, 15, 30)
# After answers from Meta came in, the fleet incident is looked at again at most this often by one
# worker (and at the end of an --until-idle run); the scheduler tick looks once a minute whatever
# happens. Counting a 100k fleet's window during an outage takes a database some 100s of ms.
INCIDENT_EVALUATION_SECONDS = 30


# Results that are an answer from Meta written to the database: what the fleet incident is decided on.
ANSWERS_FROM_META = frozenset(
    {
        outcomes.Summary.REFRESHED,
        outcomes.Summary.CHECKED,
        outcomes.Summary.RECOVERED,
        outcomes.Summary.TRANSIENT,
        outcomes.Summary.NEEDS_RECONNECT,
        outcomes.Summary.UNREADABLE,
    }
)


MAIL_BATCH = 20  # mails one delivery run claims before it looks at its stop flag and its lock again


class WorkerRefused(RuntimeError):
    """This worker must not start (e.g. a second worker on SQLite)."""


class DatabaseUnavailable(SQLAlchemyError):
    """A write-back kept failing: the database is still away."""


def worker_client(app: Flask, concurrency: int) -> InstagramClient:
    """A Meta client whose connection pool fits the worker's concurrency; each call has one deadline."""
    session = deadline_session(app.config["INSTAGRAM_HTTP_TIMEOUT"], pool_maxsize=max(concurrency, 10))
    return build_instagram_client(app.config, session=session)


def worker_facebook_client(app: Flask, concurrency: int) -> FacebookClient:
    """The Facebook Login client for the worker: its own pool, the same per-call deadline."""
    session = deadline_session(app.config["INSTAGRAM_HTTP_TIMEOUT"], pool_maxsize=max(concurrency, 10))
    return build_facebook_client(app.config, session=session)


class Worker:
    def __init__(
        self,
        app: Flask,
        *,
        concurrency: int | None = None,
        batch_size: int | None = None,
        poll_seconds: float | None = None,
        client: InstagramClient | None = None,
        facebook: FacebookClient | None = None,
        clock: Callable[[], datetime] = clock.now,
        rng: random.Random | None = None,
    ):
        config = app.config
        self.app = app
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.concurrency = concurrency or config["WORKER_CONCURRENCY"]
        self.batch_size = batch_size or config["WORKER_BATCH_SIZE"]
        self.poll_seconds = config["WORKER_POLL_SECONDS"] if poll_seconds is None else poll_seconds
        # Mail and webhooks that another process queued (an error report, a callback from Meta, support)
        # are looked for this often between ticks, so a merchant hears of a break within seconds.
        self.outbox_poll = timedelta(seconds=config["OUTBOX_POLL_SECONDS"])
        self.outbox_looked_at: datetime | None = None
        self.client = client or worker_client(app, self.concurrency)
        self.facebook = facebook or worker_facebook_client(app, self.concurrency)
        self.clock = clock
        self.rng = rng or random.Random()
        self.policy = Policy.from_config(config)
        self.incident_thresholds = incidents.Thresholds.from_config(config)
        # Answers came in since this worker last looked at the fleet incident, and when it last looked.
        self.answers_unseen = False
        self.incident_evaluated_at: datetime | None = None
        self.vault = app.extensions["token_vault"]
        self.totals: Counter = Counter()
        # Results Meta gave whose write-back failed (the database was away): kept and written later.
        self.unwritten: list[tuple[leases.Claim, outcomes.Outcome | None, datetime]] = []
        self.unwritten_lock = threading.Lock()
        self.mail_thread: threading.Thread | None = None
        self.mail_lock = threading.Lock()
        self.mail_again = False
        self.stop_mail = threading.Event()
        self.sleep: Callable[[float], None] = time.sleep
        # Webhooks go out on their own thread, as mail does (the lambda follows a clock a test swaps in).
        self.webhooks = webhook_delivery.Sender(app, clock=lambda: self.clock())

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
        """Once a minute: expire, plan notices (only the worker that wins the tick), send mail and webhooks (any)."""
        with self.app.app_context():
            now = self.clock()
            if scheduler.scheduler_tick(self.owner, now, self.policy) is not None:
                # Before planning: notices held while an incident is open are decided with it known.
                self.evaluate_incident(now)
                planning.plan(self.app, now)
        self.send_mail()
        self.webhooks.kick()

    def evaluate_incident(self, now: datetime) -> None:
        """Open, follow or close the fleet incident from the answers in the database (any worker may)."""
        changed = incidents.evaluate(now, self.incident_thresholds)
        self.answers_unseen = False
        self.incident_evaluated_at = now
        if changed is not None:
            self.webhooks.kick()

    def _evaluate_incident_if_due(self, finishing: bool) -> None:
        if not self.answers_unseen:
            return
        now = self.clock()
        last = self.incident_evaluated_at
        if finishing or last is None or now - last >= timedelta(seconds=INCIDENT_EVALUATION_SECONDS):
            with self.app.app_context():
                self.evaluate_incident(now)

    def send_mail(self) -> None:
        """Send due mail on a thread of its own: a slow mail server never holds up the keep-alive loop."""
        with self.mail_lock:
            if self.mail_thread is not None and self.mail_thread.is_alive():
                self.mail_again = True  # it looks for more mail once its current run ends
                return
            self.mail_again = False
            self.mail_thread = threading.Thread(target=self._mail_loop, name="mail", daemon=True)
            self.mail_thread.start()

    def _mail_loop(self) -> None:
        while True:
            full = False
            try:
                with self.app.app_context():
                    results = delivery.deliver(self.app, self.clock(), limit=MAIL_BATCH, stop=self.stop_mail)
                # A full batch may have left more behind (200 shops broken at once): send on at once,
                # not 20 a minute.
                full = sum(results.values()) >= MAIL_BATCH
            except SQLAlchemyError as error:
                log.warning("mail delivery paused: database unavailable (%s)", type(error).__name__)
            except Exception:
                log.exception("mail delivery failed; it is tried again at the next tick")
            with self.mail_lock:
                if not (self.mail_again or full) or self.stop_mail.is_set():
                    # Under the lock: a send_mail() from now on starts a new thread rather than
                    # leaving its request to a thread that is about to end.
                    self.mail_thread = None
                    return
                self.mail_again = False

    def wait_for_mail(self) -> None:
        """Let a mail run in progress finish (each message is bounded by MAIL_SEND_TIMEOUT)."""
        thread = self.mail_thread
        if thread is not None:
            thread.join()

    def claim(self, limit: int | None = None, in_flight: frozenset[int] = frozenset()) -> list[leases.Claim]:
        with self.app.app_context():
            now = self.clock()
            if leases.app_paused_until(now):
                db.session.close()
                return []
            return leases.claim_due(
                owner=self.owner,
                now=now,
                limit=limit or self.batch_size,
                policy=self.policy,
                vault=self.vault,
                exclude=in_flight,
            )

    def process(self, claim: leases.Claim) -> outcomes.Summary:
        """Do one claim's work in this thread: call Meta (no transaction open), then write back."""
        with self.app.app_context():
            outcome = None
            if claim.work != leases.Work.EXPIRE and not claim.unreadable:
                outcome = outcomes.call_meta(claim, self.client, self.facebook)
            finished_at = self.clock()
            summary = outcomes.record_outcome(
                claim, outcome, now=finished_at, policy=self.policy, vault=self.vault, rng=self.rng, sleep=self.sleep
            )
            if summary == outcomes.Summary.WRITE_FAILED:
                with self.unwritten_lock:
                    self.unwritten.append((claim, outcome, finished_at))
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
        self._until_database_answers(self.register, stop)
        last_tick = None
        in_flight: dict[Future, leases.Claim] = {}
        outage = 0
        try:
            with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="keepalive") as pool:
                while not stop.is_set():
                    try:
                        last_tick = self._step(pool, in_flight, last_tick, stop, until_idle, on_result)
                        outage = 0
                    except SQLAlchemyError as error:
                        outage += 1
                        self._wait_for_database(error, outage, stop)
                        continue
                    if last_tick is None:
                        break  # idle with until_idle
                # Stopping: calls already running finish (each bounded by its deadline); queued
                # ones return "released" at once and their leases are handed back.
                self._until_database_answers(lambda: self._collect(list(in_flight), in_flight, on_result), stop)
                self._until_database_answers(self._write_unwritten, stop)
        finally:
            if stop.is_set():
                self.stop_mail.set()  # no new mail is claimed; one being sent finishes
                self.webhooks.stop.set()  # likewise for webhooks
            self.wait_for_mail()
            self.webhooks.wait()
            try:
                self.unregister()
            except SQLAlchemyError:
                log.warning("could not unregister this worker; its heartbeat row expires by itself")
        return self.totals

    def _step(self, pool, in_flight: dict, last_tick, stop: threading.Event, until_idle: bool, on_result):
        """One turn of the loop; returns the time of the last tick, or None to stop when idle."""
        now = self.clock()
        if last_tick is None or now - last_tick >= timedelta(seconds=60):
            self.tick()
            self.heartbeat()
            last_tick = self.outbox_looked_at = now
        elif self.outbox_looked_at is None or now - self.outbox_looked_at >= self.outbox_poll:
            self.outbox_looked_at = now
            self.send_mail()
            self.webhooks.kick()
        self._write_unwritten()
        room = 2 * self.concurrency - len(in_flight)
        topping_up = len(in_flight) <= self.concurrency
        with self.unwritten_lock:
            kept = [claim for claim, _, _ in self.unwritten]
        # Rows still in flight, or whose result waits to be written, are never claimed again meanwhile.
        busy = frozenset(claim.connection_id for claim in [*in_flight.values(), *kept])
        claims = self.claim(min(room, self.batch_size), in_flight=busy) if topping_up else []
        for claim in claims:
            in_flight[pool.submit(self._guarded, claim, stop)] = claim
        self._evaluate_incident_if_due(finishing=until_idle and not in_flight)
        if not in_flight:
            if until_idle and not self.unwritten:
                return None
            stop.wait(self.poll_seconds)
            return last_tick
        done, _ = wait(in_flight, timeout=self.poll_seconds, return_when=FIRST_COMPLETED)
        self._collect(done, in_flight, on_result)
        return last_tick

    def _write_unwritten(self) -> None:
        """Write back results kept while the database was away; the fence still decides if they land."""
        with self.unwritten_lock:
            pending, self.unwritten = self.unwritten, []
        once = dataclasses.replace(self.policy, write_attempts=1)  # the loop itself retries, without blocking
        written, changed = 0, []
        try:
            for claim, outcome, finished_at in pending:
                with self.app.app_context():
                    summary = outcomes.record_outcome(
                        claim, outcome, now=finished_at, policy=once, vault=self.vault, rng=self.rng, sleep=self.sleep
                    )
                if summary == outcomes.Summary.WRITE_FAILED:
                    raise DatabaseUnavailable("write-back still failing")
                written += 1
                log.info(
                    "connection %s %s: %s (written after the database came back)",
                    claim.connection_id,
                    claim.work,
                    summary,
                )
                self.totals[summary] += 1
                if planning.notifies_at_once(summary):
                    changed.append(claim.connection_id)
        finally:
            with self.unwritten_lock:
                self.unwritten[:0] = pending[written:]  # whatever is not written yet stays kept
        if changed:
            with self.app.app_context():
                planning.plan(self.app, self.clock(), connection_ids=changed)
            self.send_mail()
            self.webhooks.kick()  # the platform hears of the change at once too

    def _wait_for_database(self, error: Exception, outage: int, stop: threading.Event) -> None:
        seconds = DATABASE_RETRY_SECONDS[min(outage, len(DATABASE_RETRY_SECONDS)) - 1]
        log.warning("database unavailable (%s); trying again in %d s", type(error).__name__, seconds)
        with self.app.app_context():
            db.session.remove()
        stop.wait(seconds)

    def _until_database_answers(self, action: Callable[[], object], stop: threading.Event) -> None:
        outage = 0
        while True:
            try:
                action()
                return
            except SQLAlchemyError as error:
                outage += 1
                if stop.is_set() and outage > 3:
                    log.error("database still unavailable while stopping; giving up (%s)", type(error).__name__)
                    return
                self._wait_for_database(error, outage, stop)

    def _collect(self, done, in_flight: dict, on_result) -> None:
        released, changed = [], []
        for future in done:
            claim = in_flight.pop(future)
            summary = future.result()
            if summary == outcomes.Summary.RELEASED:
                released.append(claim)
                continue
            if planning.notifies_at_once(summary):
                changed.append(claim.connection_id)
            if summary in ANSWERS_FROM_META:
                self.answers_unseen = True
            if summary == outcomes.Summary.WRITE_FAILED:
                continue  # kept in self.unwritten; counted once it is written
            self.totals[summary] += 1
            if on_result:
                on_result(summary)
        if released:
            with self.app.app_context():
                leases.release(released)
        if changed:
            # A disconnect (or a recovery) is told at once, not at the next tick.
            with self.app.app_context():
                planning.plan(self.app, self.clock(), connection_ids=changed)
            self.send_mail()
            self.webhooks.kick()  # the platform hears of the change at once too

    def _guarded(self, claim: leases.Claim, stop: threading.Event) -> outcomes.Summary:
        if stop.is_set():
            return outcomes.Summary.RELEASED  # stopping: hand the lease back instead of starting a new call
        try:
            return self.process(claim)
        except Exception:
            log.exception(
                "connection %s: unexpected error; the lease will expire and it is retried", claim.connection_id
            )
            return outcomes.Summary.ERROR
