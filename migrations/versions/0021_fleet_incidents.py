"""fleet incidents: one open row per outage of Meta, and its timeline

Revision ID: 0021
Revises: 0020
Create Date: 2026-11-30 09:00:00.000000

A partial unique index allows one open incident per scope, so several workers deciding at once
open one incident, not one each.
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0021"
down_revision = "0019"  # TEMPORARY for testing in this branch: "0020" once the parallel 0020 lands
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "fleet_incidents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recovering_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("causes", sa.String(length=255), nullable=False),
        sa.Column("failing_at_open", sa.Integer(), nullable=False),
        sa.Column("checked_at_open", sa.Integer(), nullable=False),
        sa.Column("peak_failing", sa.Integer(), nullable=False),
        sa.Column("peak_percent", sa.Integer(), nullable=False),
        sa.Column("shops_touched", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "uq_fleet_incidents_open",
        "fleet_incidents",
        ["scope"],
        unique=True,
        postgresql_where=sa.text("closed_at IS NULL"),
        sqlite_where=sa.text("closed_at IS NULL"),
    )
    op.create_index("ix_fleet_incidents_opened_at", "fleet_incidents", ["opened_at"], unique=False)
    op.create_table(
        "fleet_incident_updates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("checked", sa.Integer(), nullable=False),
        sa.Column("failing", sa.Integer(), nullable=False),
        sa.Column("message", sa.String(length=500), nullable=False),
        sa.ForeignKeyConstraint(["incident_id"], ["fleet_incidents.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_fleet_incident_updates_incident_time",
        "fleet_incident_updates",
        ["incident_id", "occurred_at"],
        unique=False,
    )


def downgrade():
    op.drop_index("ix_fleet_incident_updates_incident_time", table_name="fleet_incident_updates")
    op.drop_table("fleet_incident_updates")
    op.drop_index("ix_fleet_incidents_opened_at", table_name="fleet_incidents")
    op.drop_index("uq_fleet_incidents_open", table_name="fleet_incidents")
    op.drop_table("fleet_incidents")
