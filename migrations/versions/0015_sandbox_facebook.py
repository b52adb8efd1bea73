"""sandbox facebook: users, pages, codes and tokens

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03 09:00:00.000000

The sandbox's Facebook side (issue 15, part 5): pretend Facebook users with Pages, each Page with
the user's tasks on it and a linked (or unlinked) Instagram Business account.
"""

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "sandbox_facebook_users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("facebook_user_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("password_version", sa.Integer(), nullable=False),
        sa.Column("app_authorized", sa.Boolean(), nullable=False),
        sa.Column("checkpointed", sa.Boolean(), nullable=False),
        sa.Column("granted_scopes", sa.String(length=512), nullable=False),
        sa.Column("granted_page_ids", sa.String(length=512), nullable=False),
        sa.Column("data_access_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("facebook_user_id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "sandbox_facebook_pages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("page_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("tasks", sa.String(length=120), nullable=False),
        sa.Column("published", sa.Boolean(), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("instagram_account_id", sa.String(length=32), nullable=True),
        sa.Column("instagram_username", sa.String(length=64), nullable=True),
        sa.Column("instagram_linked", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["sandbox_facebook_users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("page_id"),
    )
    op.create_index("ix_sandbox_facebook_pages_user_id", "sandbox_facebook_pages", ["user_id"], unique=False)
    op.create_table(
        "sandbox_facebook_codes",
        sa.Column("code", sa.String(length=256), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("redirect_uri", sa.Text(), nullable=False),
        sa.Column("scopes", sa.String(length=512), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["sandbox_facebook_users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("code"),
    )
    op.create_table(
        "sandbox_facebook_tokens",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("page_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("password_version", sa.Integer(), nullable=False),
        sa.Column("scopes", sa.String(length=512), nullable=False),
        sa.ForeignKeyConstraint(["page_id"], ["sandbox_facebook_pages.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["sandbox_facebook_users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("token_hash"),
    )
    op.create_index("ix_sandbox_facebook_tokens_user_id", "sandbox_facebook_tokens", ["user_id"], unique=False)


def downgrade():
    op.drop_index("ix_sandbox_facebook_tokens_user_id", table_name="sandbox_facebook_tokens")
    op.drop_table("sandbox_facebook_tokens")
    op.drop_table("sandbox_facebook_codes")
    op.drop_index("ix_sandbox_facebook_pages_user_id", table_name="sandbox_facebook_pages")
    op.drop_table("sandbox_facebook_pages")
    op.drop_table("sandbox_facebook_users")
