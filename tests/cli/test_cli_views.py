"""kubectl manners of the read commands: ``-o wide|name|jsonpath=…``, ``list -w``, the
absolute values and the wording of ``status`` (issue 12, points 2, 3 and 8)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from conftest import Cluster, Run, experiment

from controller.cli import experiments as experiments_cli
from controller.cli import output

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def iso(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


# What the operator writes for a latency rollback (the review's case: a challenger 30 %
# slower, whose tail guardrail read "×3.886" alone).
ROLLED_BACK: dict[str, Any] = {
    "phase": "RolledBack",
    "reasonCode": "guardrail_failed:latency",
    "message": "guardrail latency failed: challenger worse than κ = 1.25 times the champion's "
    "rate (ratio ×3.89, bounds [×2.04, ×7.08], ln E = 26.07 ≥ 8.99)",
    "phaseStartedAt": iso(NOW - timedelta(minutes=5)),
    "challengerWeight": 0,
    "verdict": "continue",
    "srm": {"observedShare": 0.0498, "expectedShare": 0.05},
    "guardrails": [
        {
            "name": "latency",
            "kind": "tail",
            "scale": "ratio",
            "estimate": 3.886,
            "lower": 2.044,
            "upper": 7.082,
            "verdict": "fail",
            "reasonCode": "harm",
            "pValue": 1.2e-9,
            "alpha": 0.000125,
            "metric": "share_slower",
            "unit": "share",
            "champion": 0.0121,
            "challenger": 0.0470,
            "thresholdMs": 80.5884,
            "marginLine": 1.25,
        },
        {
            "name": "revenue",
            "kind": "mean",
            "scale": "relative",
            "estimate": -0.002,
            "lower": -0.623,
            "upper": 0.619,
            "verdict": "continue",
            "metric": "revenue_per_request",
            "unit": "revenue",
            "champion": 0.08123,
            "challenger": 0.08107,
        },
    ],
    "arms": {
        "champion": {"requests": 572425, "latencyMs": {"p50": 30.1, "p95": 53.2, "p99": 31.4}},
        "challenger": {"requests": 4584, "latencyMs": {"p50": 39.2, "p95": 69.0, "p99": 40.2}},
    },
    "impact": {
        "guardrail": "revenue",
        "revenuePerHour": -292.4,
        "lower": -91234.0,
        "upper": 90512.0,
        "requestsPerHour": 1800000,
        "championRevenuePerRequest": 0.08123,
    },
}


def _body(status: dict[str, Any], name: str = "slow") -> dict[str, Any]:
    body = {**experiment(name), "status": status}
    body["metadata"] = {"name": name, "namespace": "ml"}
    return body


def test_the_tail_guardrail_reads_as_the_share_slower_than_its_threshold() -> None:
    view = output.status_view(_body(ROLLED_BACK), NOW)
    (latency,) = [line for line in view.splitlines() if line.startswith("  latency")]
    assert latency.split()[1:7] == ["share", "slower", "than", "80.6", "ms", "1.21"]
    assert "4.7 %" in latency and "×3.89 [×2.04, ×7.08]" in latency and "fail" in latency
    assert "Latency:      p50 30.1 → 39.2 ms, p95 53.2 → 69 ms, p99 31.4 → 40.2 ms" in view
    (revenue,) = [line for line in view.splitlines() if line.startswith("  revenue")]
    assert "revenue per request" in revenue and "0.08123" in revenue and "0.08107" in revenue
    assert (
        "Impact:       revenue −292.4 per hour at full traffic [−91,234, +90,512] "
        "(1,800,000 requests/h, champion 0.08123 per request)" in view
    )


def test_a_rollback_says_why_once_without_test_statistics() -> None:
    view = output.status_view(_body(ROLLED_BACK), NOW)
    (reason,) = [line for line in view.splitlines() if line.startswith("Reason:")]
    assert reason == (
        "Reason:       guardrail latency: share slower than 80.6 ms 1.21 % → 4.7 %, "
        "×3.89 [×2.04, ×7.08], beyond its margin ×1.25"
    )
    assert reason.count("latency") == 1
    assert "Verdict" not in view  # no "RolledBack … Verdict: continue"
    assert "ln E" not in view and "κ" not in view
    wide = output.status_view(_body(ROLLED_BACK), NOW, wide=True)
    assert "ln E = 26.07" in wide and "guardrail_failed:latency" in wide and "1.2e-09" in wide


def test_the_baseline_says_the_champion_is_measured_alone() -> None:
    status = {"phase": "Baseline", "phaseStartedAt": iso(NOW - timedelta(minutes=5))}
    body = _body(status, "base")
    body["spec"]["analysis"]["baseline"] = {"duration": "15m"}
    view = output.status_view(body, NOW)
    assert "Weight:       0 % on the challenger (baseline: the champion is measured alone)" in view
    assert "Steps:        baseline (now) → 10 % → 50 % → promotion" in view


def test_set_and_observed_weight_and_the_refresh_time_while_watching() -> None:
    status = {**ROLLED_BACK, "phase": "Progressing", "challengerWeight": 5, "step": "1/2"}
    status["samples"] = {"champion": 9502, "challenger": 498}
    status["lastAnalysisAt"] = iso(NOW - timedelta(seconds=40))
    view = output.status_view(_body(status), NOW, refreshed=True)
    assert (
        "Weight:       5 % on the challenger (set); 4.98 % of this step's requests, step 1/2"
        in view
    )
    assert "Updated:      last analysis 40s ago" in view
    assert "Refreshed:    12:00:00 UTC (Ctrl-C to stop)" in view


def test_output_wide_name_and_jsonpath(cli: Run, cluster: Cluster) -> None:
    cluster.create(experiment("exp-a"))
    cluster.set_status("exp-a", {**ROLLED_BACK, "phase": "Progressing", "step": "1/2"})
    cluster.create(experiment("exp-b"))
    wide = cli("list", "-o", "wide")
    assert wide.exit_code == 0, wide.output
    header, first, _ = wide.stdout.splitlines()
    assert header.split()[-4:] == ["ROUTE", "SAMPLES", "GUARDRAILS", "ANALYSED"]
    assert "gatewayAPI/ranker" in first and "latency=fail,revenue=continue" in first
    names = cli("list", "-o", "name")
    assert names.stdout == ("experiment.canaryctl.dev/exp-a\nexperiment.canaryctl.dev/exp-b\n")
    assert cli("status", "exp-a", "-o", "name").stdout == "experiment.canaryctl.dev/exp-a\n"
    phase = cli("status", "exp-a", "-o", "jsonpath={.status.phase}")
    assert (phase.exit_code, phase.stdout) == (0, "Progressing")
    listed = cli("list", "-o", 'jsonpath={.items[*].metadata.name}{"\\n"}')
    assert listed.stdout == "exp-a exp-b\n"
    filtered = cli(
        "status", "exp-a", "-o", 'jsonpath={.status.guardrails[?(@.name=="latency")].challenger}'
    )
    assert json.loads(filtered.stdout) == pytest.approx(0.047)
    assert "P(HARM)" in cli("status", "exp-a", "-o", "wide").stdout


def test_a_bad_jsonpath_is_a_usage_error_before_anything_is_read(cli: Run) -> None:
    result = cli("status", "exp-a", "-o", "jsonpath={.status[[}")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: Invalid value for '-o' / '--output': jsonpath")
    assert len(result.stderr.splitlines()) == 1


def test_list_watch_prints_each_change(
    cli: Run, cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster.create(experiment("exp-a"))
    moves = iter(
        [
            lambda: cluster.set_status("exp-a", {"phase": "Progressing", "challengerWeight": 10}),
            lambda: None,  # nothing changed: nothing printed
            lambda: cluster.set_status("exp-a", {"phase": "Promoted", "challengerWeight": 100}),
        ]
    )

    def sleep(_: float) -> None:
        move = next(moves, None)
        if move is None:
            raise KeyboardInterrupt
        move()

    monkeypatch.setattr(experiments_cli, "_sleep", sleep)
    result = cli("list", "-w")
    assert result.exit_code == 130
    lines = result.stdout.splitlines()
    assert lines[0].split()[0] == "NAME" and len(lines) == 4
    assert [line.split()[1:4] for line in lines[1:]] == [
        ["Pending", "-", "0%"],
        ["Progressing", "-", "10%"],
        ["Promoted", "-", "100%"],
    ]


def test_a_sample_ratio_mismatch_shows_the_counts() -> None:
    """The review: for the SRM rollback only shares were shown, not 5,448 against ~6,065."""
    status = {
        **ROLLED_BACK,
        "reasonCode": "srm",
        "message": "sample-ratio mismatch: challenger got 4.49 % of requests, the router "
        "reported 5.00 % (ln BF = 21.80); results void",
        "srm": {"mismatch": True, "observedShare": 0.0449, "expectedShare": 0.05},
        "arms": {"champion": {"requests": 115_890}, "challenger": {"requests": 5_448}},
    }
    view = output.status_view(_body(status), NOW)
    assert (
        "Split:        challenger 5,448 of 121,338 requests (4.49 %), expected 6,067 (5 %); "
        "mismatch: results void" in view
    )
    assert "ln BF" not in view
    calm = output.status_view(_body({**status, "srm": {**status["srm"], "mismatch": False}}), NOW)
    assert "Split:" not in calm


def test_wait_for_takes_a_phase_in_any_case(cli: Run, cluster: Cluster) -> None:
    """It answered "Value error, 'promoted' is not one of …"."""
    cluster.create(experiment("exp-a"))
    cluster.set_status("exp-a", {"phase": "Promoted", "reasonCode": "promoted"})
    result = cli("status", "exp-a", "--wait-for", "promoted", "--interval", "10ms")
    assert result.exit_code == 0, result.output
    assert "exp-a reached Promoted" in result.stderr
