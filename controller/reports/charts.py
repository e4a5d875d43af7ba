"""The report's charts as Vega-Lite specifications (plain JSON-ready dictionaries).

Sits between ``view`` and ``render``: one function per chart turns a ``ReportView`` into a
Vega-Lite spec; ``render`` embeds the specs with Vega, Vega-Lite and vega-embed inlined
(``static/``, vendored from the npm registry by ``scripts/vendor_vega``), so the page draws
them offline, with hover tooltips and zoom/pan on the time axis. Every number a tooltip shows
is formatted here, in Python, by ``fmt``: the page computes nothing. Pure: no I/O.

Rules of the drawing (docs/reports.md): guardrail and SRM charts span the canary steps only
(the baseline has its own panel, the timeline); a band that leaves the axis is cut at the
edge and marked there with a triangle whose tooltip gives the true bound; step boundaries
are dashed rules; decisions are rules in the charts and labelled once, in the timeline, on
lanes chosen so that no two labels overlap.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from controller.reports import fmt
from controller.reports import view as v

SCHEMA = "https://vega.github.io/schema/vega-lite/v6.json"
BLUE, RED, GREEN, GREY, PURPLE = "#1565c0", "#c62828", "#2e7d32", "#777777", "#6a1b9a"
HEIGHT = 160
#: Approximate width of the timeline in pixels and of one label character (lane choice).
TIMELINE_PX, CHAR_PX = 1200.0, 6.2
#: p-values are drawn no lower than this (the tooltip gives the true value).
P_FLOOR = 1e-12

DECISION_COLORS = {
    "rollback": RED,
    "fail": RED,
    "promote": GREEN,
    "step": BLUE,
    "pause": "#ef6c00",
    "resume": "#00897b",
}


def _ms(t: datetime) -> float:
    return t.timestamp() * 1000.0


def _padded(start: datetime, end: datetime) -> list[float]:
    pad = max((end - start) / 40, timedelta(seconds=30))
    return [_ms(start - pad), _ms(end + pad)]


def canary_domain(report: v.ReportView) -> list[float] | None:
    """The time axis of the guardrail and SRM charts: the canary steps only, not the baseline."""
    if not report.steps:
        return None
    start = min(s.start for s in report.steps)
    ends = [s.end for s in report.steps if s.end is not None]
    ends += [look.evaluated_until for look in report.looks]
    ends += [d.at for d in report.decisions if d.at >= start]
    return _padded(start, max([start + v.MINUTE, *ends]))


def full_domain(report: v.ReportView) -> list[float]:
    """The time axis of the timeline and traffic panels: everything, baseline included."""
    times = [s.start for s in report.steps] + [s.end for s in report.steps if s.end]
    times += [m.minute for m in report.minutes] + [m.minute + v.MINUTE for m in report.minutes]
    times += [d.at for d in report.decisions] + [look.evaluated_until for look in report.looks]
    if not times:
        times = [report.created_at, report.created_at + v.MINUTE]
    return _padded(min(times), max(times))


def _x(domain: Sequence[float] | None, title: str = "time (UTC)") -> dict[str, Any]:
    """The shared time axis; its extent comes from :func:`_anchor` (see there)."""
    return {
        "field": "t",
        "type": "temporal",
        "title": title,
        "scale": {"type": "utc"},
        # whole minutes only: the looks are minutes, and "%H:%M" would repeat at 30 s ticks
        "axis": {"format": "%H:%M", "labelOverlap": True, "grid": False, "tickMinStep": 60_000},
    }


def _anchor(domain: Sequence[float] | None) -> list[dict[str, Any]]:
    """Two invisible points at the ends of ``domain``: they set the time axis's extent.

    An explicit ``scale.domain`` on a time axis compiles to ``datetime(ms)`` expressions,
    which vega's CSP-safe expression interpreter (the page runs no ``eval``) reads as a
    year; the axis then collapses. Data at the two ends give the same extent, safely.
    """
    if domain is None:
        return []
    ends = [{"t": datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat()} for ms in domain]
    return [
        {
            "data": {"values": ends},
            "mark": {"type": "point", "opacity": 0, "size": 1},
            "encoding": {"x": _x(domain)},
        }
    ]


ZOOM = {"name": "zoom", "select": {"type": "interval", "encodings": ["x"]}, "bind": "scales"}


def _base(
    chart_id: str,
    layers: list[dict[str, Any]],
    domain: Sequence[float] | None,
    *,
    height: int = HEIGHT,
) -> dict[str, Any]:
    # an empty dataset would give Vega an empty (infinite) extent: leave such layers out
    kept = [layer for layer in layers if "data" not in layer or layer["data"].get("values")]
    for layer in kept:
        layer.pop("params", None)
    anchor = _anchor(domain)
    if anchor:  # zoom and pan bind to the time scale through the anchor layer
        anchor[0]["params"] = [ZOOM]
    layers = anchor + kept
    return {
        "$schema": SCHEMA,
        "width": "container",
        "height": height,
        "autosize": {"type": "fit-x", "contains": "padding"},
        "usermeta": {"id": chart_id},
        "config": {"view": {"stroke": "#ccc"}, "axis": {"labelFontSize": 10, "titleFontSize": 11}},
        "layer": layers,
    }


def _markers(report: v.ReportView, domain: Sequence[float] | None) -> list[dict[str, Any]]:
    """Step boundaries (dashed) and decisions (solid, coloured) inside ``domain``, as rules."""

    def inside(t: datetime) -> bool:
        return domain is None or domain[0] <= _ms(t) <= domain[1]

    x = _x(domain)
    steps = [
        {
            "t": s.start.isoformat(),
            "what": f"step {s.index + 1} at {s.weight} % begins",
            "time": fmt.time(s.start),
        }
        for s in report.steps
        if inside(s.start)
    ]
    decisions = [
        {
            "t": d.at.isoformat(),
            "what": f"{d.kind}: {d.reason_code}",
            "time": fmt.time(d.at),
            "color": DECISION_COLORS.get(d.kind, GREY),
        }
        for d in report.decisions
        if inside(d.at)
    ]
    tip = [{"field": "what", "title": "marker"}, {"field": "time", "title": "at"}]
    out = []
    if steps:
        out.append(
            {
                "name": "steps",
                "data": {"values": steps},
                "mark": {"type": "rule", "strokeDash": [4, 4], "color": GREY, "opacity": 0.8},
                "encoding": {"x": x, "tooltip": tip},
            }
        )
    if decisions:
        out.append(
            {
                "name": "decisions",
                "data": {"values": decisions},
                "mark": {"type": "rule", "strokeWidth": 1.6, "opacity": 0.75},
                "encoding": {
                    "x": x,
                    "color": {"field": "color", "type": "nominal", "scale": None},
                    "tooltip": tip,
                },
            }
        )
    return out


def _line_rule(
    y: float, label: str, color: str, dash: list[int], name: str, *, right: bool = False
) -> list[dict[str, Any]]:
    """A horizontal line with its label at the left end (``right``: at the right end)."""
    data = {"values": [{"y": y, "label": label}]}
    return [
        {
            "name": name,
            "data": data,
            "mark": {"type": "rule", "color": color, "strokeDash": dash, "strokeWidth": 1.4},
            "encoding": {"y": {"field": "y", "type": "quantitative"}},
        },
        {
            "data": data,
            "mark": {
                "type": "text",
                "color": color,
                "align": "right" if right else "left",
                "dx": -3 if right else 3,
                "dy": -6,
                "fontSize": 10,
            },
            "encoding": {
                "y": {"field": "y", "type": "quantitative"},
                "x": {"value": {"expr": "width"}} if right else {"value": 0},
                "text": {"field": "label"},
            },
        },
    ]


def _y_domain(values: Sequence[float], keep: Sequence[float]) -> tuple[float, float]:
    """An axis holding every ``keep`` value and the bulk of ``values`` (the rest is clipped)."""
    xs = sorted(x for x in values if math.isfinite(x))
    if len(xs) > 8:  # the first looks' bands are wide: the axis follows the later ones
        xs = xs[len(xs) // 10 : len(xs) - len(xs) // 10]
    lo, hi = min([*xs, *keep]), max([*xs, *keep])
    pad = (hi - lo) * 0.08 or abs(hi) * 0.1 or 0.01
    return lo - pad, hi + pad


AXIS_TITLES = {
    "relative": "challenger vs champion, B/A − 1",
    "absolute": "challenger − champion (metric units)",
    "ratio": "rate ratio p_B / p_A (×)",
}
AXIS_FORMATS = {"relative": "+.1%", "absolute": "+.3g", "ratio": ".2f"}


def estimate_chart(report: v.ReportView, info: v.GuardrailInfo) -> dict[str, Any]:
    """A guardrail's estimate with its anytime-valid band, margin, no-effect line and markers."""
    points = [p for p in report.series.get(info.name, ()) if p.estimate is not None]
    late = [p for p in points if p.lower is not None and p.upper is not None]
    lo, hi = _y_domain(
        [x for p in late for x in (p.lower, p.upper) if x is not None]
        + [p.estimate for p in points if p.estimate is not None],
        [info.margin_line, info.null_line],
    )
    rows, clipped = [], []
    for p in points:
        est = p.estimate
        assert est is not None
        lower = lo if p.lower is None else max(p.lower, lo)
        upper = hi if p.upper is None else min(p.upper, hi)
        row = {
            "t": p.evaluated_until.isoformat(),
            "estimate": min(max(est, lo), hi),
            "lower": lower,
            "upper": upper,
            "verdict": p.verdict,
            "time": fmt.time(p.evaluated_until),
            "estimate_text": fmt.value(est, info.scale),
            "bounds_text": fmt.bounds(p.lower, p.upper, info.scale),
            "p_harm": fmt.p(p.p_value),
            "p_noninferiority": fmt.p(p.p_value_noninferiority),
            "step": p.step_index + 1,
        }
        rows.append(row)
        for bound, edge, shape, word in (
            (p.lower, lo, "triangle-down", "below"),
            (p.upper, hi, "triangle-up", "above"),
        ):
            if bound is not None and (bound < lo if word == "below" else bound > hi):
                clipped.append(
                    {
                        "t": row["t"],
                        "y": edge,
                        "shape": shape,
                        "time": row["time"],
                        "note": f"band continues {word} the axis, to {fmt.value(bound, info.scale)}",
                    }
                )
    y = {
        "type": "quantitative",
        "title": AXIS_TITLES[info.scale],
        "scale": {"domain": [lo, hi], "zero": False, "nice": False},
        "axis": {"format": AXIS_FORMATS[info.scale]},
    }
    tooltip = [
        {"field": "time", "title": "look"},
        {"field": "estimate_text", "title": "estimate"},
        {"field": "bounds_text", "title": "anytime-valid bounds"},
        {"field": "p_harm", "title": "p (harm)"},
        {"field": "p_noninferiority", "title": "p (non-inferiority)"},
        {"field": "verdict", "title": "verdict"},
        {"field": "step", "title": "step"},
    ]
    domain = canary_domain(report)
    x = _x(domain)
    margin_label = (
        f"κ = {info.margin_line:g}"
        if info.scale == "ratio"
        else f"margin {fmt.value(info.margin_line, info.scale)}"
    )
    layers: list[dict[str, Any]] = [
        {
            "data": {"values": rows},
            "mark": {"type": "area", "color": BLUE, "opacity": 0.18},
            "encoding": {"x": x, "y": {**y, "field": "lower"}, "y2": {"field": "upper"}},
        },
        {
            "data": {"values": rows},
            "mark": {"type": "line", "color": BLUE, "strokeWidth": 1.6},
            "encoding": {"x": x, "y": {**y, "field": "estimate"}},
        },
        *_line_rule(info.null_line, "no effect", GREY, [2, 3], "null", right=True),
        *_line_rule(info.margin_line, margin_label, RED, [6, 3], "margin"),
        *_markers(report, domain),
        {
            "name": "points",
            "data": {"values": rows},
            "params": [ZOOM],
            "mark": {"type": "point", "filled": True, "size": 36, "opacity": 1},
            "encoding": {
                "x": x,
                "y": {**y, "field": "estimate"},
                "color": {
                    "field": "verdict",
                    "type": "nominal",
                    "scale": {
                        "domain": ["continue", "pass", "fail"],
                        "range": [BLUE, GREEN, RED],
                    },
                    "legend": {"orient": "top", "title": None},
                },
                "tooltip": tooltip,
            },
        },
    ]
    if clipped:
        layers.append(
            {
                "name": "clipped",
                "data": {"values": clipped},
                "mark": {"type": "point", "filled": True, "size": 50, "color": RED},
                "encoding": {
                    "x": x,
                    "y": {"field": "y", "type": "quantitative"},
                    "shape": {"field": "shape", "type": "nominal", "scale": None},
                    "tooltip": [
                        {"field": "time", "title": "look"},
                        {"field": "note", "title": "clipped"},
                    ],
                },
            }
        )
    if not rows:
        layers.append(
            {
                "name": "empty",
                "data": {"values": [{"text": "no estimate yet: the burn-in was not met"}]},
                "mark": {"type": "text", "color": GREY, "fontSize": 12},
                "encoding": {"text": {"field": "text"}},
            }
        )
    spec = _base(f"chart-{info.name}-estimate", layers, domain)
    spec["usermeta"].update(points=len(rows), clipped=len(clipped))
    return spec


