"""Meta's usage headers kept per connection

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30 03:05:00.000000

The keep-alive already reads X-App-Usage and X-Business-Use-Case-Usage on every answer to slow down
before a limit; it now keeps the latest figures on the connection they came with, so the app health
page can show how close the app and each account are to Meta's limits. Plain ADD COLUMN, as in 0011.
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("instagram_connections", sa.Column("usage", sa.JSON(), nullable=True))
    op.add_column("instagram_connections", sa.Column("usage_percent", sa.Integer(), nullable=True))
    op.add_column("instagram_connections", sa.Column("usage_seen_at", sa.DateTime(timezone=True), nullable=True))


def downgrade():
    with op.batch_alter_table("instagram_connections") as batch_op:
        batch_op.drop_column("usage_seen_at")
        batch_op.drop_column("usage_percent")
        batch_op.drop_column("usage")
    # SQLite's batch copy leaves expression indexes behind (see 0010); put them back.
    op.execute(
        "CREATE INDEX IF NOT EXISTS ix_instagram_connections_username_lower ON instagram_connections (lower(username))"
    )
