"""runbook limits: a runbook's resource limits, and the snapshot a job takes of them

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runbook", schema=None) as batch_op:
        batch_op.add_column(sa.Column("limits_json", sa.Text(), nullable=True))
    with op.batch_alter_table("job", schema=None) as batch_op:
        batch_op.add_column(sa.Column("limits_json", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("job", schema=None) as batch_op:
        batch_op.drop_column("limits_json")
    with op.batch_alter_table("runbook", schema=None) as batch_op:
        batch_op.drop_column("limits_json")
