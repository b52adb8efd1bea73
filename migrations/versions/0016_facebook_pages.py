"""facebook pages: the picked Page, the merchant's tasks on it, the user token, and logins awaiting a pick

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03 09:00:00.000000

A Facebook Login connection keeps the Page the merchant picked (id, name, the merchant's tasks on
it) and the long-lived Facebook user token, encrypted, beside the Page token in token_ciphertext.
A login that came back with Pages to choose from waits in pending_facebook_logins for the pick.

instagram_connections gets plain ADD COLUMN and CREATE INDEX (see 0014 for why not a batch).
"""

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("instagram_connections", sa.Column("facebook_page_id", sa.String(length=64), nullable=True))
    op.add_column("instagram_connections", sa.Column("facebook_page_name", sa.String(length=255), nullable=True))
    op.add_column(
        "instagram_connections",
        sa.Column("facebook_page_tasks", sa.String(length=255), nullable=False, server_default=""),
    )
    op.add_column("instagram_connections", sa.Column("user_token_ciphertext", sa.Text(), nullable=True))
    op.add_column("instagram_connections", sa.Column("user_token_expires_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "ix_instagram_connections_facebook_page_id", "instagram_connections", ["facebook_page_id"], unique=False
    )
    op.create_table(
        "pending_facebook_logins",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("shop_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("facebook_user_id", sa.String(length=64), nullable=True),
        sa.Column("pages_json", sa.Text(), nullable=False),
        sa.Column("secrets_ciphertext", sa.Text(), nullable=False),
        sa.Column("granted_permissions", sa.String(length=512), nullable=False),
        sa.Column("user_token_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("data_access_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["shop_id"], ["shops.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_pending_facebook_logins_shop_id", "pending_facebook_logins", ["shop_id"], unique=False)
    op.create_index(
        "ix_pending_facebook_logins_facebook_user_id", "pending_facebook_logins", ["facebook_user_id"], unique=False
    )


def downgrade():
    op.drop_index("ix_pending_facebook_logins_facebook_user_id", table_name="pending_facebook_logins")
    op.drop_index("ix_pending_facebook_logins_shop_id", table_name="pending_facebook_logins")
    op.drop_table("pending_facebook_logins")
    op.drop_index("ix_instagram_connections_facebook_page_id", table_name="instagram_connections")
    for column in (
        "user_token_expires_at",
        "user_token_ciphertext",
        "facebook_page_tasks",
        "facebook_page_name",
        "facebook_page_id",
    ):
        op.drop_column("instagram_connections", column)
