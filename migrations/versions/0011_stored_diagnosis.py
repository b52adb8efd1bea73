"""stored diagnosis, Meta's words for the account owner, the login path

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30 02:40:00.000000

The diagnosis of a connection's trouble is worked out once, when the trouble begins or changes, and
kept on the connection; the page, the mails and support read it instead of each working it out
again. Failure events keep Meta's `error_user_title` and `error_user_msg` where Meta sent them.
Each connection records its login path (every existing one came through Instagram Login), so advice
about Page roles and Business Manager is given only where it applies.

Plain ADD COLUMN (no batch copy): SQLite adds nullable columns in place, so the expression indexes
0010 restored stay where they are.
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column(
        "instagram_connections",
        sa.Column("login_path", sa.String(length=16), nullable=False, server_default="instagram"),
    )
    op.add_column("instagram_connections", sa.Column("diagnosis", sa.JSON(), nullable=True))
    op.add_column("instagram_connections", sa.Column("diagnosed_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("connection_events", sa.Column("meta_user_title", sa.String(length=255), nullable=True))
    op.add_column("connection_events", sa.Column("meta_user_message", sa.String(length=1000), nullable=True))


def downgrade():
    with op.batch_alter_table("connection_events") as batch_op:
        batch_op.drop_column("meta_user_message")
        batch_op.drop_column("meta_user_title")
    with op.batch_alter_table("instagram_connections") as batch_op:
        batch_op.drop_column("diagnosed_at")
        batch_op.drop_column("diagnosis")
        batch_op.drop_column("login_path")
    # SQLite's batch copy leaves expression indexes behind (see 0010); put them back.
    op.execute("CREATE INDEX IF NOT EXISTS ix_instagram_connections_username_lower ON instagram_connections (lower(username))")
