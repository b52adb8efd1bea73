"""connection version fences every writer

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29 20:40:00.000000

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade():
    # The worker's fencing token becomes the row's version: every writer moves it, so a write-back
    # from a refresh that started before a disconnect, a callback or a key rotation changes nothing.
    with op.batch_alter_table('instagram_connections') as batch_op:
        batch_op.alter_column('lease_version', new_column_name='version')


def downgrade():
    with op.batch_alter_table('instagram_connections') as batch_op:
        batch_op.alter_column('version', new_column_name='lease_version')
