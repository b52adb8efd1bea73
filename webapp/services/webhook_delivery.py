"""Sending webhooks: claim due deliveries, sign them (Standard Webhooks), POST each with one deadline, record.

At least once, never in parallel with itself: a delivery is claimed by a compare-and-set from
`pending` to `sending` that writes a claim token and a lease (on PostgreSQL the candidates are
picked with FOR UPDATE SKIP LOCKED, so workers never wait on each other), the claim's transaction
ends before the POST, and the outcome is written only while the token is still the claim's. A
claim whose lease ran out with no outcome (its worker died or lost the database mid-send) is
queued again: the receiver may get that event twice, under the same `webhook-id`, and deduplicates.

Failures (no answer within WEBHOOK_TIMEOUT, a refused connection, any status outside 2xx) are
retried with exponential backoff and jitter until WEBHOOK_RETRY_HOURS after the event was queued,
then the delivery is `failed`. Every attempt is signed afresh: the body and id stay, the timestamp
is the attempt's. Neither the secret nor the signature is ever logged.
"""

from __future__ import annotations

import json
import logging
import random
import re
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TypedDict, cast

import requests
from flask import Flask
from sqlalchemy import CursorResult, select, update
from sqlalchemy.exc import SQLAlchemyError
from standardwebhooks.webhooks import Webhook

from webapp.extensions import db
from webapp.logging_filters import redact
from webapp.models import WebhookDelivery, WebhookEndpoint, WebhookEvent
from webapp.services.meta.http_deadline import DeadlineExceeded, deadline_session
from webapp.services.token_vault import TokenVault, TokenVaultError
from webapp.services.webhooks import timestamp

log = logging.getLogger(__name__)

# The claim's database writes (the claim, the outcome) in the worst case, SQLite's busy wait included.
CLAIM_WRITE_SECONDS = 5
RETRY_BASE = timedelta(seconds=30)
RETRY_CAP = timedelta(hours=2)
RESPONSE_EXCERPT_CHARACTERS = 200
RESPONSE_READ_BYTES = 16 * 1024  # of a receiver's answer; the excerpt comes from these
USER_AGENT = "shop-instagram-health-webhooks/1"
# The operating system's words inside urllib3's error text: "[Errno 111] Connection refused".
_OS_ERROR = re.compile(r"\[Errno -?\d+\] ([^'\")\]]+)")


def delivery_lease(config) -> timedelta:
    """How long a claim on one delivery lasts: twice the worst case of the POST (its deadline) and its writes."""
    return 2 * timedelta(seconds=config["WEBHOOK_TIMEOUT"] + CLAIM_WRITE_SECONDS)


def retry_window(config) -> timedelta:
    return timedelta(hours=config["WEBHOOK_RETRY_HOURS"])


def backoff(attempts: int, rng: random.Random) -> timedelta:
    """The wait after the `attempts`-th failure: 30 s doubling up to 2 h, each with ±25 % jitter."""
    delay = min(RETRY_CAP, RETRY_BASE * 2 ** max(attempts - 1, 0))
    return delay * (0.75 + rng.random() / 2)


def body_of(event_type: str, occurred_at: datetime, payload: dict) -> str:
    """The JSON body every attempt sends for an event: Standard Webhooks' `type`, `timestamp`, `data`."""
    return json.dumps(
        {"type": event_type, "timestamp": timestamp(occurred_at), "data": payload},
        separators=(",", ":"),
        sort_keys=True,
    )


def signed_headers(secret: str, event_id: str, body: str, sent_at: datetime) -> dict[str, str]:
    """The Standard Webhooks headers for one attempt (the signature covers id, timestamp and body)."""
    sent_at = sent_at.astimezone(UTC)
    return {
        "webhook-id": event_id,
        "webhook-timestamp": str(int(sent_at.timestamp())),
        "webhook-signature": Webhook(secret).sign(event_id, sent_at, body),
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
    }


