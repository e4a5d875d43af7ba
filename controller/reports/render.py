"""A ReportView as one self-contained HTML file, as JSON, or as a CSV time series.

Sits after ``view``: pure functions from a ``ReportView`` to text. The HTML carries its
own CSS and inline SVG charts (``svg``), loads nothing from elsewhere and runs no
script, so it opens offline and a browser test can count what it draws. The outcome, and
for a rollback the failing guardrail with its estimate, bounds, p-value and time, come
first so that they fit the first screen (1280×800).

Over 400 lines because the page's markup and styles are written here as Python strings;
they belong in templates, which the reports' own rework will bring (then this module keeps
only the number formatting and the assembly).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterator
from datetime import datetime, timedelta
from enum import StrEnum
from html import escape
from typing import Any

from controller.reports import svg
from controller.reports import view as v


class Format(StrEnum):
    HTML = "html"
    JSON = "json"
    CSV = "csv"


def render(report: v.ReportView, fmt: Format) -> str:
    """The report in ``fmt`` as text."""
    if fmt is Format.JSON:
        return to_json(report)
    if fmt is Format.CSV:
        return to_csv(report)
    return to_html(report)


# ----------------------------------------------------------------------------- JSON, CSV


def to_json(report: v.ReportView) -> str:
    return json.dumps(report.to_dict(), indent=2, allow_nan=False) + "\n"


CSV_COLUMNS = (
    "evaluated_until",
    "step_index",
    "challenger_weight",
    "guardrail",
    "kind",
    "estimate",
    "lower",
    "upper",
    "margin",
    "p_value",
    "p_value_noninferiority",
    "alpha",
    "verdict",
    "reason_code",
    "samples_champion",
    "samples_challenger",
    "srm_p_value",
    "srm_observed_share",
    "srm_expected_share",
)


def rows(report: v.ReportView) -> Iterator[dict[str, Any]]:
    """The time series: one row per look (finalised minute) and guardrail, oldest first."""
    looks = {look.evaluated_until: look for look in report.looks}
    alpha = report.settings.alpha_each
    for info in report.guardrails:
        for p in report.series.get(info.name, ()):
            look = looks[p.evaluated_until]
            yield {
                "evaluated_until": p.evaluated_until,
                "step_index": p.step_index,
                "challenger_weight": look.challenger_weight,
                "guardrail": info.name,
                "kind": info.kind,
                "estimate": p.estimate,
                "lower": p.lower,
                "upper": p.upper,
                "margin": info.margin_line,
                "p_value": p.p_value,
                "p_value_noninferiority": p.p_value_noninferiority,
                "alpha": alpha,
                "verdict": p.verdict,
                "reason_code": p.reason_code,
                "samples_champion": look.samples_champion,
                "samples_challenger": look.samples_challenger,
                "srm_p_value": look.srm.p_value,
                "srm_observed_share": look.srm.observed_share,
                "srm_expected_share": look.srm.expected_share,
            }


def to_csv(report: v.ReportView) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in sorted(rows(report), key=lambda r: (r["evaluated_until"], r["guardrail"])):
        writer.writerow(
            {
                k: val.isoformat() if isinstance(val, datetime) else ("" if val is None else val)
                for k, val in row.items()
            }
        )
    return out.getvalue()


# ----------------------------------------------------------------------------- HTML pieces


def _coverage(percent: float) -> str:
    """A coverage like 99.9875 % shown with enough digits not to round up to 100 %."""
    for digits in range(1, 6):
        text = f"{percent:.{digits}f}"
        if float(text) < 100.0:
            return text
    return f"{percent:.6f}"


def fmt_value(x: float | None, scale: str | None) -> str:
    """A guardrail number as people read it: ``−25.9 %`` (relative), ``×1.13`` (ratio)."""
    if x is None or not math.isfinite(x):
        return "–"
    if scale == "relative":
        return f"{100 * x:+.2f} %".replace("-", "−")
    if scale == "ratio":
        return f"×{x:.3f}"
    return f"{x:+.4g}".replace("-", "−")


def fmt_p(p: float | None) -> str:
    if p is None:
        return "–"
    return f"{p:.2g}" if p < 0.001 else f"{p:.4f}"


def fmt_time(t: datetime | None) -> str:
    return "–" if t is None else t.strftime("%Y-%m-%d %H:%M UTC")


def _axis(report: v.ReportView) -> svg.TimeAxis:
    times = [s.start for s in report.steps]
    times += [s.end for s in report.steps if s.end is not None]
    times += [look.evaluated_until for look in report.looks]
    times += [m.minute for m in report.minutes] + [m.minute + v.MINUTE for m in report.minutes]
    times += [d.at for d in report.decisions]
    if not times:
        now = report.created_at
        return svg.TimeAxis(now, now + timedelta(minutes=1))
    start, end = min(times), max(times)
    pad = max((end - start) / 60, timedelta(seconds=30))
    return svg.TimeAxis(start - pad, end + pad)


def _markers(report: v.ReportView) -> list[svg.Marker]:
    out = [
        svg.Marker(s.start, "step-boundary", f"step {s.index + 1} at {s.weight} % begins")
        for s in report.steps
    ]
    out += [
        svg.Marker(d.at, "decision", f"{d.at:%H:%M} {d.kind}: {d.reason_code}: {d.reason}", d.kind)
        for d in report.decisions
    ]
    return out


def _step_of(report: v.ReportView, index: int | None) -> str:
    step = next((s for s in report.steps if s.index == index), None)
    if step is None:
        return ""
    return f"step {step.index + 1}/{max(report.n_steps, len(report.steps))} at {step.weight} %"


def _outcome(report: v.ReportView) -> str:
    out = report.outcome
    f = report.failure
    phase = report.phase
    if f is not None and f.guardrail is not None:
        info = next((g for g in report.guardrails if g.name == f.guardrail), None)
        coverage = 100 * (1 - 2 * (f.alpha or 0))
        when = f.first_failed_at or f.at
        step = _step_of(report, f.step_index)
        since = next((s.start for s in report.steps if s.index == f.step_index), None)
        into = "" if since is None else f", {int((when - since) / v.MINUTE)} min into {step}"
        return f"""
