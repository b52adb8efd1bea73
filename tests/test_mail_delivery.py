"""Delivery against a slow SMTP server: several senders, every mail leaves once (promise 37)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import func, select, update

from testbed.servers import free_port
from tests.conftest import TEST_DATABASE_URL
from tests.factories import make_shop, make_user
from tests.test_worker_processes import start_worker, worker_env
from webapp.extensions import db
from webapp.models import OutboundMail
from webapp.services.notify import delivery

pytestmark = pytest.mark.slow

# Each message takes SLOW_REPLY seconds, well inside the send timeout, so every send succeeds; the
# lease derived from the timeout (2 x (2 + 5) = 14 s) is shorter than 20 such sends in a row.
SEND_TIMEOUT = 2
SLOW_REPLY = 1.0
MERCHANTS = 20


class SlowInbox:
    """An SMTP server that thinks `delay` seconds before accepting each message."""

    def __init__(self, delay: float):
        self.delay = delay
        self.recipients: list[str] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
        with self.lock:
            self.recipients.extend(envelope.rcpt_tos)  # the server has the message from here on
        await asyncio.sleep(self.delay)
        return "250 OK"

    def duplicates(self) -> dict[str, int]:
        return {to: n for to, n in Counter(self.recipients).items() if n > 1}


def smtp_server(delay: float):
    inbox = SlowInbox(delay)
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    inbox.url = f"smtp://127.0.0.1:{controller.port}?tls=none"
    return inbox, controller


@pytest.fixture
def slow_inbox():
    inbox, controller = smtp_server(SLOW_REPLY)
    yield inbox
    controller.stop()


def seed_due_mails(count: int, now: datetime) -> list[str]:
    """One merchant per shop, each with one pending mail that is due now."""
    addresses = []
    for number in range(count):
        person = make_user(shop=make_shop(name=f"Slow Mail Shop {number}"), email=f"merchant{number}@slow.example")
        db.session.add(
            OutboundMail(
                idempotency_key=f"slow-mail:{number}",
                kind="disconnected",
                user_id=person.id,
                to_address=person.email,
                subject="Instagram is disconnected",
                text_body="Please reconnect.",
                html_body="<p>Please reconnect.</p>",
                status="pending",
                next_attempt_at=now - timedelta(minutes=1),
                created_at=now - timedelta(minutes=1),
            )
        )
        addresses.append(person.email)
    db.session.commit()
    return addresses


def unfinished() -> int:
    count = db.session.scalar(
        select(func.count(OutboundMail.id)).where(OutboundMail.status.in_(("pending", "sending")))
    )
    db.session.commit()
    return count


def test_parallel_senders_and_a_slow_smtp_server_send_each_mail_once(app, slow_inbox):
    """Promise 37: three senders, an SMTP server so slow that a batch outlasts the lease: each mail once.

    The first sender starts alone (it could claim everything); the others join a second later, and
    keep looking while it sends, as workers do each minute.
    """
    app.config.update(MAIL_URL=slow_inbox.url, MAIL_SEND_TIMEOUT=SEND_TIMEOUT)
    addresses = seed_due_mails(MERCHANTS, datetime.now(UTC))
    errors = []

    def sender(delay: float):
        try:
            with app.app_context():
                time.sleep(delay)
                deadline = time.monotonic() + 90
                while unfinished() and time.monotonic() < deadline:
                    delivery.deliver(app, datetime.now(UTC))
                    time.sleep(0.2)
                db.session.remove()
        except Exception as error:  # noqa: BLE001 - surfaced below
            errors.append(error)

    threads = [threading.Thread(target=sender, args=(delay,)) for delay in (0, 1, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    print(f"duplicates: {sum(n - 1 for n in slow_inbox.duplicates().values())}")
    assert slow_inbox.duplicates() == {}
    assert sorted(slow_inbox.recipients) == sorted(addresses)
    statuses = db.session.execute(select(OutboundMail.status, func.count()).group_by(OutboundMail.status)).all()
    assert statuses == [("sent", MERCHANTS)]


@pytest.mark.skipif(not TEST_DATABASE_URL, reason="TEST_DATABASE_URL is not set (CI sets it to a real PostgreSQL)")
def test_worker_processes_and_a_slow_smtp_server_send_each_mail_once(app, database_uri, slow_inbox, tmp_path):
    """Promise 37: five worker processes, the last two starting once a batch's lease would have run out."""
    addresses = seed_due_mails(MERCHANTS, datetime.now(UTC))
    db.session.remove()
    nowhere = SimpleNamespace(base_url="http://127.0.0.1:9")  # no connection is due: Meta is never called
    env = worker_env(database_uri, nowhere, MAIL_URL=slow_inbox.url, MAIL_SEND_TIMEOUT=str(SEND_TIMEOUT))
    lease = delivery.mail_lease({"MAIL_SEND_TIMEOUT": SEND_TIMEOUT})
    started = time.monotonic()
    workers = [start_worker(env, "--until-idle", log=tmp_path / f"w{i}.log") for i in range(3)]
    time.sleep(max(0.0, lease.total_seconds() + 1 - (time.monotonic() - started)))
    workers += [start_worker(env, "--until-idle", log=tmp_path / f"w{i}.log") for i in range(3, 5)]
    for number, worker in enumerate(workers):
        assert worker.wait(timeout=120) == 0, (tmp_path / f"w{number}.log").read_text()[-2000:]
    print(f"duplicates: {sum(n - 1 for n in slow_inbox.duplicates().values())}")
    assert slow_inbox.duplicates() == {}
    assert sorted(slow_inbox.recipients) == sorted(addresses)
    assert unfinished() == 0


