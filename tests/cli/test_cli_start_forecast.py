"""``canaryctl start`` prints the decision forecast, from --traffic or from Postgres."""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from conftest import EXAMPLE, Run

from controller.ingest import load
from controller.storage import experiments, rollups
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
    def __init__(self, at: datetime = T0 + timedelta(hours=2)) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at


def test_with_a_whole_day_in_postgres_it_forecasts_hour_by_hour_at_the_same_hours(
    cli: Run, truncating_engine: sa.Engine, database_url: str
) -> None:
    """The champion's last day, read at the clock hours the run will cover (a Schedule)."""
    with truncating_engine.begin() as conn:
        exp_id = experiments.register_experiment(
            conn, "ranking/ranker-v41", spec={"champion": {"name": "ranker-v41"}}
        )
    # a day of 1,500 requests an hour, and 6,000 more from 12:00 to 13:00
    day = outcomes(36_000, experiment="ranking/ranker-v41", seconds=86_400)
    busy = outcomes(
        6_000, seed=1, experiment="ranking/ranker-v41", start=T0 + timedelta(hours=3), seconds=3600
    )
    clock = _Clock(T0 + timedelta(days=1, hours=2))
    load.load_table(truncating_engine, day, batch_key="b1", source="test", clock=clock)
    load.load_table(truncating_engine, busy, batch_key="b2", source="test", clock=clock)
    with truncating_engine.connect() as conn:
        # a run starting at 11:20 on a later day reads 11:00 of the data's day first
        hours = rollups.champion_day_totals(
            conn, "ranker-v41", T0 + timedelta(days=3, hours=2, minutes=20)
        )
    assert hours is not None and len(hours) == 24 and all(m == 60 for _, m in hours)
    counts = [sum(a.n for a in totals.values()) for totals, _ in hours]
    assert sum(counts) == 42_000 and counts[1] == max(counts) and counts[1] > 7_000
    assert exp_id is not None
    result = cli("start", "-f", str(EXAMPLE), "--dry-run", "--database-url", database_url)
    assert result.exit_code == 0, result.output
    assert "traffic: observed for ranker-v41 in Postgres hour by hour" in result.stderr
    assert "at 29 requests/min on average, hour by hour" in result.stderr  # 42,000 a day
