"""SQLAlchemy 2 models of canaryctl's store; every change ships with an Alembic revision.

This module only declares tables. Queries live in the sibling modules (one per table
group), bulk loading in ``controller.ingest``; neither belongs here. ``canaryctl db
check`` fails when these models and the revisions in ``migrations/`` drift apart.

Observations are range-partitioned by event time (one partition per UTC day, created on
demand by ``controller.storage.partitions``); rollups hold exact per-minute and per-hour
sufficient statistics that every test reads, and are kept in step with the raw rows in
the same transaction that loads them.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Double,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    Numeric,
    SmallInteger,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: Arms as stored (smallint): the champion is arm 0, the challenger arm 1.
ARM_CODES = {"champion": 0, "challenger": 1}
ARM_NAMES = {code: name for name, code in ARM_CODES.items()}

#: Observations' partitions are named with this prefix and the day: observations_p20261126.
PARTITION_PREFIX = "observations_p"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JSONB}


def _tz() -> DateTime:
    return DateTime(timezone=True)


class Experiment(Base):
    """One canary experiment, keyed ``namespace/name``, with its frozen analysis settings."""

    __tablename__ = "experiments"
    __table_args__ = (UniqueConstraint("namespace", "name"),)

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    namespace: Mapped[str] = mapped_column(Text)
    name: Mapped[str] = mapped_column(Text)
    uid: Mapped[str | None] = mapped_column(Text)
    spec: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    settings: Mapped[dict[str, Any] | None]
    settings_frozen_at: Mapped[datetime | None] = mapped_column(_tz())
    revenue_cap: Mapped[float | None] = mapped_column(Double)
    allowed_lateness_seconds: Mapped[int] = mapped_column(Integer, server_default=text("120"))
    analysis_state: Mapped[dict[str, Any] | None]
    phase: Mapped[str] = mapped_column(Text, server_default=text("'Pending'"))
    created_at: Mapped[datetime] = mapped_column(_tz(), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(_tz(), server_default=func.now())

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


class Decision(Base):
    """Append-only log of every weight change, verdict, pause, promotion and rollback.

    A trigger created by the migrations refuses UPDATE and DELETE on this table.
    ``idempotency_key`` makes a replayed transition (an operator restarted after deciding)
    write its row once.
    """

    __tablename__ = "decisions"
    __table_args__ = (
        UniqueConstraint("experiment_id", "idempotency_key"),
        Index(None, "experiment_id", "at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id"))
    at: Mapped[datetime] = mapped_column(_tz())
    kind: Mapped[str] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(Text)
    reason_code: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    evidence: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    idempotency_key: Mapped[str | None] = mapped_column(Text)


class Observation(Base):
    """One request outcome. Range-partitioned by ``ts``; no primary key (append-only log)."""

    __tablename__ = "observations"
    __table_args__ = (
        Index(None, "experiment_id", "ts", postgresql_using="brin"),
        {"postgresql_partition_by": "RANGE (ts)"},
    )
    __mapper_args__ = {"primary_key": ["experiment_id", "ts"]}

    experiment_id: Mapped[int] = mapped_column(Integer)
    arm: Mapped[int] = mapped_column(SmallInteger)
    ts: Mapped[datetime] = mapped_column(_tz())
    unit_id: Mapped[str | None] = mapped_column(Text)
    revenue: Mapped[float] = mapped_column(Double)
    latency_ms: Mapped[float] = mapped_column(Double)
    error: Mapped[bool] = mapped_column(Boolean)
    late: Mapped[bool] = mapped_column(Boolean)
    batch_id: Mapped[int] = mapped_column(BigInteger)


class _RollupMixin:
    """Exact sufficient statistics of one experiment, arm and period (minute or hour)."""

    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id"), primary_key=True)
    arm: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    period: Mapped[datetime] = mapped_column(_tz(), primary_key=True)
    n: Mapped[int] = mapped_column(BigInteger)
    revenue_sum: Mapped[Decimal] = mapped_column(Numeric)
    revenue_sum_sq: Mapped[Decimal] = mapped_column(Numeric)
    revenue_capped_sum: Mapped[Decimal] = mapped_column(Numeric)
    revenue_capped_sum_sq: Mapped[Decimal] = mapped_column(Numeric)
    revenue_nonzero: Mapped[int] = mapped_column(BigInteger)
    log_latency_sum: Mapped[Decimal] = mapped_column(Numeric)
    log_latency_sum_sq: Mapped[Decimal] = mapped_column(Numeric)
    errors: Mapped[int] = mapped_column(BigInteger)
    late_n: Mapped[int] = mapped_column(BigInteger)


class MinuteRollup(_RollupMixin, Base):
    __tablename__ = "rollups_minute"


class HourRollup(_RollupMixin, Base):
    __tablename__ = "rollups_hour"


class _LatencyMixin:
    """Sparse latency histogram: the count of one bucket (see ``analysis.buckets``)."""

    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id"), primary_key=True)
    arm: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    period: Mapped[datetime] = mapped_column(_tz(), primary_key=True)
    bucket: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger)


class MinuteLatency(_LatencyMixin, Base):
    __tablename__ = "latency_minute"


class HourLatency(_LatencyMixin, Base):
    __tablename__ = "latency_hour"


class IngestBatch(Base):
    """One delivered batch; its key makes a second delivery a no-op."""

    __tablename__ = "ingest_batches"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    batch_key: Mapped[str] = mapped_column(Text, unique=True)
    source: Mapped[str] = mapped_column(Text)
    received: Mapped[int] = mapped_column(Integer)
    loaded: Mapped[int] = mapped_column(Integer)
    rejected: Mapped[int] = mapped_column(Integer)
    late: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(_tz())
    # SHA-256 of the batch's rows: the same id with another body is a conflict (NULL: stored before 0003)
    content_hash: Mapped[str | None] = mapped_column(Text)


class IngestReject(Base):
    """A row refused at ingestion, kept with its reason (nothing is silently dropped)."""

    __tablename__ = "ingest_rejects"
    __table_args__ = (Index(None, "batch_id"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("ingest_batches.id"))
    row_number: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text)
    raw: Mapped[dict[str, Any]]


class RevenueTop(Base):
    """The largest revenue values of one pre-aggregated cell (``controller.ingest.aggregates``).

    A cell brings sums, not rows; these values stand in for its raw rows where sums cannot:
    the baseline's revenue quantile (``rollups.revenue_quantile``) and capping a cell stored
    before the cap was frozen (``rollups.apply_cap``). ``capped_at`` is the cap its capped
    sums were computed with (NULL: they are the uncapped sums). ``revenues`` run from the
    largest down; when they are fewer than ``n`` the cell's other values are at most the
    last of them.
    """

    __tablename__ = "revenue_tops"
    __table_args__ = (Index(None, "experiment_id", "arm", "period"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("ingest_batches.id"))
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id"))
    arm: Mapped[int] = mapped_column(SmallInteger)
    period: Mapped[datetime] = mapped_column(_tz())
    n: Mapped[int] = mapped_column(BigInteger)
    capped_at: Mapped[float | None] = mapped_column(Double)
    revenues: Mapped[list[float]] = mapped_column(ARRAY(Double))


class Look(Base):
    """What the analysis showed at one look, one row per finalised minute (the latest look).

    The reports draw their time series from these rows, so they show exactly what the
    controller saw when it decided.
    """

    __tablename__ = "looks"

    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id"), primary_key=True)
    evaluated_until: Mapped[datetime] = mapped_column(_tz(), primary_key=True)
    at: Mapped[datetime] = mapped_column(_tz())
    step_index: Mapped[int] = mapped_column(Integer)
    challenger_weight: Mapped[int] = mapped_column(Integer)
    verdict: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any]]
