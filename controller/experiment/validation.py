"""The one validator of Experiment specs, shared by the CLI and the operator.

The boundary between raw JSON and typed values: ``parse_experiment`` checks a spec
against the CRD's ``openAPIV3Schema`` (jsonschema; unknown fields are errors here, as
with ``kubectl --validate=strict``), builds an ``ExperimentSpec`` with every default
filled in, then runs the cross-field rules that the CRD repeats as CEL. Every problem
becomes a ``SpecIssue`` naming the field (``spec.steps[1].weight``). No I/O, no clock.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from functools import cache
from typing import Any

import jsonschema

from controller.experiment import crd, defaults, spec


@dataclass(frozen=True)
class SpecIssue:
    """One problem in a spec: the field's path and what is wrong with it."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class SpecError(ValueError):
    """A spec that cannot run; ``issues`` names every bad field, and so does ``str`` (all of
    them, ``; ``-separated: the status message, the event and the decision log show it)."""

    def __init__(self, issues: list[SpecIssue] | tuple[SpecIssue, ...]) -> None:
        if not issues:
            raise ValueError("issues: a SpecError needs at least one issue")
        self.issues: tuple[SpecIssue, ...] = tuple(issues)
        super().__init__("; ".join(str(i) for i in self.issues))

    @property
    def field(self) -> str:
        """The first bad field."""
        return self.issues[0].field


