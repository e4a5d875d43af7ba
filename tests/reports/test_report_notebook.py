"""The notebook API: list and load reports, tidy DataFrames, reproduction, a scoped HTML repr."""

from __future__ import annotations

import math
import re
from datetime import timedelta

import pytest
import sqlalchemy as sa

from controller.reports import notebook, render
from controller.storage import experiments
from tests.reports.conftest import INVALID, PROMOTED, ROLLED_BACK, SRM


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
    assert {"p_value_harm", "p_value_noninferiority", "scale"} <= set(ts.columns)
    assert "p_value" not in ts.columns
    assert dict(ts.groupby("guardrail")["scale"].first()) == {
        "revenue": "relative",
        "latency-p99": "ratio",
        "errors": "ratio",
    }
    # no bound without an estimate (burn-in rows are all empty)
    burn_in = ts[ts["estimate"].isna()]
    assert burn_in["lower"].isna().all() and burn_in["upper"].isna().all()
    minutes = report.minutes
    assert minutes["champion_n"].sum() > 0 and minutes["challenger_share"].between(0, 1).all()
    assert report.decisions["kind"].tolist()[-1] == "rollback"
    assert report.settings["revenueCap"] == {"value": 20.0, "source": "spec value"}
    assert repr(report).startswith(f"<Report {ROLLED_BACK} RolledBack, rollback:")


def test_repr_html_is_the_report_body_with_styles_scoped_to_it(report_engine: sa.Engine) -> None:
    report = notebook.load(ROLLED_BACK, engine=report_engine)
    html = report._repr_html_()
    markup = re.sub(r"(<script\b[^>]*>).*?</script>", r"\1", html, flags=re.DOTALL)
    assert html.startswith('<div class="canaryctl-report"') and "<html" not in markup
    assert 'id="outcome"' in html and html.count('data-chart="chart-') == 1 + 3 * 2 + 3
    style = re.search(r"<style>(.*?)</style>", html, re.DOTALL)
    assert style is not None and html.count("<style>") == 1
    selectors = [
        sel.strip() for rule in re.findall(r"([^{}]+)\{", style.group(1)) for sel in rule.split(",")
    ]
    assert selectors and all(sel.startswith(".canaryctl-report") for sel in selectors), selectors


def test_list_filters_experiments(report_engine: sa.Engine) -> None:
    every = notebook.list(engine=report_engine)
    assert set(every["key"]) == {ROLLED_BACK, PROMOTED, SRM, INVALID}
    assert every["created_at"].is_monotonic_decreasing
    rolled = notebook.list(engine=report_engine, phase="RolledBack")
    assert dict(zip(rolled["key"], rolled["reason_code"], strict=True)) == {
        ROLLED_BACK: "guardrail_failed:revenue",
        SRM: "srm",
    }
    assert set(rolled["decision"]) == {"rollback"} and rolled["decided_at"].notna().all()
    assert notebook.list(engine=report_engine, name_contains="heal")["key"].tolist() == [PROMOTED]
    assert notebook.list(engine=report_engine, namespace="other").empty
    later = every["created_at"].max().to_pydatetime() + timedelta(seconds=1)
    assert notebook.list(engine=report_engine, since=later).empty
    with pytest.raises(ValueError, match="since"):
        notebook.list(engine=report_engine, since=later.replace(tzinfo=None))


def test_results_latency_and_step_stats_frames(report_engine: sa.Engine) -> None:
    report = notebook.load(ROLLED_BACK, engine=report_engine)
    results = report.results.set_index("name")
    assert list(results.index) == ["revenue", "latency-p99", "errors"]
    revenue = results.loc["revenue"]
    assert (revenue["unit"], revenue["scale"], revenue["verdict"]) == (
        "revenue",
        "relative",
        "fail",
    )
    assert revenue["decided_by"] == "harm" and revenue["p_value_harm"] <= revenue["alpha"]
    # the 30 % drop, in the metric's unit: the challenger earns less per request
    assert revenue["challenger"] < revenue["champion"]
    assert math.isclose(revenue["relative_change"], revenue["challenger"] / revenue["champion"] - 1)
    assert (
        results.loc["latency-p99", "unit"] == "share"
        and results.loc["latency-p99", "threshold_ms"] > 0
    )
    assert results.loc["errors", "metric"] == "error_rate"
    latency = report.latency.set_index("arm")
    assert list(latency.index) == ["champion", "challenger"]
    assert (latency["p50_ms"] < latency["p95_ms"]).all() and (
        latency["p95_ms"] < latency["p99_ms"]
    ).all()
    steps = report.step_stats
    assert set(steps["arm"]) == {"champion", "challenger"} and len(steps) % 2 == 0
    assert steps.groupby("arm")["n"].sum()["challenger"] == latency.loc["challenger", "requests"]


@pytest.mark.parametrize("key", [ROLLED_BACK, PROMOTED, SRM])
def test_the_snippet_recomputes_the_recorded_last_look(report_engine: sa.Engine, key: str) -> None:
    report = notebook.load(key, engine=report_engine)
    got = report.reproduce().set_index("name")
    for name, points in report.view.series.items():
        last = points[-1]
        row = got.loc[name]
        assert row["verdict"] == last.verdict
        for column, recorded in (
            ("estimate", last.estimate),
            ("lower", last.lower),
            ("upper", last.upper),
            ("p_value_harm", last.p_value),
            ("p_value_noninferiority", last.p_value_noninferiority),
        ):
            if recorded is None:  # the guardrail was still waiting for its own data
                assert last.verdict == "continue" and not math.isfinite(row[column]), (name, column)
                continue
            assert math.isclose(row[column], recorded, rel_tol=1e-9, abs_tol=1e-300), (name, column)
    assert math.isclose(
        got.loc["srm", "p_value_harm"], report.view.looks[-1].srm.p_value, rel_tol=1e-9
    )
    # the HTML embeds the same program and data
    assert report.snippet is not None and "analysis.evaluate(" in report.snippet
    assert json_in_html(report.to_html()) == report.inputs


def json_in_html(html: str) -> object:
    import json

    block = re.search(
        r'<script type="application/json" class="canaryctl-inputs"[^>]*>(.*?)</script>',
        html,
        re.DOTALL,
    )
    assert block is not None
    return json.loads(block.group(1))


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