def test_a_send_whose_outcome_is_unknown_is_not_sent_again(app):
    """Promise 37: the server took the message but its reply came too late; nobody sends it a second time."""
    inbox, controller = smtp_server(delay=SEND_TIMEOUT + 2)
    try:
        app.config.update(MAIL_URL=inbox.url, MAIL_SEND_TIMEOUT=SEND_TIMEOUT)
        now = datetime.now(UTC)
        seed_due_mails(1, now)
        assert delivery.deliver(app, now)["unknown"] == 1
        for later in (timedelta(minutes=2), timedelta(hours=1), timedelta(days=1)):
            assert delivery.deliver(app, now + later)["sent"] == 0
    finally:
        controller.stop()
    assert len(inbox.recipients) == 1
    mail = db.session.scalar(select(OutboundMail))
    assert mail.status == "unknown" and "outcome unknown" in mail.last_error


def test_a_claim_that_ran_out_without_an_outcome_is_not_resent(app, slow_inbox):
    """Promise 37: a sender that stopped mid-send (killed, database gone) leaves a mail nobody resends."""
    app.config.update(MAIL_URL=slow_inbox.url, MAIL_SEND_TIMEOUT=SEND_TIMEOUT)
    now = datetime.now(UTC)
    seed_due_mails(2, now)
    first = db.session.scalar(select(OutboundMail.id).order_by(OutboundMail.id))
    db.session.execute(
        update(OutboundMail)
        .where(OutboundMail.id == first)
        .values(status="sending", claim_token="killed-sender", lease_expires_at=now + timedelta(seconds=10))
    )
    db.session.commit()
    assert delivery.deliver(app, now) == {"sent": 1, "retry": 0, "failed": 0, "unknown": 0}  # still its claim
    assert delivery.deliver(app, now + timedelta(minutes=1)) == {"sent": 0, "retry": 0, "failed": 0, "unknown": 1}
    assert len(slow_inbox.recipients) == 1
    mail = db.session.get(OutboundMail, first)
    assert mail.status == "unknown" and "outcome unknown" in mail.last_error


def test_a_burst_of_mail_is_sent_in_one_go_not_a_batch_a_minute(app):
    """Issue 17: 200 shops broken at once were mailed 20 a minute (one batch per tick): p95 164 s in bench/detect.py."""
    from webapp.services.keepalive.worker import MAIL_BATCH, Worker

    inbox, controller = smtp_server(delay=0)
    try:
        app.config.update(MAIL_URL=inbox.url, MAIL_SEND_TIMEOUT=SEND_TIMEOUT)
        addresses = seed_due_mails(2 * MAIL_BATCH + 5, datetime.now(UTC))
        worker = Worker(app, concurrency=1)
        worker.send_mail()  # once, as a tick or the outbox poll does
        worker.wait_for_mail()
    finally:
        controller.stop()
    assert sorted(inbox.recipients) == sorted(addresses)
    assert unfinished() == 0
