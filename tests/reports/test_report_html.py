"""The HTML report opened in headless Chromium (Debian's ``chromium``, driven by Playwright).

Checks what a person sees, on the report of every ``canaryctl demo`` scenario: every chart
draws (one point per look, axis titles), the page logs no console error or warning and
makes no network request at all, hovering a point shows its formatted value, bounds and
time, the time axis zooms, and the first 1280×800 screen holds what each outcome leads
with. Screenshots are kept in ``artifacts/reports/`` (ignored by git). Playwright's own
browser download is never used: Chromium is launched from ``/usr/bin/chromium``.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from controller.cli.main import app
from controller.reports import notebook, read, render
from tests.reports.conftest import PROMOTED, ROLLED_BACK, SRM, DemoReport, with_final_decision

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "reports"
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
SCENARIOS = ["good", "aa", "revenue-drop", "latency-regression", "error-spike", "srm"]
GUARDRAILS = ["revenue", "latency-p99", "errors"]

if not CHROMIUM.exists():  # scripts/setup installs Debian's chromium; see docs/reports.md
    pytest.skip(f"needs {CHROMIUM} (apt-get install -y chromium)", allow_module_level=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright import sync_api

    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


class Page:
    """A page opened offline: every request but the file itself is recorded and refused."""

    def __init__(self, browser: Any, url: str) -> None:
        self.page = browser.new_page(viewport=VIEWPORT)
        self.console: list[str] = []
        self.fetched: list[str] = []
        self.page.on(
            "console",
            lambda m: (
                self.console.append(f"{m.type}: {m.text}")
                if m.type in ("error", "warning")
                else None
            ),
        )
        self.page.on("pageerror", lambda e: self.console.append(f"pageerror: {e}"))
        self.page.route("**/*", self._route)
        self.page.goto(url, wait_until="load")

    def _route(self, r: Any) -> None:
        if r.request.url.startswith("file://") and not self.fetched:
            r.continue_()
        else:
            self.fetched.append(r.request.url)
            r.abort()

    def charts_ready(self) -> None:
        self.page.wait_for_selector(".canaryctl-report[data-charts-ready]", timeout=30_000)

    def inside_first_screen(self, selector: str) -> bool:
        box = self.page.locator(selector).first.bounding_box()
        return (
            box is not None
            and box["y"] >= 0
            and box["y"] + box["height"] <= VIEWPORT["height"]
            and box["x"] + box["width"] <= VIEWPORT["width"]
        )


@pytest.fixture
def opened(browser: Any) -> Iterator[Any]:
    pages: list[Page] = []

    def open_(path: Path) -> Page:
        page = Page(browser, path.as_uri())
        pages.append(page)
        return page

    yield open_
    for p in pages:
        p.page.close()


def _shoot(page: Page, name: str, *, full: bool = False) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.page.screenshot(path=str(path), full_page=full)
    assert path.stat().st_size > 10_000
    return path


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_chart_draws_offline_with_a_point_per_look(
    demo_reports: dict[str, DemoReport], opened: Any, scenario: str
) -> None:
    report = demo_reports[scenario]
    page = opened(report.path)
    page.charts_ready()
    charts = page.page.eval_on_selector_all(
        "[data-chart]",
        """els => els.map(e => ({
            id: e.id,
            svg: !!e.querySelector('svg'),
            points: e.querySelectorAll('.points_marks > path').length,
            margins: e.querySelectorAll('.margin_marks line, .margin_marks path').length,
            alpha: e.querySelectorAll('.alpha_marks line, .alpha_marks path').length,
            steps: e.querySelectorAll('.steps_marks line, .steps_marks path').length,
            titles: [...e.querySelectorAll('.role-axis-title text')].map(t => t.textContent),
        }))""",
    )
    by_id = {c["id"]: c for c in charts}
    assert set(by_id) == {
        "chart-timeline",
        *(f"chart-{g}-{w}" for g in GUARDRAILS for w in ("estimate", "pvalue")),
        "chart-traffic",
        "chart-samples",
        "chart-srm",
    }
    assert all(c["svg"] for c in charts), charts
    html = report.path.read_text()
    drawn = 0
    for g in GUARDRAILS:
        est, pv = by_id[f"chart-{g}-estimate"], by_id[f"chart-{g}-pvalue"]
        declared = _declared(html, f"chart-{g}-estimate", "points")
        # a guardrail still waiting for its own data when another decided has no estimate
        assert est["points"] == declared, (g, est)
        drawn += declared
        assert est["margins"] == 1 and pv["alpha"] == 1 and est["steps"] >= 1, (g, est, pv)
        assert "time (UTC)" in est["titles"] and len(est["titles"]) == 2, est
        assert "always-valid p-value (log)" in pv["titles"]
    assert drawn > 0
    # every decision is marked once on the timeline
    assert by_id["chart-timeline"]["points"] == _declared(html, "chart-timeline", "decisions") > 0
    assert page.console == [] and page.fetched == []


def _declared(html: str, chart_id: str, what: str) -> int:
    """What the chart's spec says it draws (``usermeta``, written by ``charts``)."""
    block = re.search(
        r'<script type="application/json" class="canaryctl-specs">(.*?)</script>', html, re.DOTALL
    )
    assert block is not None
    spec = json.loads(block.group(1))[chart_id]
    return int(spec["usermeta"][what])


