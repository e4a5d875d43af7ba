"""The frozen settings: built once when Progressing begins, read by everyone after.

When the experiment starts stepping, reconcile freezes the analysis settings together
with what the engine will use — the revenue cap in force, each guardrail's resolved
threshold, the alpha each test is judged at, the scale its estimate is on and the line
where harm begins — and the arms and router. ``FrozenSettings`` is that value; ``to_json``
and ``from_json`` are its one versioned JSON codec, used for ``status.frozenSettings``,
the ``experiments.settings`` row, the decision log, the reports and the CLI. Readers
display what was recorded and never recompute it. Pure functions; no I/O.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from analysis import multiplicity
from controller.experiment import defaults, spec, validation
from controller.experiment.spec import Scale as Scale

#: The version of the JSON shape written by ``to_json``; ``from_json`` reads it and older ones.
VERSION = 1


@dataclass(frozen=True)
class GuardrailTest:
    """One guardrail as the engine tests it, and how its numbers read.

    ``margin_line`` is where harm begins on ``scale`` (−0.05 for a 5 % tolerated drop of a
    higher-is-better mean; κ for a ratio); ``null_line`` is "no effect" (0, or 1 for a
    ratio). ``threshold_ms`` is the tail threshold in force, from the spec or the baseline
    (``threshold_source``).
    """

    name: str
    kind: spec.GuardrailKind
    alpha: float
    scale: Scale
    margin_line: float
    null_line: float
    direction: spec.Direction | None = None
    margin: float | None = None
    kappa: float | None = None
    threshold_ms: float | None = None
    threshold_source: str | None = None


@dataclass(frozen=True)
class SrmTest:
    """The sample-ratio check: whether it runs, and its share of alpha (0 when off)."""

    enabled: bool
    alpha: float


@dataclass(frozen=True)
class Routing:
    """The arms and the router, kept so the route can be finalised whatever the spec becomes."""

    champion: spec.Arm
    challenger: spec.Arm
    router: spec.Router


@dataclass(frozen=True)
class FrozenSettings:
    """The settings in force from Progressing on (see the module docstring)."""

    digest: str
    frozen_at: datetime
    analysis: spec.Analysis
    revenue_cap: float | None
    revenue_cap_source: str | None
    guardrails: tuple[GuardrailTest, ...]
    srm: SrmTest
    routing: Routing | None = None

    @property
    def family_alpha(self) -> float:
        """The experiment's family-wise alpha."""
        return self.analysis.alpha

    def guardrail(self, name: str) -> GuardrailTest:
        """The frozen test of the guardrail named ``name``."""
        for g in self.guardrails:
            if g.name == name:
                return g
        raise KeyError(f"{name!r}: no such guardrail (known: {[g.name for g in self.guardrails]})")


def routing_of(s: spec.ExperimentSpec) -> Routing:
    """The arms and the router of a spec."""
    return Routing(s.champion, s.challenger, s.router)


def _cap_source(cap: spec.RevenueCap | None) -> str | None:
    if cap is None:
        return None
    if cap.from_baseline is not None:
        return f"baseline p{100 * cap.from_baseline.quantile:g} of the champion"
    return "spec value"


def _test(g: spec.Guardrail, alpha: float, thresholds_ms: Mapping[str, float]) -> GuardrailTest:
    if isinstance(g, spec.MeanGuardrail):
        sign = -1.0 if g.direction is spec.Direction.HIGHER_IS_BETTER else 1.0
        relative = g.margin.kind is spec.MarginKind.RELATIVE
        return GuardrailTest(
            g.name,
            g.kind,
            alpha,
            Scale.RELATIVE if relative else Scale.ABSOLUTE,
            sign * g.margin.value,
            0.0,
            direction=g.direction,
            margin=g.margin.value,
        )
    if isinstance(g, spec.LatencyGuardrail):
        # Shown as the geometric-mean ratio − 1: harm begins at +margin (lower is better).
        return GuardrailTest(
            g.name,
            g.kind,
            alpha,
            Scale.RELATIVE,
            g.margin,
            0.0,
            direction=spec.Direction.LOWER_IS_BETTER,
            margin=g.margin,
        )
    threshold, source = None, None
    if isinstance(g, spec.TailGuardrail):
        if g.threshold_ms is not None:
            threshold, source = g.threshold_ms, "spec"
        elif g.name in thresholds_ms:
            threshold, source = float(thresholds_ms[g.name]), "baseline"
    return GuardrailTest(
        g.name,
        g.kind,
        alpha,
        Scale.RATIO,
        g.kappa,
        1.0,
        kappa=g.kappa,
        threshold_ms=threshold,
        threshold_source=source,
    )