<section id="outcome" class="outcome fail" data-guardrail="{escape(f.guardrail)}">
  <h2>Rolled back: guardrail <b>{escape(f.guardrail)}</b> failed</h2>
  <div class="facts">
    <div class="fact"><span class="k">estimate</span>
      <span class="big estimate">{fmt_value(f.estimate, f.scale)}</span>
      <span class="sub">{escape(info.describe if info else "")}</span></div>
    <div class="fact"><span class="k">confidence sequence ({_coverage(coverage)} %, anytime-valid)</span>
      <span class="big bounds">[{fmt_value(f.lower, f.scale)}, {fmt_value(f.upper, f.scale)}]</span>
      <span class="sub">margin {fmt_value(f.margin_line, f.scale)}: the whole band is past it</span></div>
    <div class="fact"><span class="k">harm p-value</span>
      <span class="big pvalue">{fmt_p(f.p_value)}</span>
      <span class="sub">≤ α = {f.alpha:.4g} (alpha {report.settings.alpha:g} over {report.settings.n_tests} tests)</span></div>
    <div class="fact"><span class="k">failed at</span>
      <span class="big when">{when:%H:%M} UTC</span>
      <span class="sub">{when:%Y-%m-%d}{escape(into)}; rolled back {f.at:%H:%M}</span></div>
  </div>
  <p class="reason"><code>{escape(f.reason_code)}</code> {escape(f.reason)}</p>
</section>"""
    if f is not None:  # a rollback for another reason (srm, inconclusive, manual, …)
        actor = out.actor if out is not None else "?"
        last = report.looks[-1].srm if report.looks else None
        srm = (
            ""
            if last is None or f.reason_code != "srm"
            else f"""<div class="facts"><div class="fact"><span class="k">challenger share</span>
      <span class="big">{100 * (last.observed_share or 0):.2f} %</span>
      <span class="sub">expected {100 * (last.expected_share or 0):.2f} %</span></div>
    <div class="fact"><span class="k">SRM p-value</span><span class="big pvalue">{fmt_p(last.p_value)}</span>
      <span class="sub">α = {report.settings.alpha_each:.4g}</span></div></div>"""
        )
        return f"""
<section id="outcome" class="outcome fail">
  <h2>Rolled back: {escape(f.reason_code)}</h2>{srm}
  <p class="reason">{fmt_time(f.at)}, by {escape(actor)}: {escape(f.reason)}</p>
</section>"""
    css = {"Promoted": "pass", "RolledBack": "fail", "Failed": "fail"}.get(phase, "running")
    headline = {
        "Promoted": "Promoted: every guardrail passed",
        "Failed": "Failed",
    }.get(phase, f"{phase}: no final decision yet")
    if phase == "Promoted" and out is not None and out.reason_code == "no_harm_found":
        # spec.analysis.onInconclusive=promote: never shown as "passed" (docs/statistics.md)
        css, headline = (
            "running",
            "Promoted at maxDuration: no harm found, non-inferiority not shown",
        )
    reason = (
        ""
        if out is None
        else f'<p class="reason">{fmt_time(out.at)}: <code>{escape(out.reason_code)}</code> {escape(out.reason)}</p>'
    )
    return f"""