def webhook_session(config) -> requests.Session:
    """An HTTP session whose POSTs end by WEBHOOK_TIMEOUT, however slowly the receiver trickles or much it says."""
    return deadline_session(
        config["WEBHOOK_TIMEOUT"],
        pool_maxsize=max(config["WEBHOOK_CONCURRENCY"], 4),
        max_body_bytes=RESPONSE_READ_BYTES,  # only an excerpt is kept: never hold a huge answer in memory
    )


@dataclass(frozen=True)
class _Claim:
    id: int
    token: str
    attempts: int
    queued_at: datetime
    endpoint_id: int
    url: str
    secret_ciphertext: str = field(repr=False)
    event_id: str
    body: str


@dataclass(frozen=True)
class Attempt:
    """What one POST came to: the receiver's status code (None without an answer) and the error, if any."""

    status_code: int | None
    error: str | None = None

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class _Outcome(TypedDict, total=False):
    """The columns an attempt's outcome writes to its delivery."""

    status: str
    next_attempt_at: datetime | None
    last_response_code: int | None
    last_error: str | None
    delivered_at: datetime


def deliver(
    app: Flask,
    now: datetime,
    *,
    http: requests.Session | None = None,
    vault: TokenVault | None = None,
    rng: random.Random | None = None,
    limit: int = 200,
    stop: threading.Event | None = None,
) -> Counter:
    """Send due deliveries, WEBHOOK_CONCURRENCY at a time; return how many were delivered, retried, failed, requeued.

    `now` is when the run started; claims and signatures read it plus the time spent since. Once
    `stop` is set no further delivery is claimed.
    """
    config = app.config
    http = http or webhook_session(config)
    vault = vault or app.extensions["token_vault"]
    rng = rng or random.Random()
    lease, window = delivery_lease(config), retry_window(config)
    concurrency = max(1, int(config["WEBHOOK_CONCURRENCY"]))
    started = time.monotonic()

    def now_in_run() -> datetime:
        return now + timedelta(seconds=time.monotonic() - started)

    results: Counter = Counter()
    requeued = _requeue_lost_claims(now_in_run())
    if requeued:
        results["requeued"] = requeued
    handled = 0
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="webhook") as pool:
        while handled < limit and not (stop is not None and stop.is_set()):
            claims = _claim(now_in_run(), lease, min(concurrency, limit - handled))
            if not claims:
                break
            handled += len(claims)
            # Each POST runs in the pool with no transaction open; outcomes are written here as they come.
            futures = {pool.submit(post, http, claim, vault, now_in_run): claim for claim in claims}
            for future in as_completed(futures):
                claim = futures[future]
                attempt = future.result()
                outcome = _outcome(claim, attempt, now_in_run(), window, rng)
                _log_attempt(claim, attempt, outcome)
                if _record_outcome(claim, outcome):
                    results["retry" if outcome["status"] == "pending" else outcome["status"]] += 1
    return results


def post(http: requests.Session, claim: _Claim, vault: TokenVault, clock: Callable[[], datetime]) -> Attempt:
    """Sign and POST one delivery; never raises for the receiver's or the network's trouble."""
    try:
        secret = vault.decrypt(claim.secret_ciphertext)
    except TokenVaultError:
        return Attempt(
            None, "The endpoint's secret cannot be decrypted with TOKEN_ENCRYPTION_KEYS (a key was removed?)."
        )
    headers = signed_headers(secret, claim.event_id, claim.body, clock())
    try:
        response = http.post(claim.url, data=claim.body.encode(), headers=headers, allow_redirects=False)
    except DeadlineExceeded as error:
        return Attempt(None, f"No complete answer in time: {error}.")
    except requests.RequestException as error:
        return Attempt(None, _describe(error))
    if 200 <= response.status_code < 300:
        return Attempt(response.status_code)
    excerpt = " ".join(response.text[:RESPONSE_EXCERPT_CHARACTERS].split())
    reason = f" {response.reason}" if response.reason else ""
    return Attempt(response.status_code, redact(f"HTTP {response.status_code}{reason}: {excerpt}".rstrip(": "))[:500])


