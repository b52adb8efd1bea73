"""The audit log is append-only in the database itself (promises 28 and 40)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DatabaseError

from tests.conftest import TEST_DATABASE_URL
from tests.factories import make_user
from webapp.models import AuditEntry
from webapp.services import audit


@pytest.mark.postgres
@pytest.mark.skipif(not TEST_DATABASE_URL, reason="TRUNCATE is PostgreSQL's; TEST_DATABASE_URL is not set")
@pytest.mark.parametrize("statement", ["TRUNCATE audit_log", "TRUNCATE users CASCADE"])
def test_audit_log_refuses_truncate(db, statement):
    """Promise 40: TRUNCATE, directly or cascading from another table, is refused like DELETE."""
    audit.record("test.kept", now=datetime.now(UTC), actor=make_user(role="admin"))
    with pytest.raises(DatabaseError, match="append-only"):
        db.session.execute(text(statement))
    db.session.rollback()
    assert db.session.scalar(select(func.count(AuditEntry.id))) == 1