def test_hovering_a_point_shows_its_formatted_value_bounds_and_time(
    demo_reports: dict[str, DemoReport], opened: Any
) -> None:
    page = opened(demo_reports["revenue-drop"].path)
    page.charts_ready()
    last = page.page.locator("#chart-revenue-estimate .points_marks > path").last
    last.scroll_into_view_if_needed()
    box = last.bounding_box()
    assert box is not None
    page.page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    tooltip = page.page.locator("#vg-tooltip-element")
    tooltip.wait_for(state="visible", timeout=5_000)
    text = tooltip.inner_text()
    assert "estimate" in text and "anytime-valid bounds" in text and "UTC" in text, text
    assert "p (harm)" in text and "verdict" in text and "fail" in text, text
    # formatted, not raw floats: "−14.46 %", "[−20.22 %, −5.53 %]"
    assert (
        "−" in text
        and " %" in text
        and "None" not in text
        and "e-0" not in text.split("p (harm)")[0]
    )
    _shoot(page, "hover-tooltip-revenue-drop")
    assert page.console == [] and page.fetched == []


def test_the_time_axis_zooms_and_pans(demo_reports: dict[str, DemoReport], opened: Any) -> None:
    page = opened(demo_reports["good"].path)
    page.charts_ready()
    chart = page.page.locator("#chart-revenue-estimate")
    chart.scroll_into_view_if_needed()

    def ticks() -> list[str]:
        return chart.evaluate(
            "e => [...e.querySelectorAll('.role-axis-label text')].map(t => t.textContent)"
        )

    before = ticks()
    box = chart.bounding_box()
    assert box is not None
    page.page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.5)
    page.page.mouse.wheel(0, -600)  # zoom in on the time axis
    page.page.wait_for_timeout(300)
    zoomed = ticks()
    assert zoomed != before
    page.page.mouse.down()
    page.page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.5, steps=5)
    page.page.mouse.up()
    page.page.wait_for_timeout(300)
    assert ticks() != zoomed
    assert page.console == []


FIRST_SCREEN = {
    "guardrail_rollback": [
        "#outcome h2",
        "#outcome .estimate",
        "#outcome .bounds",
        "#outcome .pvalue",
        "#outcome .when",
        "#outcome .per-arm",
        "#results-table",
    ],
    "srm_rollback": ["#outcome h2", "#outcome .srm-counts", "#srm-counts", "#outcome .causes"],
    "promoted": ["#outcome h2", "#results-table"],
}
FAILING = {"revenue-drop": "revenue", "latency-regression": "latency-p99", "error-spike": "errors"}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_the_first_screen_leads_with_the_outcome(
    demo_reports: dict[str, DemoReport], opened: Any, scenario: str
) -> None:
    page = opened(demo_reports[scenario].path)
    page.charts_ready()
    outcome = page.page.locator("#outcome")
    kind = outcome.get_attribute("data-outcome")
    heading = page.page.locator("#outcome h2").inner_text()
    for selector in FIRST_SCREEN[str(kind)]:
        assert page.inside_first_screen(selector), (scenario, selector)
    table = page.page.locator("#results-table")
    verdicts = table.locator("td .verdict").all_inner_texts()
    if scenario in FAILING:
        name = FAILING[scenario]
        assert kind == "guardrail_rollback" and outcome.get_attribute("data-guardrail") == name
        assert heading == f"Rolled back: guardrail {name} failed"
        assert page.inside_first_screen(f"#chart-{name}-estimate")  # the failing one first
        row = table.locator(f'tr[data-guardrail="{name}"]')
        assert row.locator(".verdict").inner_text() == "fail"
        assert "✓" in row.locator('[data-test="harm"]').inner_text()
        assert "→" in page.page.locator("#outcome .per-arm").inner_text()
    elif scenario == "srm":
        assert kind == "srm_rollback" and "sample-ratio mismatch" in heading
        assert "srm" not in heading.split()  # a sentence, not the raw code
        assert verdicts == ["void"] * 3 and "void" in (table.get_attribute("class") or "")
        counts = page.page.locator("#outcome .srm-counts").inner_text()
        assert "expected" in counts and "," in counts
        # the guardrail charts come after the SRM evidence and the table, greyed as void
        chart = page.page.locator("#chart-revenue-estimate").bounding_box()
        evidence = page.page.locator("#outcome .srm-counts").bounding_box()
        assert chart is not None and evidence is not None
        assert chart["y"] > evidence["y"] + evidence["height"]
        assert chart["y"] > (table.bounding_box() or {"y": 1e9})["y"]
        assert page.page.locator("#guardrails.void").count() == 1
    else:
        assert kind == "promoted" and heading.startswith("Promoted")
        assert verdicts == ["pass"] * 3
        decided = table.locator(".decides").all_inner_texts()
        assert len(decided) == 3 and all(t.startswith("non-inferiority") for t in decided)
    for row in table.locator("tbody tr").all():
        cells = row.locator("td").all_inner_texts()
        assert cells[2] != "–" and cells[3] != "–", cells  # both arms in the metric's unit
    _shoot(page, f"{scenario}-first-screen")
    _shoot(page, f"{scenario}-full-page", full=True)
    assert page.console == [] and page.fetched == []


