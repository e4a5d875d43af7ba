"""Reports in a notebook: ``load("ml/ranker-v42")`` and its time series as DataFrames.

The notebook face of ``view`` and ``render``: :func:`load` reads the same ``ReportView``
the CLI renders, and :class:`Report` shows it as DataFrames (pandas is imported here
only) and, in Jupyter, as the HTML report's body (``_repr_html_``). Reads the database;
never writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from controller.reports import read, render
from controller.reports import view as v
from controller.storage import db

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class Report:
    """One experiment's report (``view`` holds every value; the properties are DataFrames)."""

    view: v.ReportView

    @cached_property
    def timeseries(self) -> pd.DataFrame:
        """One row per look and guardrail: estimate, bounds, margin, p-values, verdict, samples.

        The same columns as ``canaryctl report --format csv``; ``evaluated_until`` is a
        tz-aware timestamp (the end of the minute the look closed).
        """
        import pandas as pd

        frame = pd.DataFrame(list(render.rows(self.view)), columns=list(render.CSV_COLUMNS))
        frame["evaluated_until"] = pd.to_datetime(frame["evaluated_until"], utc=True)
        return frame.sort_values(["evaluated_until", "guardrail"], ignore_index=True)

    @cached_property
    def minutes(self) -> pd.DataFrame:
        """Finalised requests per minute and arm (from the minute rollups), with the share."""
        import pandas as pd

        frame = pd.DataFrame(
            [
                {
                    "minute": m.minute,
                    "champion_n": m.champion_n,
                    "challenger_n": m.challenger_n,
                    "challenger_share": m.challenger_share,
                    "champion_errors": m.champion_errors,
                    "challenger_errors": m.challenger_errors,
                    "champion_revenue_capped": m.champion_revenue,
                    "challenger_revenue_capped": m.challenger_revenue,
                }
                for m in self.view.minutes
            ],
            columns=[
                "minute",
                "champion_n",
                "challenger_n",
                "challenger_share",
                "champion_errors",
                "challenger_errors",
                "champion_revenue_capped",
                "challenger_revenue_capped",
            ],
        )
        frame["minute"] = pd.to_datetime(frame["minute"], utc=True)
        return frame

    @cached_property
    def decisions(self) -> pd.DataFrame:
        """The decision log: ``at``, ``kind``, ``actor``, ``reason_code``, ``reason``."""
        import pandas as pd

        frame = pd.DataFrame(
            [vars(d) for d in self.view.decisions],
            columns=["at", "kind", "actor", "reason_code", "reason"],
        )
        frame["at"] = pd.to_datetime(frame["at"], utc=True)
        return frame

    def guardrail(self, name: str) -> pd.DataFrame:
        """The time series of one guardrail, indexed by ``evaluated_until``."""
        if name not in self.view.series:
            known = ", ".join(self.view.series) or "none"
            raise KeyError(f"no guardrail {name!r} in {self.view.key} (guardrails: {known})")
        ts = self.timeseries
        return ts[ts["guardrail"] == name].set_index("evaluated_until")

    @property
    def settings(self) -> dict[str, Any]:
        """The frozen settings as recorded (``controller.experiment.frozen.to_json``'s shape)."""
        return dict(self.view.settings.snapshot)

    def to_html(self) -> str:
        """The self-contained HTML report (what ``canaryctl report --format html`` writes)."""
        return render.to_html(self.view)

    def to_dict(self) -> dict[str, Any]:
        return self.view.to_dict()

    def _repr_html_(self) -> str:
        return f"<style>{render.CSS}</style>{render.fragment(self.view)}"

    def __repr__(self) -> str:
        outcome = self.view.outcome
        why = "" if outcome is None else f", {outcome.kind}: {outcome.reason_code}"
        return f"<Report {self.view.key} {self.view.phase}{why}, {len(self.view.looks)} looks>"


def load(name: str, database_url: str | None = None, *, engine: sa.Engine | None = None) -> Report:
    """Load the report of experiment ``name`` (``namespace/name``; a bare name is ``default/``).

    Parameters
    ----------
    name : str
        The experiment, e.g. ``"ml/ranker-v42"``.
    database_url : str, optional
        Postgres URL; defaults to ``$CANARYCTL_DATABASE_URL``.
    engine : sqlalchemy.Engine, optional
        An engine to use instead of a URL (it is not disposed).

    Raises
    ------
    controller.storage.experiments.UnknownExperimentError
        No experiment of that name is registered.
    ValueError
        No database is configured, or ``name`` is malformed.
    """
    own = engine is None
    if engine is None:
        url = db.configured_url(database_url)
        if not url:
            raise ValueError(f"database_url: none given and {db.ENV_DATABASE_URL} is not set")
        engine = db.make_engine(url)
    try:
        with engine.connect() as conn:
            return Report(read.build(conn, name))
    finally:
        if own:
            engine.dispose()
