"""The migrated schema is the schema the models declare, on SQLite and on PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import insert, inspect
from sqlalchemy.exc import IntegrityError

from tests.factories import make_user
from webapp.extensions import db as _db
from webapp.models import User


def test_every_index_the_models_declare_exists_after_migrating(app, db):
    """SQLite's batch migrations once dropped the expression indexes (lower(email) among them)."""
    inspector = inspect(db.engine)
    if db.engine.dialect.name == "sqlite":
        with db.engine.connect() as connection:
            existing = {
                row[0] for row in connection.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'index'")
            }
    else:
        existing = {index["name"] for table in inspector.get_table_names() for index in inspector.get_indexes(table)}
        existing |= {
            c["name"] for table in inspector.get_table_names() for c in inspector.get_unique_constraints(table)
        }
    declared = {index.name for table in _db.metadata.sorted_tables for index in table.indexes}
    assert declared - existing == set()


def test_emails_differing_only_in_case_are_refused_by_the_database(app, db):
    """The rule holds for any writer, not only the app's own lower-casing (promise of models.User)."""
    first = make_user(role="support", email="ana@shop.example")
    with pytest.raises(IntegrityError):
        db.session.execute(
            insert(User).values(
                email="Ana@Shop.example",
                name="Ana again",
                role="support",
                password_hash=first.password_hash,
                active=True,
                created_at=first.created_at,
            )
        )
    db.session.rollback()
