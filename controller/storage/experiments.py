"""The ``experiments`` table: registration, lookup, the frozen settings and the phase.

The operator registers each Experiment it ticks and freezes its analysis settings once;
the CLI, the reports and the demo look experiments up by ``namespace/name``. Every function
takes a connection and runs inside the caller's transaction: it never begins, commits or
rolls back (the caller owns the unit of work). What ingest needs of an experiment (its
allowed lateness and revenue cap) is written here and read by ``controller.ingest``; both
follow the *frozen* settings once they exist, never a later edit of the live spec.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

from controller.storage import models, rollups

DEFAULT_NAMESPACE = "default"


class UnknownExperimentError(LookupError):
    """No experiment is registered under that key."""


class SettingsFrozenError(RuntimeError):
    """The experiment's analysis settings were frozen already and differ from the new ones."""


def parse_key(key: str) -> tuple[str, str]:
    """Split ``namespace/name`` (a bare name means namespace ``default``)."""
    key = key.strip()
    namespace, sep, name = key.partition("/")
    if not sep:
        namespace, name = DEFAULT_NAMESPACE, namespace
    if not namespace or not name or "/" in name:
        raise ValueError(f"experiment key {key!r} is not of the form namespace/name")
    return namespace, name


def _check_lateness(seconds: int | None) -> None:
    if seconds is not None and seconds < 0:
        raise ValueError(f"allowed_lateness_seconds: must be ≥ 0 (got {seconds})")


def register_experiment(
    conn: sa.Connection,
    key: str,
    *,
    uid: str | None = None,
    spec: Mapping[str, Any] | None = None,
    allowed_lateness_seconds: int | None = None,
) -> int:
    """Register ``namespace/name`` (idempotent) and return its id.

    Given a ``spec``, it replaces the stored one. A lateness is recorded only while the
    settings are not frozen: once frozen, ingest keeps the frozen lateness whatever a later
    registration (an operator restart after an edit of the spec) passes. An Experiment
    deleted and created again under the same name is a new experiment: when ``uid`` differs
    from the stored one, the old row is kept under ``name@<old uid>`` (its decisions,
    rollups and looks stay with it, so its report can still be read) and a fresh row is
    registered.
    """
    _check_lateness(allowed_lateness_seconds)
    namespace, name = parse_key(key)
    table = models.Experiment
    found = conn.execute(
        sa.select(table.id, table.uid, table.settings_frozen_at)
        .where(table.namespace == namespace, table.name == name)
        .with_for_update()
    ).first()
    if found is not None and uid is not None and found.uid is not None and found.uid != uid:
        conn.execute(
            sa.update(table).where(table.id == found.id).values(name=f"{name}@{found.uid}")
        )
        found = None
    values: dict[str, Any] = {}
    if uid is not None:
        values["uid"] = uid
    if spec is not None:
        values["spec"] = dict(spec)
    frozen = found is not None and found.settings_frozen_at is not None
    if allowed_lateness_seconds is not None and not frozen:
        values["allowed_lateness_seconds"] = allowed_lateness_seconds
    if found is not None:
        conn.execute(
            sa.update(table).where(table.id == found.id).values(updated_at=sa.func.now(), **values)
        )
        return int(found.id)
    return int(
        conn.execute(
            sa.insert(table).values(namespace=namespace, name=name, **values).returning(table.id)
        ).scalar_one()
    )


def get_experiment(conn: sa.Connection, key: str) -> models.Experiment:
    """The experiment row for ``key`` (a detached snapshot), or ``UnknownExperimentError``."""
    namespace, name = parse_key(key)
    with Session(bind=conn) as session:
        exp = session.scalars(
            sa.select(models.Experiment).where(
                models.Experiment.namespace == namespace, models.Experiment.name == name
            )
        ).first()
        if exp is None:
            raise UnknownExperimentError(f"experiment {namespace}/{name} is not registered")
        session.expunge(exp)
    return exp


def experiment_id(conn: sa.Connection, key: str) -> int:
    """The id of the experiment registered as ``key``, or ``UnknownExperimentError``."""
    namespace, name = parse_key(key)
    found = conn.execute(
        sa.select(models.Experiment.id).where(
            models.Experiment.namespace == namespace, models.Experiment.name == name
        )
    ).scalar()
    if found is None:
        raise UnknownExperimentError(f"experiment {namespace}/{name} is not registered")
    return int(found)


def freeze_settings(
    conn: sa.Connection,
    key: str,
    settings: Mapping[str, Any],
    *,
    now: datetime,
    revenue_cap: float | None,
    allowed_lateness_seconds: int,
) -> bool:
    """Freeze the analysis settings once; return True when this call froze them.

    ``revenue_cap`` and ``allowed_lateness_seconds`` are the values the frozen ``settings``
    hold; from now on ingest caps revenue and flags late rows with them. Freezing the same
    settings again is a no-op; different ones raise ``SettingsFrozenError``. Setting a
    revenue cap rebuilds the experiment's rollups from its raw observations, so every
    capped sum uses the frozen cap.
    """
    if revenue_cap is not None and not (np.isfinite(revenue_cap) and revenue_cap > 0):
        raise ValueError(f"revenue_cap: must be a positive finite number (got {revenue_cap})")
    _check_lateness(allowed_lateness_seconds)
    snapshot = dict(settings)  # stored as given: the one codec of the frozen settings
    exp = conn.execute(
        sa.select(
            models.Experiment.id,
            models.Experiment.namespace,
            models.Experiment.name,
            models.Experiment.settings,
            models.Experiment.settings_frozen_at,
        )
        .where(models.Experiment.id == experiment_id(conn, key))
        .with_for_update()
    ).one()
    if exp.settings_frozen_at is not None:
        if exp.settings != snapshot:
            raise SettingsFrozenError(
                f"experiment {exp.namespace}/{exp.name}: analysis settings were frozen at "
                f"{exp.settings_frozen_at.isoformat()} and cannot change"
            )
        return False
    conn.execute(
        sa.update(models.Experiment)
        .where(models.Experiment.id == exp.id)
        .values(
            settings=snapshot,
            settings_frozen_at=now,
            revenue_cap=revenue_cap,
            allowed_lateness_seconds=allowed_lateness_seconds,
            updated_at=now,
        )
    )
    if revenue_cap is not None:
        rollups.apply_cap(conn, exp.id, revenue_cap)
    return True


def set_phase(conn: sa.Connection, exp_id: int, phase: str, *, now: datetime) -> None:
    """Record the experiment's phase (the status is the source of truth; this is its copy)."""
    conn.execute(
        sa.update(models.Experiment)
        .where(models.Experiment.id == exp_id)
        .values(phase=phase, updated_at=now)
    )
