"""job resources and group limits: what a job consumed, the limits its group sets

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("job", schema=None) as batch_op:
        batch_op.add_column(sa.Column("resources_json", sa.Text(), nullable=True))
    with op.batch_alter_table("worker_group", schema=None) as batch_op:
        batch_op.add_column(sa.Column("limits_json", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("worker_group", schema=None) as batch_op:
        batch_op.drop_column("limits_json")
    with op.batch_alter_table("job", schema=None) as batch_op:
        batch_op.drop_column("resources_json")
