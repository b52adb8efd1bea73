"""Seed many due connections fast (bulk inserts) for worker tests and benchmarks."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from cryptography.fernet import Fernet
from sqlalchemy import create_engine, insert, select, text

from testbed.meta_stub import MetaStub
from webapp.models import InstagramConnection, Shop
from webapp.services.meta.client import LONG_LIVED_TOKEN_LIFETIME
from webapp.services.token_vault import fingerprint


def seed_due_connections(database_uri: str, count: int, key: str, chunk: int = 2000) -> float:
    """Create `count` shops, each connected with a stub token issued 8 days ago (refresh due now).

    Returns the time.monotonic() at which they were committed (all at once), i.e. fell due.
    """
    fernet = Fernet(key.encode())
    engine = create_engine(database_uri)
    now = datetime.now(UTC)
    issued = now - timedelta(days=8)
    with engine.begin() as connection:
        start = connection.scalar(select(text("coalesce(max(id), 0)")).select_from(Shop.__table__)) or 0
        for offset in range(0, count, chunk):
            ids = range(start + offset + 1, start + min(offset + chunk, count) + 1)
            connection.execute(
                insert(Shop.__table__),
                [{"id": i, "name": f"Shop {i}", "domain": f"shop{i}.example", "created_at": now} for i in ids],
            )
            connection.execute(
                insert(InstagramConnection.__table__),
                [
                    {
                        "id": i,
                        "shop_id": i,
                        "state": "healthy",
                        "instagram_user_id": str(i),
                        "username": f"shop{i}",
                        "granted_permissions": "instagram_business_basic",
                        "token_ciphertext": fernet.encrypt(MetaStub.seed_token(i).encode()).decode(),
                        "token_fingerprint": fingerprint(MetaStub.seed_token(i)),
                        "token_issued_at": issued,
                        "token_expires_at": issued + LONG_LIVED_TOKEN_LIFETIME,
                        "connected_at": issued,
                        "refresh_due_at": issued + timedelta(days=7),
                        "check_due_at": now + timedelta(hours=6),
                        "due_at": issued + timedelta(days=7),
                        "version": 0,
                        "consecutive_failures": 0,
                        "failure_days": 0,
                        "refresh_failures": 0,
                        "created_at": issued,
                    }
                    for i in ids
                ],
            )
        if engine.dialect.name == "postgresql":
            for table in ("shops", "instagram_connections"):
                connection.execute(text(f"SELECT setval('{table}_id_seq', (SELECT max(id) FROM {table}))"))
    committed_at = time.monotonic()
    if engine.dialect.name == "postgresql":
        # Statistics, as autovacuum gathers them on any real database within a minute of a bulk load.
        # Without them (a table just filled, or a server running with autovacuum off, as the CI's
        # does) PostgreSQL plans the worker's claim as a scan of every active row plus a sort,
        # 15-30 ms per claim at 10k rows, instead of a walk of the due_at index (well under 1 ms).
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            for table in ("shops", "instagram_connections"):
                connection.execute(text(f"ANALYZE {table}"))
    engine.dispose()
    return committed_at
