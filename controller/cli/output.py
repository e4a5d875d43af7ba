"""Rendering for the read commands: ``-o table|json|yaml``, kubectl-like tables and the status view.

Pure functions from Experiment bodies (as the API returns them) and ``now`` to text; the
commands print what these return, and ``status --watch`` shows :func:`status_view` in a
rich ``Live``. No I/O and no clock here, so every view is tested without a terminal.

Status fields read: ``phase``, ``reasonCode``, ``message``, ``phaseStartedAt``,
``stepIndex``, ``step``, ``stepStartedAt``, ``challengerWeight``, ``verdict``,
``conditions``, ``handledRequests`` and, when the operator writes them,
``guardrails[]`` (``name``, ``kind``, ``estimate``, ``lower``, ``upper``, ``verdict``,
``reasonCode``, ``waiting``), ``srm.waiting`` and ``samples`` (``champion``, ``challenger``: finalised requests per arm
in the current step).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

Body = Mapping[str, Any]


class Format(StrEnum):
    """Output formats of the read commands."""

    TABLE = "table"
    JSON = "json"
    YAML = "yaml"


class View(StrEnum):
    """What ``-o`` of the read commands (``list``, ``status``) takes, as in ``kubectl get``."""

    TABLE = "table"
    WIDE = "wide"  # the table with more columns, and the statistics behind the verdicts
    NAME = "name"  # experiment.canaryctl.dev/NAME, one a line
    JSON = "json"
    YAML = "yaml"
    JSONPATH = "jsonpath"  # jsonpath=TEMPLATE
    HTML = "html"  # report only
    CSV = "csv"  # report only


#: The views of ``list`` and ``status``.
READ_VIEWS = ("table", "wide", "name", "json", "yaml", "jsonpath")


@dataclass(frozen=True)
class Output:
    """A parsed ``-o`` value: the view and, for ``jsonpath=``, its template."""

    view: View
    template: str = ""

    @property
    def format(self) -> Format | None:
        """The :class:`Format` of a json or yaml view (None for the others)."""
        return {View.JSON: Format.JSON, View.YAML: Format.YAML}.get(self.view)


def parse_output(text: str, allowed: Sequence[str] = READ_VIEWS) -> Output:
    """``-o``'s value: ``table``, ``wide``, ``name``, ``json``, ``yaml`` or ``jsonpath=TEMPLATE``.

    Raises ``ValueError`` with a one-line message naming what is allowed (``allowed``: the
    views a command takes); a template is checked here, before anything is read.
    """
    name, eq, template = text.partition("=")
    name = name.strip().lower()
    if name in allowed and name != View.JSONPATH and not eq:
        return Output(View(name), "")
    if name == View.JSONPATH and View.JSONPATH in allowed:
        if not template.strip():
            raise ValueError("jsonpath needs a template, e.g. -o jsonpath='{.status.phase}'")
        jsonpath(template, {})  # parse it now: a typo is a usage error, not a late failure
        return Output(View.JSONPATH, template)
    shown = ", ".join("jsonpath=TEMPLATE" if a == View.JSONPATH else a for a in allowed)
    raise ValueError(f"{text!r} is not one of {shown}")


_FIELD = re.compile(r"\{([^{}]*)\}")


def jsonpath(template: str, value: Any) -> str:
    """``value`` through a kubectl-style JSONPath template, e.g. ``{.status.phase}``.

    Text outside braces is printed as is; ``{"\\n"}`` is a quoted literal; each other
    ``{expr}`` is a JSONPath (``jsonpath_ng``'s extended syntax, filters such as
    ``[?(@.name=="revenue")]`` included) whose matches are joined by spaces, strings bare
    and other values as JSON. kubectl's ``{range}…{end}`` is not supported (use
    ``[*]``). Raises ``ValueError`` on a template that does not parse.
    """
    from jsonpath_ng.exceptions import JSONPathError
    from jsonpath_ng.ext.parser import parse

    out, pos = [], 0
    for m in _FIELD.finditer(template):
        out.append(template[pos : m.start()])
        pos = m.end()
        expr = m.group(1).strip()
        if len(expr) >= 2 and expr[0] == expr[-1] == '"':
            try:
                out.append(str(json.loads(expr, strict=False)))
            except ValueError as exc:
                raise ValueError(f"jsonpath: bad literal {expr}") from exc
            continue
        if expr.startswith("range") or expr == "end":
            raise ValueError("jsonpath: {range}…{end} is not supported; use [*]")
        path = "$" + expr if expr.startswith((".", "[")) else expr
        try:
            found = [f.value for f in parse(path).find(value)]
        except (JSONPathError, ValueError, TypeError, AttributeError) as exc:
            raise ValueError(f"jsonpath {{{expr}}}: {' '.join(str(exc).split())}") from exc
        out.append(" ".join(v if isinstance(v, str) else json.dumps(v) for v in found))
    out.append(template[pos:])
    return "".join(out)


def names(items: Sequence[Body]) -> str:
    """``-o name``: ``experiment.canaryctl.dev/NAME``, one a line."""
    from controller.experiment import spec

    return "".join(
        f"{spec.KIND.lower()}.{spec.API_GROUP}/{(i.get('metadata') or {}).get('name', '')}\n"
        for i in items
    )


def dump(value: Any, fmt: Format) -> str:
    """``value`` as JSON or YAML text (ending in a newline)."""
    import yaml

    if fmt is Format.JSON:
        return json.dumps(value, indent=2, sort_keys=False, default=str) + "\n"
    text: str = yaml.safe_dump(value, sort_keys=False, allow_unicode=True, width=100)
    return text


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns separated by three spaces, as ``kubectl get`` prints them."""
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows, strict=False)]
    lines = [
        "   ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=False)).rstrip()
        for row in [headers, *rows]
    ]
    return "\n".join(lines) + "\n"


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    from controller.experiment import spec

    try:
        return spec.parse_k8s_time(str(text))
    except ValueError:
        return None


