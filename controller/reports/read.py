"""Reading a report from the store: the queries behind a ``view.ReportView``.

The one module of ``reports`` that talks to Postgres; ``view`` stays pure, so report
tests can build views from rows. Read-only: one connection, no writes.
"""

from __future__ import annotations

import sqlalchemy as sa

from controller.reports import view
from controller.storage import decisions, experiments, looks, rollups


def build(conn: sa.Connection, key: str) -> view.ReportView:
    """The report of experiment ``namespace/name`` (``UnknownExperimentError`` if unknown)."""
    exp = experiments.get_experiment(conn, key)
    extent = rollups.data_extent(conn, exp.id)
    rows = [] if extent is None else rollups.minute_series(conn, exp.id, *view.extent_end(extent))
    return view.from_rows(
        exp, decisions.decisions(conn, exp.id), looks.looks(conn, exp.id), extent, rows
    )
