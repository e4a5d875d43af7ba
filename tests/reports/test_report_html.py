"""The HTML report opened in headless Chromium (Debian's ``chromium``, driven by Playwright).

Checks what a person sees: every chart has one point per minute of data and its margin
line, the page logs no console error and fetches nothing, and for a rolled-back experiment
the failing guardrail with its estimate, bounds and time fits the first 1280×800 screen.
A screenshot of each report is kept in ``artifacts/``. Playwright's own browser download
is never used: Chromium is launched from ``/usr/bin/chromium``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from controller.cli.main import app
from controller.reports import view
from controller.storage import experiments, rollups
from controller.storage import looks as look_log
from tests.reports.conftest import PROMOTED, ROLLED_BACK, SRM

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
VIEWPORT = {"width": 1280, "height": 800}
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

if not CHROMIUM.exists():  # scripts/setup installs Debian's chromium; see docs/reports.md
    pytest.skip(f"needs {CHROMIUM} (apt-get install -y chromium)", allow_module_level=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright import sync_api

    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


def _minutes_with_data(engine: sa.Engine, key: str) -> tuple[int, int]:
    """Minutes with data in all, and inside the tests' step windows up to the last look."""
    with engine.connect() as conn:
        exp = experiments.get_experiment(conn, key)
        extent = rollups.data_extent(conn, exp.id)
        assert extent is not None
        rows = rollups.minute_series(conn, exp.id, *view.extent_end(extent))
        looks = look_log.looks(conn, exp.id)
    steps = [
        (datetime.fromisoformat(s["start"]), s["end"] and datetime.fromisoformat(s["end"]))
        for s in exp.analysis_state["steps"]
    ]
    last = looks[-1]["evaluated_until"]
    minutes = {r["period"] for r in rows}
    inside = {
        m for m in minutes for start, end in steps if start <= m < last and (end is None or m < end)
    }
    return len(minutes), len(inside)


def _open(browser: Any, path: Path) -> tuple[Any, list[str], list[str]]:
    page = browser.new_page(viewport=VIEWPORT)
    errors: list[str] = []
    fetched: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))

    def route(r: Any) -> None:
        if r.request.url.startswith("file://"):
            r.continue_()
        else:
            fetched.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.goto(path.as_uri(), wait_until="load")
    return page, errors, fetched


def _write(report_url: str, key: str, path: Path) -> None:
    result = CliRunner().invoke(
        app, ["report", key, "--format", "html", "--out", str(path), "--database-url", report_url]
    )
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("key", [ROLLED_BACK, PROMOTED, SRM])
def test_every_chart_has_a_point_per_minute_and_its_margin(
    browser: Any, report_url: str, report_engine: sa.Engine, tmp_path: Path, key: str
) -> None:
    path = tmp_path / "report.html"
    _write(report_url, key, path)
    page, errors, fetched = _open(browser, path)
    all_minutes, test_minutes = _minutes_with_data(report_engine, key)
    charts = page.eval_on_selector_all(
        "svg.chart",
        """els => els.map(e => ({
            id: e.id, cls: e.getAttribute('class'), declared: +e.dataset.points,
            points: e.querySelectorAll('.pt').length,
            margins: e.querySelectorAll('line.margin').length,
            marginY: [...e.querySelectorAll('line.margin')].map(l => +l.getAttribute('y1')),
            height: e.getBoundingClientRect().height,
        }))""",
    )
    by_id = {c["id"]: c for c in charts}
    guardrails = ["revenue", "latency-p99", "errors"]
    for name in guardrails:
        for which in ("estimate", "pvalue"):
            c = by_id[f"chart-{name}-{which}"]
            assert c["points"] == c["declared"] == test_minutes, c
            assert c["margins"] == 1 and 0 < c["marginY"][0] < c["height"], c
    for chart_id in ("chart-traffic", "chart-samples"):
        assert by_id[chart_id]["points"] == by_id[chart_id]["declared"] == all_minutes
    assert by_id["chart-srm"]["points"] == test_minutes and by_id["chart-srm"]["margins"] == 1
    assert page.locator(".step-boundary").count() > 0 and page.locator(".decision").count() > 0
    assert errors == [] and fetched == []
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / f"report-{key.replace('/', '-')}.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 0
    page.close()


def test_the_failure_is_on_the_first_screen(browser: Any, report_url: str, tmp_path: Path) -> None:
    path = tmp_path / "rolled-back.html"
    _write(report_url, ROLLED_BACK, path)
    page, errors, _ = _open(browser, path)

    def inside(selector: str) -> bool:
        box = page.locator(selector).first.bounding_box()
        return (
            box is not None
            and box["y"] >= 0
            and box["y"] + box["height"] <= VIEWPORT["height"]
            and box["x"] + box["width"] <= VIEWPORT["width"]
        )

    outcome = page.locator("#outcome")
    assert outcome.get_attribute("data-guardrail") == "revenue"
    text = outcome.inner_text()
    assert "Rolled back: guardrail revenue failed" in text
    for selector in (
        "#outcome h2",
        "#outcome .estimate",
        "#outcome .bounds",
        "#outcome .pvalue",
        "#outcome .when",
        "#chart-revenue-estimate",
        "#chart-revenue-pvalue",
    ):
        assert inside(selector), selector
    assert "%" in page.locator("#outcome .estimate").inner_text()
    assert "UTC" in page.locator("#outcome .when").inner_text()
    assert errors == []
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "report-rolled-back-first-screen.png"))
    page.close()