def age(since: datetime | None, now: datetime) -> str:
    """kubectl-style age: ``45s``, ``12m``, ``5h``, ``3d`` (``<unknown>`` without a time)."""
    if since is None:
        return "<unknown>"
    seconds = max(0, int((now - since).total_seconds()))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 3 * 3600:
        return f"{seconds // 60}m"
    if seconds < 2 * 86400:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def _dash(value: Any) -> str:
    return "-" if value is None or value == "" else str(value)


def holds(body: Body) -> list[tuple[str, Mapping[str, Any]]]:
    """What holds the experiment: each hold's code and its False condition (none once finished).

    The holds are ``observed.HOLDS``, the table reconcile sets them from.
    """
    from controller.decide.observed import HOLDS
    from controller.experiment.spec import TERMINAL_PHASES

    st = body.get("status") or {}
    if st.get("phase", "Pending") in TERMINAL_PHASES:
        return []
    return [
        (HOLDS[c["type"]], c)
        for c in st.get("conditions") or []
        if c.get("type") in HOLDS and c.get("status") == "False"
    ]


def _route(sp: Mapping[str, Any]) -> str:
    """``gatewayAPI/ranker``: the router and the object it weights."""
    router = sp.get("router") or {}
    for kind, value in router.items():
        if isinstance(value, dict):
            target = next((str(v) for v in value.values() if isinstance(v, (str, int))), "")
            return f"{kind}/{target}" if target else kind
    return "-"


def forecast_cell(st: Mapping[str, Any]) -> str:
    """``status.forecast`` in a few characters: "97%", "14% revenue" (blocking), or "-"."""
    doc = st.get("forecast")
    if not isinstance(doc, Mapping) or not isinstance(doc.get("promotion"), Mapping):
        return "-"
    p = doc["promotion"].get("probability")
    if p is None:
        return "-"
    blocking = doc.get("blocking")
    return f"{100 * p:.0f}%" + (f" {blocking}" if blocking else "")


#: Where ``list``'s PROMOTION column goes: after VERDICT.
_PROMOTION_AT = 6


