"""mail claims carry a token

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29 22:10:00.000000

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade():
    # Each claim on a mail writes a new token; a sender records its outcome only while the token is
    # still its own, so a sender whose claim was taken over changes nothing (promise 37).
    with op.batch_alter_table("outbound_mails") as batch_op:
        batch_op.add_column(sa.Column("claim_token", sa.String(length=32), nullable=True))


def downgrade():
    with op.batch_alter_table("outbound_mails") as batch_op:
        batch_op.drop_column("claim_token")
