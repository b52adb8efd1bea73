"""The keep-alive timetable: policy values, the 24-hour refresh rule, jitter and backoff."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from webapp.models import InstagramConnection
from webapp.services.meta.client import LONG_LIVED_TOKEN_LIFETIME


@dataclass(frozen=True)
class Policy:
    token_lifetime: timedelta = LONG_LIVED_TOKEN_LIFETIME
    refresh_after: timedelta = timedelta(days=7)
    refresh_min_age: timedelta = timedelta(hours=24)
    # Detection from checks alone within DESIGN's 60 minutes (p95) at under 30 calls a day (bench/detect.py).
    check_interval: timedelta = timedelta(minutes=50)
    # A Facebook Login check costs four calls (the token, the Page's tasks, the Page's link): kept to 16 a day.
    facebook_check_interval: timedelta = timedelta(hours=6)
    jitter: float = 0.1
    expiry_warning: timedelta = timedelta(days=10)
    backoff_base: timedelta = timedelta(minutes=2)
    backoff_max: timedelta = timedelta(hours=6)
    slowdown_percent: int = 90
    rate_limit_pause: timedelta = timedelta(minutes=15)
    lease: timedelta = timedelta(seconds=120)
    write_attempts: int = 5
    # Error reports of a permanent cause make a confirming call to Meta; a buggy caller must not make
    # us hammer it: at most one call per connection this often, and so many a day per API key whose
    # reports Meta contradicted.
    confirm_spacing: timedelta = timedelta(seconds=60)
    confirms_per_key_per_day: int = 10

    @classmethod
    def from_config(cls, config) -> Policy:
        return cls(
            refresh_after=timedelta(hours=config["REFRESH_AFTER_HOURS"]),
            check_interval=timedelta(minutes=config["CHECK_INTERVAL_MINUTES"]),
            facebook_check_interval=timedelta(minutes=config["FACEBOOK_CHECK_INTERVAL_MINUTES"]),
            jitter=config["SCHEDULE_JITTER"],
            expiry_warning=timedelta(days=config["EXPIRY_WARNING_DAYS"]),
            backoff_base=timedelta(seconds=config["BACKOFF_BASE_SECONDS"]),
            backoff_max=timedelta(seconds=config["BACKOFF_MAX_SECONDS"]),
            slowdown_percent=config["RATE_LIMIT_SLOWDOWN_PERCENT"],
            lease=timedelta(seconds=config["WORKER_LEASE_SECONDS"]),
            confirm_spacing=timedelta(seconds=config["ERROR_REPORT_CONFIRM_SECONDS"]),
            confirms_per_key_per_day=config["ERROR_REPORT_CONFIRMS_PER_DAY"],
        )


def refresh_allowed(issued_at: datetime | None, expires_at: datetime | None, now: datetime, policy: Policy) -> bool:
    """Instagram refreshes only tokens at least 24 hours old and not yet expired (promise 7)."""
    if issued_at is None or expires_at is None:
        return False
    return now - issued_at >= policy.refresh_min_age and now < expires_at


def jittered(interval: timedelta, fraction: float, rng: random.Random) -> timedelta:
    """Spread work: the interval plus or minus `fraction` of itself."""
    return interval * (1 + rng.uniform(-fraction, fraction))


def backoff(failures: int, policy: Policy, rng: random.Random) -> timedelta:
    """Exponential backoff with full jitter between half and all of the step."""
    step = min(policy.backoff_base * (2 ** max(failures - 1, 0)), policy.backoff_max)
    return step * rng.uniform(0.5, 1.0)


def schedule_after_success(connection: InstagramConnection, now: datetime, policy: Policy, rng: random.Random) -> None:
    """The next check, and the next refresh where the path has one.

    A Facebook Login connection is never refreshed: its Page token has no end date, and the
    data-access window it lives in is renewed only by the merchant logging in again.
    """
    issued_at = connection.token_issued_at
    if issued_at is None:  # every stored token records when it was issued (store_token)
        raise ValueError(f"connection {connection.id} succeeded but has no token_issued_at")
    refresh_due = None
    interval = policy.facebook_check_interval if connection.via_facebook else policy.check_interval
    if not connection.via_facebook:
        refresh_due = max(
            issued_at + jittered(policy.refresh_after, policy.jitter, rng), issued_at + policy.refresh_min_age
        )
    connection.schedule(
        refresh_due_at=refresh_due,
        check_due_at=now + jittered(interval, policy.jitter, rng),
    )
