"""HTML report benchmark (issue 13): file size and time until every chart is drawn, in Chromium.

Runs three ``canaryctl demo`` scenarios (good, revenue-drop, srm; seed 7) into a scratch
database, writes each report, and opens it in Debian's headless Chromium (``/usr/bin/chromium``,
through Playwright) round by round, interleaved with a baseline: the same page with its
scripts removed (the tables and text as they are, no chart drawn), so that load on the
machine weighs on both alike. Reported: the median over the rounds of the time from
navigation to the report's ``data-charts-ready`` mark (baseline: to the load event), and the
file sizes. Writes the ``report_render`` section of bench/RESULTS.md.

Usage: .venv/bin/python bench/report_render.py [--runs 5] [--database-url postgresql://...]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import uuid
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._results import table, write_section
from canaryctl_demo import demo
from controller.storage import db

SCENARIOS = ("good", "revenue-drop", "srm")


def scratch(server_url: str) -> tuple[str, sa.Engine]:
    name = f"canaryctl_bench_reports_{uuid.uuid4().hex[:8]}"
    admin = db.make_engine(server_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = (
        sa.engine.make_url(db.sqlalchemy_url(server_url))
        .set(database=name)
        .render_as_string(hide_password=False)
        .replace("postgresql+psycopg://", "postgresql://", 1)
    )
    db.upgrade(url)
    return name, db.make_engine(url)


def drop(server_url: str, name: str) -> None:
    admin = db.make_engine(server_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("CANARYCTL_DATABASE_URL")
        or os.environ.get("CANARYCTL_TEST_DATABASE_URL"),
    )
    args = parser.parse_args()
    if not args.database_url:
        sys.exit("--database-url or $CANARYCTL_DATABASE_URL is needed")
    from playwright import sync_api

    out = Path(tempfile.mkdtemp())
    name, engine = scratch(args.database_url)
    files: dict[str, tuple[Path, Path]] = {}
    try:
        for scenario in SCENARIOS:
            outcome = demo.run_scenario(engine, scenario, seed=7, report_dir=out)
            assert outcome.report is not None
            full = Path(outcome.report)
            bare = out / f"{scenario}-no-scripts.html"
            bare.write_text(re.sub(r"<script\b.*?</script>", "", full.read_text(), flags=re.S))
            files[scenario] = (full, bare)
    finally:
        engine.dispose()
        drop(args.database_url, name)
    times: dict[str, tuple[list[float], list[float]]] = {s: ([], []) for s in SCENARIOS}
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium", args=["--headless", "--no-sandbox"]
        )
        for _ in range(args.runs):
            for scenario, (full, bare) in files.items():
                page = browser.new_page(viewport={"width": 1280, "height": 800})
                page.goto(bare.as_uri(), wait_until="load")
                times[scenario][1].append(
                    page.evaluate(
                        "() => performance.timing.loadEventEnd - performance.timing.navigationStart"
                    )
                )
                page.close()
                page = browser.new_page(viewport={"width": 1280, "height": 800})
                page.goto(full.as_uri(), wait_until="load")
                page.wait_for_selector("[data-charts-ready]", timeout=60_000)
                times[scenario][0].append(page.evaluate("() => performance.now()"))
                page.close()
        browser.close()
    rows = []
    for scenario, (full, bare) in files.items():
        t_full, t_bare = (statistics.median(ts) for ts in times[scenario])
        rows.append(
            [
                scenario,
                f"{full.stat().st_size / 1024:,.0f} KB",
                f"{bare.stat().st_size / 1024:,.0f} KB",
                f"{t_full:,.0f} ms",
                f"{t_bare:,.0f} ms",
                f"{t_full / t_bare:.1f}×" if t_bare > 0 else "–",
            ]
        )
    load = os.getloadavg()[0]
    body = (
        "## HTML report render (bench/report_render.py)\n\n"
        f"Headless Chromium, median of {args.runs} rounds, load average {load:.1f} on "
        f"{os.cpu_count()} cores. Baseline: the same page without its scripts.\n\n"
        + table(
            [
                "demo scenario",
                "report",
                "without scripts",
                "until every chart is drawn",
                "baseline load",
                "ratio",
            ],
            rows,
        )
    )
    write_section("report_render", body)
    print(body)


if __name__ == "__main__":
    main()
