"""connections by state and login path: the fleet's counts read one index

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-04 09:00:00.000000

The fleet overview counts connections per state and login path in one GROUP BY. Grouping by state
alone is an index-only scan of (state, state_changed_at); adding login_path made it a scan of the
whole table (7.3 ms became 33 ms at 100,000 shops on bench/fleet.py's data). An index on
(state, login_path) makes it index-only again: 8.8 ms, reading 89 pages where the old count read 114.
"""

from alembic import op

# revision identifiers, used by Alembic.
revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade():
    op.create_index(
        "ix_instagram_connections_state_login_path", "instagram_connections", ["state", "login_path"], unique=False
    )


def downgrade():
    op.drop_index("ix_instagram_connections_state_login_path", table_name="instagram_connections")
