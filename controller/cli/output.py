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
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

Body = Mapping[str, Any]


class Format(StrEnum):
    """Output formats of the read commands."""

    TABLE = "table"
    JSON = "json"
    YAML = "yaml"


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


def list_table(items: Sequence[Body], now: datetime, with_namespace: bool = False) -> str:
    """The ``canaryctl list`` table: the CRD's printer columns plus the arms."""
    headers = ["NAME", "PHASE", "WEIGHT", "STEP", "VERDICT", "CHAMPION", "CHALLENGER", "AGE"]
    if with_namespace:
        headers.insert(0, "NAMESPACE")
    rows = []
    for item in items:
        meta, st, sp = item.get("metadata", {}), item.get("status") or {}, item.get("spec") or {}
        weight = st.get("challengerWeight")
        row = [
            meta.get("name", ""),
            st.get("phase", "Pending"),
            "-" if weight is None else f"{weight}%",
            _dash(st.get("step")),
            _dash(st.get("verdict")),
            _dash((sp.get("champion") or {}).get("name")),
            _dash((sp.get("challenger") or {}).get("name")),
            age(parse_time(meta.get("creationTimestamp")), now),
        ]
        if with_namespace:
            row.insert(0, meta.get("namespace", ""))
        rows.append(row)
    return table(headers, rows)


def _pct(done: float, total: float) -> str:
    return "100%" if total <= 0 else f"{min(100, int(100 * done / total))}%"


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
    if not isinstance(value, float):
        return _number(value)
    scale = scales.get(guardrail.get("name", "")) or (
        "ratio" if guardrail.get("kind") in ("tail", "rate") else "absolute"
    )
    if scale == "ratio":
        return f"×{value:.3g}"
    if scale == "relative":
        return f"{value:+.2%}".replace("%", " %")
    return f"{value:+.4g}"


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
        f"{step.min_samples:,} samples per arm at {step.weight}%",
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


def status_view(body: Body, now: datetime) -> str:
    """The human view of one Experiment, shown by ``status`` and refreshed by ``--watch``."""
    meta, st, sp = body.get("metadata", {}), body.get("status") or {}, body.get("spec") or {}
    phase = st.get("phase", "Pending")
    since = parse_time(st.get("phaseStartedAt")) or parse_time(meta.get("creationTimestamp"))
    weight = st.get("challengerWeight")
    champion = (sp.get("champion") or {}).get("name", "?")
    challenger = (sp.get("challenger") or {}).get("name", "?")
    lines = [
        f"Name:         {meta.get('name', '')}   (namespace {meta.get('namespace', '')})",
        f"Arms:         champion {champion}, challenger {challenger}",
        f"Phase:        {phase} for {age(since, now)}",
        f"Weight:       {'-' if weight is None else f'{weight}%'} on the challenger"
        + (f", step {st['step']}" if st.get("step") else ""),
        f"Verdict:      {_dash(st.get('verdict'))}",
    ]
    if st.get("reasonCode") or st.get("message"):
        lines.append(f"Reason:       {_dash(st.get('reasonCode'))}: {st.get('message', '')}")
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
    guardrails = st.get("guardrails") or []
    if guardrails:
        lines += ["Guardrails:"]
        relative = _scales(body)
        rows = [
            [
                g.get("name", "?"),
                _dash(g.get("kind")),
                _effect(g.get("estimate"), g, relative),
                f"[{_effect(g.get('lower'), g, relative)}, {_effect(g.get('upper'), g, relative)}]",
                _dash(g.get("verdict")),
                waiting_text(g.get("waiting")) or _dash(g.get("reasonCode")),
            ]
            for g in guardrails
        ]
        header = ["NAME", "KIND", "ESTIMATE", "BOUNDS", "VERDICT", "REASON"]
        lines += ["  " + line for line in table(header, rows).splitlines()]
    srm_wait = waiting_text((st.get("srm") or {}).get("waiting"))
    if srm_wait:
        lines.append(f"SRM check:    {srm_wait}")
    conditions = st.get("conditions") or []
    bad = [c for c in conditions if c.get("status") != "True"]
    if bad:
        lines.append("Holds:")
        lines += [f"  {c['type']}={c['status']}: {c.get('message', '')}" for c in bad]
    pending = pending_request(body)
    if pending is not None:
        lines.append(f"Request:      {pending} (waiting for the operator)")
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
