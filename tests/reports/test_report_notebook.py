"""The notebook API: load a report by name, its time series as DataFrames, a rich HTML repr."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from controller.reports import notebook, render
from controller.storage import experiments
from tests.reports.conftest import ROLLED_BACK


def test_load_by_name_gives_dataframes(report_url: str) -> None:
    import pandas as pd

    report = notebook.load(ROLLED_BACK, report_url)
    ts = report.timeseries
    assert list(ts.columns) == list(render.CSV_COLUMNS)
    assert len(ts) == 3 * len(report.view.looks)
    assert isinstance(ts["evaluated_until"].dtype, pd.DatetimeTZDtype)
    revenue = report.guardrail("revenue")
    assert revenue["verdict"].iloc[-1] == "fail" and revenue.index.is_monotonic_increasing
    assert revenue["margin"].unique().tolist() == [-0.05]
    minutes = report.minutes
    assert minutes["champion_n"].sum() > 0 and minutes["challenger_share"].between(0, 1).all()
    assert report.decisions["kind"].tolist()[-1] == "rollback"
    assert report.settings["revenueCap"] == {"value": 20.0, "source": "spec value"}
    assert repr(report).startswith(f"<Report {ROLLED_BACK} RolledBack, rollback:")


def test_repr_html_is_the_report_body(report_engine: sa.Engine) -> None:
    report = notebook.load(ROLLED_BACK, engine=report_engine)
    html = report._repr_html_()
    assert html.startswith("<style>") and "<html" not in html
    assert 'id="outcome"' in html and html.count("<svg") == 3 * 2 + 3


def test_unknown_name_and_missing_database(
    report_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(experiments.UnknownExperimentError, match="ml/nope"):
        notebook.load("ml/nope", report_url)
    monkeypatch.delenv("CANARYCTL_DATABASE_URL", raising=False)
    with pytest.raises(ValueError, match="database_url"):
        notebook.load(ROLLED_BACK)
    with pytest.raises(KeyError, match="guardrails: revenue, latency-p99, errors"):
        notebook.load(ROLLED_BACK, report_url).guardrail("nope")