def _p_rows(
    times: Sequence[datetime], series: dict[str, Sequence[float | None]]
) -> list[dict[str, Any]]:
    rows = []
    for test, ps in series.items():
        for t, p in zip(times, ps, strict=True):
            if p is None:
                continue
            rows.append(
                {
                    "t": t.isoformat(),
                    "p": max(p, P_FLOOR),
                    "test": test,
                    "time": fmt.time(t),
                    "p_text": fmt.p(p),
                }
            )
    return rows


def _p_chart(
    chart_id: str,
    report: v.ReportView,
    rows: list[dict[str, Any]],
    alpha: float,
    tests: list[str],
    *,
    height: int = HEIGHT,
) -> dict[str, Any]:
    low = min([alpha / 10, *(r["p"] for r in rows)]) if alpha > 0 else P_FLOOR
    y = {
        "field": "p",
        "type": "quantitative",
        "title": "always-valid p-value (log)",
        "scale": {"type": "log", "domain": [max(low, P_FLOOR), 1]},
        "axis": {"format": ".0e", "tickCount": 5},
    }
    domain = canary_domain(report)
    x = _x(domain)
    dash = {"harm": [1, 0], "non-inferiority": [3, 2], "sample ratio": [1, 0]}
    colors = {"harm": BLUE, "non-inferiority": PURPLE, "sample ratio": BLUE}
    encoding = {
        "x": x,
        "y": y,
        "color": {
            "field": "test",
            "type": "nominal",
            "scale": {"domain": tests, "range": [colors[t] for t in tests]},
            "legend": {"orient": "top", "title": None},
        },
        "strokeDash": {
            "field": "test",
            "type": "nominal",
            "scale": {"domain": tests, "range": [dash[t] for t in tests]},
            "legend": None,
        },
    }
    tooltip = [
        {"field": "time", "title": "look"},
        {"field": "test", "title": "test"},
        {"field": "p_text", "title": "p"},
    ]
    layers = [
        {
            "data": {"values": rows},
            "mark": {"type": "line", "strokeWidth": 1.5},
            "encoding": encoding,
        },
        *(_line_rule(alpha, f"α = {fmt.alpha(alpha)}", RED, [6, 3], "alpha") if alpha > 0 else []),
        *_markers(report, domain),
        {
            "name": "points",
            "data": {"values": rows},
            "params": [ZOOM],
            "mark": {"type": "point", "filled": True, "size": 22},
            "encoding": {**encoding, "tooltip": tooltip},
        },
    ]
    spec = _base(chart_id, layers, domain, height=height)
    spec["usermeta"]["points"] = len(rows)
    return spec


