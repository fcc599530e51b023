"""runbook runtime: assets, schedules, webhooks, RunAs on worker groups

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

S = sqlmodel.sql.sqltypes.AutoString
T = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    with op.batch_alter_table("worker_group", schema=None) as batch_op:
        batch_op.add_column(sa.Column("run_as_credential", S(length=128), nullable=True))

    op.create_table(
        "asset",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", S(length=16), nullable=False),
        sa.Column("name", S(length=128), nullable=False),
        sa.Column("description", S(length=512), nullable=False),
        sa.Column("encrypted", sa.Boolean(), nullable=False),
        sa.Column("public_json", sa.Text(), nullable=False),
        sa.Column("secret", sa.Text(), nullable=True),
        sa.Column("created_at", T(), nullable=False),
        sa.Column("updated_at", T(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("kind", "name", name="uq_asset_kind_name"),
    )
    op.create_table(
        "schedule",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", S(length=128), nullable=False),
        sa.Column("description", S(length=512), nullable=False),
        sa.Column("runbook_name", S(length=128), nullable=False),
        sa.Column("run_on", S(length=128), nullable=False),
        sa.Column("params_json", sa.Text(), nullable=False),
        sa.Column("frequency", S(length=16), nullable=False),
        sa.Column("interval", sa.Integer(), nullable=False),
        sa.Column("start_time", T(), nullable=False),
        sa.Column("time_zone", S(length=64), nullable=False),
        sa.Column("expiry_time", T(), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("next_run_at", T(), nullable=True),
        sa.Column("last_run_at", T(), nullable=True),
        sa.Column("last_job_id", S(length=36), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", T(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("schedule", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_schedule_name"), ["name"], unique=True)
        batch_op.create_index(batch_op.f("ix_schedule_next_run_at"), ["next_run_at"], unique=False)

    op.create_table(
        "webhook",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", S(length=128), nullable=False),
        sa.Column("runbook_name", S(length=128), nullable=False),
        sa.Column("run_on", S(length=128), nullable=False),
        sa.Column("params_json", sa.Text(), nullable=False),
        sa.Column("token_hash", S(length=128), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("expires_at", T(), nullable=False),
        sa.Column("created_at", T(), nullable=False),
        sa.Column("last_used_at", T(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("webhook", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_webhook_name"), ["name"], unique=True)
        batch_op.create_index(batch_op.f("ix_webhook_token_hash"), ["token_hash"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("webhook", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_webhook_token_hash"))
        batch_op.drop_index(batch_op.f("ix_webhook_name"))
    op.drop_table("webhook")
    with op.batch_alter_table("schedule", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_schedule_next_run_at"))
        batch_op.drop_index(batch_op.f("ix_schedule_name"))
    op.drop_table("schedule")
    op.drop_table("asset")
    with op.batch_alter_table("worker_group", schema=None) as batch_op:
        batch_op.drop_column("run_as_credential")
