"""`Idempotency-Key` for the Platform API's writes: one request applied once, its answer replayed.

A key is held per API key. The first request with it reserves the key (a row with no answer yet),
does its work and stores the answer; a retry with the same body gets that answer again without
doing anything, a reuse with another body is refused, and a retry while the first is still at work
is told to wait. Answers are kept for a day. (The IETF draft "The Idempotency-Key HTTP Header Field"
names these answers: 422 for another body, 409 while in progress, 400 when the header is missing.)
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from webapp.extensions import db
from webapp.models import ApiIdempotencyRecord

KEPT_FOR = timedelta(hours=24)
# A reservation this old lost its request (a crashed process): the key may be used again.
ABANDONED_AFTER = timedelta(minutes=5)
KEY_PATTERN = re.compile(r"[\x21-\x7e]{1,255}")  # visible ASCII, as a header carries it


class IdempotencyKeyReused(Exception):
    """The key came before with a different request."""


class IdempotencyKeyInProgress(Exception):
    """The first request with this key has not finished yet."""


@dataclass(frozen=True)
class Replay:
    status: int
    body: dict


def valid_key(raw: str | None) -> str | None:
    """The header's value when it is a usable key, else None."""
    if raw is None:
        return None
    raw = raw.strip()
    return raw if KEY_PATTERN.fullmatch(raw) else None


def request_hash(*parts: object) -> str:
    """A fingerprint of what the request asked for (method, path, parsed body), independent of key order."""
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def reserve(api_key_id: int, key: str, fingerprint: str, now: datetime) -> Replay | ApiIdempotencyRecord:
    """Reserve `key` for this request, or return the answer an earlier identical request got.

    Raises IdempotencyKeyReused for another request under the same key, IdempotencyKeyInProgress
    while the first one is still being answered.
    """
    db.session.execute(delete(ApiIdempotencyRecord).where(ApiIdempotencyRecord.created_at < now - KEPT_FOR))
    db.session.commit()
    for _attempt in range(2):
        record = ApiIdempotencyRecord(
            api_key_id=api_key_id, idempotency_key=key, request_hash=fingerprint, created_at=now
        )
        db.session.add(record)
        try:
            db.session.commit()
            return record
        except IntegrityError:
            db.session.rollback()
        earlier = db.session.scalar(
            select(ApiIdempotencyRecord).where(
                ApiIdempotencyRecord.api_key_id == api_key_id, ApiIdempotencyRecord.idempotency_key == key
            )
        )
        if earlier is None:  # it expired between our insert and our read: try once more
            continue
        if earlier.request_hash != fingerprint:
            raise IdempotencyKeyReused()
        if earlier.response_status is not None and earlier.response_body is not None:
            return Replay(earlier.response_status, earlier.response_body)
        if now - earlier.created_at < ABANDONED_AFTER:
            raise IdempotencyKeyInProgress()
        db.session.delete(earlier)
        db.session.commit()
    raise IdempotencyKeyInProgress()


def run_once(
    api_key_id: int, key: str, fingerprint: str, now: datetime, answer: Callable[[], dict]
) -> tuple[dict, bool]:
    """The answer to this request, worked out by `answer` only the first time: (body, replayed).

    An exception from `answer` gives the key back, so the request may be retried; so do the
    domain errors a caller turns into problems (they are not answers worth replaying).
    """
    reserved = reserve(api_key_id, key, fingerprint, now)
    if isinstance(reserved, Replay):
        return reserved.body, True
    try:
        body = answer()
    except BaseException:
        release(reserved)
        raise
    complete(reserved, 200, body)
    return body, False


def complete(record: ApiIdempotencyRecord, status: int, body: dict) -> None:
    """Keep the answer, so a retry with the same key gets it again."""
    record.response_status, record.response_body = status, body
    db.session.commit()


def release(record: ApiIdempotencyRecord) -> None:
    """Give the key back (the request ended without an answer worth replaying); it may be used again."""
    db.session.rollback()
    db.session.execute(delete(ApiIdempotencyRecord).where(ApiIdempotencyRecord.id == record.id))
    db.session.commit()