def pvalue_chart(report: v.ReportView, info: v.GuardrailInfo, alpha: float) -> dict[str, Any]:
    """Both always-valid p-values of a guardrail (harm and non-inferiority) with their alpha."""
    points = report.series.get(info.name, ())
    rows = _p_rows(
        [p.evaluated_until for p in points],
        {
            "harm": [p.p_value for p in points],
            "non-inferiority": [p.p_value_noninferiority for p in points],
        },
    )
    return _p_chart(f"chart-{info.name}-pvalue", report, rows, alpha, ["harm", "non-inferiority"])


def srm_chart(report: v.ReportView) -> dict[str, Any]:
    rows = _p_rows(
        [look.evaluated_until for look in report.looks],
        {"sample ratio": [look.srm.p_value for look in report.looks]},
    )
    alpha = report.settings.alpha_each if report.settings.srm_enabled else 0.0
    return _p_chart("chart-srm", report, rows, alpha, ["sample ratio"], height=130)


def lanes(times_px: Sequence[float], widths_px: Sequence[float], gap: float = 8.0) -> list[int]:
    """The lowest lane for each label (in time order) whose previous label ends before it starts."""
    ends: list[float] = []
    out = []
    for x, w in zip(times_px, widths_px, strict=True):
        lane = next((i for i, end in enumerate(ends) if end + gap <= x), len(ends))
        if lane == len(ends):
            ends.append(x + w)
        else:
            ends[lane] = x + w
        out.append(lane)
    return out


