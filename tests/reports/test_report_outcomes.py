"""Each outcome's first screen, the results table's sources, and the reproduction inputs.

Built from the simulated experiments' views; the outcomes no simulation here reaches
(an inconclusive end, a "no harm found" promotion) are the same views with the final
decision replaced, which is all that selects the first screen.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from controller.reports import fmt, read, render, results, view
from tests.reports.conftest import PROMOTED, ROLLED_BACK, SRM, with_final_decision


def _view(engine: sa.Engine, key: str) -> view.ReportView:
    with engine.connect() as conn:
        return read.build(conn, key)


def _outcome_text(html: str) -> str:
    block = re.search(r'<section id="outcome".*?</section>', html, re.DOTALL)
    assert block is not None
    return re.sub(r"<[^>]+>", "", block.group(0))


@pytest.mark.parametrize(
    ("kind", "code", "expected"),
    [
        ("rollback", "guardrail_failed:revenue", "guardrail_rollback"),
        ("rollback", "srm", "srm_rollback"),
        ("rollback", "inconclusive", "inconclusive"),
        ("rollback", "manual", "rollback"),
        ("promote", "promoted", "promoted"),
        ("promote", "no_harm_found", "no_harm_found"),
        ("fail", "invalid_spec", "failed"),
    ],
)
def test_the_final_decision_selects_the_first_screen(kind: str, code: str, expected: str) -> None:
    decision = view.DecisionEntry(datetime(2026, 1, 1, tzinfo=UTC), kind, "x", code, "")
    assert view.outcome_kind("RolledBack", decision) == expected


def test_the_table_reads_the_recorded_figures(report_engine: sa.Engine) -> None:
    report = _view(report_engine, ROLLED_BACK)
    last = {name: points[-1] for name, points in report.series.items()}
    for row in report.results:
        p = last[row.name]
        # the rollback decision's evidence is the last look's evaluation: same numbers
        assert (row.estimate, row.lower, row.upper) == (p.estimate, p.lower, p.upper)
        assert (row.p_value_harm, row.p_value_noninferiority) == (
            p.p_value,
            p.p_value_noninferiority,
        )
        assert row.alpha == report.settings.alpha_each
    revenue = next(r for r in report.results if r.name == "revenue")
    assert revenue.largest_harm == revenue.lower  # higher is better: the lower bound


def test_a_recorded_largest_harm_is_preferred(report_engine: sa.Engine) -> None:
    report = _view(report_engine, PROMOTED)
    recorded = [{"name": "revenue", "verdict": "pass", "largestHarmNotExcluded": -0.0123}]
    rows = results.result_rows(report.guardrails, {}, recorded, report.step_samples)
    assert rows[0].largest_harm == -0.0123 and rows[0].decided_by == "non-inferiority"
    assert rows[0].champion is None  # no engine spec given: no per-arm value, not a guess


def test_guardrail_rollback_screen(report_engine: sa.Engine) -> None:
    text = _outcome_text(render.to_html(_view(report_engine, ROLLED_BACK)))
    assert "Rolled back: guardrail revenue failed" in text
    assert "revenue per request" in text and "→" in text and "champion → challenger" in text


def test_srm_screen_shows_counts_per_step_and_causes(report_engine: sa.Engine) -> None:
    report = _view(report_engine, SRM)
    html = render.to_html(report)
    text = _outcome_text(html)
    assert "sample-ratio mismatch" in text and "Rolled back: srm" not in text
    observed = sum(s.challenger.n for s in report.step_samples)
    assert f"{observed:,} of" in text and "expected" in text
    assert "commonly causes" in text and "lost or filtered logs" in text
    for s in report.step_samples:
        assert f"{s.challenger.n:,}" in text and f"{s.expected_challenger:,.0f}" in text
    assert 'class="results void"' in html and 'id="guardrails" class="void"' in html


def test_promoted_screen_names_the_deciding_test(report_engine: sa.Engine) -> None:
    html = render.to_html(_view(report_engine, PROMOTED))
    assert "Promoted: every guardrail passed, each shown non-inferior" in _outcome_text(html)
    assert html.count('class="decides" data-test="non-inferiority"') == 3


def test_no_harm_found_screen_shows_the_largest_harm_not_excluded(
    report_engine: sa.Engine,
) -> None:
    report = with_final_decision(_view(report_engine, PROMOTED), "promote", results.NO_HARM_FOUND)
    text = _outcome_text(render.to_html(report))
    assert "Promoted at maxDuration: no harm found, non-inferiority not shown" in text
    for row in report.results:
        assert f"{row.name}: {fmt.value(row.largest_harm, row.scale)}" in text


def test_inconclusive_screen_says_what_blocked_and_what_was_needed(
    report_engine: sa.Engine,
) -> None:
    # the SRM experiment's guardrails had all stayed inconclusive
    base = _view(report_engine, SRM)
    report = with_final_decision(
        dataclasses.replace(base, failure=None), "rollback", results.INCONCLUSIVE
    )
    text = _outcome_text(render.to_html(report))
    assert "inconclusive" in text and "maxDuration" in text
    for row in report.results:
        assert f"{row.name}:" in text
        assert fmt.p(row.p_value_noninferiority) in text
    assert text.count("needed:") == len(report.results)
    assert "× the challenger" in text or "more data alone would not" in text


def test_a_no_harm_found_promotion_records_its_largest_harm_in_the_evidence() -> None:
    # the evidence shape of a promotion by onInconclusive: promote (decide.safety)
    evidence = {
        "noHarmFound": [
            {"name": "revenue", "verdict": "continue", "largestHarmNotExcluded": -0.031},
            {"name": "errors", "verdict": "pass", "largestHarmNotExcluded": None},
        ]
    }
    look = {"guardrails": [{"name": "revenue", "lower": -0.04}, {"name": "errors", "upper": 1.2}]}
    rows = {r["name"]: r for r in view._recorded(evidence, [look])}
    assert rows["revenue"] == {"name": "revenue", "lower": -0.04, "largestHarmNotExcluded": -0.031}
    assert rows["errors"] == {"name": "errors", "upper": 1.2}  # nothing recorded: the bound is used
