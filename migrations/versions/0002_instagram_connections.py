"""instagram connections events callbacks sandbox

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 07:36:55.021366

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('meta_callbacks',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('instagram_user_id', sa.String(length=64), nullable=False),
    sa.Column('issued_at', sa.BigInteger(), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('confirmation_code', sa.String(length=32), nullable=True),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('connections_affected', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('confirmation_code'),
    sa.UniqueConstraint('kind', 'instagram_user_id', 'issued_at', name='uq_meta_callbacks_request')
    )
    op.create_table('sandbox_accounts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('instagram_user_id', sa.String(length=32), nullable=False),
    sa.Column('username', sa.String(length=64), nullable=False),
    sa.Column('display_name', sa.String(length=120), nullable=False),
    sa.Column('account_type', sa.String(length=32), nullable=False),
    sa.Column('password_version', sa.Integer(), nullable=False),
    sa.Column('session_generation', sa.Integer(), nullable=False),
    sa.Column('app_authorized', sa.Boolean(), nullable=False),
    sa.Column('checkpointed', sa.Boolean(), nullable=False),
    sa.Column('data_access_expired', sa.Boolean(), nullable=False),
    sa.Column('granted_scopes', sa.String(length=512), nullable=False),
    sa.Column('removed_scopes', sa.String(length=512), nullable=False),
    sa.Column('rate_limited_calls', sa.Integer(), nullable=False),
    sa.Column('outage', sa.Boolean(), nullable=False),
    sa.Column('clock_offset_days', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('instagram_user_id'),
    sa.UniqueConstraint('username')
    )
    op.create_table('sandbox_codes',
    sa.Column('code', sa.String(length=128), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('redirect_uri', sa.Text(), nullable=False),
    sa.Column('scopes', sa.String(length=512), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['sandbox_accounts.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('code')
    )
    op.create_table('sandbox_tokens',
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=10), nullable=False),
    sa.Column('issued_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('password_version', sa.Integer(), nullable=False),
    sa.Column('session_generation', sa.Integer(), nullable=False),
    sa.Column('scopes', sa.String(length=512), nullable=False),
    sa.Column('superseded', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['sandbox_accounts.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('token_hash')
    )
    with op.batch_alter_table('sandbox_tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sandbox_tokens_account_id'), ['account_id'], unique=False)

    op.create_table('instagram_connections',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('shop_id', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=20), nullable=False),
    sa.Column('state_changed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('cause', sa.String(length=40), nullable=True),
    sa.Column('instagram_user_id', sa.String(length=64), nullable=True),
    sa.Column('username', sa.String(length=64), nullable=True),
    sa.Column('display_name', sa.String(length=255), nullable=True),
    sa.Column('profile_picture_url', sa.String(length=1024), nullable=True),
    sa.Column('account_type', sa.String(length=32), nullable=True),
    sa.Column('granted_permissions', sa.String(length=512), nullable=False),
    sa.Column('token_ciphertext', sa.Text(), nullable=True),
    sa.Column('token_fingerprint', sa.String(length=16), nullable=True),
    sa.Column('token_issued_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('token_expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_refreshed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_checked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_error_code', sa.Integer(), nullable=True),
    sa.Column('last_error_subcode', sa.Integer(), nullable=True),
    sa.Column('last_error_message', sa.String(length=1000), nullable=True),
    sa.Column('connected_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('connected_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("state IN ('not_connected', 'healthy', 'expiring', 'degraded', 'needs_reconnect')", name='ck_instagram_connections_state'),
    sa.ForeignKeyConstraint(['connected_by_id'], ['users.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('shop_id')
    )
    with op.batch_alter_table('instagram_connections', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_instagram_connections_instagram_user_id'), ['instagram_user_id'], unique=False)
        batch_op.create_index('ix_instagram_connections_state', ['state'], unique=False)

    op.create_table('pending_connections',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('shop_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('instagram_user_id', sa.String(length=64), nullable=False),
    sa.Column('username', sa.String(length=64), nullable=True),
    sa.Column('profile_json', sa.Text(), nullable=False),
    sa.Column('token_ciphertext', sa.Text(), nullable=False),
    sa.Column('token_expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('pending_connections', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_pending_connections_shop_id'), ['shop_id'], unique=False)

    op.create_table('connection_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('connection_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=40), nullable=False),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor_kind', sa.String(length=16), nullable=False),
    sa.Column('actor_id', sa.Integer(), nullable=True),
    sa.Column('state_after', sa.String(length=20), nullable=True),
    sa.Column('cause', sa.String(length=40), nullable=True),
    sa.Column('meta_code', sa.Integer(), nullable=True),
    sa.Column('meta_subcode', sa.Integer(), nullable=True),
    sa.Column('message', sa.String(length=1000), nullable=False),
    sa.Column('instagram_user_id', sa.String(length=64), nullable=True),
    sa.Column('ip_prefix', sa.String(length=48), nullable=True),
    sa.Column('user_agent_family', sa.String(length=40), nullable=True),
    sa.ForeignKeyConstraint(['connection_id'], ['instagram_connections.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('connection_events', schema=None) as batch_op:
        batch_op.create_index('ix_connection_events_connection_time', ['connection_id', 'occurred_at'], unique=False)



def downgrade():
    with op.batch_alter_table('connection_events', schema=None) as batch_op:
        batch_op.drop_index('ix_connection_events_connection_time')

    op.drop_table('connection_events')
    with op.batch_alter_table('pending_connections', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_pending_connections_shop_id'))

    op.drop_table('pending_connections')
    with op.batch_alter_table('instagram_connections', schema=None) as batch_op:
        batch_op.drop_index('ix_instagram_connections_state')
        batch_op.drop_index(batch_op.f('ix_instagram_connections_instagram_user_id'))

    op.drop_table('instagram_connections')
    with op.batch_alter_table('sandbox_tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sandbox_tokens_account_id'))

    op.drop_table('sandbox_tokens')
    op.drop_table('sandbox_codes')
    op.drop_table('sandbox_accounts')
    op.drop_table('meta_callbacks')
