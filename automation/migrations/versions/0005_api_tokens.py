"""named API tokens with roles

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

S = sqlmodel.sql.sqltypes.AutoString
T = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "api_token",
        sa.Column("name", S(length=128), nullable=False),
        sa.Column("role", S(length=16), nullable=False),
        sa.Column("groups_json", sa.Text(), nullable=True),
        sa.Column("token_hash", S(length=64), nullable=False),
        sa.Column("created_at", T(), nullable=False),
        sa.Column("expires_at", T(), nullable=True),
        sa.Column("created_by", S(length=128), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    with op.batch_alter_table("api_token", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_api_token_token_hash"), ["token_hash"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("api_token", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_api_token_token_hash"))
    op.drop_table("api_token")
