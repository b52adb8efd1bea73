"""fleet search by trigrams, needs-attention by a partial index

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-07 09:00:00.000000

Search matches a substring (`lower(column) LIKE '%term%'`) of a shop's name and domain, the
Instagram @username and a login email; no B-tree serves that, so at 100,000 shops every search read
the three tables whole (370-590 ms). A GIN trigram index (`pg_trgm`) on each lower(column) finds the
rows holding the term's trigrams and PostgreSQL rechecks them, so the answer is the same. pg_trgm is
an extension: it is created where the server offers it and this role may create it (Heroku Postgres
does; it is a trusted extension since PostgreSQL 13). Where it cannot be created, or on SQLite, the
indexes are skipped and search still answers correctly, by reading the tables as before.

The needs-attention list read every connection in trouble, joined each to its shop and sorted them
all to show 50 (60 ms at 100,000 shops, 13,143 in trouble). A partial index in the list's order,
holding only connections in trouble, lets a page read just its own rows; login_path rides along so
the path filter needs no table read either.
"""

import logging

from alembic import op
from sqlalchemy.exc import DBAPIError

# revision identifiers, used by Alembic.
revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

logger = logging.getLogger("alembic.runtime.migration")

# The expressions are the ones services.fleet matches, or PostgreSQL would not use the indexes.
TRIGRAM_INDEXES = {
    "ix_shops_name_trgm": ("shops", "name"),
    "ix_shops_domain_trgm": ("shops", "domain"),
    "ix_instagram_connections_username_trgm": ("instagram_connections", "username"),
    "ix_users_email_trgm": ("users", "email"),
}
# Kept in step with models.InstagramConnection and services.fleet.ATTENTION_STATES.
ATTENTION_WHERE = "state IN ('needs_reconnect', 'expiring', 'degraded')"


def upgrade():
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute(
            "CREATE INDEX ix_instagram_connections_attention ON instagram_connections "
            f"(state_changed_at NULLS FIRST, id, login_path) WHERE {ATTENTION_WHERE}"
        )
        if _trigrams_available(bind):
            for name, (table, column) in TRIGRAM_INDEXES.items():
                op.execute(f"CREATE INDEX {name} ON {table} USING gin (lower({column}) gin_trgm_ops)")
    else:
        # SQLite sorts NULLs first in ascending order already and has no NULLS FIRST in an index.
        op.execute(
            "CREATE INDEX ix_instagram_connections_attention ON instagram_connections "
            f"(state_changed_at, id, login_path) WHERE {ATTENTION_WHERE}"
        )


def _trigrams_available(bind) -> bool:
    """Create pg_trgm if the server has it and this role may; say so and go on without it otherwise."""
    installed = bind.exec_driver_sql("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'").scalar()
    if installed:
        return True
    offered = bind.exec_driver_sql("SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm'").scalar()
    if not offered:
        logger.warning("pg_trgm is not available on this server: fleet search works without its indexes, slower")
        return False
    try:
        with bind.begin_nested():  # a refusal rolls back to here, not the whole migration
            bind.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except DBAPIError as refusal:
        logger.warning(
            "pg_trgm could not be created (%s): fleet search works without its indexes, slower", refusal.orig
        )
        return False
    return True


def downgrade():
    for name in TRIGRAM_INDEXES:
        op.execute(f"DROP INDEX IF EXISTS {name}")
    op.execute("DROP INDEX IF EXISTS ix_instagram_connections_attention")
    # pg_trgm stays: other schemas or a later migration may use it, and it holds no data.