def timeline_chart(report: v.ReportView) -> dict[str, Any]:
    """The baseline and each step as bands, every decision labelled once, on lanes that never overlap."""
    domain = full_domain(report)
    span = domain[1] - domain[0]
    decisions = sorted(report.decisions, key=lambda d: d.at)
    labels = [f"{d.at:%H:%M} {d.kind}" for d in decisions]
    xs = [(_ms(d.at) - domain[0]) / span * TIMELINE_PX for d in decisions]
    widths = [CHAR_PX * len(text) + 10 for text in labels]
    # a label that would run off the right edge is written to the left of its point
    left = [x + w > TIMELINE_PX for x, w in zip(xs, widths, strict=True)]
    lane_of = lanes(
        [x - w if flip else x for x, w, flip in zip(xs, widths, left, strict=True)], widths
    )
    n_lanes = max(lane_of, default=0) + 1
    points = [
        {
            "t": d.at.isoformat(),
            "lane": lane,
            "label": text,
            "what": f"{d.kind}: {d.reason_code}",
            "reason": d.reason,
            "actor": d.actor,
            "time": fmt.time(d.at),
            "color": DECISION_COLORS.get(d.kind, GREY),
            "side": "left" if flip else "right",
        }
        for d, text, lane, flip in zip(decisions, labels, lane_of, left, strict=True)
    ]
    first = min((s.start for s in report.steps), default=None)
    bands = []
    if report.minutes and first is not None and report.minutes[0].minute < first:
        bands.append(
            {
                "t": report.minutes[0].minute.isoformat(),
                "t2": first.isoformat(),
                "label": "baseline",
                "kind": "baseline",
                "time": f"{fmt.time(report.minutes[0].minute)} – {fmt.time(first)}",
            }
        )
    end = datetime.fromtimestamp(domain[1] / 1000, tz=first.tzinfo) if first else None
    for s in report.steps:
        bands.append(
            {
                "t": s.start.isoformat(),
                "t2": (s.end or end or s.start).isoformat(),
                "label": f"step {s.index + 1} · {s.weight} %",
                "kind": "step",
                "time": f"{fmt.time(s.start)} – {fmt.time(s.end)}",
            }
        )
    x = _x(domain)
    height = 22 + 16 * n_lanes
    band_tip = [{"field": "label", "title": "window"}, {"field": "time", "title": "from – to"}]
    y_lane = {"field": "lane", "type": "ordinal", "axis": None, "scale": {"paddingOuter": 0.3}}
    layers: list[dict[str, Any]] = [
        {
            "data": {"values": bands},
            "mark": {"type": "rect", "opacity": 0.14, "stroke": "#fff"},
            "encoding": {
                # the scale (and its domain) comes from the other layers: a rect's x and x2
                # would each declare it, which Vega-Lite reports as a conflict
                "x": {"field": "t", "type": "temporal"},
                "x2": {"field": "t2"},
                "color": {
                    "field": "kind",
                    "type": "nominal",
                    "scale": {"domain": ["baseline", "step"], "range": [GREY, BLUE]},
                    "legend": None,
                },
                "tooltip": band_tip,
            },
        },
        {
            "data": {"values": bands},
            "mark": {
                "type": "text",
                "align": "left",
                "baseline": "bottom",
                "dx": 3,
                "y": height - 2,
                "fontSize": 10,
                "color": "#333",
            },
            "encoding": {"x": x, "text": {"field": "label"}},
        },
    ]
    if points:
        layers += [
            {
                "name": "points",
                "data": {"values": points},
                "params": [ZOOM],
                "mark": {"type": "point", "filled": True, "size": 40, "shape": "diamond"},
                "encoding": {
                    "x": x,
                    "y": y_lane,
                    "color": {"field": "color", "type": "nominal", "scale": None},
                    "tooltip": [
                        {"field": "time", "title": "at"},
                        {"field": "what", "title": "decision"},
                        {"field": "actor", "title": "by"},
                        {"field": "reason", "title": "reason"},
                    ],
                },
            },
            *(
                {
                    # one dataset a side (a filter leaving one empty would warn)
                    "data": {"values": [p for p in points if p["side"] == side]},
                    "mark": {"type": "text", "align": align, "dx": dx, "fontSize": 10},
                    "encoding": {
                        "x": x,
                        "y": y_lane,
                        "text": {"field": "label"},
                        "color": {"field": "color", "type": "nominal", "scale": None},
                    },
                }
                for side, align, dx in (("right", "left", 6), ("left", "right", -6))
            ),
        ]
    spec = _base("chart-timeline", layers, domain, height=height)
    spec["usermeta"].update(decisions=len(points), lanes=n_lanes)
    return spec


