"""A promotion by ``onInconclusive: promote`` never reads as "every guardrail passed"."""

from __future__ import annotations

from dataclasses import replace

import sqlalchemy as sa

from controller.reports import read, render
from tests.reports.conftest import PROMOTED


def test_no_harm_found_has_its_own_heading(report_engine: sa.Engine) -> None:
    with report_engine.connect() as conn:
        report = read.build(conn, PROMOTED)
    assert report.outcome is not None
    assert "Promoted: every guardrail passed" in render.to_html(report)
    message = "No harm found, non-inferiority NOT shown: revenue: harm up to -3.10 % not excluded"
    no_harm = replace(
        report, outcome=replace(report.outcome, reason_code="no_harm_found", reason=message)
    )
    html = render.to_html(no_harm)
    assert "Promoted at maxDuration: no harm found, non-inferiority not shown" in html
    assert "Promoted: every guardrail passed" not in html
    assert "harm up to -3.10 % not excluded" in html