def freeze(
    s: spec.ExperimentSpec,
    at: datetime,
    *,
    derived_cap: float | None = None,
    derived_thresholds_ms: Mapping[str, float] | None = None,
) -> FrozenSettings:
    """Freeze ``s``'s analysis with the values derived from the baseline (if any)."""
    return freeze_analysis(
        s.analysis,
        at,
        routing_of(s),
        derived_cap=derived_cap,
        derived_thresholds_ms=derived_thresholds_ms,
    )


def freeze_analysis(
    a: spec.Analysis,
    at: datetime,
    routing: Routing | None,
    *,
    derived_cap: float | None = None,
    derived_thresholds_ms: Mapping[str, float] | None = None,
) -> FrozenSettings:
    """``freeze`` for analysis settings and routing known apart (as 0.1's record kept them)."""
    thresholds = dict(derived_thresholds_ms or {})
    each = multiplicity.alpha_each(a.alpha, len(a.guardrails), srm_check=a.srm_enabled)
    cap = None
    if a.revenue_cap is not None:
        cap = a.revenue_cap.value if a.revenue_cap.value is not None else derived_cap
    return FrozenSettings(
        digest=digest(a),
        frozen_at=at,
        analysis=a,
        revenue_cap=cap,
        revenue_cap_source=_cap_source(a.revenue_cap),
        guardrails=tuple(_test(g, each, thresholds) for g in a.guardrails),
        srm=SrmTest(a.srm_enabled, each if a.srm_enabled else 0.0),
        routing=routing,
    )


# ----------------------------------------------------------------------------- the codec


def _guardrail_json(g: GuardrailTest) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": g.name,
        "kind": g.kind.value,
        "alpha": g.alpha,
        "scale": g.scale.value,
        "marginLine": g.margin_line,
        "nullLine": g.null_line,
    }
    for key, value in (
        ("direction", None if g.direction is None else g.direction.value),
        ("margin", g.margin),
        ("kappa", g.kappa),
        ("thresholdMs", g.threshold_ms),
        ("thresholdSource", g.threshold_source),
    ):
        if value is not None:
            out[key] = value
    return out


def _guardrail_from_json(d: Mapping[str, Any]) -> GuardrailTest:
    direction = d.get("direction")
    return GuardrailTest(
        name=str(d["name"]),
        kind=spec.GuardrailKind(d["kind"]),
        alpha=float(d["alpha"]),
        scale=Scale(d["scale"]),
        margin_line=float(d["marginLine"]),
        null_line=float(d["nullLine"]),
        direction=None if direction is None else spec.Direction(direction),
        margin=None if d.get("margin") is None else float(d["margin"]),
        kappa=None if d.get("kappa") is None else float(d["kappa"]),
        threshold_ms=None if d.get("thresholdMs") is None else float(d["thresholdMs"]),
        threshold_source=d.get("thresholdSource"),
    )


def to_json(f: FrozenSettings) -> dict[str, Any]:
    """The settings as versioned JSON (camelCase, every default spelled out).

    When they were frozen is not part of them: it is kept beside them
    (``status.frozenSettings.frozenAt``, ``experiments.settings_frozen_at``), so a
    transition replayed after a crash freezes the very same JSON.
    """
    out: dict[str, Any] = {
        "version": VERSION,
        "digest": f.digest,
        "analysis": analysis_to_raw(f.analysis),
        "revenueCap": None
        if f.revenue_cap is None and f.revenue_cap_source is None
        else {"value": f.revenue_cap, "source": f.revenue_cap_source},
        "guardrails": [_guardrail_json(g) for g in f.guardrails],
        "srm": {"enabled": f.srm.enabled, "alpha": f.srm.alpha},
    }
    if f.routing is not None:
        out["routing"] = routing_to_raw(f.routing)
    return out