<section id="outcome" class="outcome {css}">
  <h2>{escape(headline)}</h2>{reason}
</section>"""


def _guardrail_section(report: v.ReportView, info: v.GuardrailInfo, axis: svg.TimeAxis) -> str:
    points = report.series.get(info.name, ())
    markers = _markers(report)
    failed_at = next((p.evaluated_until for p in points if p.verdict == "fail"), None)
    margin_label = (
        f"κ = {info.margin_line:g}"
        if info.scale == "ratio"
        else f"margin {fmt_value(info.margin_line, info.scale)}"
    )
    est = svg.estimate_chart(
        f"chart-{info.name}-estimate",
        axis,
        [(p.evaluated_until, p.estimate, p.lower, p.upper, p.verdict) for p in points],
        margin=info.margin_line,
        margin_label=margin_label,
        null=info.null_line,
        scale=info.scale,
        markers=markers,
        failed_at=failed_at,
    )
    pv = svg.pvalue_chart(
        f"chart-{info.name}-pvalue",
        axis,
        [(p.evaluated_until, p.p_value, p.p_value_noninferiority) for p in points],
        alpha=report.settings.alpha_each,
        markers=markers,
    )
    last = points[-1] if points else None
    summary = (
        "no looks yet"
        if last is None
        else f"last look {last.evaluated_until:%H:%M}: {fmt_value(last.estimate, info.scale)} "
        f"[{fmt_value(last.lower, info.scale)}, {fmt_value(last.upper, info.scale)}], "
        f"p = {fmt_p(last.p_value)}, <b class='verdict {last.verdict}'>{last.verdict}</b>"
    )
    threshold = (
        ""
        if info.threshold_ms is None
        else f" · threshold {info.threshold_ms:g} ms ({info.threshold_source})"
    )
    what = {"relative": "B/A − 1", "absolute": "B − A", "ratio": "p<sub>B</sub>/p<sub>A</sub>"}
    return f"""
<section class="guardrail" id="guardrail-{escape(info.name)}" data-guardrail="{escape(info.name)}">
  <h3>{escape(info.name)} <span class="muted">{info.kind}{threshold} · {escape(info.describe)}</span></h3>
  <p class="summary">{summary}</p>
  <div class="row">
    <figure>{est}<figcaption>estimate ({what[info.scale]}) with its confidence-sequence band, the margin (red) and no effect (grey)</figcaption></figure>
    <figure>{pv}<figcaption>always-valid p-values (log): harm solid, non-inferiority dotted</figcaption></figure>
  </div>
</section>"""


def _traffic_section(report: v.ReportView, axis: svg.TimeAxis) -> str:
    markers = _markers(report)
    weights = [(s.start, s.end or axis.end, s.weight / 100) for s in report.steps]
    traffic = svg.traffic_chart(
        "chart-traffic",
        axis,
        [(m.minute, m.challenger_share) for m in report.minutes],
        weights,
        markers=markers,
    )
    samples = svg.samples_chart(
        "chart-samples",
        axis,
        [(m.minute, m.champion_n, m.challenger_n) for m in report.minutes],
        markers=markers,
    )
    srm_points = [(look.evaluated_until, look.srm.p_value, None) for look in report.looks]
    srm_chart = svg.pvalue_chart(
        "chart-srm",
        axis,
        srm_points,
        alpha=report.settings.alpha_each,
        markers=markers,
        width=svg.WIDTH,
        height=140,
        second_label="–",
    )
    last = report.looks[-1] if report.looks else None
    srm_line = (
        "no looks yet"
        if last is None
        else (
            f"last look {last.evaluated_until:%H:%M}: challenger share "
            f"{100 * (last.srm.observed_share or 0):.3f} % observed against "
            f"{100 * (last.srm.expected_share or 0):.3f} % expected (the router's reported "
            f"split, weighted over the steps), p = {fmt_p(last.srm.p_value)}, "
            f"{'<b class=verdict fail>mismatch</b>' if last.srm.mismatch else 'no mismatch'}; "
            f"samples this step: champion {last.samples_champion:,}, challenger "
            f"{last.samples_challenger:,}"
        )
    )
    totals = (
        sum(m.champion_n for m in report.minutes),
        sum(m.challenger_n for m in report.minutes),
    )
    return f"""
