"""facebook identity: the Facebook user behind a Facebook Login connection; callbacks per app

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02 09:00:00.000000

A connection made through Facebook Login for Business keeps the app-scoped id of the Facebook user
who connected it: the id the Facebook app's deauthorize and data-deletion callbacks carry. Nothing
to backfill: no connection has come through Facebook Login yet.

Meta's callbacks now come from two apps whose user ids are separate numbering schemes, so each
callback records its app (`login_path`) and is unique per app: the same id and second from the
other app is another person's request, not a repeat.

instagram_connections gets plain ADD COLUMN and CREATE INDEX: on SQLite a batch copies the table and
would drop its expression index on lower(username) again (see 0010). meta_callbacks has no such
index, and replacing its unique constraint on SQLite takes the batch copy.
"""

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("instagram_connections", sa.Column("facebook_user_id", sa.String(length=64), nullable=True))
    op.create_index(
        "ix_instagram_connections_facebook_user_id", "instagram_connections", ["facebook_user_id"], unique=False
    )
    op.add_column(
        "meta_callbacks",
        sa.Column("login_path", sa.String(length=16), nullable=False, server_default="instagram"),
    )
    with op.batch_alter_table("meta_callbacks") as batch_op:
        batch_op.drop_constraint("uq_meta_callbacks_request", type_="unique")
        batch_op.create_unique_constraint(
            "uq_meta_callbacks_request", ["login_path", "kind", "instagram_user_id", "issued_at"]
        )


def downgrade():
    op.execute("DELETE FROM meta_callbacks WHERE login_path <> 'instagram'")
    with op.batch_alter_table("meta_callbacks") as batch_op:
        batch_op.drop_constraint("uq_meta_callbacks_request", type_="unique")
        batch_op.create_unique_constraint("uq_meta_callbacks_request", ["kind", "instagram_user_id", "issued_at"])
        batch_op.drop_column("login_path")
    op.drop_index("ix_instagram_connections_facebook_user_id", table_name="instagram_connections")
    op.drop_column("instagram_connections", "facebook_user_id")
