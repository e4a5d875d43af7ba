"""Inline SVG charts for the HTML report: no JavaScript, no fonts or files from elsewhere.

``render`` calls these with values from a ``ReportView``; each function returns one
``<svg>`` element as text. Every chart shares the report's time axis so the charts line up,
and marks what a browser test can count: ``data-points`` on the ``<svg>`` with one
``class="pt"`` element per look (or per minute), ``class="margin"`` on the line the
estimate is judged against, ``class="step-boundary"`` and ``class="decision"`` on the
vertical markers. Pure string building; no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from html import escape

WIDTH = 1180
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 64, 96, 12, 22

DECISION_COLOURS = {
    "rollback": "#c62828",
    "promote": "#2e7d32",
    "fail": "#c62828",
    "advance": "#1565c0",
    "start": "#1565c0",
    "await_promotion": "#6a1b9a",
}


@dataclass(frozen=True)
class TimeAxis:
    start: datetime
    end: datetime

    def x(self, t: datetime, width: int) -> float:
        span = max((self.end - self.start).total_seconds(), 1.0)
        inner = width - PAD_LEFT - PAD_RIGHT
        return PAD_LEFT + inner * (t - self.start).total_seconds() / span

    def ticks(self) -> list[datetime]:
        minutes = max((self.end - self.start).total_seconds() / 60, 1)
        step = next((s for s in (1, 2, 5, 10, 15, 30, 60, 120, 240, 360) if minutes / s <= 8), 720)
        first = self.start.replace(second=0, microsecond=0)
        first += timedelta(minutes=(-first.minute) % step if step <= 60 else 0)
        out, t = [], first
        while t <= self.end:
            if t >= self.start:
                out.append(t)
            t += timedelta(minutes=step)
        return out


@dataclass(frozen=True)
class Marker:
    """A vertical line across a chart: a step boundary or a decision."""

    at: datetime
    css: str  # "step-boundary" or "decision"
    label: str
    kind: str = ""


def _f(x: float) -> str:
    return f"{x:.1f}"


class _Y:
    def __init__(self, lo: float, hi: float, height: int, log: bool = False) -> None:
        self.log = log
        if log:
            lo, hi = math.log10(lo), math.log10(hi)
        if hi - lo < 1e-12:
            lo, hi = lo - 0.5, hi + 0.5
        self.lo, self.hi, self.height = lo, hi, height

    def __call__(self, v: float) -> float:
        if self.log:
            v = math.log10(max(v, 10**self.lo))
        v = min(max(v, self.lo), self.hi)
        inner = self.height - PAD_TOP - PAD_BOTTOM
        return PAD_TOP + inner * (self.hi - v) / (self.hi - self.lo)

    def ticks(self) -> list[float]:
        if self.log:
            exps = range(math.floor(self.hi), math.ceil(self.lo) - 1, -1)
            every = max(1, math.ceil(len(exps) / 5))
            return [10.0**e for e in exps[::every]]
        raw = (self.hi - self.lo) / 4
        mag = 10 ** math.floor(math.log10(raw))
        step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
        first = math.ceil(self.lo / step) * step
        return [first + i * step for i in range(int((self.hi - first) / step) + 1)]


def _fmt(v: float, scale: str) -> str:
    if scale == "relative":
        return f"{100 * v:+.3g} %"
    if scale == "log":
        return f"1e{round(math.log10(v))}" if v < 0.01 else f"{v:g}"
    if scale == "share":
        return f"{100 * v:.0f} %"
    if scale == "count":
        return f"{v:,.0f}"
    return f"{v:.3g}"


def _frame(
    axis: TimeAxis,
    y: _Y,
    width: int,
    height: int,
    scale: str,
    markers: Sequence[Marker],
    clip_id: str,
) -> list[str]:
    """Grid, axes labels, the clip path and the vertical markers."""
    right = width - PAD_RIGHT
    bottom = height - PAD_BOTTOM
    parts = [
        f'<defs><clipPath id="{clip_id}"><rect x="{PAD_LEFT}" y="{PAD_TOP}" '
        f'width="{right - PAD_LEFT}" height="{bottom - PAD_TOP}"/></clipPath></defs>',
        f'<rect class="plot" x="{PAD_LEFT}" y="{PAD_TOP}" width="{right - PAD_LEFT}" '
        f'height="{bottom - PAD_TOP}"/>',
    ]
    for v in y.ticks():
        yy = _f(y(v))
        parts.append(f'<line class="grid" x1="{PAD_LEFT}" x2="{right}" y1="{yy}" y2="{yy}"/>')
        parts.append(
            f'<text class="ylab" x="{PAD_LEFT - 4}" y="{yy}" dy="0.32em">{_fmt(v, scale)}</text>'
        )
    for t in axis.ticks():
        xx = _f(axis.x(t, width))
        parts.append(f'<text class="xlab" x="{xx}" y="{bottom + 14}">{t.strftime("%H:%M")}</text>')
    for m in markers:
        if not axis.start <= m.at <= axis.end:
            continue
        xx = _f(axis.x(m.at, width))
        colour = DECISION_COLOURS.get(m.kind, "#555")
        style = f' style="stroke:{colour}"' if m.css == "decision" else ""
        parts.append(
            f'<line class="{m.css}" data-kind="{escape(m.kind)}" data-at="{m.at.isoformat()}" '
            f'x1="{xx}" x2="{xx}" y1="{PAD_TOP}" y2="{bottom}"{style}>'
            f"<title>{escape(m.label)}</title></line>"
        )
    return parts


def _polyline(points: Sequence[tuple[float, float]], css: str, clip_id: str) -> str:
    if not points:
        return ""
    text = " ".join(f"{_f(x)},{_f(y)}" for x, y in points)
    return f'<polyline class="{css}" clip-path="url(#{clip_id})" points="{text}"/>'


def _hline(
    y: float, width: int, css: str, value: float, label: str, label_y: float | None = None
) -> str:
    yy = _f(y)
    return (
        f'<line class="{css}" data-value="{value!r}" x1="{PAD_LEFT}" x2="{width - PAD_RIGHT}" '
        f'y1="{yy}" y2="{yy}"/>'
        f'<text class="{css.split()[0]}-label" x="{width - PAD_RIGHT + 4}" '
        f'y="{_f(y if label_y is None else label_y)}" dy="0.32em">'
        f"{escape(label)}</text>"
    )


def _svg(chart_id: str, css: str, width: int, height: int, n: int, body: list[str]) -> str:
    return (
        f'<svg id="{chart_id}" class="chart {css}" data-points="{n}" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg" '
        f'role="img">{"".join(body)}</svg>'
    )


def estimate_chart(
    chart_id: str,
    axis: TimeAxis,
    points: Sequence[tuple[datetime, float | None, float | None, float | None, str]],
    *,
    margin: float,
    margin_label: str,
    null: float,
    scale: str,
    markers: Sequence[Marker],
    failed_at: datetime | None = None,
    width: int = 790,
    height: int = 190,
) -> str:
    """Estimate with its confidence-sequence band over time, the margin and no-effect lines.

    ``points`` are ``(evaluated_until, estimate, lower, upper, verdict)``, one per look; a
    look without an estimate (burn-in) is drawn hollow on the no-effect line.
    """
    core = [margin, null] + [p[1] for p in points if p[1] is not None]
    span = max(max(core) - min(core), abs(margin - null), 1e-9)
    lo_cap, hi_cap = min(core) - 1.5 * span, max(core) + 1.5 * span
    bounds = [v for p in points for v in (p[2], p[3]) if v is not None]
    lo = max(min([*core, *bounds]), lo_cap)
    hi = min(max([*core, *bounds]), hi_cap)
    pad = 0.05 * (hi - lo or 1)
    y = _Y(lo - pad, hi + pad, height)
    clip = f"{chart_id}-clip"
    body = _frame(axis, y, width, height, scale, markers, clip)
    # the band: one polygon per run of looks with both bounds
    runs: list[list[tuple[datetime, float, float]]] = [[]]
    for t, _, lower, upper, _v in points:
        if lower is None or upper is None:
            runs.append([])
        else:
            runs[-1].append((t, lower, upper))
    for run in runs:
        if not run:
            continue
        top = [(axis.x(t, width), y(u)) for t, _, u in run]
        bottom = [(axis.x(t, width), y(lo_)) for t, lo_, _ in reversed(run)]
        if len(run) == 1:
            x0 = top[0][0]
            top, bottom = (
                [(x0 - 1.5, top[0][1]), (x0 + 1.5, top[0][1])],
                [
                    (x0 + 1.5, bottom[0][1]),
                    (x0 - 1.5, bottom[0][1]),
                ],
            )
        text = " ".join(f"{_f(a)},{_f(b)}" for a, b in [*top, *bottom])
        body.append(f'<polygon class="band" clip-path="url(#{clip})" points="{text}"/>')
    y_null, y_margin = y(null), y(margin)
    nudge = max(0.0, 11 - abs(y_null - y_margin)) / 2 * (1 if y_margin >= y_null else -1)
    body.append(_hline(y_null, width, "null", null, "no effect", y_null - nudge))
    body.append(_hline(y_margin, width, "margin", margin, margin_label, y_margin + nudge))
    line = [(axis.x(t, width), y(e)) for t, e, *_ in points if e is not None]
    body.append(_polyline(line, "estimate", clip))
    for t, e, lower, upper, verdict in points:
        missing = e is None
        cy = y(null if e is None else e)
        if e is None:
            tip = f"{t:%H:%M} burn-in: no estimate yet"
        else:
            lo_text = "−∞" if lower is None else _fmt(lower, scale)
            hi_text = "+∞" if upper is None else _fmt(upper, scale)
            tip = f"{t:%H:%M} estimate {_fmt(e, scale)} [{lo_text}, {hi_text}] {verdict}"
        css = "pt missing" if missing else f"pt {verdict}"
        body.append(
            f'<circle class="{css}" data-t="{t.isoformat()}" cx="{_f(axis.x(t, width))}" '
            f'cy="{_f(cy)}" r="2.6"><title>{escape(tip)}</title></circle>'
        )
    if failed_at is not None:
        xx = _f(axis.x(failed_at, width))
        body.append(
            f'<line class="failed-at" x1="{xx}" x2="{xx}" y1="{PAD_TOP}" '
            f'y2="{height - PAD_BOTTOM}"><title>first FAIL at {failed_at:%H:%M}</title></line>'
        )
    return _svg(chart_id, "estimate-chart", width, height, len(points), body)


def pvalue_chart(
    chart_id: str,
    axis: TimeAxis,
    points: Sequence[tuple[datetime, float | None, float | None]],
    *,
    alpha: float,
    markers: Sequence[Marker],
    width: int = 440,
    height: int = 190,
    second_label: str = "non-inferiority",
) -> str:
    """Always-valid p-values over time on a log scale, with the alpha line (``class="margin"``).

    ``points`` are ``(evaluated_until, p_harm, p_second)``; one ``pt`` per look (harm test).
    """
    values = [v for _, a, b in points for v in (a, b) if v is not None and v > 0]
    floor = max(min([*values, alpha]) / 10, 1e-12)
    y = _Y(10 ** math.floor(math.log10(floor)), 1.0, height, log=True)
    clip = f"{chart_id}-clip"
    body = _frame(axis, y, width, height, "log", markers, clip)
    body.append(_hline(y(alpha), width, "margin alpha", alpha, f"α = {alpha:.3g}"))
    second = [(axis.x(t, width), y(b)) for t, _, b in points if b is not None]
    body.append(_polyline(second, "p-second", clip))
    harm = [(axis.x(t, width), y(a)) for t, a, _ in points if a is not None]
    body.append(_polyline(harm, "p-harm", clip))
    for t, a, b in points:
        tip = f"{t:%H:%M} p(harm) = {a if a is not None else '–'}; p({second_label}) = {b}"
        body.append(
            f'<circle class="pt{" missing" if a is None else ""}" data-t="{t.isoformat()}" '
            f'cx="{_f(axis.x(t, width))}" cy="{_f(y(a if a is not None else 1.0))}" r="2.2">'
            f"<title>{escape(tip)}</title></circle>"
        )
    return _svg(chart_id, "pvalue-chart", width, height, len(points), body)


def traffic_chart(
    chart_id: str,
    axis: TimeAxis,
    minutes: Sequence[tuple[datetime, float | None]],
    weights: Sequence[tuple[datetime, datetime, float]],
    *,
    markers: Sequence[Marker],
    width: int = WIDTH,
    height: int = 170,
) -> str:
    """The challenger's observed share per minute over the planned weight of each step."""
    y = _Y(0.0, 1.0, height)
    clip = f"{chart_id}-clip"
    body = _frame(axis, y, width, height, "share", markers, clip)
    for start, end, share in weights:
        x0, x1, yy = axis.x(start, width), axis.x(end, width), y(share)
        body.append(
            f'<line class="weight" data-value="{share!r}" x1="{_f(x0)}" x2="{_f(x1)}" '
            f'y1="{_f(yy)}" y2="{_f(yy)}"><title>weight {100 * share:g} %</title></line>'
        )
    mid = timedelta(seconds=30)
    line = [(axis.x(t + mid, width), y(s)) for t, s in minutes if s is not None]
    body.append(_polyline(line, "share", clip))
    for t, s in minutes:
        body.append(
            f'<circle class="pt" data-t="{t.isoformat()}" cx="{_f(axis.x(t + mid, width))}" '
            f'cy="{_f(y(s or 0.0))}" r="2"><title>{t:%H:%M} challenger share '
            f"{'–' if s is None else f'{100 * s:.2f} %'}</title></circle>"
        )
    for m in markers:
        if m.css == "decision" and axis.start <= m.at <= axis.end:
            body.append(
                f'<text class="decision-label" x="{_f(axis.x(m.at, width) + 3)}" '
                f'y="{PAD_TOP + 10}">{escape(m.kind)}</text>'
            )
    return _svg(chart_id, "traffic-chart", width, height, len(minutes), body)


def samples_chart(
    chart_id: str,
    axis: TimeAxis,
    minutes: Sequence[tuple[datetime, int, int]],
    *,
    markers: Sequence[Marker],
    width: int = WIDTH,
    height: int = 150,
) -> str:
    """Finalised requests per minute for each arm."""
    top = max([1, *(max(a, b) for _, a, b in minutes)])
    y = _Y(0.0, top * 1.05, height)
    clip = f"{chart_id}-clip"
    body = _frame(axis, y, width, height, "count", markers, clip)
    mid = timedelta(seconds=30)
    body.append(
        _polyline([(axis.x(t + mid, width), y(a)) for t, a, _ in minutes], "champion", clip)
    )
    body.append(
        _polyline([(axis.x(t + mid, width), y(b)) for t, _, b in minutes], "challenger", clip)
    )
    for t, a, b in minutes:
        body.append(
            f'<circle class="pt" data-t="{t.isoformat()}" cx="{_f(axis.x(t + mid, width))}" '
            f'cy="{_f(y(b))}" r="1.8"><title>{t:%H:%M} champion {a:,}, challenger {b:,}'
            f"</title></circle>"
        )
    return _svg(chart_id, "samples-chart", width, height, len(minutes), body)
