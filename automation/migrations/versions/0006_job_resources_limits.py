"""job resources, group limits, runtime environments

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


S = sqlmodel.sql.sqltypes.AutoString
T = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    with op.batch_alter_table("job", schema=None) as batch_op:
        batch_op.add_column(sa.Column("resources_json", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("runtime_json", sa.Text(), nullable=True))
    with op.batch_alter_table("worker_group", schema=None) as batch_op:
        batch_op.add_column(sa.Column("limits_json", sa.Text(), nullable=True))
    with op.batch_alter_table("runbook", schema=None) as batch_op:
        batch_op.add_column(sa.Column("runtime_environment", S(length=128), nullable=True))
    op.create_table(
        "runtime_environment",
        sa.Column("name", S(length=128), nullable=False),
        sa.Column("python", S(length=16), nullable=True),
        sa.Column("requirements", sa.Text(), nullable=False),
        sa.Column("description", S(length=512), nullable=False),
        sa.Column("created_at", T(), nullable=False),
        sa.Column("updated_at", T(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("runtime_environment")
    with op.batch_alter_table("runbook", schema=None) as batch_op:
        batch_op.drop_column("runtime_environment")
    with op.batch_alter_table("worker_group", schema=None) as batch_op:
        batch_op.drop_column("limits_json")
    with op.batch_alter_table("job", schema=None) as batch_op:
        batch_op.drop_column("runtime_json")
        batch_op.drop_column("resources_json")
