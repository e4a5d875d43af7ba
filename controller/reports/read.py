"""Reading a report from the store: the queries behind a ``view.ReportView``.

The one module of ``reports`` that talks to Postgres; ``view`` stays pure, so report
tests can build views from rows. Read-only: one connection, no writes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from controller.operate import evaluate
from controller.reports import results, view
from controller.storage import decisions, experiments, looks, rollups


def build(conn: sa.Connection, key: str) -> view.ReportView:
    """The report of experiment ``namespace/name`` (``UnknownExperimentError`` if unknown)."""
    exp = experiments.get_experiment(conn, key)
    extent = rollups.data_extent(conn, exp.id)
    rows = [] if extent is None else rollups.minute_series(conn, exp.id, *view.extent_end(extent))
    raw_looks = looks.looks(conn, exp.id)
    return view.from_rows(
        exp,
        decisions.decisions(conn, exp.id),
        raw_looks,
        extent,
        rows,
        step_samples(conn, exp.id, raw_looks[-1] if raw_looks else None),
    )


def step_samples(
    conn: sa.Connection, exp_id: int, last_look: dict[str, Any] | None
) -> tuple[results.StepSample, ...]:
    """Both arms' statistics over the step windows of the last look (as its evidence records)."""
    if last_look is None:
        return ()
    out = []
    for s in last_look.get("steps") or []:
        start, end = datetime.fromisoformat(s["start"]), datetime.fromisoformat(s["end"])
        totals = rollups.window_totals(conn, exp_id, start, end)
        out.append(
            results.StepSample(
                int(s["index"]),
                int(s["weight"]),
                float(s["share"]),
                start,
                end,
                bool(s["closed"]),
                results.ArmSample.from_stats(evaluate.arm_stats(totals["champion"])),
                results.ArmSample.from_stats(evaluate.arm_stats(totals["challenger"])),
            )
        )
    return tuple(out)


_LIST_SQL = """
SELECT e.namespace, e.name, e.phase, e.created_at, e.updated_at,
       e.spec -> 'champion' ->> 'name' AS champion, e.spec -> 'challenger' ->> 'name' AS challenger,
       d.kind AS decision, d.reason_code, d.at AS decided_at
  FROM experiments e
  LEFT JOIN LATERAL (
        SELECT kind, reason_code, at FROM decisions
         WHERE experiment_id = e.id AND kind IN :final
         ORDER BY at DESC, id DESC LIMIT 1) d ON true
 WHERE (CAST(:namespace AS text) IS NULL OR e.namespace = :namespace)
   AND (CAST(:phase AS text) IS NULL OR e.phase = :phase)
   AND (CAST(:contains AS text) IS NULL OR strpos(e.name, :contains) > 0)
   AND (CAST(:since AS timestamptz) IS NULL OR e.created_at >= :since)
 ORDER BY e.created_at DESC, e.id DESC
"""


def experiment_rows(
    conn: sa.Connection,
    *,
    namespace: str | None = None,
    phase: str | None = None,
    name_contains: str | None = None,
    since: datetime | None = None,
) -> list[dict[str, Any]]:
    """Registered experiments, newest first, with their final decision (filters optional)."""
    stmt = sa.text(_LIST_SQL).bindparams(sa.bindparam("final", expanding=True))
    rows = conn.execute(
        stmt,
        {
            "final": list(view.FINAL_KINDS),
            "namespace": namespace,
            "phase": phase,
            "contains": name_contains,
            "since": since,
        },
    ).mappings()
    return [{"key": f"{r['namespace']}/{r['name']}", **r} for r in rows]
