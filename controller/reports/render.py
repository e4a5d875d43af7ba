"""A ReportView as one self-contained HTML file, as JSON, or as a CSV time series.

Sits after ``view``: pure functions from a ``ReportView`` to text. The HTML is rendered
from Jinja2 templates (``templates/``, autoescaped) with the charts as Vega-Lite specs
(``charts``) drawn by Vega, Vega-Lite and vega-embed inlined from ``static/``: it loads
nothing from elsewhere (its Content-Security-Policy forbids it, and vega-embed runs in its
AST-interpreter mode, so no ``eval``), and opens offline. The first screen depends on the
outcome (``view.outcome_kind``): the failing guardrail for a rollback, the SRM evidence for
a sample-ratio mismatch, the results table for a promotion, what blocked for an
inconclusive end; the results table follows on every outcome.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import datetime
from enum import StrEnum
from functools import cache
from importlib import resources
from typing import Any

from controller.reports import charts, fmt, reproduce
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
    "scale",
    "p_value_harm",
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
                # no bounds without an estimate (burn-in): a bare 0 would read as a bound
                "lower": None if p.estimate is None else p.lower,
                "upper": None if p.estimate is None else p.upper,
                "margin": info.margin_line,
                "scale": info.scale,
                "p_value_harm": p.p_value,
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


# ----------------------------------------------------------------------------- HTML


# Aliases kept for callers of the earlier API.
fmt_value, fmt_p, fmt_time = fmt.value, fmt.p, fmt.time

#: The page's styles; every selector is scoped to ``.canaryctl-report`` by :func:`scoped`,
#: so a notebook that shows the report keeps its own styles.
_CSS_RULES = """
:scope{font:13px/1.35 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1b1b1b;background:#fff;box-sizing:border-box}
*{box-sizing:border-box}
h1{font-size:18px;margin:0}
h2{font-size:15px;margin:10px 0 4px}
h3{font-size:13.5px;margin:6px 0 2px}
header{display:flex;gap:12px;align-items:baseline;flex-wrap:wrap}
.muted,.arms{color:#555;font-weight:normal}
.arms{font-size:12px}
.badge{padding:1px 8px;border-radius:10px;color:#fff;font-size:12px;background:#1565c0}
.badge.RolledBack,.badge.Failed{background:#c62828}
.badge.Promoted{background:#2e7d32}
.outcome{border-left:5px solid #1565c0;background:#f3f6fb;padding:4px 12px;margin:6px 0}
.outcome.fail{border-color:#c62828;background:#fdf1f1}
.outcome.pass{border-color:#2e7d32;background:#f1f8f2}
.outcome h2{margin:4px 0}
.lead{margin:2px 0 4px}
.facts{display:flex;gap:6px 20px;flex-wrap:wrap}
.fact{display:flex;flex-direction:column;max-width:255px}
.fact .k,.fact .sub{color:#555;font-size:11.5px}
.fact .big{font-size:18px;font-weight:600;white-space:nowrap}
.reason{margin:2px 0 4px;color:#333;font-size:12px}
.causes ul,.largest-harm,.blocked{margin:2px 0;padding-left:20px}
.needed{color:#555}
table{border-collapse:collapse;margin:2px 0 6px}
td,th{border-bottom:1px solid #e3e3e3;padding:2px 8px;text-align:left;vertical-align:top}
th{background:#f6f6f6;font-weight:600}
.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.results tr.fail td{background:#fdf1f1}
.results tr.pass td{background:#f4faf5}
.results.void,.void .chart{opacity:.45;filter:grayscale(1)}
.void-badge{background:#777;color:#fff;border-radius:8px;padding:0 6px;font-size:11px;font-weight:normal}
.pvals div{color:#666;white-space:nowrap}
.pvals .decides{color:#1b1b1b;font-weight:600}
.verdict.fail,.kind.rollback,.kind.fail{color:#c62828}
.verdict.pass,.kind.promote{color:#2e7d32}
.note{color:#555;font-size:11.5px;margin:0 0 4px;max-width:1100px}
.row2{display:grid;grid-template-columns:1fr 1fr;gap:10px}
figure{margin:0;min-width:0}
figcaption{color:#666;font-size:11px;margin:0 0 4px 8px}
.chart{width:100%;min-height:40px}
pre{background:#f6f6f6;padding:8px;overflow:auto;max-height:320px;font-size:11.5px}
code{font-size:12px}
"""


def scoped(css: str, root: str = ".canaryctl-report") -> str:
    """``css`` (one rule a line, no at-rules) with every selector under ``root``."""
    out = []
    for line in css.strip().splitlines():
        selectors, _, body = line.partition("{")
        parts = [
            root if sel.strip() == ":scope" else f"{root} {sel.strip()}"
            for sel in selectors.split(",")
        ]
        out.append(",".join(parts) + "{" + body)
    return "\n".join(out)


CSS = scoped(_CSS_RULES)

#: Draws every chart of its own report element with vega-embed (no eval: the AST interpreter).
BOOT = """(function () {
  var root = document.currentScript.closest('.canaryctl-report');
  var specs = JSON.parse(root.querySelector('script.canaryctl-specs').textContent);
  var options = {ast: true, actions: false, renderer: 'svg', tooltip: {theme: 'light'}};
  var jobs = Array.prototype.map.call(root.querySelectorAll('[data-chart]'), function (el) {
    var spec = specs[el.getAttribute('data-chart')];
    return spec ? vegaEmbed(el, spec, options) : null;
  });
  Promise.all(jobs).then(function () { root.setAttribute('data-charts-ready', 'yes'); },
    function (err) { console.error('canaryctl report: a chart failed: ' + err); });
})();"""

_STATIC = ("vega.min.js", "vega-lite.min.js", "vega-embed.min.js")


@cache
def library() -> str:
    """Vega, Vega-Lite and vega-embed (``static/``, vendored from npm by ``scripts/vendor_vega``)."""
    texts = [
        resources.files("controller.reports").joinpath("static", name).read_text("utf-8")
        for name in _STATIC
    ]
    text = "\n".join(texts)
    if "</script" in text.lower():  # would end the inline <script> early
        raise ValueError("a vendored chart library contains '</script': it cannot be inlined")
    return text


@cache
def _environment() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("controller.reports", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=False,
    )
    return env


def _json_for_script(data: Any) -> Any:
    """JSON safe inside ``<script type="application/json">`` (no ``<`` at all)."""
    import markupsafe

    text = json.dumps(data, allow_nan=False, separators=(",", ":")).replace("<", "\\u003c")
    return markupsafe.Markup(text)


def _metric_label(row: Any) -> str:
    labels: dict[str, str] = {
        "revenue_per_request": "revenue per request",
        "error_rate": "error rate",
        "share_slower": "share slower than "
        + ("?" if row.threshold_ms is None else fmt.in_unit(row.threshold_ms, "ms")),
        "geometric_mean_latency_ms": "geometric mean latency",
    }
    return labels.get(row.metric or "", str(row.kind))


def _scale_label(scale: str) -> str:
    return {"relative": "B/A − 1", "absolute": "B − A", "ratio": "p_B/p_A"}.get(scale, scale)


def _margin_label(row: Any) -> str:
    if row.scale == "ratio":
        return f"κ = {row.margin_line:g}"
    return fmt.value(row.margin_line, row.scale)


def _step_label(report: v.ReportView, index: int | None) -> str:
    step = next((s for s in report.steps if s.index == index), None)
    if step is None:
        return ""
    return f"step {step.index + 1}/{max(report.n_steps, len(report.steps))} at {step.weight} %"


def _srm(report: v.ReportView) -> dict[str, Any]:
    """Expected against observed challenger requests per step (the last look's windows)."""
    last = report.looks[-1].srm if report.looks else None
    steps = []
    observed = expected = 0.0
    for s in report.step_samples:
        n_b, exp_b = s.challenger.n, s.expected_challenger
        observed, expected = observed + n_b, expected + exp_b
        diff = n_b - exp_b
        steps.append(
            {
                "label": f"step {s.index + 1} · {s.weight} %",
                "split": f"{100 * s.share:.2f} %",
                "champion": fmt.count(s.champion.n),
                "observed": fmt.count(n_b),
                "expected": fmt.count(exp_b),
                "difference": f"{diff:+,.0f} ({fmt.percent(diff / exp_b if exp_b else None, 1)})".replace(
                    "-", fmt.MINUS
                ),
            }
        )
    short = observed - expected
    return {
        "steps": steps,
        "observed": observed,
        "expected": expected,
        "observed_word": "fewer" if short < 0 else "more",
        "shortfall": f"{abs(short):,.0f} {'fewer' if short < 0 else 'more'} than the split predicts"
        + (f" ({fmt.percent(short / expected, 1)})" if expected else ""),
        "observed_share": "–"
        if last is None or last.observed_share is None
        else f"{100 * last.observed_share:.2f} %",
        "expected_share": "–"
        if last is None or last.expected_share is None
        else f"{100 * last.expected_share:.2f} %",
        "p": None if last is None else last.p_value,
        "alpha": report.settings.alpha_each,
    }


def _srm_line(report: v.ReportView) -> str:
    last = report.looks[-1] if report.looks else None
    if last is None:
        return "No look yet."
    verdict = "mismatch" if last.srm.mismatch else "no mismatch"
    share = last.srm.observed_share
    expected = last.srm.expected_share
    return (
        f"Last look {fmt.clock(last.evaluated_until)}: challenger share "
        f"{'–' if share is None else f'{100 * share:.3f} %'} observed against "
        f"{'–' if expected is None else f'{100 * expected:.3f} %'} expected (the router's reported "
        f"split, weighted over the steps), p = {fmt.p(last.srm.p_value)}: {verdict}."
    )


def _blocked(report: v.ReportView) -> list[dict[str, str]]:
    """Each guardrail that had not passed: what kept it, and what a pass would have taken."""
    out = []
    samples = sum(s.challenger.n for s in report.step_samples)
    for row in report.results:
        if row.verdict == "pass":
            continue
        bound = row.largest_harm
        line = row.margin_line
        blocked = (
            f"its bound on the harmful side, {fmt.value(bound, row.scale)}, had not cleared "
            f"{_margin_label(row)}; non-inferiority p = {fmt.p(row.p_value_noninferiority)} "
            f"> α = {fmt.alpha(row.alpha)}"
        )
        needed = "the bound to clear the line"
        est = row.estimate
        if bound is not None and est is not None and (est - line) * (bound - line) < 0:
            # the band narrows about as 1/sqrt(n): the half-width must shrink to |est − line|
            factor = ((bound - est) / (line - est)) ** 2
            needed = (
                f"the band's harmful half-width to shrink from {abs(bound - est):.3g} to "
                f"{abs(line - est):.3g} — roughly {factor:.1f}× the challenger's {samples:,} "
                "requests, if the estimate held (bands narrow about as 1/√n)"
            )
        elif est is not None:
            needed = (
                f"the estimate itself, {fmt.value(est, row.scale)}, lies past "
                f"{_margin_label(row)}: more data alone would not have passed it"
            )
        out.append({"name": row.name, "blocked": blocked, "needed": needed})
    return out


def _general_settings(report: v.ReportView) -> list[tuple[str, str]]:
    s = report.settings
    tuning = (
        f"samplesPerArm = {s.samples_per_arm:,}"
        if s.samples_per_arm is not None
        else f"engine default (n* = {s.n_star:,.0f})"
    )
    return [
        ("alpha (family-wise)", f"{s.alpha:g}"),
        (
            "alpha per test",
            f"{s.alpha_each:.6g} = alpha / {s.n_tests} (Bonferroni over the guardrails"
            + (" and the SRM check)" if s.srm_enabled else "; the SRM check is off)"),
        ),
        ("tuning (τ²)", tuning),
        (
            "revenue cap",
            "–" if s.revenue_cap is None else f"{s.revenue_cap:g} ({s.revenue_cap_source or ''})",
        ),
        (
            "burn-in",
            f"{s.burn_in_requests} requests, {s.burn_in_nonzero} with non-zero revenue, in the smaller arm",
        ),
        ("SRM check", "enabled" if s.srm_enabled else "disabled"),
        ("interval, allowed lateness", f"{s.interval}, {s.allowed_lateness}"),
        ("settings frozen at", fmt.time(s.frozen_at)),
        ("data window", f"{fmt.time(s.data_start)} to {fmt.time(s.data_end)} (minute rollups)"),
        ("evaluated until", fmt.time(s.evaluated_until)),
        ("registered", f"{fmt.time(report.created_at)} (wall clock)"),
    ]


def _headline(report: v.ReportView) -> str:
    out = report.outcome
    if report.outcome_kind == "rollback":
        return f"Rolled back: {out.reason if out else 'no reason recorded'}"
    if report.outcome_kind == "failed":
        return "Failed: the experiment could not run"
    return f"{report.phase}: no final decision yet"


def context(report: v.ReportView, *, with_library: bool = True) -> dict[str, Any]:
    """Everything the templates read (values only; the templates format nothing but text)."""
    import markupsafe

    f = report.failure
    failing = f.guardrail if f else None
    failing_info = next((g for g in report.guardrails if g.name == failing), None)
    failed_when = (f.first_failed_at or f.at) if f else None
    since = next((s.start for s in report.steps if f and s.index == f.step_index), None)
    into = ""
    if f is not None and since is not None and failed_when is not None:
        into = f", {int((failed_when - since) / v.MINUTE)} min into {_step_label(report, f.step_index)}"
    data = reproduce.inputs(report)
    alpha_each = report.settings.alpha_each
    return {
        "r": report,
        "f": fmt,
        "css": markupsafe.Markup(CSS),
        "failure": f,
        "failing_info": failing_info,
        "failing_row": next((row for row in report.results if row.name == failing), None),
        "failed_when": failed_when,
        "failed_into": into,
        "coverage": fmt.coverage(100 * (1 - 2 * alpha_each)),
        "first_step": min((s.start for s in report.steps), default=None),
        "last_look": report.looks[-1].evaluated_until if report.looks else None,
        "ordered": sorted(report.guardrails, key=lambda g: g.name != failing),
        "srm": _srm(report),
        "srm_line": _srm_line(report),
        "blocked": _blocked(report),
        "headline": _headline(report),
        "totals": (
            sum(m.champion_n for m in report.minutes),
            sum(m.challenger_n for m in report.minutes),
        ),
        "general": _general_settings(report),
        "snapshot": json.dumps(report.settings.snapshot, indent=2, sort_keys=True),
        "program": reproduce.program(report),
        "inputs_text": "" if data is None else json.dumps(data, indent=1),
        "inputs_json": _json_for_script(data),
        "specs_json": _json_for_script(charts.all_charts(report)),
        "with_library": with_library,
        "library": markupsafe.Markup(library()) if with_library else "",
        "boot": markupsafe.Markup(BOOT),
        "metric_label": _metric_label,
        "scale_label": _scale_label,
        "margin_label": _margin_label,
    }


def fragment(report: v.ReportView) -> str:
    """The report's body (no ``<html>``), charts' library included: the file's content and a notebook's repr."""
    return str(_environment().get_template("fragment.html.j2").render(context(report)))


def to_html(report: v.ReportView) -> str:
    """One self-contained HTML document (inline styles, data and chart library; nothing fetched)."""
    return str(
        _environment()
        .get_template("report.html.j2")
        .render(r=report, fragment=_markup(fragment(report)))
    )


def _markup(text: str) -> Any:
    import markupsafe

    return markupsafe.Markup(text)