def from_json(d: Mapping[str, Any], *, frozen_at: datetime | None = None) -> FrozenSettings:
    """Read what ``to_json`` wrote (or the unversioned shape of canaryctl 0.1), frozen at
    ``frozen_at`` (or at a ``frozenAt`` key of ``d``)."""
    if "frozenAt" in d:
        frozen_at = spec.parse_k8s_time(d["frozenAt"])
    if frozen_at is None:
        raise ValueError("frozen settings: when they were frozen is unknown (no frozen_at)")
    version = d.get("version")
    if version is None:
        return _from_v0(d, frozen_at)
    if version != VERSION:
        raise ValueError(f"frozen settings: version {version!r} is newer than this canaryctl reads")
    routing = d.get("routing")
    cap = d.get("revenueCap")
    return FrozenSettings(
        digest=str(d["digest"]),
        frozen_at=frozen_at,
        analysis=validation.analysis_from_raw(d["analysis"]),
        revenue_cap=None if cap is None or cap.get("value") is None else float(cap["value"]),
        revenue_cap_source=None if cap is None else cap.get("source"),
        guardrails=tuple(_guardrail_from_json(g) for g in d["guardrails"]),
        srm=SrmTest(bool(d["srm"]["enabled"]), float(d["srm"]["alpha"])),
        routing=None if routing is None else routing_from_raw(routing),
    )


def _from_v0(d: Mapping[str, Any], at: datetime) -> FrozenSettings:
    """canaryctl 0.1 stored ``{analysis, derived, routing}`` (and the time beside it)."""
    a = validation.analysis_from_raw(d["analysis"])
    derived = d.get("derived") or {}
    routing = d.get("routing")
    out = freeze_analysis(
        a,
        at,
        None if routing is None else routing_from_raw(routing),
        derived_cap=derived.get("revenueCap"),
        derived_thresholds_ms=derived.get("thresholdsMs"),
    )
    return dataclasses.replace(
        out,
        digest=str(d.get("digest", out.digest)),
        revenue_cap=d.get("revenueCap", out.revenue_cap),
    )


def routing_from_raw(raw: Mapping[str, Any]) -> Routing:
    """The arms and router back from ``routing_to_raw``'s JSON (CRD-shaped)."""
    arms = {
        which: spec.Arm(raw[which]["name"], raw[which]["service"], raw[which]["deployment"])
        for which in ("champion", "challenger")
    }
    return Routing(arms["champion"], arms["challenger"], validation.router_from_raw(raw["router"]))


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
    if isinstance(g, spec.LatencyGuardrail):
        return {"name": g.name, "kind": g.kind.value, "margin": {"relative": g.margin}}
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
            "minEvents": a.burn_in.min_events,
            "minSrmRequests": a.burn_in.min_srm_requests,
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
    if a.on_inconclusive is not spec.InconclusivePolicy.ROLLBACK:
        # Written only when opted in: the default keeps the digests (and the records) of
        # experiments frozen before the field existed, which read back as rollback.
        raw["onInconclusive"] = a.on_inconclusive.value
    return raw


#: Settings added after settings were first frozen, with their defaults: hashed only when set
#: to something else, so that settings frozen before they existed keep their digest.
_LATER_DEFAULTS: dict[str, dict[str, Any]] = {
    "burnIn": {
        "minEvents": defaults.BURN_IN_MIN_EVENTS,
        "minSrmRequests": defaults.BURN_IN_MIN_SRM_REQUESTS,
    },
}


def digest(a: spec.Analysis) -> str:
    """A stable hash of the settings (derived values excluded) to detect later edits."""
    raw = analysis_to_raw(a)
    for section, later in _LATER_DEFAULTS.items():
        raw[section] = {k: v for k, v in raw[section].items() if k not in later or later[k] != v}
    text = json.dumps(raw, sort_keys=True, separators=(",", ":"))
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


def baseline_complete(
    a: spec.Analysis,
    derived_cap: float | None,
    derived_thresholds_ms: Mapping[str, float] | None,
) -> bool:
    """True when the baseline gave every value the settings derive from it."""
    cap, tails = derived_names(a)
    thresholds = derived_thresholds_ms or {}
    return (not cap or derived_cap is not None) and all(t in thresholds for t in tails)


def routing_to_raw(s: spec.ExperimentSpec | Routing) -> dict[str, Any]:
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
