"""Loading pre-aggregated cells: validated cells → the same rollups raw rows feed, in one transaction.

The cells' path (``canaryctl ingest cells``, ``POST /v1/cells``, the reference Spark job)
gives the guarantees of the raw path (``load``): the batch id is recorded with a digest of
the content (``cells.digest``), so a second delivery loads nothing and another body under
the same id is a ``load.BatchConflict``; bad cells are quarantined in ``ingest_rejects``
with their reason while the others load (``loaded + rejected = received``, counted in
cells); late cells are flagged with the raw rows' rule. Good cells are added to
``rollups_minute``/``rollups_hour`` and the latency histograms by ``aggregate.upsert_groups``,
the raw path's own upsert, and their largest revenue values are kept in ``revenue_tops``.

Validation runs inside the batch's transaction, after the batch's experiments are
share-locked: capping depends on the frozen cap, which freezing changes under a row lock,
so a batch either commits before a freeze (whose ``apply_cap`` then caps its cells) or sees
the frozen cap. This module reads no clock of its own (``clock`` is passed in).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import sqlalchemy as sa

from controller.clock import SYSTEM_CLOCK, Clock
from controller.ingest import aggregate, cells, load, validate
from controller.storage import rollups


def _locked_registry(conn: sa.Connection, table: pa.Table) -> dict[str, validate.ExperimentInfo]:
    """The registry, with the batch's experiments share-locked and read inside the transaction."""
    reg = load.registry(conn)
    if "experiment" not in table.column_names:
        return reg
    keys, _ = validate._experiment_keys(table["experiment"])
    ids = sorted({reg[k].id for k in keys if k and k in reg})
    if ids:
        conn.execute(
            sa.text("SELECT id FROM experiments WHERE id = ANY(:ids) ORDER BY id FOR SHARE"),
            {"ids": ids},
        )
        reg = load.registry(conn)  # the cap and lateness as of the lock
    return reg


def load_cells(
    engine: sa.Engine,
    table: pa.Table,
    *,
    batch_key: str,
    source: str,
    clock: Clock = SYSTEM_CLOCK,
    future_tolerance: timedelta = timedelta(minutes=5),
) -> load.IngestResult:
    """Validate and load one batch of cells in a transaction of its own.

    Returns the counts in cells (``late``: cells whose minute had closed). Raises
    ``validate.BatchRefused`` for a batch unusable as a whole and ``load.BatchConflict``
    for a known id with another body; either way nothing is written.
    """
    if not batch_key:
        raise ValueError("batch_key: every batch needs a non-empty id")
    now = clock.now().astimezone(UTC)
    digest = cells.digest(table)
    with engine.connect() as conn:
        done = load._stored_result(conn, batch_key, digest)
        if done is not None:
            return done
    with engine.begin() as conn:
        reg = _locked_registry(conn, table)
        prepared = cells.prepare(table, reg, now=now, future_tolerance=future_tolerance)
        batch_id = load.claim_batch(
            conn,
            batch_key,
            digest,
            source,
            now,
            received=prepared.received,
            loaded=prepared.loaded,
            rejected=len(prepared.rejects),
            late=int(prepared.late.sum()),
        )
        if isinstance(batch_id, load.IngestResult):  # delivered concurrently, committed first
            return batch_id
        raw = conn.connection.driver_connection
        if prepared.loaded:
            _upsert(raw, prepared)
            _store_tops(raw, prepared, batch_id)
        if prepared.rejects:
            load._store_rejects(raw, table, prepared.rejects, prepared.rejects, batch_id)
    return load.IngestResult(
        batch_key,
        prepared.received,
        prepared.loaded,
        len(prepared.rejects),
        int(prepared.late.sum()),
        False,
        tuple(prepared.rejects),
    )


def _upsert(raw: Any, prepared: cells.Cells) -> None:
    """Add the cells to the rollups; cells of one experiment, arm and minute are summed first."""
    key = aggregate.group_key(prepared.experiment_id, prepared.arm, prepared.minute)
    keys, inverse = np.unique(key, return_inverse=True)
    inverse = inverse.reshape(-1)
    g = len(keys)
    sums: dict[str, Any] = {}
    for name in rollups.ROLLUP_FIELDS:
        values = prepared.sums[name]
        if values.dtype == np.int64:
            sums[name] = np.bincount(inverse, weights=values, minlength=g).astype(np.int64)
        else:
            sums[name] = np.bincount(inverse, weights=values, minlength=g)
    per_group = np.zeros((g, prepared.hist.shape[1]), dtype=np.int64)
    np.add.at(per_group, inverse, prepared.hist)
    group, bucket = np.nonzero(per_group)
    hist = np.stack([group, bucket, per_group[group, bucket]], axis=1).astype(np.int64)
    aggregate.upsert_groups(raw, keys, sums, hist)


def _store_tops(raw: Any, prepared: cells.Cells, batch_id: int) -> None:
    """Keep each cell's largest revenue values (cells that sent none store nothing)."""
    with (
        raw.cursor() as cur,
        cur.copy(
            "COPY revenue_tops (batch_id, experiment_id, arm, period, n, capped_at, revenues) "
            "FROM STDIN"
        ) as copy,
    ):
        for j, top in enumerate(prepared.tops):
            if top is None:
                continue
            period = datetime.fromtimestamp(int(prepared.minute[j]) * 60, UTC)
            copy.write_row(
                (batch_id, int(prepared.experiment_id[j]), int(prepared.arm[j]), period,
                 int(prepared.sums["n"][j]), prepared.capped_at[j], top.tolist())
            )  # fmt: skip
