"""Looks: what the analysis showed at every finalised minute, for the reports.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 20:21:24.972850
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "looks",
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("evaluated_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("step_index", sa.Integer(), nullable=False),
        sa.Column("challenger_weight", sa.Integer(), nullable=False),
        sa.Column("verdict", sa.Text(), nullable=False),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.ForeignKeyConstraint(
            ["experiment_id"], ["experiments.id"], name=op.f("fk_looks_experiment_id_experiments")
        ),
        sa.PrimaryKeyConstraint("experiment_id", "evaluated_until", name=op.f("pk_looks")),
    )


def downgrade() -> None:
    op.drop_table("looks")