def list_table(
    items: Sequence[Body],
    now: datetime,
    with_namespace: bool = False,
    wide: bool = False,
    *,
    forecast: bool = False,
) -> str:
    """The ``canaryctl list`` table: the CRD's printer columns, what holds it, and the arms.

    ``wide`` adds the router, the samples of the current step per arm, each guardrail's
    verdict and the time of the last analysis; ``forecast`` (and ``wide``) the decision
    forecast's chance of promotion by ``maxDuration`` and the guardrail that blocks it.
    """
    headers = [
        "NAME",
        "PHASE",
        "HELD",
        "WEIGHT",
        "STEP",
        "VERDICT",
        "CHAMPION",
        "CHALLENGER",
        "AGE",
    ]
    if wide:
        headers += ["ROUTE", "SAMPLES", "GUARDRAILS", "ANALYSED"]
    if forecast or wide:
        headers.insert(_PROMOTION_AT, "PROMOTION")
    if with_namespace:
        headers.insert(0, "NAMESPACE")
    rows = []
    for item in items:
        meta, st, sp = item.get("metadata", {}), item.get("status") or {}, item.get("spec") or {}
        weight = st.get("challengerWeight")
        phase = st.get("phase", "Pending")
        row = [
            meta.get("name", ""),
            phase,
            ",".join(c.get("reason") or code for code, c in holds(item)) or "-",
            "0%" if weight is None else f"{weight}%",  # no space in a column
            _dash(st.get("step")),
            _dash(st.get("verdict")) if phase in _ACTIVE else "-",
            _dash((sp.get("champion") or {}).get("name")),
            _dash((sp.get("challenger") or {}).get("name")),
            age(parse_time(meta.get("creationTimestamp")), now),
        ]
        if wide:
            samples = st.get("samples") or {}
            analysed = parse_time(st.get("lastAnalysisAt"))
            row += [
                _route(sp),
                f"{_number(samples.get('champion'))}/{_number(samples.get('challenger'))}"
                if samples
                else "-",
                ",".join(f"{g.get('name')}={g.get('verdict')}" for g in st.get("guardrails") or [])
                or "-",
                "-" if analysed is None else f"{age(analysed, now)} ago",
            ]
        if forecast or wide:
            row.insert(_PROMOTION_AT, forecast_cell(st))
        if with_namespace:
            row.insert(0, meta.get("namespace", ""))
        rows.append(row)
    return table(headers, rows)


def _pct(done: float, total: float) -> str:
    return "100 %" if total <= 0 else f"{min(100, int(100 * done / total))} %"


