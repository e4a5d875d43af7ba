"""Freezing the analysis settings: snapshot, digest, and reading a snapshot back.

When Progressing begins, reconcile records the analysis settings (with the values derived
from the baseline) in the status; from then on the analysis engine and reconcile use the
snapshot, and edits to ``spec.analysis`` are refused with a condition. The snapshot uses
the CRD's own field names so people can read it. Pure functions; no I/O.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from controller.decide import observed
from controller.experiment import spec, validation


def _from_baseline(value: spec.FromBaseline | None) -> dict[str, float] | None:
    return None if value is None else {"quantile": value.quantile, "margin": value.margin}


def _guardrail(g: spec.Guardrail) -> dict[str, Any]:
    if isinstance(g, spec.MeanGuardrail):
        return {
            "name": g.name,
            "kind": g.kind.value,
            "direction": g.direction.value,
            "margin": {g.margin.kind.value: g.margin.value},
        }
    out: dict[str, Any] = {"name": g.name, "kind": g.kind.value, "kappa": g.kappa}
    if isinstance(g, spec.TailGuardrail):
        if g.threshold_ms is not None:
            out["thresholdMs"] = g.threshold_ms
        if g.threshold_from_baseline is not None:
            out["thresholdFromBaseline"] = _from_baseline(g.threshold_from_baseline)
    return out


def analysis_to_raw(a: spec.Analysis) -> dict[str, Any]:
    """``spec.analysis`` back as CRD-shaped JSON, every default spelled out."""
    raw: dict[str, Any] = {
        "interval": spec.format_duration(a.interval),
        "alpha": a.alpha,
        "guardrails": [_guardrail(g) for g in a.guardrails],
        "burnIn": {
            "minRequests": a.burn_in.min_requests,
            "minNonZeroRevenue": a.burn_in.min_non_zero_revenue,
        },
        "srm": {"enabled": a.srm_enabled},
        "allowedLateness": spec.format_duration(a.allowed_lateness),
    }
    if a.revenue_cap is not None:
        cap = a.revenue_cap
        if cap.value is not None:
            raw["revenueCap"] = {"value": cap.value}
        elif cap.from_baseline is not None:
            raw["revenueCap"] = {"fromBaseline": {"quantile": cap.from_baseline.quantile}}
    if a.baseline is not None:
        raw["baseline"] = {"duration": spec.format_duration(a.baseline.duration)}
    if a.tuning.samples_per_arm is not None:
        raw["tuning"] = {"samplesPerArm": a.tuning.samples_per_arm}
    return raw


def digest(a: spec.Analysis) -> str:
    """A stable hash of the settings (derived values excluded) to detect later edits."""
    text = json.dumps(analysis_to_raw(a), sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def derived_names(a: spec.Analysis) -> tuple[bool, tuple[str, ...]]:
    """Whether the revenue cap is derived, and the tail guardrails whose threshold is."""
    cap = a.revenue_cap is not None and a.revenue_cap.from_baseline is not None
    tails = tuple(
        g.name
        for g in a.guardrails
        if isinstance(g, spec.TailGuardrail) and g.threshold_from_baseline is not None
    )
    return cap, tails


def baseline_complete(a: spec.Analysis, derived: observed.BaselineResult | None) -> bool:
    """True when ``derived`` holds every value the settings derive from the baseline."""
    cap, tails = derived_names(a)
    if not cap and not tails:
        return True
    if derived is None:
        return False
    return (not cap or derived.revenue_cap is not None) and all(
        t in derived.thresholds_ms for t in tails
    )


def routing_to_raw(s: spec.ExperimentSpec) -> dict[str, Any]:
    """The arms and the router as CRD-shaped JSON: enough to finalise the route later."""
    r = s.router
    router: dict[str, Any]
    if isinstance(r, spec.GatewayAPIRouter):
        router = {"gatewayAPI": {"httpRoute": r.http_route, "ruleIndex": r.rule_index}}
    elif isinstance(r, spec.IstioRouter):
        istio: dict[str, Any] = {"virtualService": r.virtual_service, "routeIndex": r.route_index}
        for key, value in (
            ("host", r.host),
            ("championSubset", r.champion_subset),
            ("challengerSubset", r.challenger_subset),
        ):
            if value is not None:
                istio[key] = value
        router = {"istio": istio}
    elif isinstance(r, spec.KServeRouter):
        router = {"kserve": {"inferenceService": r.inference_service}}
    else:
        router = {"replicas": {"totalReplicas": r.total_replicas}}
    arms = {
        which: {"name": arm.name, "service": arm.service, "deployment": arm.deployment}
        for which, arm in (("champion", s.champion), ("challenger", s.challenger))
    }
    return {**arms, "router": router}


def snapshot(
    a: spec.Analysis,
    derived: observed.BaselineResult | None,
    routing: spec.ExperimentSpec | None = None,
) -> dict[str, Any]:
    """The settings to record: ``{"analysis", "derived", "routing"?}`` (derived: values in use).

    ``routing`` (arms and router) lets the operator finalise the route even when a later
    edit makes the spec invalid; it is recorded, not frozen.
    """
    out: dict[str, Any] = {"analysis": analysis_to_raw(a), "derived": {}}
    if routing is not None:
        out["routing"] = routing_to_raw(routing)
    cap, tails = derived_names(a)
    if derived is not None:
        if cap and derived.revenue_cap is not None:
            out["derived"]["revenueCap"] = derived.revenue_cap
        thresholds = {
            t: derived.thresholds_ms[t] for t in sorted(tails) if t in derived.thresholds_ms
        }
        if thresholds:
            out["derived"]["thresholdsMs"] = thresholds
    return out


def analysis_from_snapshot(snap: Mapping[str, Any]) -> spec.Analysis:
    """Read the frozen ``spec.Analysis`` back from a recorded snapshot."""
    return validation.analysis_from_raw(snap["analysis"])
