"""Between its minute ticks the worker looks for mail and webhooks other processes queued (OUTBOX_POLL_SECONDS).

An error report from the platform, a callback from Meta or support's "Test now" runs in a web process: it
changes the state and queues the merchant's mail and the platform's webhooks there, and the worker used to
send them at its next tick, up to a minute later (issue 17: detection within 60 s).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from webapp.services.keepalive.worker import Worker

START = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def test_the_worker_looks_for_queued_mail_and_webhooks_every_few_seconds(app):
    app.config["OUTBOX_POLL_SECONDS"] = 5
    moments = iter([0, 3, 6, 8, 12, 61, 64, 67])
    now = [START]
    worker = Worker(app, concurrency=1, poll_seconds=0, clock=lambda: now[0])
    looked: list[tuple[str, int]] = []
    worker.send_mail = lambda: looked.append(("mail", seconds()))
    worker.webhooks.kick = lambda: looked.append(("webhooks", seconds()))
    worker.tick = lambda: looked.append(("tick", seconds()))

    def seconds() -> int:
        return int((now[0] - START).total_seconds())

    stop, last_tick = threading.Event(), None
    with ThreadPoolExecutor(max_workers=1) as pool:
        for moment in moments:
            now[0] = START + timedelta(seconds=moment)
            last_tick = worker._step(pool, {}, last_tick, stop, until_idle=False, on_result=None)
    assert looked == [
        ("tick", 0),  # a tick sends mail and webhooks itself
        ("mail", 6),
        ("webhooks", 6),
        ("mail", 12),
        ("webhooks", 12),
        ("tick", 61),
        ("mail", 67),
        ("webhooks", 67),
    ]
