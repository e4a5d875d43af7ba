"""``canaryctl plan --steps/-f --traffic``: the shared forecast through a ramp, and nonsense refused."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

import analysis
from analysis import forecast as fc
from controller.cli.main import app
from controller.experiment.spec import parse_duration
from controller.operate import forecasting

ROOT = Path(__file__).resolve().parents[2]
RAMP = ["plan", "--steps", "5:2h,25:4h,50", "--margin", "0.02"]


def run(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, list(args))


def test_json_is_the_forecast_of_the_analysis_engine() -> None:
    result = run(*RAMP, "--traffic", "1000", "-o", "json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    g = analysis.GuardrailSpec("revenue", analysis.GuardrailKind.MEAN, margin=0.02)
    f = fc.forecast(
        fc.alone(analysis.AnalysisSettings(), 3),
        [g],
        [fc.RampStep(0.05, 120), fc.RampStep(0.25, 240), fc.RampStep(0.5, 0)],
        1440,
        fc.Traffic(1000),
    )
    assert doc["promotion"]["probability"] == pytest.approx(f.promotion.probability, abs=1e-4)
    assert doc["stepsEnd"] == "6h" and doc["maxDuration"] == "24h"
    assert doc["likely"] is False and doc["blocking"] == "revenue"
    assert doc["fix"]["margin"] > 0.02 and doc["fix"]["requestsPerMinute"] > 1000


def test_the_table_warns_at_low_traffic_naming_guardrail_and_fix_and_not_at_high() -> None:
    low = run(*RAMP, "--traffic", "1000")
    assert low.exit_code == 0, low.output
    assert (
        "healthy challenger promoted" in low.stdout
        and "steps end                     6h" in low.stdout
    )
    warning = next(line for line in low.stdout.splitlines() if line.startswith("warning:"))
    assert "guardrail revenue (margin 2 %) blocks" in warning
    assert "requests/min" in warning and "maxDuration" in warning
    high = run(*RAMP, "--traffic", "89000")
    assert high.exit_code == 0 and "warning:" not in high.stdout
    assert "median 6h, 90th percentile 6h; by maxDuration 100 %" in high.stdout


def test_a_harm_is_forecast_to_fail() -> None:
    result = run(*RAMP, "--traffic", "89000", "--effect", "-0.05", "-o", "json")
    doc = json.loads(result.stdout)
    assert doc["failure"]["probability"] == 1.0
    assert doc["promotion"]["probability"] == 1.0  # the healthy forecast is unchanged


def test_a_manifest_is_forecast_with_all_its_guardrails_and_minimum_samples() -> None:
    path = str(ROOT / "manifests" / "examples" / "gateway-api.yaml")
    result = run("plan", "-f", path, "--traffic", "1000", "-o", "json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert [g["name"] for g in doc["guardrails"]] == [
        "revenue",
        "latency-p99",
        "errors",
        "latency-mean",
    ]
    assert doc["stepsEnd"] == "14h40m"  # 20,000 samples at 5 % of 1,000/min take 400 min
    assert doc["blocking"] == "revenue"
    latency = doc["guardrails"][3]  # kind: latency, margin {relative: 0.05}
    assert (latency["kind"], latency["limit"]) == ("latency", "margin 5 % slower")
    assert latency["probability"] > 0.98 and latency["median"] == "14h40m"  # when steps end


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--effect", "-0.01"], "error: --effect: -1 % is on the wrong side of the margin -2 %"),
        (["--effect", "-2"], "error: --effect: -200 % is a change of more than −100 %"),
        (["--steps", "5:2h,25:4h,150"], "error: --steps: weight 150 must lie strictly between"),
        (["--steps", "25:2h,5"], "error: --steps: weights must increase"),
        (["--steps", "5:2x"], "error: --steps: '5:2x': a duration is not like"),
        (["--traffic", "0"], "error: --traffic: must be > 0"),
        (["--margin", "-0.1"], "error: --margin: -0.1 must lie in [0, 1], the tolerated"),
        (["--margin", "2"], "error: --margin: 2 must lie in [0, 1], the tolerated relative drop"),
        (["--kind", "tail"], "error: --margin: not with --kind tail: give --kappa"),
        (["--kappa", "1.2"], "error: --kappa: not with --kind mean: give --margin"),
        (["--kind", "latency", "--kappa", "1.2"], "error: --kappa: not with --kind latency"),
        (["--kind", "latency", "--effect", "0.01"], "error: --effect: +1 % is on the wrong side"),
        (["--kind", "latency", "--effect", "-2"], "error: --effect: -200 % is a change of more"),
        (["--kind", "latency", "--log-latency-sd", "0"], "error: --log-latency-sd: log_latency_sd"),
        (["-f", "x.yaml"], "error: give either -f FILE or --steps with --kind/--margin/--kappa"),
        (["--nonzero-share", "2"], "error: --nonzero-share: revenue_nonzero must lie in"),
        (["--rps", "10"], "error: --rps: not with --steps or -f"),
    ],
)
def test_nonsense_is_refused_in_one_line_naming_the_option(args: list[str], message: str) -> None:
    result = run(*RAMP, "--traffic", "1000", *args)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(message), result.stderr
    assert result.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--kind", "rate"], "error: --kappa: give the tolerated inflation for --kind rate"),
        (["--kind", "latency"], "error: --margin: give the tolerated relative slow-down"),
        (
            ["--kind", "latency", "--margin", "-0.05"],
            "error: --margin: -0.05 must lie in [0, 1], the tolerated relative slow-down",
        ),
        (["--kind", "tail", "--kappa", "0.5"], "error: --kappa: 0.5 must lie in [1, 100]"),
        (["--kind", "rate", "--kappa", "1.5", "--effect", "1.2"], "error: --effect: ×1.2 is not"),
    ],
)
def test_each_kind_asks_for_its_own_limit_in_one_line(args: list[str], message: str) -> None:
    result = run("plan", "--steps", "5:1h,50", "--traffic", "1000", *args)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(message), result.stderr
    assert result.stderr.count("\n") == 1


def test_the_latency_kind_forecasts_its_pass_and_a_slow_down_failing() -> None:
    """--kind latency is the engine's mean of log latency, margin ln(1 + m), as the operator's."""
    args = ["--steps", "5:30m,50", "--traffic", "1000", "--kind", "latency", "--margin", "0.05"]
    args += ["--deadline", "4h"]
    result = run("plan", *args, "--effect", "0.2", "-o", "json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    [g] = doc["guardrails"]
    assert (g["name"], g["kind"], g["limit"]) == ("latency-mean", "latency", "margin 5 % slower")
    spec = analysis.GuardrailSpec(
        "latency-mean",
        analysis.GuardrailKind.MEAN,
        metric=analysis.MeanMetric.LOG_LATENCY,
        direction=analysis.Direction.LOWER_IS_BETTER,
        margin=math.log1p(0.05),
        relative=False,
    )
    f = fc.forecast(
        fc.alone(analysis.AnalysisSettings(), 3),
        [spec],
        [fc.RampStep(0.05, 30), fc.RampStep(0.5, 0)],
        240,
        fc.Traffic(1000),
        fc.Effect(latency_factor=1.2),
    )
    assert doc["promotion"]["probability"] == pytest.approx(f.promotion.probability, abs=1e-4)
    assert doc["promotion"]["median"] == forecasting.duration(f.promotion.median)
    assert doc["failure"]["probability"] == 1.0
    assert doc["failing"]["latency-mean"]["median"] == forecasting.duration(f.failure.median)
    noisier = run("plan", *args, "--log-latency-sd", "1.5", "-o", "json")
    median = parse_duration(json.loads(noisier.stdout)["promotion"]["median"])
    assert median.total_seconds() / 60 > 1.5 * f.promotion.median  # sd ×4.3: passes much later


def test_without_a_ramp_the_single_step_options_are_required() -> None:
    result = run("plan", "--traffic", "1000")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: --rps: required (give --steps or -f")
