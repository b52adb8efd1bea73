"""expression indexes back on SQLite

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30 00:10:00.000000

On SQLite, `batch_alter_table` copies a table into a new one and can only carry the indexes it can
reflect; indexes on an expression (lower(email), lower(username)) were silently left behind by
0005 and 0007, so case-insensitive unique emails were not enforced by the database there. PostgreSQL
alters tables in place and never lost them; IF NOT EXISTS makes this a no-op there.
"""

from alembic import op

# revision identifiers, used by Alembic.
revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

EXPRESSION_INDEXES = (
    "CREATE UNIQUE INDEX IF NOT EXISTS uq_users_email_lower ON users (lower(email))",
    "CREATE INDEX IF NOT EXISTS ix_shops_name_lower ON shops (lower(name))",
    "CREATE INDEX IF NOT EXISTS ix_instagram_connections_username_lower ON instagram_connections (lower(username))",
)


def upgrade():
    for statement in EXPRESSION_INDEXES:
        op.execute(statement)


def downgrade():
    # The indexes belong to 0001 and 0006; on SQLite they were only missing by accident.
    pass
