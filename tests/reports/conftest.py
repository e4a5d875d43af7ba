"""Fixtures: real experiments, simulated once per run by the real operator, in a database of their own.

The shared ``conn`` and ``truncating_engine`` fixtures leave the run's database empty after
each test, so the reports' data lives in databases of their own on the same server: one
experiment rolled back for a 30 % revenue drop, one promoted, one rolled back for SRM, all
run through ``canaryctl_demo.world.World`` (the Kubernetes API emulator, the real ingest
path and the real operator, in simulated time); and, for the browser tests, every scenario
of ``canaryctl demo`` with its HTML report, run once per session (:func:`demo_reports`).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from analysis import Scenario
from canaryctl_demo import demo
from canaryctl_demo.world import DECREASING_STEPS, World, experiment_body, guardrails
from controller.reports import view as report_view
from controller.reports.view import ReportView
from controller.storage import db

T0 = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
DONE = {"Promoted", "RolledBack", "Failed"}
ROLLED_BACK = "ml/revenue-drop"
PROMOTED = "ml/healthy"
SRM = "ml/srm"
INVALID = "ml/invalid"

#: Wide margins so that the healthy challenger passes within minutes of simulated time.
_QUICK_PASS = {"guardrails": guardrails(revenue_margin=0.3, latency_kappa=2.0, errors_kappa=3.0)}


@contextmanager
def _scratch_database(server_url: str, prefix: str) -> Iterator[str]:
    """A migrated database of its own on the test server (dropped at the end)."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = db.make_engine(server_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = (
        sa.engine.make_url(db.sqlalchemy_url(server_url))
        .set(database=name)
        .render_as_string(hide_password=False)
        .replace("postgresql+psycopg://", "postgresql://", 1)
    )
    try:
        db.upgrade(url)
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def report_url(server_url: str) -> Iterator[str]:
    """A migrated database holding the simulated experiments (dropped at the end)."""
    with _scratch_database(server_url, "canaryctl_reports") as url:
        engine = db.make_engine(url)
        try:
            base = Scenario(requests_per_minute=10_000)
            with World.start(engine, start=T0) as world:
                world.create(experiment_body("revenue-drop"))
                status = world.run(
                    "revenue-drop",
                    base.with_effect(revenue_effect=-0.3),
                    until=DONE,
                    max_minutes=240,
                )
                assert status["phase"] == "RolledBack", status
                world.create(
                    experiment_body(
                        "healthy",
                        steps=[
                            {"weight": 10, "minDuration": "10m", "minSamples": 1000},
                            {"weight": 50, "minDuration": "10m", "minSamples": 5000},
                        ],
                        analysis=_QUICK_PASS,
                    )
                )
                status = world.run("healthy", base, until=DONE, max_minutes=240)
                assert status["phase"] == "Promoted", status
                world.create(experiment_body("srm"))
                status = world.run(
                    "srm", base.with_effect(srm_shortfall=0.15), until=DONE, max_minutes=240
                )
                assert (status["phase"], status["reasonCode"]) == ("RolledBack", "srm"), status
                world.create(experiment_body("invalid", steps=DECREASING_STEPS))
                world.advance(timedelta(0))
                assert world.status("invalid")["phase"] == "Failed"
            yield url
        finally:
            engine.dispose()


@dataclass(frozen=True)
class DemoReport:
    """One ``canaryctl demo`` scenario's experiment and its HTML report."""

    scenario: str
    key: str
    outcome: str
    reason_code: str
    path: Path


@pytest.fixture(scope="session")
def demo_reports(
    server_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, DemoReport]]:
    """Every demo scenario run once (seed 7) with its report written as ``canaryctl demo`` does."""
    out = tmp_path_factory.mktemp("demo-reports")
    with _scratch_database(server_url, "canaryctl_demo_reports") as url:
        engine = db.make_engine(url)
        try:
            reports = {}
            for scenario in demo.ORDER:
                o = demo.run_scenario(engine, scenario, seed=7, report_dir=out)
                assert o.expected and o.report is not None, (scenario, o.outcome, o.reason)
                key = f"{demo.NAMESPACE}/{Path(o.report).stem}"
                reports[scenario] = DemoReport(
                    scenario, key, o.outcome, o.reason_code, Path(o.report)
                )
            yield reports
        finally:
            engine.dispose()


@pytest.fixture(scope="session")
def report_engine(report_url: str) -> Iterator[sa.Engine]:
    engine = db.make_engine(report_url)
    yield engine
    engine.dispose()


def with_final_decision(report: ReportView, kind: str, code: str) -> ReportView:
    """``report`` as if its last decision had been ``kind``/``code`` (what selects the first screen)."""
    last = report.looks[-1].evaluated_until
    decision = report_view.DecisionEntry(
        last + timedelta(seconds=30), kind, "canaryctl", code, "test"
    )
    return dataclasses.replace(report, outcome=decision, decisions=(*report.decisions, decision))
