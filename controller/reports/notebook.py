"""Reports in a notebook: ``list()`` the experiments, ``load("ml/ranker-v42")`` one of them.

The notebook face of ``view`` and ``render``: :func:`list` finds experiments, :func:`load`
reads the same ``ReportView`` the CLI renders, and :class:`Report` shows it as tidy
DataFrames (pandas is imported here only; one row per observation, unambiguous column
names: ``p_value_harm``, ``p_value_noninferiority``, a ``scale`` column beside every
margin) and, in Jupyter, as the HTML report's body (``_repr_html_``, whose styles are scoped
to its own element). :meth:`Report.reproduce` recomputes the last look through the public
``analysis`` API from the per-step per-arm statistics. Reads the database; never writes.
"""

from __future__ import annotations

import builtins
import dataclasses
import io
from contextlib import redirect_stdout
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from analysis.state import ARM_FIELDS
from controller.reports import read, render, reproduce
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

        frame = pd.DataFrame(
            builtins.list(render.rows(self.view)), columns=builtins.list(render.CSV_COLUMNS)
        )
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

    @cached_property
    def results(self) -> pd.DataFrame:
        """The results table: one row per guardrail, as the report's table shows it.

        ``champion``/``challenger`` are in ``unit`` (``revenue`` per request, ``share``,
        ``ms``), pooled over the steps (``analysis.arms``); ``estimate``, ``lower``,
        ``upper`` are the engine's recorded anytime-valid figures on ``scale``
        (``relative``: B/A − 1, ``absolute``: B − A, ``ratio``: p_B/p_A), ``margin`` the line
        where harm begins on the same scale; ``decided_by`` names the test whose p-value
        decided (``harm`` or ``non-inferiority``).
        """
        import pandas as pd

        rows = [
            {("margin" if k == "margin_line" else k): x for k, x in dataclasses.asdict(r).items()}
            for r in self.view.results
        ]
        return pd.DataFrame(rows, columns=RESULT_COLUMNS)

    @cached_property
    def latency(self) -> pd.DataFrame:
        """Latency per arm in milliseconds: p50, p95, p99 and the geometric mean."""
        import pandas as pd

        return pd.DataFrame(
            [dataclasses.asdict(r) for r in self.view.latency],
            columns=["arm", "requests", "p50_ms", "p95_ms", "p99_ms", "geometric_mean_ms"],
        )

    @cached_property
    def step_stats(self) -> pd.DataFrame:
        """The last look's per-step per-arm sufficient statistics (one row per step and arm).

        ``latency_hist`` maps a bucket of ``analysis.LATENCY_EDGES_MS`` to its count.
        """
        import pandas as pd

        rows = [
            {
                "step_index": s.index,
                "weight": s.weight,
                "share": s.share,
                "start": s.start,
                "end": s.end,
                "closed": s.closed,
                "arm": arm,
                **dataclasses.asdict(stats),
            }
            for s in self.view.step_samples
            for arm, stats in (("champion", s.champion), ("challenger", s.challenger))
        ]
        frame = pd.DataFrame(rows, columns=STEP_COLUMNS)
        for col in ("start", "end"):
            frame[col] = pd.to_datetime(frame[col], utc=True)
        return frame

    @property
    def inputs(self) -> dict[str, Any] | None:
        """The engine's input at the last look (what the report embeds; ``None`` before a look)."""
        return reproduce.inputs(self.view)

    @property
    def snippet(self) -> str | None:
        """A standalone Python program that recomputes the last look (its data inlined)."""
        return reproduce.program(self.view)

    def reproduce(self) -> pd.DataFrame:
        """Run :attr:`snippet` and return what it printed, one row per guardrail and the SRM check.

        Columns ``name``, ``verdict``, ``estimate``, ``lower``, ``upper``, ``p_value_harm``,
        ``p_value_noninferiority``; compare them with :attr:`results` (the recorded values).
        """
        import pandas as pd

        program = self.snippet
        if program is None:
            raise ValueError(f"{self.view.key}: no look yet, nothing to reproduce")
        out = io.StringIO()
        with redirect_stdout(out):
            exec(compile(program, f"<reproduce {self.view.key}>", "exec"), {})
        rows = []
        for line in out.getvalue().splitlines():
            parts = line.split()
            if parts[0] == "srm":
                rows.append({"name": "srm", "p_value_harm": float(parts[1])})
                continue
            name, verdict, *numbers = parts
            rows.append(
                dict(
                    zip(
                        REPRODUCED_COLUMNS,
                        [name, verdict, *(float(x) for x in numbers)],
                        strict=True,
                    )
                )
            )
        return pd.DataFrame(rows, columns=REPRODUCED_COLUMNS)

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
        """The report's body; its styles apply inside its own element only."""
        return render.fragment(self.view)

    def __repr__(self) -> str:
        outcome = self.view.outcome
        why = "" if outcome is None else f", {outcome.kind}: {outcome.reason_code}"
        return f"<Report {self.view.key} {self.view.phase}{why}, {len(self.view.looks)} looks>"