def _strict(schema: Any) -> Any:
    """Copy of ``schema`` where objects with ``properties`` refuse unknown fields."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if (
            out.get("type") == "object"
            and "properties" in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@cache
def _validator() -> jsonschema.Draft4Validator:
    # Kubernetes' OpenAPI v3 subset uses Draft 4 semantics (boolean exclusiveMinimum).
    return jsonschema.Draft4Validator(_strict(copy.deepcopy(crd.SPEC_SCHEMA)))


def _path(parts: Iterator[Any] | Any) -> str:
    out = "spec"
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _schema_issues(body: Any) -> list[SpecIssue]:
    issues = []
    for error in sorted(_validator().iter_errors(body), key=lambda e: list(map(str, e.path))):
        field = _path(error.path)
        message = error.message
        if error.validator == "required":
            missing = str(error.message).split("'")[1]
            field, message = f"{field}.{missing}", "is required"
        elif error.validator == "oneOf":
            names = [rule["required"][0] for rule in error.validator_value]
            message = f"exactly one of {', '.join(names)} must be set"
        elif error.validator == "additionalProperties":
            extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
            field, message = f"{field}.{extra[0]}", "is not a known field"
        elif error.validator == "pattern" and error.schema.get("pattern") == spec.DURATION_PATTERN:
            message = f"{error.instance!r} is not a duration like '30s', '5m' or '2h'"
        issues.append(SpecIssue(field, message))
    return issues


def _arm(raw: Mapping[str, Any]) -> spec.Arm:
    name = raw["name"]
    return spec.Arm(
        name=name, service=raw.get("service", name), deployment=raw.get("deployment", name)
    )


def router_from_raw(raw: Mapping[str, Any]) -> spec.Router:
    """``spec.router`` (schema-valid JSON) as a typed router."""
    if "gatewayAPI" in raw:
        r = raw["gatewayAPI"]
        return spec.GatewayAPIRouter(
            http_route=r["httpRoute"], rule_index=r.get("ruleIndex", defaults.RULE_INDEX)
        )
    if "istio" in raw:
        r = raw["istio"]
        return spec.IstioRouter(
            virtual_service=r["virtualService"],
            route_index=r.get("routeIndex", defaults.ROUTE_INDEX),
            host=r.get("host"),
            champion_subset=r.get("championSubset"),
            challenger_subset=r.get("challengerSubset"),
        )
    if "kserve" in raw:
        return spec.KServeRouter(inference_service=raw["kserve"]["inferenceService"])
    return spec.ReplicasRouter(total_replicas=raw["replicas"]["totalReplicas"])


def _from_baseline(raw: Mapping[str, Any] | None) -> spec.FromBaseline | None:
    if raw is None:
        return None
    return spec.FromBaseline(
        quantile=float(raw["quantile"]), margin=float(raw.get("margin", defaults.THRESHOLD_MARGIN))
    )


def _guardrail(raw: Mapping[str, Any]) -> spec.Guardrail:
    kind = spec.GuardrailKind(raw["kind"])
    if kind is spec.GuardrailKind.MEAN:
        margin = raw.get("margin", {})
        margin_kind = spec.MarginKind.ABSOLUTE if "absolute" in margin else spec.MarginKind.RELATIVE
        return spec.MeanGuardrail(
            name=raw["name"],
            margin=spec.Margin(margin_kind, float(margin.get(margin_kind.value, 0.0))),
            direction=spec.Direction(raw.get("direction", defaults.DIRECTION)),
        )
    if kind is spec.GuardrailKind.LATENCY:
        return spec.LatencyGuardrail(
            name=raw["name"], margin=float(raw.get("margin", {}).get("relative", 0.0))
        )
    kappa = float(raw.get("kappa", 1.0))
    if kind is spec.GuardrailKind.TAIL:
        threshold = raw.get("thresholdMs")
        return spec.TailGuardrail(
            name=raw["name"],
            kappa=kappa,
            threshold_ms=None if threshold is None else float(threshold),
            threshold_from_baseline=_from_baseline(raw.get("thresholdFromBaseline")),
        )
    return spec.RateGuardrail(name=raw["name"], kappa=kappa)


def analysis_from_raw(raw: Mapping[str, Any]) -> spec.Analysis:
    """Build ``spec.Analysis`` from schema-valid CRD-shaped JSON, filling in defaults."""
    burn_in = raw.get("burnIn", {})
    cap = raw.get("revenueCap")
    baseline = raw.get("baseline")
    tuning = raw.get("tuning", {})
    return spec.Analysis(
        interval=spec.parse_duration(raw.get("interval", defaults.INTERVAL)),
        alpha=float(raw.get("alpha", defaults.ALPHA)),
        guardrails=tuple(_guardrail(g) for g in raw["guardrails"]),
        burn_in=spec.BurnIn(
            min_requests=burn_in.get("minRequests", defaults.BURN_IN_MIN_REQUESTS),
            min_non_zero_revenue=burn_in.get(
                "minNonZeroRevenue", defaults.BURN_IN_MIN_NON_ZERO_REVENUE
            ),
            min_events=burn_in.get("minEvents", defaults.BURN_IN_MIN_EVENTS),
            min_srm_requests=burn_in.get("minSrmRequests", defaults.BURN_IN_MIN_SRM_REQUESTS),
        ),
        revenue_cap=None
        if cap is None
        else spec.RevenueCap(
            value=None if "value" not in cap else float(cap["value"]),
            from_baseline=_from_baseline(cap.get("fromBaseline")),
        ),
        baseline=None
        if baseline is None
        else spec.Baseline(spec.parse_duration(baseline["duration"])),
        srm_enabled=bool(raw.get("srm", {}).get("enabled", defaults.SRM_ENABLED)),
        allowed_lateness=spec.parse_duration(raw.get("allowedLateness", defaults.ALLOWED_LATENESS)),
        tuning=spec.Tuning(samples_per_arm=tuning.get("samplesPerArm")),
        on_inconclusive=spec.InconclusivePolicy(
            raw.get("onInconclusive", defaults.ON_INCONCLUSIVE.value)
        ),
    )


def _grace(raw: Mapping[str, Any], key: str, default: str) -> timedelta:
    return spec.parse_duration(raw.get(key, {}).get("gracePeriod", default))


def _build(raw: Mapping[str, Any]) -> spec.ExperimentSpec:
    policy = raw.get("failurePolicy", {})
    return spec.ExperimentSpec(
        champion=_arm(raw["champion"]),
        challenger=_arm(raw["challenger"]),
        router=router_from_raw(raw["router"]),
        steps=tuple(
            spec.Step(
                weight=s["weight"],
                min_duration=spec.parse_duration(s["minDuration"]),
                min_samples=s.get("minSamples", defaults.MIN_SAMPLES),
            )
            for s in raw["steps"]
        ),
        analysis=analysis_from_raw(raw["analysis"]),
        promotion=spec.PromotionMode(raw.get("promotion", {}).get("mode", defaults.PROMOTION_MODE)),
        failure_policy=spec.FailurePolicy(
            missing_data_grace=_grace(policy, "missingData", defaults.MISSING_DATA_GRACE),
            database_unreachable_grace=_grace(
                policy, "databaseUnreachable", defaults.DATABASE_UNREACHABLE_GRACE
            ),
            challenger_not_ready_grace=_grace(
                policy, "challengerNotReady", defaults.CHALLENGER_NOT_READY_GRACE
            ),
        ),
        max_duration=spec.parse_duration(raw.get("maxDuration", defaults.MAX_DURATION)),
    )


def cross_field_issues(s: spec.ExperimentSpec) -> list[SpecIssue]:
    """The rules a per-field schema cannot express (repeated as CEL in the CRD)."""
    issues: list[SpecIssue] = []
    add = issues.append
    if s.champion.name == s.challenger.name:
        add(SpecIssue("spec.challenger.name", "must differ from spec.champion.name"))
    if (
        isinstance(s.router, spec.ReplicasRouter)
        and s.champion.deployment == s.challenger.deployment
    ):
        add(SpecIssue("spec.challenger.deployment", "must differ from the champion's deployment"))
    if (
        isinstance(s.router, spec.IstioRouter)
        and s.router.champion_subset is not None
        and s.router.champion_subset == s.router.challenger_subset
    ):
        add(SpecIssue("spec.router.istio.challengerSubset", "must differ from championSubset"))
    for i in range(1, len(s.steps)):
        if s.steps[i].weight <= s.steps[i - 1].weight:
            add(
                SpecIssue(
                    f"spec.steps[{i}].weight",
                    f"must be greater than the previous step's weight ({s.steps[i - 1].weight}); "
                    "weights are strictly increasing",
                )
            )
    a = s.analysis
    if a.interval <= timedelta(0):
        add(SpecIssue("spec.analysis.interval", "must be positive"))
    seen: set[str] = set()
    for i, g in enumerate(a.guardrails):
        where = f"spec.analysis.guardrails[{i}]"
        if g.name in seen:
            add(SpecIssue(f"{where}.name", f"duplicate guardrail name {g.name!r}"))
        seen.add(g.name)
        issues.extend(_guardrail_issues(g, where))
    if any(isinstance(g, spec.MeanGuardrail) for g in a.guardrails) and a.revenue_cap is None:
        add(SpecIssue("spec.analysis.revenueCap", "is required when there is a mean guardrail"))
    if a.needs_baseline and a.baseline is None:
        add(
            SpecIssue(
                "spec.analysis.baseline",
                "is required when revenueCap or a tail threshold is fromBaseline",
            )
        )
    if not a.needs_baseline and a.baseline is not None:
        add(
            SpecIssue(
                "spec.analysis.baseline",
                "is set but neither revenueCap nor a tail threshold is fromBaseline",
            )
        )
    if a.baseline is not None and a.baseline.duration <= timedelta(0):
        add(SpecIssue("spec.analysis.baseline.duration", "must be positive"))
    floor = sum((st.min_duration for st in s.steps), timedelta(0))
    if a.baseline is not None:
        floor += a.baseline.duration
    if s.max_duration < floor:
        add(
            SpecIssue(
                "spec.maxDuration",
                f"must be at least the baseline duration plus the steps' minDuration "
                f"({spec.format_duration(floor)})",
            )
        )
    return issues


def _guardrail_issues(g: spec.Guardrail, where: str) -> Iterator[SpecIssue]:
    if isinstance(g, spec.TailGuardrail) and (g.threshold_ms is None) == (
        g.threshold_from_baseline is None
    ):
        yield SpecIssue(
            f"{where}.thresholdMs", "set exactly one of thresholdMs, thresholdFromBaseline"
        )
    if isinstance(g, spec.TailGuardrail | spec.RateGuardrail) and g.kappa < 1:
        yield SpecIssue(f"{where}.kappa", "must be at least 1")


def _kind_issues(raw: Mapping[str, Any]) -> list[SpecIssue]:
    """Fields that belong to another guardrail kind, or are missing for this one."""
    issues = []
    for i, g in enumerate(raw.get("analysis", {}).get("guardrails", [])):
        where = f"spec.analysis.guardrails[{i}]"
        kind = g.get("kind")
        if kind in ("mean", "latency") and "margin" not in g:
            issues.append(SpecIssue(f"{where}.margin", f"is required for a {kind} guardrail"))
        if kind == "latency" and "absolute" in g.get("margin", {}):
            issues.append(
                SpecIssue(
                    f"{where}.margin.absolute",
                    "a latency guardrail takes a relative margin (0.05 = 5 % slower)",
                )
            )
        if kind in ("tail", "rate") and "kappa" not in g:
            issues.append(SpecIssue(f"{where}.kappa", "is required for tail and rate guardrails"))
        if kind not in ("mean", "latency") and "margin" in g:
            issues.append(SpecIssue(f"{where}.margin", "only mean and latency guardrails take it"))
        if kind != "mean" and "direction" in g:
            issues.append(SpecIssue(f"{where}.direction", "only mean guardrails take it"))
        if kind != "tail":
            issues.extend(
                SpecIssue(f"{where}.{f}", "only tail guardrails take it")
                for f in ("thresholdMs", "thresholdFromBaseline")
                if f in g
            )
        if kind in ("mean", "latency") and "kappa" in g:
            issues.append(SpecIssue(f"{where}.kappa", "only tail and rate guardrails take it"))
    return issues


def validate_spec(raw: Any) -> spec.ExperimentSpec:
    """Check a raw ``spec`` mapping and return it typed; raise ``SpecError`` naming bad fields."""
    if not isinstance(raw, Mapping):
        raise SpecError([SpecIssue("spec", "must be an object")])
    issues = _schema_issues(raw)
    if issues:
        raise SpecError(issues)
    issues = _kind_issues(raw)
    if issues:
        raise SpecError(issues)
    built = _build(raw)
    issues = cross_field_issues(built)
    if issues:
        raise SpecError(issues)
    return built


def parse_experiment(body: Mapping[str, Any]) -> spec.ExperimentSpec:
    """Validate an Experiment resource (as read from the API or a YAML file) and return its spec."""
    if body.get("apiVersion") not in (None, f"{spec.API_GROUP}/{spec.API_VERSION}"):
        raise SpecError([SpecIssue("apiVersion", f"must be {spec.API_GROUP}/{spec.API_VERSION}")])
    if body.get("kind") not in (None, spec.KIND):
        raise SpecError([SpecIssue("kind", f"must be {spec.KIND}")])
    if "spec" not in body:
        raise SpecError([SpecIssue("spec", "is required")])
    return validate_spec(body["spec"])
