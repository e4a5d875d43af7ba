"""The demo's summary of a scenario: the outcome in words, apart from whether it was the
expected one; the reason once and without test statistics; one number format (issue 12,
point 8). Pure: built from an ``Outcome`` as the demo records it."""

from __future__ import annotations

from typing import Any

from canaryctl_demo import cli, demo

LATENCY = {
    "name": "latency-p99",
    "kind": "tail",
    "scale": "ratio",
    "estimate": 3.886,
    "lower": 2.044,
    "upper": 7.082,
    "verdict": "fail",
    "marginLine": 1.25,
    "metric": "share_slower",
    "unit": "share",
    "champion": 0.00551,
    "challenger": 0.0214,
    "thresholdMs": 80.5884,
}
REVENUE = {
    "name": "revenue",
    "kind": "mean",
    "scale": "relative",
    "estimate": -0.002,
    "lower": -0.623,
    "upper": 0.619,
    "verdict": "continue",
}


def _outcome(**changes: Any) -> demo.Outcome:
    fields: dict[str, Any] = {
        "scenario": "latency-regression",
        "outcome": "rolled_back",
        "reason_code": "guardrail_failed:latency-p99",
        "reason": "guardrail latency-p99 failed: challenger worse than κ = 1.25 times the "
        "champion's rate (ratio ×3.89, bounds [×2.04, ×7.08], ln E = 26.07 ≥ 8.99)",
        "decided_after_seconds": 19 * 60,
        "samples": {"champion": 572425, "challenger": 4584},
        "final_weights": {"champion": 100, "challenger": 0},
        "report": None,
        "expected": True,
        "wall_seconds": 11.0,
        "guardrails": [REVENUE, LATENCY],
    }
    return demo.Outcome(**{**fields, **changes})


EXPECT = ("rolled_back", "guardrail_failed:latency-p99")


def test_the_outcome_is_said_in_words_apart_from_as_expected() -> None:
    mark, lines = cli.outcome_lines(_outcome(), EXPECT)
    assert mark == "as expected"
    assert lines[0] == (
        "rolled back after 19m of simulated time: guardrail latency-p99 beyond its margin ×1.25"
    )
    text = "\n".join(lines)
    assert "rolled_back" not in text and "✓" not in text
    assert "ln E" not in text and "κ" not in text


def test_each_guardrail_with_its_values_in_both_arms_and_one_number_format() -> None:
    _, lines = cli.outcome_lines(_outcome(), EXPECT)
    assert (
        "  fail      latency-p99: share slower than 80.6 ms 0.551 % → 2.14 %, ×3.89 [×2.04, ×7.08]"
        in lines
    )
    assert "  continue  revenue: −0.2 % [−62.3 %, +61.9 %]" in lines


def test_an_unexpected_outcome_says_what_was_expected() -> None:
    mark, lines = cli.outcome_lines(
        _outcome(
            outcome="promoted",
            reason_code="promoted",
            reason="every guardrail passed",
            expected=False,
        ),
        EXPECT,
    )
    assert mark == "NOT as expected: expected rolled back (guardrail_failed:latency-p99)"
    assert lines[0] == "promoted after 19m of simulated time: every guardrail passed"
