"""the ARM API's own state: names clients give jobs, schedules waiting for a job schedule

Revision ID: 0007
Revises: 0005
Create Date: 2026-12-02
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

S = sqlmodel.sql.sqltypes.AutoString
T = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "arm_job_name",
        sa.Column("name", S(length=128), nullable=False),
        sa.Column("job_id", S(length=36), nullable=False),
        sa.Column("request_hash", S(length=64), nullable=False),
        sa.Column("created_at", T(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    with op.batch_alter_table("arm_job_name", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_arm_job_name_job_id"), ["job_id"], unique=True)
    op.create_table(
        "arm_schedule",
        sa.Column("name", S(length=128), nullable=False),
        sa.Column("definition_json", sa.Text(), nullable=False),
        sa.Column("job_schedule_id", S(length=36), nullable=True),
        sa.Column("created_at", T(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    with op.batch_alter_table("arm_schedule", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_arm_schedule_job_schedule_id"), ["job_schedule_id"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("arm_schedule", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_arm_schedule_job_schedule_id"))
    op.drop_table("arm_schedule")
    with op.batch_alter_table("arm_job_name", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_arm_job_name_job_id"))
    op.drop_table("arm_job_name")