@pytest.mark.parametrize(
    ("outcome", "key", "kind", "code"),
    [
        ("inconclusive", SRM, "rollback", "inconclusive"),
        ("no_harm_found", PROMOTED, "promote", "no_harm_found"),
    ],
)
def test_the_first_screen_of_the_outcomes_no_demo_reaches(
    opened: Any,
    report_engine: sa.Engine,
    tmp_path: Path,
    outcome: str,
    key: str,
    kind: str,
    code: str,
) -> None:
    with report_engine.connect() as conn:
        report = read.build(conn, key)
    if outcome == "inconclusive":
        report = dataclasses.replace(report, failure=None)
    report = with_final_decision(report, kind, code)
    path = tmp_path / f"{outcome}.html"
    path.write_text(render.to_html(report))
    page = opened(path)
    page.charts_ready()
    assert page.page.locator("#outcome").get_attribute("data-outcome") == outcome
    listed = ".blocked li" if outcome == "inconclusive" else ".largest-harm li"
    items = page.page.locator(f"#outcome {listed}")
    assert items.count() == len(report.results) > 0
    for selector in ("#outcome h2", f"#outcome {listed}", "#results-table"):
        assert page.inside_first_screen(selector), selector
    if outcome == "inconclusive":
        assert all("needed:" in t for t in items.all_inner_texts())
    _shoot(page, f"{outcome}-first-screen")
    assert page.console == [] and page.fetched == []


HOST_PAGE = """<!DOCTYPE html><html><head><meta charset="utf-8"><style>
body{font:16px Georgia,serif;margin:40px;color:#222}
h1{font-size:28px} h2{font-size:22px} .row{display:block;margin:7px} table{border:3px solid red}
</style></head><body><h1 id="host-title">Notebook</h1><div class="row" id="host-row">a cell</div>
<table id="host-table"><tr><td>x</td></tr></table><div id="output">OUTPUT</div></body></html>"""


def test_the_notebook_repr_keeps_the_host_pages_styles(
    browser: Any, report_engine: sa.Engine, tmp_path: Path
) -> None:
    def styles(page: Page) -> dict[str, Any]:
        return page.page.evaluate(
            """() => {
                const s = (sel, prop) => getComputedStyle(document.querySelector(sel))[prop];
                return {
                    font: s('body', 'fontFamily'), size: s('body', 'fontSize'),
                    margin: s('body', 'marginLeft'), h1: s('#host-title', 'fontSize'),
                    row: s('#host-row', 'marginTop'), table: s('#host-table', 'borderTopWidth'),
                    boxSizing: s('#host-row', 'boxSizing'),
                };
            }"""
        )

    host = tmp_path / "host.html"
    host.write_text(HOST_PAGE)
    plain = Page(browser, host.as_uri())
    expected = styles(plain)
    plain.page.close()
    repr_html = notebook.load(ROLLED_BACK, engine=report_engine)._repr_html_()
    with_repr = tmp_path / "with-repr.html"
    with_repr.write_text(HOST_PAGE.replace("OUTPUT", repr_html))
    page = Page(browser, with_repr.as_uri())
    try:
        page.charts_ready()
        assert styles(page) == expected
        assert page.page.locator("#output .canaryctl-report #outcome").count() == 1
        assert page.console == [] and page.fetched == []
        _shoot(page, "notebook-repr-in-host-page")
    finally:
        page.page.close()


def test_the_cli_writes_the_same_self_contained_report(
    browser: Any, report_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "report.html"
    result = CliRunner().invoke(
        app,
        [
            "report",
            ROLLED_BACK,
            "--format",
            "html",
            "--out",
            str(path),
            "--database-url",
            report_url,
        ],
    )
    assert result.exit_code == 0, result.output
    page = Page(browser, path.as_uri())
    try:
        page.charts_ready()
        assert page.page.locator("#outcome").get_attribute("data-guardrail") == "revenue"
        assert page.console == [] and page.fetched == []
    finally:
        page.page.close()
