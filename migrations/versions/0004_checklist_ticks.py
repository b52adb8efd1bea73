"""checklist ticks

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 08:12:33.594086

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('checklist_ticks',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('connection_id', sa.Integer(), nullable=False),
    sa.Column('incident_key', sa.String(length=40), nullable=False),
    sa.Column('item', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('ticked_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['connection_id'], ['instagram_connections.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('connection_id', 'incident_key', 'item', name='uq_checklist_ticks_item')
    )
    with op.batch_alter_table('checklist_ticks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_checklist_ticks_connection_id'), ['connection_id'], unique=False)



def downgrade():
    with op.batch_alter_table('checklist_ticks', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_checklist_ticks_connection_id'))

    op.drop_table('checklist_ticks')
