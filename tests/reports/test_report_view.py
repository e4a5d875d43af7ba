"""The ReportView of real experiments: what failed, by how much, when; one point per look."""

from __future__ import annotations

import csv
import io
import json

import pytest
import sqlalchemy as sa

from controller.reports import read, render, view
from controller.storage import decisions as decision_log
from controller.storage import experiments
from tests.reports.conftest import INVALID, PROMOTED, ROLLED_BACK, SRM


@pytest.fixture(scope="module")
def rolled_back(report_engine: sa.Engine) -> view.ReportView:
    with report_engine.connect() as conn:
        return read.build(conn, ROLLED_BACK)


@pytest.fixture(scope="module")
def promoted(report_engine: sa.Engine) -> view.ReportView:
    with report_engine.connect() as conn:
        return read.build(conn, PROMOTED)


def test_the_failure_is_the_rollback_decisions_evidence(
    rolled_back: view.ReportView, report_engine: sa.Engine
) -> None:
    with report_engine.connect() as conn:
        exp = experiments.get_experiment(conn, ROLLED_BACK)
        rollback = next(d for d in decision_log.decisions(conn, exp.id) if d.kind == "rollback")
    logged = next(g for g in rollback.evidence["analysis"]["guardrails"] if g["name"] == "revenue")
    f = rolled_back.failure
    assert f is not None and rolled_back.phase == "RolledBack"
    assert (f.guardrail, f.reason_code, f.at) == (
        "revenue",
        "guardrail_failed:revenue",
        rollback.at,
    )
    assert (f.estimate, f.lower, f.upper, f.p_value) == (
        logged["estimate"],
        logged["lower"],
        logged["upper"],
        logged["pValue"],
    )
    assert f.upper is not None and f.upper < f.margin_line == -0.05  # the band is past the margin
    assert f.p_value is not None and f.alpha == pytest.approx(0.05 / 4) and f.p_value <= f.alpha
    assert f.first_failed_at is not None and f.first_failed_at <= f.at
    assert (f.step_index, f.step_weight) == (0, 10)


def test_one_point_per_finalised_minute_of_data(rolled_back: view.ReportView) -> None:
    minutes_in_steps = {
        m.minute
        for m in rolled_back.minutes
        for s in rolled_back.steps
        if s.start <= m.minute
        and (s.end is None or m.minute < s.end)
        and m.minute < rolled_back.looks[-1].evaluated_until
    }
    assert len(rolled_back.looks) == len(minutes_in_steps) > 3
    for info in rolled_back.guardrails:
        points = rolled_back.series[info.name]
        assert [p.evaluated_until for p in points] == [x.evaluated_until for x in rolled_back.looks]
    assert {i.name: (i.margin_line, i.null_line) for i in rolled_back.guardrails} == {
        "revenue": (-0.05, 0.0),
        "latency-p99": (1.3, 1.0),
        "errors": (1.5, 1.0),
    }


def test_settings_are_the_frozen_snapshot(rolled_back: view.ReportView) -> None:
    s = rolled_back.settings
    assert (s.alpha, s.n_tests, s.revenue_cap, s.revenue_cap_source) == (
        0.05,
        4,
        20.0,
        "spec value",
    )
    assert (s.burn_in_requests, s.burn_in_nonzero, s.allowed_lateness) == (1000, 80, "0s")
    assert s.samples_per_arm is None and s.n_star == 100_000
    assert s.snapshot["analysis"]["guardrails"][0]["margin"] == {"relative": 0.05}
    assert s.evaluated_until == rolled_back.looks[-1].evaluated_until


def test_a_promoted_experiment_has_no_failure(promoted: view.ReportView) -> None:
    assert promoted.phase == "Promoted" and promoted.failure is None
    assert promoted.outcome is not None and promoted.outcome.kind == "promote"
    assert [s.weight for s in promoted.steps] == [10, 50]
    assert {p.verdict for p in (s[-1] for s in promoted.series.values())} == {"pass"}
    assert [d.kind for d in promoted.decisions] == ["start", "advance", "promote"]


def test_json_is_the_whole_view_and_csv_the_time_series(rolled_back: view.ReportView) -> None:
    data = json.loads(render.to_json(rolled_back))
    assert data["key"] == ROLLED_BACK and data["failure"]["guardrail"] == "revenue"
    assert (
        len(data["looks"]) == len(rolled_back.looks) and data["decisions"][-1]["kind"] == "rollback"
    )
    assert data["settings"]["snapshot"]["revenueCap"] == {"value": 20.0, "source": "spec value"}
    table = list(csv.DictReader(io.StringIO(render.to_csv(rolled_back))))
    assert len(table) == len(rolled_back.looks) * 3
    assert tuple(table[0]) == render.CSV_COLUMNS
    last = [r for r in table if r["guardrail"] == "revenue"][-1]
    assert (last["verdict"], float(last["estimate"])) == ("fail", rolled_back.failure.estimate)


def test_an_srm_rollback_names_no_guardrail(report_engine: sa.Engine) -> None:
    with report_engine.connect() as conn:
        report = read.build(conn, SRM)
    assert report.failure is not None and report.failure.reason_code == "srm"
    assert report.failure.guardrail is None and report.looks[-1].srm.mismatch
    html = render.to_html(report)
    assert "Rolled back: sample-ratio mismatch" in html and "SRM p-value" in html


def test_an_experiment_without_looks_still_renders(report_engine: sa.Engine) -> None:
    """An invalid spec (phase Failed) and a bare registration: no looks, no frozen settings."""
    with report_engine.connect() as conn:  # never committed: the shared data stays as simulated
        experiments.register_experiment(conn, "other/registered-only", spec={})
        for key in (INVALID, "other/registered-only"):
            report = read.build(conn, key)
            assert report.looks == () and report.failure is None
            for fmt in render.Format:
                assert render.render(report, fmt)
        failed = read.build(conn, INVALID)
    assert failed.phase == "Failed"
    assert "spec.steps[1].weight" in render.to_html(failed)