<section id="traffic">
  <h2>Traffic and decisions</h2>
  <figure>{traffic}<figcaption>challenger share of finalised requests per minute (line) over the step weights (bars); step boundaries dashed, decisions coloured</figcaption></figure>
  <h2>Samples per arm and the sample-ratio check</h2>
  <p>Total finalised requests: champion {totals[0]:,}, challenger {totals[1]:,}.</p>
  <figure>{samples}<figcaption>requests per minute: champion (grey), challenger (blue)</figcaption></figure>
  <p class="summary" id="srm-summary">{srm_line}</p>
  <figure>{srm_chart}<figcaption>sample-ratio check: always-valid p-value, log scale, with its α</figcaption></figure>
</section>"""


def _table(headers: list[str], body: list[list[str]], css: str = "") -> str:
    head = "".join(f"<th>{h}</th>" for h in headers)
    rows_ = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in body)
    return f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>{rows_}</tbody></table>'


def _settings_section(report: v.ReportView) -> str:
    s = report.settings
    tuning = (
        f"samplesPerArm = {s.samples_per_arm:,}"
        if s.samples_per_arm is not None
        else f"engine default (n* = {s.n_star:,.0f})"
    )
    general = [
        ["alpha (family-wise)", f"{s.alpha:g}"],
        [
            "alpha per test",
            f"{s.alpha_each:.6g} = alpha / {s.n_tests} (Bonferroni over the guardrails"
            + (" and the SRM check)" if s.srm_enabled else "; the SRM check is off)"),
        ],
        ["tuning (τ²)", tuning],
        [
            "revenue cap",
            "–"
            if s.revenue_cap is None
            else f"{s.revenue_cap:g} ({escape(s.revenue_cap_source or '')})",
        ],
        [
            "burn-in",
            f"{s.burn_in_requests} requests, {s.burn_in_nonzero} with non-zero revenue, in the smaller arm",
        ],
        ["SRM check", "enabled" if s.srm_enabled else "disabled"],
        [
            "interval, allowed lateness",
            f"{escape(str(s.interval))}, {escape(str(s.allowed_lateness))}",
        ],
        ["settings frozen at", fmt_time(s.frozen_at)],
        ["data window", f"{fmt_time(s.data_start)} to {fmt_time(s.data_end)} (minute rollups)"],
        ["evaluated until", fmt_time(s.evaluated_until)],
    ]
    guardrails = [
        [
            escape(g.name),
            g.kind,
            escape(g.direction or "–"),
            "–" if g.margin is None else f"{g.margin:g} ({g.scale})",
            "–" if g.kappa is None else f"{g.kappa:g}",
            "–" if g.threshold_ms is None else f"{g.threshold_ms:g} ms ({g.threshold_source})",
            fmt_value(g.margin_line, g.scale),
        ]
        for g in report.guardrails
    ]
    steps = [
        [
            str(st.index + 1),
            f"{st.weight} %",
            f"{st.share:.4g}",
            fmt_time(st.start),
            fmt_time(st.end),
        ]
        for st in report.steps
    ]
    snapshot = json.dumps(s.snapshot, indent=2, sort_keys=True)
    return f"""
<section id="settings">
  <h2>Settings (frozen)</h2>
  {_table(["setting", "value"], general, "kv")}
  <h3>Guardrails</h3>
  {_table(["name", "kind", "direction", "margin", "κ", "threshold", "line drawn"], guardrails)}
  <h3>Step windows (each its own stratum of the tests)</h3>
  {_table(["step", "weight", "share used", "start", "end"], steps)}
  <details><summary>The exact frozen snapshot (JSON)</summary><pre>{escape(snapshot)}</pre></details>
</section>"""


def _decisions_section(report: v.ReportView) -> str:
    body = [
        [
            fmt_time(d.at),
            f'<span class="kind {escape(d.kind)}">{escape(d.kind)}</span>',
            escape(d.actor),
            f"<code>{escape(d.reason_code)}</code>",
            escape(d.reason),
        ]
        for d in report.decisions
    ]
    return f"""
<section id="decisions">
  <h2>Decision log</h2>
  {_table(["at", "kind", "actor", "reason code", "reason"], body)}