RESULT_COLUMNS = [
    "name",
    "kind",
    "scale",
    "metric",
    "unit",
    "champion",
    "challenger",
    "absolute_change",
    "relative_change",
    "threshold_ms",
    "estimate",
    "lower",
    "upper",
    "margin",
    "p_value_harm",
    "p_value_noninferiority",
    "alpha",
    "verdict",
    "reason_code",
    "reason",
    "decided_by",
    "largest_harm",
]
STEP_COLUMNS = [
    "step_index",
    "weight",
    "share",
    "start",
    "end",
    "closed",
    "arm",
    *ARM_FIELDS,
    "latency_hist",
]
REPRODUCED_COLUMNS = [
    "name",
    "verdict",
    "estimate",
    "lower",
    "upper",
    "p_value_harm",
    "p_value_noninferiority",
]


def _engine(database_url: str | None) -> sa.Engine:
    url = db.configured_url(database_url)
    if not url:
        raise ValueError(f"database_url: none given and {db.ENV_DATABASE_URL} is not set")
    return db.make_engine(url)


def list(  # the notebook verb: notebook.list(); builtins.list is used inside
    database_url: str | None = None,
    *,
    engine: sa.Engine | None = None,
    namespace: str | None = None,
    phase: str | None = None,
    name_contains: str | None = None,
    since: datetime | None = None,
) -> pd.DataFrame:
    """The registered experiments, newest first, as a DataFrame (filters optional).

    Columns: ``key`` (what :func:`load` takes), ``namespace``, ``name``, ``phase``,
    ``champion``, ``challenger``, ``decision`` and ``reason_code`` (the final decision, if
    any), ``decided_at``, ``created_at``, ``updated_at`` (UTC).

    Parameters
    ----------
    database_url : str, optional
        Postgres URL; defaults to ``$CANARYCTL_DATABASE_URL``.
    engine : sqlalchemy.Engine, optional
        An engine to use instead of a URL (it is not disposed).
    namespace, phase : str, optional
        Keep only this namespace, or this phase (``"RolledBack"``, ``"Promoted"``, …).
    name_contains : str, optional
        Keep names containing this text.
    since : datetime, optional
        Keep experiments registered at or after this (timezone-aware) time.
    """
    import pandas as pd

    if since is not None and since.tzinfo is None:
        raise ValueError("since: needs a timezone-aware datetime")
    own = engine is None
    engine = _engine(database_url) if engine is None else engine
    try:
        with engine.connect() as conn:
            rows = read.experiment_rows(
                conn, namespace=namespace, phase=phase, name_contains=name_contains, since=since
            )
    finally:
        if own:
            engine.dispose()
    frame = pd.DataFrame(rows, columns=LIST_COLUMNS)
    for col in ("decided_at", "created_at", "updated_at"):
        frame[col] = pd.to_datetime(frame[col], utc=True)
    return frame


LIST_COLUMNS = [
    "key",
    "namespace",
    "name",
    "phase",
    "champion",
    "challenger",
    "decision",
    "reason_code",
    "decided_at",
    "created_at",
    "updated_at",
]


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
    engine = _engine(database_url) if engine is None else engine
    try:
        with engine.connect() as conn:
            return Report(read.build(conn, name))
    finally:
        if own:
            engine.dispose()
