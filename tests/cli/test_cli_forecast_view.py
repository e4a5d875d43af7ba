"""``canaryctl status`` and ``list --forecast`` show the operator's decision forecast."""

from __future__ import annotations

from typing import Any

from conftest import Cluster, Run, experiment

ADVICE = (
    "a healthy challenger is promoted before maxDuration 24h with probability 14 % (median "
    "never): guardrail revenue (margin 2 %) blocks, non-inferior by then in 14 % of runs; "
    "80 % likely with margin 4.3 % or maxDuration 88h57m or 4,068 requests/min"
)
STATUS: dict[str, Any] = {
    "phase": "Progressing",
    "challengerWeight": 10,
    "step": "1/2",
    "stepIndex": 0,
    "forecast": {
        "stepIndex": 0,
        "likely": False,
        "promotion": {"median": "never", "p90": "never", "probability": 0.14},
        "blocking": "revenue",
        "advice": ADVICE,
    },
    "conditions": [
        {
            "type": "DecisionForecast",
            "status": "False",
            "reason": "PromotionUnlikely",
            "message": ADVICE,
            "lastTransitionTime": "2026-11-26T08:00:00Z",
        }
    ],
}


def test_status_shows_the_forecast_and_does_not_call_it_a_hold(cli: Run, cluster: Cluster) -> None:
    cluster.create(experiment("exp-f"))
    cluster.set_status("exp-f", STATUS)
    result = cli("status", "exp-f")
    assert result.exit_code == 0, result.output
    assert f"Forecast:     {ADVICE} (at step 1)" in result.stdout
    assert "Holds:" not in result.stdout


def test_list_adds_the_forecast_column_on_request(cli: Run, cluster: Cluster) -> None:
    cluster.create(experiment("exp-f"))
    cluster.set_status("exp-f", STATUS)
    cluster.create(experiment("exp-new"))
    plain = cli("list")
    assert plain.exit_code == 0 and "PROMOTION" not in plain.stdout
    result = cli("list", "--forecast")
    assert result.exit_code == 0, result.output
    header, *rows = result.stdout.splitlines()
    assert header.split()[:7] == [
        *("NAME", "PHASE", "HELD", "WEIGHT", "STEP", "VERDICT", "PROMOTION")
    ]
    row = next(r for r in rows if r.startswith("exp-f"))
    assert "14% revenue" in row
    assert next(r for r in rows if r.startswith("exp-new")).split()[6] == "-"
