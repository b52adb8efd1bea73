"""instagram identity: the app-scoped id and the login's user id

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01 09:00:00.000000

Meta gives one Instagram professional account several numbers (see InstagramConnection).
`instagram_user_id` already holds /me's `user_id`, the account's own id, and keeps that meaning;
the two new columns hold /me's `id` (app-scoped) and the code exchange's `user_id`. Neither was
stored before, so there is nothing to backfill them from: the next health check fills in
`instagram_scoped_id`, the next connect both.

Plain ADD COLUMN and CREATE INDEX rather than batch_alter_table: on SQLite a batch copies the table
and would drop its expression index on lower(username) again (see 0010).
"""

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

NEW_COLUMNS = ("instagram_scoped_id", "login_user_id")


def upgrade():
    for name in NEW_COLUMNS:
        op.add_column("instagram_connections", sa.Column(name, sa.String(length=64), nullable=True))
        op.create_index(f"ix_instagram_connections_{name}", "instagram_connections", [name], unique=False)
        op.add_column("pending_connections", sa.Column(name, sa.String(length=64), nullable=True))


def downgrade():
    for name in NEW_COLUMNS:
        op.drop_column("pending_connections", name)
        op.drop_index(f"ix_instagram_connections_{name}", table_name="instagram_connections")
        op.drop_column("instagram_connections", name)
