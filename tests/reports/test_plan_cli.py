"""``canaryctl plan``: the analysis engine's numbers, in every output format, and wrong input."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

import analysis
from controller.cli.main import app

ARGS = [
    "plan",
    "--rps",
    "200",
    "--weight",
    "10",
    "--mean",
    "0.13",
    "--sd",
    "0.7",
    "--effect",
    "-0.05",
]


def run(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, list(args))


def test_json_carries_the_engines_numbers() -> None:
    result = run(*ARGS, "-o", "json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    expected = analysis.plan(0.13, 0.7, 200, 0.1, -0.05, n_guardrails=3)
    assert doc["effectAbsolute"] == pytest.approx(expected.effect_abs)
    assert doc["fixedHorizon"]["challengerSamples"] == int(-(-expected.fixed_horizon_n // 1))
    assert doc["fixedHorizon"]["seconds"] == pytest.approx(expected.fixed_horizon_seconds)
    assert doc["sequential"]["medianChallengerSamples"] == int(-(-expected.median_n // 1))
    assert doc["sequential"]["powerByDeadline"] == expected.power_by_deadline
    assert doc["alphaPerGuardrail"] == pytest.approx(0.0125)


def test_table_and_yaml() -> None:
    table = run(*ARGS)
    assert table.exit_code == 0, table.output
    assert "effect to detect   −5 % of the mean 0.13 = −0.0065 per request" in table.stdout
    assert "Fixed horizon (80 % power):" in table.stdout and "median detection" in table.stdout
    doc = yaml.safe_load(run(*ARGS, "-o", "yaml").stdout)
    assert doc["inputs"]["weight"] == 10 and doc["inputs"]["deadline"] == "24h"


def test_a_deadline_too_short_says_not_by_the_deadline() -> None:
    result = run(*ARGS, "--deadline", "10m", "-o", "json")
    doc = json.loads(result.stdout)
    assert doc["sequential"]["medianChallengerSamples"] is None
    assert doc["sequential"]["powerByDeadline"] < 0.5
    assert "not by the deadline" in run(*ARGS, "--deadline", "10m").stdout


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (["--rps", "0"], "error: --rps: requests_per_second must be > 0"),
        (["--weight", "100"], "error: --weight: must lie strictly between 0 and 100"),
        (["--sd", "0"], "error: --sd: sd must be > 0"),
        (["--effect", "0"], "error: --effect: effect must not be zero"),
        (["--alpha", "0.7"], "error: --alpha: must lie in (0, 0.5], as spec.analysis.alpha"),
        (["--deadline", "1d"], "error: --deadline: '1d' is not a duration"),
        (["--mean", "0"], "error: --mean: must be a non-zero number"),
    ],
)
def test_wrong_input_names_the_option(change: list[str], message: str) -> None:
    result = run(*ARGS, *change)  # the last occurrence of an option wins
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(message), result.stderr


def test_missing_option_is_a_usage_error() -> None:
    result = run("plan", "--rps", "100")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: --weight: required (give --steps or -f")
