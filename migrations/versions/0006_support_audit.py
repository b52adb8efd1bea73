"""support audit impersonation

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26 08:29:35.403720

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('impersonations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('agent_id', sa.Integer(), nullable=False),
    sa.Column('subject_user_id', sa.Integer(), nullable=False),
    sa.Column('shop_id', sa.Integer(), nullable=False),
    sa.Column('reason', sa.String(length=500), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('ended_reason', sa.String(length=40), nullable=True),
    sa.ForeignKeyConstraint(['agent_id'], ['users.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['subject_user_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('impersonations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_impersonations_agent_id'), ['agent_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_impersonations_shop_id'), ['shop_id'], unique=False)

    op.create_table('audit_log',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor_id', sa.Integer(), nullable=True),
    sa.Column('actor_label', sa.String(length=300), nullable=False),
    sa.Column('action', sa.String(length=80), nullable=False),
    sa.Column('subject_user_id', sa.Integer(), nullable=True),
    sa.Column('subject_shop_id', sa.Integer(), nullable=True),
    sa.Column('impersonation_id', sa.Integer(), nullable=True),
    sa.Column('reason', sa.String(length=500), nullable=True),
    sa.Column('ip_prefix', sa.String(length=48), nullable=True),
    sa.Column('details', sa.String(length=1000), nullable=True),
    sa.ForeignKeyConstraint(['actor_id'], ['users.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['impersonation_id'], ['impersonations.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['subject_shop_id'], ['shops.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['subject_user_id'], ['users.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.create_index('ix_audit_log_actor', ['actor_id', 'occurred_at'], unique=False)
        batch_op.create_index('ix_audit_log_occurred_at', ['occurred_at'], unique=False)
        batch_op.create_index('ix_audit_log_shop', ['subject_shop_id', 'occurred_at'], unique=False)

    with op.batch_alter_table('connection_events', schema=None) as batch_op:
        batch_op.create_index('ix_connection_events_occurred_at', ['occurred_at'], unique=False)

    with op.batch_alter_table('instagram_connections', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_instagram_connections_state'))
        batch_op.create_index('ix_instagram_connections_state_changed', ['state', 'state_changed_at'], unique=False)


    op.create_index('ix_shops_name_lower', 'shops', [sa.text('lower(name)')])
    op.create_index(
        'ix_connection_events_cause_time', 'connection_events', ['occurred_at', 'cause', 'connection_id'],
        postgresql_where=sa.text('cause IS NOT NULL'), sqlite_where=sa.text('cause IS NOT NULL'),
    )
    op.create_index('ix_instagram_connections_username_lower', 'instagram_connections', [sa.text('lower(username)')])
    # The audit log is append-only, enforced by the database itself.
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(
            "CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$"
        )
        op.execute(
            "CREATE TRIGGER audit_log_no_update_or_delete BEFORE UPDATE OR DELETE ON audit_log "
            "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()"
        )
    else:
        for verb in ('UPDATE', 'DELETE'):
            op.execute(
                f"CREATE TRIGGER audit_log_no_{verb.lower()} BEFORE {verb} ON audit_log "
                "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END"
            )

def downgrade():
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("DROP TRIGGER audit_log_no_update_or_delete ON audit_log")
        op.execute("DROP FUNCTION audit_log_append_only()")
    else:
        op.execute("DROP TRIGGER audit_log_no_update")
        op.execute("DROP TRIGGER audit_log_no_delete")
    op.drop_index('ix_instagram_connections_username_lower', table_name='instagram_connections')
    op.drop_index('ix_shops_name_lower', table_name='shops')
    op.drop_index('ix_connection_events_cause_time', table_name='connection_events')
    with op.batch_alter_table('instagram_connections', schema=None) as batch_op:
        batch_op.drop_index('ix_instagram_connections_state_changed')
        batch_op.create_index(batch_op.f('ix_instagram_connections_state'), ['state'], unique=False)

    with op.batch_alter_table('connection_events', schema=None) as batch_op:
        batch_op.drop_index('ix_connection_events_occurred_at')

    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_log_shop')
        batch_op.drop_index('ix_audit_log_occurred_at')
        batch_op.drop_index('ix_audit_log_actor')

    op.drop_table('audit_log')
    with op.batch_alter_table('impersonations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_impersonations_shop_id'))
        batch_op.drop_index(batch_op.f('ix_impersonations_agent_id'))

    op.drop_table('impersonations')