def _describe(error: requests.RequestException) -> str:
    """The error in a few words: urllib3's own text buries the cause ("Connection refused") in its pool's repr."""
    if isinstance(error, requests.Timeout):  # before ConnectionError: a connect timeout is both
        kind = "Timed out"
    elif isinstance(error, requests.ConnectionError):
        kind = "Could not connect"
    else:
        kind = type(error).__name__
    cause = _OS_ERROR.search(str(error))
    return redact(f"{kind}: {cause.group(1) if cause else error}")[:500]


def _outcome(claim: _Claim, attempt: Attempt, now: datetime, window: timedelta, rng: random.Random) -> _Outcome:
    """Delivered; or pending again after a backoff, never past the retry window; or failed once it closed."""
    if attempt.delivered:
        return {
            "status": "delivered",
            "delivered_at": now,
            "next_attempt_at": None,
            "last_response_code": attempt.status_code,
            "last_error": None,
        }
    outcome: _Outcome = {"last_response_code": attempt.status_code, "last_error": attempt.error}
    give_up_at = claim.queued_at + window
    if now >= give_up_at:
        outcome["status"], outcome["next_attempt_at"] = "failed", None
    else:
        # The last try comes at the window's end, not after it.
        outcome["status"] = "pending"
        outcome["next_attempt_at"] = min(now + backoff(claim.attempts, rng), give_up_at)
    return outcome


def _log_attempt(claim: _Claim, attempt: Attempt, outcome: _Outcome) -> None:
    if attempt.delivered:
        log.info(
            "webhook %s delivered to endpoint %s (HTTP %s)", claim.event_id, claim.endpoint_id, attempt.status_code
        )
        return
    then = "given up" if outcome["status"] == "failed" else f"retry at {outcome['next_attempt_at']:%H:%M:%S}"
    log.warning(
        "webhook %s to endpoint %s, attempt %d: %s; %s",
        claim.event_id,
        claim.endpoint_id,
        claim.attempts,
        attempt.error,
        then,
    )


def _claim(now: datetime, lease: timedelta, limit: int) -> list[_Claim]:
    """Claim up to `limit` due deliveries and read what sending them needs; the transaction ends here."""
    candidates = (
        select(WebhookDelivery.id)
        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
        .where(
            WebhookDelivery.status == "pending",
            WebhookDelivery.next_attempt_at <= now,
            WebhookEndpoint.disabled_at.is_(None),
        )
        .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
        .limit(limit)
    )
    if db.engine.dialect.name == "postgresql":
        # Rows another worker is claiming right now are skipped, not waited for.
        candidates = candidates.with_for_update(of=WebhookDelivery, skip_locked=True)
    ids = db.session.scalars(candidates).all()
    if not ids:
        db.session.commit()
        return []
    token = secrets.token_hex(8)
    # The status condition makes this a compare-and-set where there are no row locks (SQLite).
    taken = db.session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id.in_(ids), WebhookDelivery.status == "pending")
        .values(
            status="sending",
            claim_token=token,
            lease_expires_at=now + lease,
            attempts=WebhookDelivery.attempts + 1,
            last_attempt_at=now,
        )
        .returning(WebhookDelivery.id)
        .execution_options(synchronize_session=False)
    ).scalars()
    claimed = list(taken)
    rows = db.session.execute(
        select(
            WebhookDelivery.id,
            WebhookDelivery.attempts,
            WebhookDelivery.queued_at,
            WebhookDelivery.endpoint_id,
            WebhookEndpoint.url,
            WebhookEndpoint.secret_ciphertext,
            WebhookEvent.event_id,
            WebhookEvent.type,
            WebhookEvent.occurred_at,
            WebhookEvent.payload,
        )
        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
        .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.webhook_event_id)
        .where(WebhookDelivery.id.in_(claimed))
        .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
    ).all()
    db.session.commit()  # the claims are ours; nothing stays open while the receivers answer
    return [
        _Claim(
            id=row.id,
            token=token,
            attempts=row.attempts,
            queued_at=row.queued_at,
            endpoint_id=row.endpoint_id,
            url=row.url,
            secret_ciphertext=row.secret_ciphertext,
            event_id=row.event_id,
            body=body_of(row.type, row.occurred_at, row.payload),
        )
        for row in rows
    ]