def traffic_chart(report: v.ReportView) -> dict[str, Any]:
    """The challenger's share of requests per minute over the step weights (baseline included)."""
    rows = [
        {
            "t": m.minute.isoformat(),
            "share": m.challenger_share,
            "time": fmt.time(m.minute),
            "share_text": "–"
            if m.challenger_share is None
            else f"{100 * m.challenger_share:.2f} %",
            "requests": f"champion {m.champion_n:,}, challenger {m.challenger_n:,}",
        }
        for m in report.minutes
        if m.challenger_share is not None
    ]
    weights = []
    for s in report.steps:
        weights.append(
            {"t": s.start.isoformat(), "w": s.share, "label": f"step {s.index + 1}: {s.weight} %"}
        )
        if s.end is not None:
            weights.append(
                {"t": s.end.isoformat(), "w": s.share, "label": f"step {s.index + 1}: {s.weight} %"}
            )
    domain = full_domain(report)
    x = _x(domain)
    y = {
        "type": "quantitative",
        "title": "challenger share of requests",
        "axis": {"format": ".0%"},
        "scale": {"domain": [0, 1]},
    }
    layers: list[dict[str, Any]] = [
        {
            "data": {"values": weights},
            "mark": {
                "type": "line",
                "interpolate": "step-after",
                "color": "#bbb",
                "strokeWidth": 6,
                "opacity": 0.7,
            },
            "encoding": {
                "x": x,
                "y": {**y, "field": "w"},
                "detail": {"field": "label"},
                "tooltip": [{"field": "label", "title": "reported split"}],
            },
        },
        *_markers(report, domain),
        {
            "name": "points",
            "data": {"values": rows},
            "params": [ZOOM],
            "mark": {
                "type": "line",
                "color": BLUE,
                "strokeWidth": 1.4,
                "point": {"size": 10, "filled": True},
            },
            "encoding": {
                "x": x,
                "y": {**y, "field": "share"},
                "tooltip": [
                    {"field": "time", "title": "minute"},
                    {"field": "share_text", "title": "challenger share"},
                    {"field": "requests", "title": "requests"},
                ],
            },
        },
    ]
    spec = _base("chart-traffic", layers, domain, height=140)
    spec["usermeta"]["points"] = len(rows)
    return spec


