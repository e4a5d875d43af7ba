"""The decision log: one append-only row per transition, with the evidence it was taken on.

The executor appends a row for every decision of a plan (an idempotency key makes a
replayed transition write it once); the reports and the CLI read the log back. A trigger
installed by the migrations refuses UPDATE and DELETE on the table. Both functions run in
the caller's transaction and never commit.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from controller.storage import models


def append_decision(
    conn: sa.Connection,
    exp_id: int,
    *,
    at: datetime,
    kind: str,
    actor: str,
    reason_code: str,
    reason: str,
    evidence: Mapping[str, Any] | None = None,
    idempotency_key: str | None = None,
) -> int | None:
    """Append one decision; with an ``idempotency_key`` already logged, write nothing (None)."""
    stmt = (
        pg_insert(models.Decision)
        .values(
            experiment_id=exp_id,
            at=at,
            kind=kind,
            actor=actor,
            reason_code=reason_code,
            reason=reason,
            evidence=dict(evidence or {}),
            idempotency_key=idempotency_key,
        )
        .on_conflict_do_nothing(index_elements=["experiment_id", "idempotency_key"])
        .returning(models.Decision.id)
    )
    found = conn.execute(stmt).scalar()
    return None if found is None else int(found)


def decisions(conn: sa.Connection, exp_id: int) -> list[models.Decision]:
    """The decision log of one experiment, oldest first (detached rows)."""
    with Session(bind=conn) as session:
        rows = list(
            session.scalars(
                sa.select(models.Decision)
                .where(models.Decision.experiment_id == exp_id)
                .order_by(models.Decision.at, models.Decision.id)
            )
        )
        session.expunge_all()
    return rows
