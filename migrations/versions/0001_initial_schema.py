"""Initial schema: experiments, decision log, partitioned observations, rollups, ingest batches.

Revision ID: 0001
Revises:
Create Date: 2026-11-26 19:44:43.390586
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "experiments",
        sa.Column("id", sa.Integer(), sa.Identity(always=False), nullable=False),
        sa.Column("namespace", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("uid", sa.Text(), nullable=True),
        sa.Column(
            "spec",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("settings", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("settings_frozen_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revenue_cap", sa.Double(), nullable=True),
        sa.Column(
            "allowed_lateness_seconds", sa.Integer(), server_default=sa.text("120"), nullable=False
        ),
        sa.Column("analysis_state", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("phase", sa.Text(), server_default=sa.text("'Pending'"), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_experiments")),
        sa.UniqueConstraint("namespace", "name", name=op.f("uq_experiments_namespace_name")),
    )
    op.create_table(
        "ingest_batches",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("batch_key", sa.Text(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("received", sa.Integer(), nullable=False),
        sa.Column("loaded", sa.Integer(), nullable=False),
        sa.Column("rejected", sa.Integer(), nullable=False),
        sa.Column("late", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ingest_batches")),
        sa.UniqueConstraint("batch_key", name=op.f("uq_ingest_batches_batch_key")),
    )
    op.create_table(
        "observations",
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("arm", sa.SmallInteger(), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("unit_id", sa.Text(), nullable=True),
        sa.Column("revenue", sa.Double(), nullable=False),
        sa.Column("latency_ms", sa.Double(), nullable=False),
        sa.Column("error", sa.Boolean(), nullable=False),
        sa.Column("late", sa.Boolean(), nullable=False),
        sa.Column("batch_id", sa.BigInteger(), nullable=False),
        postgresql_partition_by="RANGE (ts)",
    )
    op.create_index(
        op.f("ix_observations_experiment_id_ts"),
        "observations",
        ["experiment_id", "ts"],
        unique=False,
        postgresql_using="brin",
    )
    op.create_table(
        "decisions",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("reason_code", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column(
            "evidence",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("idempotency_key", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiments.id"],
            name=op.f("fk_decisions_experiment_id_experiments"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_decisions")),
        sa.UniqueConstraint(
            "experiment_id",
            "idempotency_key",
            name=op.f("uq_decisions_experiment_id_idempotency_key"),
        ),
    )
    op.create_index(
        op.f("ix_decisions_experiment_id_at"), "decisions", ["experiment_id", "at"], unique=False
    )
    op.create_table(
        "ingest_rejects",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("batch_id", sa.BigInteger(), nullable=False),
        sa.Column("row_number", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("raw", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.ForeignKeyConstraint(
            ["batch_id"],
            ["ingest_batches.id"],
            name=op.f("fk_ingest_rejects_batch_id_ingest_batches"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ingest_rejects")),
    )
    op.create_index(
        op.f("ix_ingest_rejects_batch_id"), "ingest_rejects", ["batch_id"], unique=False
    )
    op.create_table(
        "latency_hour",
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("arm", sa.SmallInteger(), nullable=False),
        sa.Column("period", sa.DateTime(timezone=True), nullable=False),
        sa.Column("bucket", sa.SmallInteger(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiments.id"],
            name=op.f("fk_latency_hour_experiment_id_experiments"),
        ),
        sa.PrimaryKeyConstraint(
            "experiment_id", "arm", "period", "bucket", name=op.f("pk_latency_hour")
        ),
    )
    op.create_table(
        "latency_minute",
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("arm", sa.SmallInteger(), nullable=False),
        sa.Column("period", sa.DateTime(timezone=True), nullable=False),
        sa.Column("bucket", sa.SmallInteger(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiments.id"],
            name=op.f("fk_latency_minute_experiment_id_experiments"),
        ),
        sa.PrimaryKeyConstraint(
            "experiment_id", "arm", "period", "bucket", name=op.f("pk_latency_minute")
        ),
    )
    op.create_table(
        "rollups_hour",
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("arm", sa.SmallInteger(), nullable=False),
        sa.Column("period", sa.DateTime(timezone=True), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.Column("revenue_sum", sa.Numeric(), nullable=False),
        sa.Column("revenue_sum_sq", sa.Numeric(), nullable=False),
        sa.Column("revenue_capped_sum", sa.Numeric(), nullable=False),
        sa.Column("revenue_capped_sum_sq", sa.Numeric(), nullable=False),
        sa.Column("revenue_nonzero", sa.BigInteger(), nullable=False),
        sa.Column("log_latency_sum", sa.Numeric(), nullable=False),
        sa.Column("log_latency_sum_sq", sa.Numeric(), nullable=False),
        sa.Column("errors", sa.BigInteger(), nullable=False),
        sa.Column("late_n", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiments.id"],
            name=op.f("fk_rollups_hour_experiment_id_experiments"),
        ),
        sa.PrimaryKeyConstraint("experiment_id", "arm", "period", name=op.f("pk_rollups_hour")),
    )
    op.create_table(
        "rollups_minute",
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("arm", sa.SmallInteger(), nullable=False),
        sa.Column("period", sa.DateTime(timezone=True), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.Column("revenue_sum", sa.Numeric(), nullable=False),
        sa.Column("revenue_sum_sq", sa.Numeric(), nullable=False),
        sa.Column("revenue_capped_sum", sa.Numeric(), nullable=False),
        sa.Column("revenue_capped_sum_sq", sa.Numeric(), nullable=False),
        sa.Column("revenue_nonzero", sa.BigInteger(), nullable=False),
        sa.Column("log_latency_sum", sa.Numeric(), nullable=False),
        sa.Column("log_latency_sum_sq", sa.Numeric(), nullable=False),
        sa.Column("errors", sa.BigInteger(), nullable=False),
        sa.Column("late_n", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiments.id"],
            name=op.f("fk_rollups_minute_experiment_id_experiments"),
        ),
        sa.PrimaryKeyConstraint("experiment_id", "arm", "period", name=op.f("pk_rollups_minute")),
    )
    op.execute(
        """
        CREATE FUNCTION canaryctl_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER decisions_append_only BEFORE UPDATE OR DELETE ON decisions "
        "FOR EACH ROW EXECUTE FUNCTION canaryctl_refuse_change()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER decisions_append_only ON decisions")
    op.execute("DROP FUNCTION canaryctl_refuse_change()")
    op.drop_table("rollups_minute")
    op.drop_table("rollups_hour")
    op.drop_table("latency_minute")
    op.drop_table("latency_hour")
    op.drop_index(op.f("ix_ingest_rejects_batch_id"), table_name="ingest_rejects")
    op.drop_table("ingest_rejects")
    op.drop_index(op.f("ix_decisions_experiment_id_at"), table_name="decisions")
    op.drop_table("decisions")
    op.drop_index(
        op.f("ix_observations_experiment_id_ts"), table_name="observations", postgresql_using="brin"
    )
    op.drop_table("observations")
    op.drop_table("ingest_batches")
    op.drop_table("experiments")
