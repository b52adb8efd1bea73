"""audit log refuses truncate

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29 21:30:00.000000

"""

from alembic import op


# revision identifiers, used by Alembic.
revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade():
    # Row triggers (0006) refuse UPDATE and DELETE, but TRUNCATE fires no row trigger: refuse it with a
    # statement trigger, which also fires when another table's TRUNCATE ... CASCADE reaches audit_log.
    # SQLite has no TRUNCATE; its DELETE trigger already covers "DELETE FROM audit_log".
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
            "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()"
        )


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER audit_log_no_truncate ON audit_log")