def _number(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return _dash(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _scales(body: Body) -> dict[str, str]:
    """Each guardrail's scale as the operator recorded it (never read from the live spec).

    ``status.guardrails[].scale`` from the last look, else the frozen settings'
    ``guardrails[].scale``; a status written by canaryctl 0.1 has neither, and its frozen
    ``analysis`` says which mean margins are relative.
    """
    st = body.get("status") or {}
    snapshot = (st.get("frozenSettings") or {}).get("snapshot") or {}
    out: dict[str, str] = {}
    for g in (snapshot.get("analysis") or {}).get("guardrails") or []:  # 0.1's shape
        if g.get("kind") == "mean":
            out[g.get("name")] = "relative" if "relative" in (g.get("margin") or {}) else "absolute"
    for source in (snapshot.get("guardrails") or [], st.get("guardrails") or []):
        out.update({g["name"]: g["scale"] for g in source if g.get("scale") and g.get("name")})
    return out


def _effect(value: Any, guardrail: Mapping[str, Any], scales: Mapping[str, str]) -> str:
    """An estimate or bound as people read it: +3.1 % for a relative mean, ×0.97 for a ratio."""
    from controller import numbers

    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return _number(value)
    scale = scales.get(guardrail.get("name", "")) or (
        "ratio" if guardrail.get("kind") in ("tail", "rate") else "absolute"
    )
    return numbers.effect(float(value), scale)


#: What a guardrail measures, in words, by ``status.guardrails[].metric``.
_MEASURES = {
    "revenue_per_request": "revenue per request",
    "error_rate": "error rate",
    "share_slower": "share slower than {threshold}",
    "geometric_mean_latency_ms": "geometric mean latency",
}


def _measures(g: Mapping[str, Any]) -> str:
    from controller import numbers

    text = _MEASURES.get(g.get("metric") or "", "")
    return text.format(threshold=numbers.ms(g.get("thresholdMs"))) if text else "-"


def _arm_value(g: Mapping[str, Any], value: Any) -> str:
    """One arm's value of a guardrail's metric in its unit (share in %, ms, revenue)."""
    from controller import numbers

    if not isinstance(value, (int, float)):
        return numbers.MISSING
    unit = g.get("unit")
    if unit == "share":
        return numbers.share(value)
    if unit == "ms":
        return numbers.ms(value)
    return numbers.revenue(value)


def _change(g: Mapping[str, Any], scales: Mapping[str, str]) -> str:
    """``+2.3 % [−1.8 %, +7.6 %]``: the estimate and its anytime-valid bounds."""
    est = _effect(g.get("estimate"), g, scales)
    if g.get("lower") is None or g.get("upper") is None:
        return est
    return f"{est} [{_effect(g.get('lower'), g, scales)}, {_effect(g.get('upper'), g, scales)}]"


def guardrail_line(g: Mapping[str, Any], scales: Mapping[str, str]) -> str:
    """A guardrail in one sentence with its values, e.g. for the reason of a rollback.

    ``latency-p99: share slower than 80.6 ms 1.38 % → 4.63 %, ×3.36 [×1.95, ×6.13]``.
    """
    values = ""
    if g.get("metric"):
        values = (
            f" {_measures(g)} {_arm_value(g, g.get('champion'))} → "
            f"{_arm_value(g, g.get('challenger'))},"
        )
    return f"{g.get('name', '?')}:{values} {_change(g, scales)}"


def beyond_margin(g: Mapping[str, Any], scales: Mapping[str, str]) -> str:
    """``beyond its margin ×1.25`` (or ``−5.0 %``), from the margin line the test used."""
    line = g.get("marginLine")
    if not isinstance(line, (int, float)) or isinstance(line, bool):
        return "beyond its margin"
    return f"beyond its margin {_effect(float(line), g, scales)}"


def guardrail_table(body: Body, wide: bool = False) -> list[str]:
    """The guardrail rows of ``status``: each metric in both arms, the change and the verdict.

    ``wide`` adds the kind, the reason code, the p-values and the alpha each was judged at.
    """
    guardrails = (body.get("status") or {}).get("guardrails") or []
    if not guardrails:
        return []
    scales = _scales(body)
    header = ["NAME", "MEASURES", "CHAMPION", "CHALLENGER", "CHANGE [BOUNDS]", "VERDICT"]
    waits = any(g.get("waiting") for g in guardrails)  # a test still short of its own data
    if waits:
        header.append("NOTE")
    if wide:
        header[1:1] = ["KIND"]
        header += ["REASON", "P(HARM)", "P(NON-INFERIOR)", "ALPHA"]
    rows = []
    for g in guardrails:
        row = [
            g.get("name", "?"),
            _measures(g),
            _arm_value(g, g.get("champion")),
            _arm_value(g, g.get("challenger")),
            _change(g, scales),
            _dash(g.get("verdict")),
        ]
        if waits:
            row.append(waiting_text(g.get("waiting")))
        if wide:
            row[1:1] = [_dash(g.get("kind"))]
            row += [
                _dash(g.get("reasonCode")),
                _p(g.get("pValue")),
                _p(g.get("pValueNonInferiority")),
                _p(g.get("alpha")),
            ]
        rows.append(row)
    return ["  " + line for line in table(header, rows).splitlines()]


def _p(x: Any) -> str:
    from controller import numbers

    if not isinstance(x, (int, float)) or isinstance(x, bool):
        return "-"
    return numbers.p_value(x)


def split_line(st: Mapping[str, Any]) -> str | None:
    """The sample-ratio check in counts: the challenger's requests against those expected.

    ``status.srm``'s shares with ``status.arms``' requests (both over the evaluated steps).
    """
    from controller import numbers

    srm, arms = st.get("srm") or {}, st.get("arms") or {}
    a = (arms.get("champion") or {}).get("requests")
    b = (arms.get("challenger") or {}).get("requests")
    observed, expected = srm.get("observedShare"), srm.get("expectedShare")
    if not (
        isinstance(a, int)
        and isinstance(b, int)
        and isinstance(observed, (int, float))
        and isinstance(expected, (int, float))
    ):
        return None
    total = a + b
    verdict = "mismatch: results void" if srm.get("mismatch") else "as set"
    return (
        f"Split:        challenger {numbers.count(b)} of {numbers.count(total)} requests "
        f"({numbers.share(observed)}), expected {numbers.count(expected * total)} "
        f"({numbers.share(expected)}); {verdict}"
    )


def arm_lines(st: Mapping[str, Any], wide: bool = False) -> list[str]:
    """Latency quantiles of both arms and the revenue impact at full traffic, when written;
    the split in counts when it does not match (always in ``wide``)."""
    from controller import numbers

    lines = []
    split = split_line(st)
    if split is not None and (wide or (st.get("srm") or {}).get("mismatch")):
        lines.append(split)
    arms = st.get("arms") or {}
    a = (arms.get("champion") or {}).get("latencyMs") or {}
    b = (arms.get("challenger") or {}).get("latencyMs") or {}
    if a and b:
        quantiles = ", ".join(
            f"{q} {numbers.ms(a.get(q)).removesuffix(' ms')} → {numbers.ms(b.get(q))}"
            for q in ("p50", "p95", "p99")
        )
        lines.append(f"Latency:      {quantiles} (champion → challenger)")
    impact = st.get("impact") or {}
    if impact.get("revenuePerHour") is not None:
        lines.append(
            "Impact:       revenue "
            f"{numbers.revenue(impact['revenuePerHour'], signed=True)} per hour at full traffic "
            f"[{numbers.revenue(impact.get('lower'), signed=True)}, "
            f"{numbers.revenue(impact.get('upper'), signed=True)}] "
            f"({numbers.count(impact.get('requestsPerHour'))} requests/h, "
            f"champion {numbers.revenue(impact.get('championRevenuePerRequest'))} per request)"
        )
    return lines


def _progress(body: Body, st: Mapping[str, Any], now: datetime) -> list[str]:
    """Lines on how far the current step (or the baseline) is from done."""
    from controller.experiment import spec, validation

    try:
        s = validation.parse_experiment(body)
    except validation.SpecError:
        return []
    phase = st.get("phase", "Pending")
    samples = st.get("samples") or {}
    if phase == "Baseline" and s.analysis.baseline is not None:
        started = parse_time(st.get("phaseStartedAt"))
        total = s.analysis.baseline.duration
        done = timedelta(0) if started is None else max(timedelta(0), now - started)
        return [
            f"Baseline:     {spec.format_duration(_seconds(min(done, total)))} of "
            f"{spec.format_duration(total)} ({_pct(done.total_seconds(), total.total_seconds())})"
        ]
    if phase not in ("Progressing", "Paused"):
        return []
    index = int(st.get("stepIndex", 0))
    if not 0 <= index < len(s.steps):
        return []
    step = s.steps[index]
    started = parse_time(st.get("stepStartedAt"))
    done = timedelta(0) if started is None else max(timedelta(0), now - started)
    what = "promotion" if index == len(s.steps) - 1 else f"step {index + 2}"
    lines = [
        f"Next:         {what} after {spec.format_duration(step.min_duration)} and "
        f"{step.min_samples:,} samples per arm at {step.weight} %",
        f"  time        {spec.format_duration(_seconds(min(done, step.min_duration)))} of "
        f"{spec.format_duration(step.min_duration)} "
        f"({_pct(done.total_seconds(), step.min_duration.total_seconds())})",
    ]
    if samples and step.min_samples:
        smaller = min(int(samples.get("champion", 0)), int(samples.get("challenger", 0)))
        lines.append(
            f"  samples     {min(smaller, step.min_samples):,} of {step.min_samples:,} "
            f"in the smaller arm ({_pct(smaller, step.min_samples)})"
        )
    if index == len(s.steps) - 1:
        lines.append("  then        every guardrail must PASS with the burn-in met")
    return lines


def waiting_text(waiting: Mapping[str, Any] | None) -> str:
    """``waiting for data: 140 of 200 revenue events`` from ``status…waiting`` (or "")."""
    if not waiting:
        return ""
    return (
        f"waiting for data: {_number(waiting.get('have'))} of "
        f"{_number(waiting.get('need'))} {waiting.get('unit', '')}".rstrip()
    )


def _seconds(d: timedelta) -> timedelta:
    return timedelta(seconds=int(d.total_seconds()))


_ACTIVE = ("Progressing", "Paused", "AwaitingPromotion")
#: Statistics behind a verdict, kept out of the SRE-facing lines (``-o wide`` shows them).
_JARGON = re.compile(r"(,\s*|\s*\()ln (?:E|BF) = [^,)]*(\))?")


def plain(message: str) -> str:
    """A status message without its test statistics (``ln E = 9.08 ≥ 8.99``, ``ln BF``)."""
    return _JARGON.sub(lambda m: ")" if m.group(2) and m.group(1).strip() == "," else "", message)


def _weight(st: Mapping[str, Any], phase: str) -> str:
    """The weight set on the challenger, the share of the step's requests it got, the step."""
    from controller import numbers

    weight = st.get("challengerWeight")
    if phase == "Baseline":
        return "0 % on the challenger (baseline: the champion is measured alone)"
    if weight is None:
        return "0 % on the challenger (not started)"
    text = f"{weight} % on the challenger"
    samples = st.get("samples") or {}
    a, b = samples.get("champion"), samples.get("challenger")
    if phase in _ACTIVE and isinstance(a, int) and isinstance(b, int) and a + b > 0:
        text += f" (set); {numbers.share(b / (a + b))} of this step's requests"
    return text + (f", step {st['step']}" if st.get("step") and phase in _ACTIVE else "")


def _reason(st: Mapping[str, Any], scales: Mapping[str, str], wide: bool) -> str | None:
    """The last transition's reason said once: the code only in ``wide``; a failed
    guardrail with its values in both arms instead of its test statistics."""
    code, message = st.get("reasonCode") or "", st.get("message") or ""
    if not (code or message):
        return None
    if wide:
        return f"{code}: {message}" if code else message
    name = code.removeprefix("guardrail_failed:") if code.startswith("guardrail_failed:") else ""
    g = next((g for g in st.get("guardrails") or [] if g.get("name") == name), None)
    if g is not None:
        return f"guardrail {guardrail_line(g, scales)}, {beyond_margin(g, scales)}"
    return plain(message) or code


def _steps_line(body: Body, st: Mapping[str, Any]) -> str | None:
    """``10% ✓ → 50% (now) → promotion``: the steps, the current one marked."""
    steps = (body.get("spec") or {}).get("steps") or []
    phase = st.get("phase", "Pending")
    if not steps or phase in ("Pending", "Failed"):
        return None
    index = int(st.get("stepIndex", 0)) if phase in (*_ACTIVE, "RolledBack") else -1
    marks = []
    for i, step in enumerate(steps):
        weight = f"{step.get('weight')} %"
        if phase == "Promoted" or i < index:
            marks.append(f"{weight} ✓")
        elif i == index:
            marks.append(f"{weight} ✗" if phase == "RolledBack" else f"{weight} (now)")
        else:
            marks.append(weight)
    end = {"Promoted": "promoted ✓", "RolledBack": "rolled back"}.get(phase, "promotion")
    if ((body.get("spec") or {}).get("analysis") or {}).get("baseline"):
        marks.insert(0, "baseline (now)" if phase == "Baseline" else "baseline ✓")
    return " → ".join([*marks, end])


def status_view(body: Body, now: datetime, wide: bool = False, refreshed: bool = False) -> str:
    """The human view of one Experiment, shown by ``status`` and refreshed by ``--watch``.

    ``wide`` (``-o wide``) adds the reason code, the test statistics and each guardrail's
    p-values and alpha; ``refreshed`` (``--watch``) adds the time it was read.
    """
    meta, st, sp = body.get("metadata", {}), body.get("status") or {}, body.get("spec") or {}
    phase = st.get("phase", "Pending")
    since = parse_time(st.get("phaseStartedAt")) or parse_time(meta.get("creationTimestamp"))
    champion = (sp.get("champion") or {}).get("name", "?")
    challenger = (sp.get("challenger") or {}).get("name", "?")
    scales = _scales(body)
    lines = [
        f"Name:         {meta.get('name', '')}   (namespace {meta.get('namespace', '')})",
        f"Arms:         champion {champion}, challenger {challenger}",
        f"Phase:        {phase} for {age(since, now)}",
        f"Weight:       {_weight(st, phase)}",
    ]
    steps = _steps_line(body, st)
    if steps:
        lines.append(f"Steps:        {steps}")
    if phase in _ACTIVE and st.get("verdict"):
        lines.append(f"Verdict:      {st['verdict']} (last look)")
    held = holds(body)
    lines += [
        f"Held:         {c.get('reason', code)}: {c.get('message', '')} (since "
        f"{age(parse_time(c.get('lastTransitionTime')), now)})"
        for code, c in held
    ]
    reason = _reason(st, scales, wide)
    if reason:
        lines.append(f"Reason:       {reason}")
    if not held:  # while held, a progress bar would look healthy
        lines += _progress(body, st, now)
    if phase == "AwaitingPromotion":
        lines.append(
            f"Next:         every guardrail passed; `canaryctl promote {meta.get('name')}`"
        )
    samples = st.get("samples")
    if samples:
        lines.append(
            f"Samples:      champion {_number(samples.get('champion'))}, "
            f"challenger {_number(samples.get('challenger'))} (this step)"
        )
    rows = guardrail_table(body, wide)
    if rows:
        lines += ["Guardrails:", *rows]
    srm_wait = waiting_text((st.get("srm") or {}).get("waiting"))
    if srm_wait:
        lines.append(f"SRM check:    {srm_wait}")
    lines += arm_lines(st, wide)
    doc = st.get("forecast")
    if isinstance(doc, Mapping) and doc.get("advice") and phase in _ACTIVE:  # not once finished
        step = doc.get("stepIndex")
        at = "" if step is None else f" (at step {step + 1})"
        lines.append(f"Forecast:     {doc['advice']}{at}")
    conditions = st.get("conditions") or []
    held_types = {c.get("type") for _, c in held} | {"DecisionForecast"}  # shown above
    bad = [c for c in conditions if c.get("status") == "False" and c.get("type") not in held_types]
    if bad:
        lines.append("Conditions:")
        lines += [f"  {c['type']}={c['status']}: {c.get('message', '')}" for c in bad]
    pending = pending_request(body)
    if pending is not None:
        lines.append(f"Request:      {pending} (waiting for the operator)")
    analysed = parse_time(st.get("lastAnalysisAt"))
    if analysed is not None:
        lines.append(f"Updated:      last analysis {age(analysed, now)} ago")
    if refreshed:
        lines.append(f"Refreshed:    {now.strftime('%H:%M:%S %Z')} (Ctrl-C to stop)")
    return "\n".join(lines) + "\n"


def pending_request(body: Body) -> str | None:
    """A description of a manual request the operator has not acted on yet, if any."""
    from controller.decide import manual

    request = manual.parse_request((body.get("metadata") or {}).get("annotations"))
    handled = (body.get("status") or {}).get("handledRequests") or []
    if request is None or request.id in handled:
        return None
    if isinstance(request, manual.MalformedRequest):
        return f"{request.id}: malformed ({request.error})"
    full = " --full" if request.full else ""
    return f"{request.action.value}{full} by {request.actor} (id {request.id})"
