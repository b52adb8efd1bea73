"""A write-back that cannot get a database connection keeps Meta's new token for later (promises 8, 36)."""

from __future__ import annotations

import threading

import pytest

from testbed.meta_stub import MetaStub
from tests.factories import make_user
from tests.test_races import due_for_refresh, stub_client
from webapp.extensions import db as _db
from webapp.models import InstagramConnection
from webapp.services.connections.state import read_token
from webapp.services.keepalive.worker import Worker


@pytest.fixture
def app_config(app_config):
    """One pooled connection, given up on after a second: a pool smaller than the worker's threads."""
    return {**app_config, "SQLALCHEMY_ENGINE_OPTIONS": {"pool_size": 1, "max_overflow": 0, "pool_timeout": 1}}


def test_a_pool_timeout_during_write_back_keeps_the_new_token(app, db):
    """Promise 8/36: no connection free for the write-back is not the end of Meta's new token."""
    with MetaStub(latency=0.0) as stub:
        connection_id = due_for_refresh(app, make_user()).id
        _db.session.remove()
        worker = Worker(app, concurrency=1, client=stub_client(stub))
        worker.sleep = lambda seconds: None
        claims = worker.claim()
        assert [claim.work for claim in claims] == ["refresh"]
        hog = _db.engine.connect()  # the only pooled connection is busy
        result = {}
        thread = threading.Thread(target=lambda: result.setdefault("summary", worker.process(claims[0])))
        thread.start()
        thread.join(30)
        hog.close()
        assert result["summary"] == "write_failed"
        assert [claim.connection_id for claim, _, _ in worker.unwritten] == [connection_id]
        worker._write_unwritten()
        assert worker.unwritten == [] and worker.totals["refreshed"] == 1
        row = _db.session.get(InstagramConnection, connection_id)
        assert read_token(row, app.extensions["token_vault"]) in stub.issued
        assert row.lease_owner is None and stub.refreshes[connection_id] == 1
