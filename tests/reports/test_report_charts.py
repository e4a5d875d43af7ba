"""The chart specs: decision labels never overlap, a band past the axis is marked, times are UTC."""

from __future__ import annotations

import itertools

import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from controller.reports import charts, fmt, read
from tests.reports.conftest import ROLLED_BACK


@given(
    st.lists(
        st.tuples(st.floats(0, 1200, allow_nan=False), st.floats(10, 300, allow_nan=False)),
        max_size=30,
    )
)
def test_labels_on_one_lane_never_overlap(labels: list[tuple[float, float]]) -> None:
    labels.sort()
    xs, widths = [x for x, _ in labels], [w for _, w in labels]
    lanes = charts.lanes(xs, widths, gap=8.0)
    for lane in set(lanes):
        spans = sorted((x, x + w) for (x, w), k in zip(labels, lanes, strict=True) if k == lane)
        assert all(end + 8.0 <= start for (_, end), (start, _) in itertools.pairwise(spans))


def test_a_band_past_the_axis_is_cut_and_marked_with_its_true_bound(
    report_engine: sa.Engine,
) -> None:
    with report_engine.connect() as conn:
        report = read.build(conn, ROLLED_BACK)
    info = next(g for g in report.guardrails if g.name == "revenue")
    spec = charts.estimate_chart(report, info)
    layers = {layer.get("name"): layer for layer in spec["layer"]}
    points = layers["points"]["data"]["values"]
    domain = layers["points"]["encoding"]["y"]["scale"]["domain"]
    clipped = layers["clipped"]["data"]["values"]
    assert spec["usermeta"]["clipped"] == len(clipped) > 0
    series = {p.evaluated_until.isoformat(): p for p in report.series["revenue"]}
    for mark in clipped:
        p = series[mark["t"]]
        true = p.lower if mark["shape"] == "triangle-down" else p.upper
        assert mark["y"] in domain and fmt.value(true, "relative") in mark["note"]
        assert (true < domain[0]) if mark["shape"] == "triangle-down" else (true > domain[1])
    for row in points:  # drawn values stay inside the axis
        assert domain[0] <= row["lower"] <= row["upper"] <= domain[1]
    assert spec["usermeta"]["points"] == sum(p.estimate is not None for p in series.values())


def test_the_guardrail_charts_span_the_steps_and_the_timeline_everything(
    report_engine: sa.Engine,
) -> None:
    with report_engine.connect() as conn:
        report = read.build(conn, ROLLED_BACK)
    first_step = min(s.start for s in report.steps).timestamp() * 1000
    canary, full = charts.canary_domain(report), charts.full_domain(report)
    assert canary is not None and full[0] <= canary[0] < first_step  # no baseline before the steps
    minutes = [m.minute.timestamp() * 1000 for m in report.minutes]
    assert full[0] < min(minutes) and max(minutes) < full[1]
    timeline = charts.timeline_chart(report)
    assert timeline["usermeta"]["decisions"] == len(report.decisions)
    for spec in charts.all_charts(report).values():
        assert spec["layer"][0]["encoding"]["x"]["scale"] == {"type": "utc"}