def _record_outcome(claim: _Claim, outcome: _Outcome) -> bool:
    """Write the outcome only while the claim is still this sender's; say whether it was.

    The token, new with every claim, is the fence: a row requeued after its lease ran out but not
    claimed since is still ours (a late `delivered` lands), one claimed again or sent again is not.
    """
    written = cast(
        CursorResult,
        db.session.execute(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.id == claim.id,
                WebhookDelivery.claim_token == claim.token,
                WebhookDelivery.status.in_(("sending", "pending")),
            )
            .values(lease_expires_at=None, **outcome)
            .execution_options(synchronize_session=False)
        ),
    ).rowcount
    if written == 1 and outcome["status"] == "pending":
        # Its endpoint was disabled during the send: no attempt will follow, so it does not wait for one.
        db.session.execute(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.id == claim.id,
                WebhookDelivery.claim_token == claim.token,
                WebhookDelivery.endpoint_id.in_(
                    select(WebhookEndpoint.id).where(WebhookEndpoint.disabled_at.is_not(None))
                ),
            )
            .values(status="failed", next_attempt_at=None)
            .execution_options(synchronize_session=False)
        )
    db.session.commit()
    if written != 1:
        log.warning(
            "webhook %s to endpoint %s: the claim was taken over during the send; outcome %s not recorded",
            claim.event_id,
            claim.endpoint_id,
            outcome["status"],
        )
    return written == 1


def _requeue_lost_claims(now: datetime) -> int:
    """Queue again deliveries whose claim ran out with no outcome: at least once, the receiver deduplicates."""
    lost = cast(
        CursorResult,
        db.session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.status == "sending", WebhookDelivery.lease_expires_at < now)
            .values(
                status="pending",
                next_attempt_at=now,
                lease_expires_at=None,
                last_error="The sender stopped during the send; sending again.",
            )
            .execution_options(synchronize_session=False)
        ),
    ).rowcount
    db.session.commit()
    if lost:
        log.warning("%d webhook delivery(ies) were being sent by a worker that stopped; sending them again", lost)
    return lost


class Sender:
    """Deliveries on a thread of their own, started by the worker's tick (as mail is).

    A slow receiver never holds up the keep-alive loop.
    """

    def __init__(self, app: Flask, clock: Callable[[], datetime], rng: random.Random | None = None):
        self.app = app
        self.clock = clock
        self.rng = rng or random.Random()
        self.http = webhook_session(app.config)
        self.thread: threading.Thread | None = None
        self.lock = threading.Lock()
        self.again = False
        self.stop = threading.Event()

    def kick(self) -> None:
        """Send what is due; a run in progress looks again once it ends instead."""
        with self.lock:
            if self.thread is not None and self.thread.is_alive():
                self.again = True
                return
            self.again = False
            self.thread = threading.Thread(target=self._loop, name="webhooks", daemon=True)
            self.thread.start()

    def _loop(self) -> None:
        while True:
            try:
                with self.app.app_context():
                    deliver(self.app, self.clock(), http=self.http, rng=self.rng, stop=self.stop)
            except SQLAlchemyError as error:
                log.warning("webhook delivery paused: database unavailable (%s)", type(error).__name__)
            except Exception:
                log.exception("webhook delivery failed; it is tried again at the next tick")
            with self.lock:
                if not self.again or self.stop.is_set():
                    self.thread = None  # under the lock: a kick from now on starts a new thread
                    return
                self.again = False

    def wait(self) -> None:
        """Let a run in progress finish (each POST is bounded by WEBHOOK_TIMEOUT)."""
        thread = self.thread
        if thread is not None:
            thread.join()
