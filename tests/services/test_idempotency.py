"""Idempotency-Key: one request applied once, its answer replayed; reuse, concurrency, expiry."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.api_helpers import make_key
from webapp.services import idempotency

pytestmark = pytest.mark.usefixtures("pinned_clock")


@pytest.fixture
def api_key_id(db):
    return make_key("errors:write")[0].id


def test_the_answer_is_worked_out_once_and_replayed(api_key_id, now):
    calls = []

    def answer():
        calls.append(1)
        return {"action": "ignored", "n": len(calls)}

    first = idempotency.run_once(api_key_id, "k", "hash-a", now, answer)
    again = idempotency.run_once(api_key_id, "k", "hash-a", now + timedelta(hours=1), answer)
    assert first == ({"action": "ignored", "n": 1}, False) and again == ({"action": "ignored", "n": 1}, True)
    assert calls == [1]


def test_another_request_under_the_same_key_is_refused(api_key_id, now):
    idempotency.run_once(api_key_id, "k", "hash-a", now, lambda: {})
    with pytest.raises(idempotency.IdempotencyKeyReused):
        idempotency.run_once(api_key_id, "k", "hash-b", now, lambda: {})


def test_a_retry_while_the_first_is_at_work_is_told_to_wait(api_key_id, now):
    idempotency.reserve(api_key_id, "k", "hash-a", now)  # the first request is still calling Meta
    with pytest.raises(idempotency.IdempotencyKeyInProgress):
        idempotency.run_once(api_key_id, "k", "hash-a", now + timedelta(seconds=5), lambda: {})


def test_a_reservation_whose_request_died_is_taken_over(api_key_id, now):
    idempotency.reserve(api_key_id, "k", "hash-a", now)
    later = now + idempotency.ABANDONED_AFTER + timedelta(seconds=1)
    assert idempotency.run_once(api_key_id, "k", "hash-a", later, lambda: {"ok": True}) == ({"ok": True}, False)


def test_a_failed_answer_gives_the_key_back(api_key_id, now):
    def failing():
        raise RuntimeError("Meta went away")

    with pytest.raises(RuntimeError):
        idempotency.run_once(api_key_id, "k", "hash-a", now, failing)
    assert idempotency.run_once(api_key_id, "k", "hash-b", now, lambda: {"ok": 1}) == ({"ok": 1}, False)


def test_answers_are_kept_for_a_day(api_key_id, now):
    idempotency.run_once(api_key_id, "k", "hash-a", now, lambda: {"n": 1})
    next_day = now + idempotency.KEPT_FOR + timedelta(minutes=1)
    assert idempotency.run_once(api_key_id, "k", "hash-b", next_day, lambda: {"n": 2}) == ({"n": 2}, False)


def test_the_hash_ignores_key_order_but_not_values():
    assert idempotency.request_hash("POST", 1, {"a": 1, "b": 2}) == idempotency.request_hash(
        "POST", 1, {"b": 2, "a": 1}
    )
    assert idempotency.request_hash("POST", 1, {"a": 1}) != idempotency.request_hash("POST", 2, {"a": 1})