</section>"""


CSS = """
*{box-sizing:border-box}
body{font:13px/1.35 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;padding:10px 16px;color:#1b1b1b;background:#fff}
h1{font-size:19px;margin:0}h2{font-size:15px;margin:10px 0 4px}h3{font-size:13.5px;margin:6px 0 2px}
header{display:flex;gap:12px;align-items:baseline;flex-wrap:wrap}
.muted,.arms{color:#555;font-weight:normal}
.badge{padding:1px 8px;border-radius:10px;color:#fff;font-size:12px}
.badge.RolledBack,.badge.Failed{background:#c62828}.badge.Promoted{background:#2e7d32}
.badge.Progressing,.badge.Paused,.badge.AwaitingPromotion,.badge.Baseline,.badge.Pending{background:#1565c0}
.outcome{border-left:5px solid #1565c0;background:#f3f6fb;padding:4px 12px;margin:6px 0}
.outcome.fail{border-color:#c62828;background:#fdf1f1}.outcome.pass{border-color:#2e7d32;background:#f1f8f2}
.outcome h2{margin:4px 0}
.facts{display:flex;gap:28px;flex-wrap:wrap}.fact{display:flex;flex-direction:column}
.fact .k{color:#555;font-size:11.5px}.fact .big{font-size:20px;font-weight:600}.fact .sub{color:#555;font-size:11.5px}
.reason{margin:4px 0;color:#333}
.row{display:flex;gap:4px}figure{margin:0}figcaption{color:#666;font-size:11px;margin:0 0 2px 64px}
.summary{margin:0 0 2px}
.verdict.fail{color:#c62828}.verdict.pass{color:#2e7d32}
svg.chart{display:block;font-size:10.5px}
.plot{fill:#fff;stroke:#ccc}.grid{stroke:#eee}
.ylab{text-anchor:end;fill:#555}.xlab{text-anchor:middle;fill:#555}
.band{fill:#1565c0;fill-opacity:.18;stroke:none}
.estimate{fill:none;stroke:#1565c0;stroke-width:1.6}
.pt{fill:#1565c0}.pt.fail{fill:#c62828}.pt.pass{fill:#2e7d32}.pt.missing{fill:#fff;stroke:#999}
.margin{stroke:#c62828;stroke-width:1.6;stroke-dasharray:6 3}.margin-label,.margin.alpha-label{fill:#c62828}
.null{stroke:#888;stroke-dasharray:2 3}.null-label{fill:#888}
.step-boundary{stroke:#777;stroke-dasharray:4 4}
.decision{stroke-width:1.6}.decision-label{fill:#333;font-size:10px}
.failed-at{stroke:#c62828;stroke-width:1;stroke-opacity:.5}
.p-harm{fill:none;stroke:#1565c0;stroke-width:1.5}.p-second{fill:none;stroke:#6a1b9a;stroke-dasharray:2 2}
.weight{stroke:#bbb;stroke-width:8;stroke-opacity:.6}.share{fill:none;stroke:#1565c0;stroke-width:1.4}
.champion{fill:none;stroke:#777;stroke-width:1.4}.challenger{fill:none;stroke:#1565c0;stroke-width:1.4}
table{border-collapse:collapse;margin:2px 0 6px}td,th{border-bottom:1px solid #e3e3e3;padding:2px 8px;text-align:left;vertical-align:top}
th{background:#f6f6f6}pre{background:#f6f6f6;padding:8px;overflow:auto}
.kind.rollback,.kind.fail{color:#c62828}.kind.promote{color:#2e7d32}
"""


def fragment(report: v.ReportView) -> str:
    """The report's body (no ``<html>``): the HTML file's content, and a notebook's repr."""
    axis = _axis(report)
    failing = report.failure.guardrail if report.failure else None
    ordered = sorted(report.guardrails, key=lambda g: g.name != failing)
    sections = "".join(_guardrail_section(report, g, axis) for g in ordered)
    return f"""<div class="canaryctl-report">
<header>
  <h1>{escape(report.key)}</h1>
  <span class="badge {escape(report.phase)}">{escape(report.phase)}</span>
  <span class="arms">champion <b>{escape(report.champion)}</b> → challenger <b>{escape(report.challenger)}</b> · registered {fmt_time(report.created_at)}</span>
</header>
{_outcome(report)}
<section id="guardrails">{sections}</section>
{_traffic_section(report, axis)}
{_settings_section(report)}
{_decisions_section(report)}
</div>"""


def to_html(report: v.ReportView) -> str:
    """One self-contained HTML document (inline CSS and SVG; no script, nothing fetched)."""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<title>canaryctl report: {escape(report.key)} ({escape(report.phase)})</title>
<style>{CSS}</style></head>
<body>
{fragment(report)}
</body></html>
"""
