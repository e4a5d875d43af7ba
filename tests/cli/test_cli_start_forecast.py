"""``canaryctl start`` prints the decision forecast, from --traffic or from Postgres."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from conftest import EXAMPLE, Run

from controller.ingest import load
from controller.storage import experiments
from tests.storage.helpers import T0, outcomes


def test_a_margin_too_tight_for_the_traffic_is_warned_about_naming_the_fix(cli: Run) -> None:
    result = cli("start", "-f", str(EXAMPLE), "--traffic", "1000", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "kind: Experiment" in result.stdout and "Forecast" not in result.stdout
    assert "Forecast through the steps 5 % for 2h, 25 % for 4h" in result.stderr
    warning = next(line for line in result.stderr.splitlines() if line.startswith("warning:"))
    assert "guardrail revenue (margin 2 %) blocks" in warning
    assert "margin" in warning and "maxDuration" in warning and "requests/min" in warning


def test_enough_traffic_gives_no_warning(cli: Run) -> None:
    result = cli("start", "-f", str(EXAMPLE), "--traffic", "89000", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "by maxDuration 100 %" in result.stderr and "warning:" not in result.stderr


def test_without_traffic_or_database_it_says_how_to_get_a_forecast(
    cli: Run, monkeypatch: object
) -> None:
    result = cli("start", "-f", str(EXAMPLE), "--dry-run", "--database-url", "")
    assert result.exit_code == 0, result.output
    assert "no decision forecast: no --traffic and no database configured" in result.stderr
    bad = cli("start", "-f", str(EXAMPLE), "--dry-run", "--traffic", "0")
    assert bad.exit_code == 2 and bad.stderr.startswith("error: --traffic: must be > 0")


def test_without_traffic_it_forecasts_from_the_champions_traffic_in_postgres(
    cli: Run, truncating_engine: sa.Engine, database_url: str
) -> None:
    with truncating_engine.begin() as conn:
        experiments.register_experiment(
            conn, "ranking/ranker-v41", spec={"champion": {"name": "ranker-v41"}}
        )
    table = outcomes(60_000, experiment="ranking/ranker-v41", seconds=3600)
    load.load_table(truncating_engine, table, batch_key="b1", source="test", clock=_Clock())
    result = cli("start", "-f", str(EXAMPLE), "--dry-run", "--database-url", database_url)
    assert result.exit_code == 0, result.output
    assert "traffic: observed for ranker-v41 over its last 60 min in Postgres" in result.stderr
    assert "at 1,000 requests/min" in result.stderr  # 60,000 requests in an hour
    assert "guardrail revenue (margin 2 %) blocks" in result.stderr


class _Clock:
    def now(self):  # type: ignore[no-untyped-def]
        return T0 + timedelta(hours=2)