def samples_chart(report: v.ReportView) -> dict[str, Any]:
    """Finalised requests per minute and arm."""
    rows = [
        {
            "t": m.minute.isoformat(),
            "arm": arm,
            "n": n,
            "time": fmt.time(m.minute),
            "n_text": f"{n:,}",
        }
        for m in report.minutes
        for arm, n in (("champion", m.champion_n), ("challenger", m.challenger_n))
    ]
    domain = full_domain(report)
    x = _x(domain)
    layers = [
        *_markers(report, domain),
        {
            "name": "points",
            "data": {"values": rows},
            "params": [ZOOM],
            "mark": {"type": "line", "strokeWidth": 1.4, "point": {"size": 10, "filled": True}},
            "encoding": {
                "x": x,
                "y": {"field": "n", "type": "quantitative", "title": "requests per minute"},
                "color": {
                    "field": "arm",
                    "type": "nominal",
                    "scale": {"domain": ["champion", "challenger"], "range": [GREY, BLUE]},
                    "legend": {"orient": "top", "title": None},
                },
                "tooltip": [
                    {"field": "time", "title": "minute"},
                    {"field": "arm", "title": "arm"},
                    {"field": "n_text", "title": "requests"},
                ],
            },
        },
    ]
    spec = _base("chart-samples", layers, domain, height=130)
    spec["usermeta"]["points"] = len(report.minutes)
    return spec


def all_charts(report: v.ReportView) -> dict[str, dict[str, Any]]:
    """Every chart of the report by its element id."""
    out = {"chart-timeline": timeline_chart(report)}
    for info in report.guardrails:
        out[f"chart-{info.name}-estimate"] = estimate_chart(report, info)
        out[f"chart-{info.name}-pvalue"] = pvalue_chart(report, info, report.settings.alpha_each)
    out["chart-traffic"] = traffic_chart(report)
    out["chart-samples"] = samples_chart(report)
    out["chart-srm"] = srm_chart(report)
    return out
