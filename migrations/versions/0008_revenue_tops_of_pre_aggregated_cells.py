"""Pre-aggregated cells keep their largest revenue values: the baseline's cap and late capping.

Revision ID: 0008
Revises: 0003
Create Date: 2026-12-01 14:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "revenue_tops",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("batch_id", sa.BigInteger(), nullable=False),
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("arm", sa.SmallInteger(), nullable=False),
        sa.Column("period", sa.DateTime(timezone=True), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.Column("capped_at", sa.Double(), nullable=True),
        sa.Column("revenues", postgresql.ARRAY(sa.Double()), nullable=False),
        sa.ForeignKeyConstraint(
            ["batch_id"],
            ["ingest_batches.id"],
            name=op.f("fk_revenue_tops_batch_id_ingest_batches"),
        ),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiments.id"],
            name=op.f("fk_revenue_tops_experiment_id_experiments"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_revenue_tops")),
    )
    op.create_index(
        op.f("ix_revenue_tops_experiment_id_arm_period"),
        "revenue_tops",
        ["experiment_id", "arm", "period"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_revenue_tops_experiment_id_arm_period"), table_name="revenue_tops")
    op.drop_table("revenue_tops")
