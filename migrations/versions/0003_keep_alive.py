"""keep alive schedule leases ticks

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 07:50:03.761170

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('rate_limit_pauses',
    sa.Column('scope', sa.String(length=32), nullable=False),
    sa.Column('until', sa.DateTime(timezone=True), nullable=False),
    sa.Column('reason', sa.String(length=255), nullable=False),
    sa.PrimaryKeyConstraint('scope')
    )
    op.create_table('scheduler_ticks',
    sa.Column('tick_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('owner', sa.String(length=64), nullable=False),
    sa.Column('ran_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expired', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('tick_at')
    )
    op.create_table('worker_processes',
    sa.Column('owner', sa.String(length=64), nullable=False),
    sa.Column('hostname', sa.String(length=255), nullable=False),
    sa.Column('pid', sa.Integer(), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('owner')
    )
    with op.batch_alter_table('instagram_connections', schema=None) as batch_op:
        batch_op.add_column(sa.Column('refresh_due_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('check_due_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('retry_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('due_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('paused_until', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('lease_owner', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('lease_expires_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('lease_version', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('consecutive_failures', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('failure_days', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('last_failure_on', sa.String(length=10), nullable=True))
        batch_op.add_column(sa.Column('failing_since', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('last_check_ok', sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column('last_refresh_attempt_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('last_refresh_error', sa.String(length=500), nullable=True))
        batch_op.add_column(sa.Column('refresh_failures', sa.Integer(), nullable=False, server_default='0'))
        batch_op.create_index('ix_instagram_connections_due_at', ['due_at'], unique=False)



def downgrade():
    with op.batch_alter_table('instagram_connections', schema=None) as batch_op:
        batch_op.drop_index('ix_instagram_connections_due_at')
        batch_op.drop_column('refresh_failures')
        batch_op.drop_column('last_refresh_error')
        batch_op.drop_column('last_refresh_attempt_at')
        batch_op.drop_column('last_check_ok')
        batch_op.drop_column('failing_since')
        batch_op.drop_column('last_failure_on')
        batch_op.drop_column('failure_days')
        batch_op.drop_column('consecutive_failures')
        batch_op.drop_column('lease_version')
        batch_op.drop_column('lease_expires_at')
        batch_op.drop_column('lease_owner')
        batch_op.drop_column('paused_until')
        batch_op.drop_column('due_at')
        batch_op.drop_column('retry_at')
        batch_op.drop_column('check_due_at')
        batch_op.drop_column('refresh_due_at')

    op.drop_table('worker_processes')
    op.drop_table('scheduler_ticks')
    op.drop_table('rate_limit_pauses')
