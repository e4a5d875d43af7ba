"""The Experiment CustomResourceDefinition, built in one place.

``manifests/crd.yaml`` is this module's output (``python -m controller.experiment.crd``); a test
checks the two are identical. ``controller.experiment.validation`` checks specs against the same
``openAPIV3Schema`` with jsonschema, so the CLI, the operator and the API server agree.
The ``x-kubernetes-validations`` (CEL) rules repeat the cross-field checks that
``controller.experiment.validation`` does in Python, for real clusters. Builds dicts only; no I/O.

Its length is data: the whole OpenAPI schema with every field's description and CEL rule,
written once here (the manifest, the parser and the docs derive from it).
"""

from __future__ import annotations

import sys
from typing import Any

import yaml

from controller.experiment import defaults, spec

Schema = dict[str, Any]

_NAME = {"type": "string", "minLength": 1, "maxLength": 253}
_DURATION = {"type": "string", "pattern": spec.DURATION_PATTERN, "maxLength": 32}


def _obj(
    properties: Schema,
    *,
    required: list[str] | None = None,
    description: str,
    rules: list[dict[str, str]] | None = None,
    **extra: Any,
) -> Schema:
    out: Schema = {"type": "object", "description": description, "properties": properties}
    if required:
        out["required"] = required
    out.update(extra)
    if rules:
        out["x-kubernetes-validations"] = rules
    return out


def _with(base: Schema, description: str, **extra: Any) -> Schema:
    return {**base, "description": description, **extra}


def _arm(which: str) -> Schema:
    return _obj(
        {
            "name": _with(_NAME, f"Name of the {which} model (used in data and reports)."),
            "service": _with(_NAME, "Kubernetes Service of the arm; defaults to name."),
            "deployment": _with(
                _NAME, "Deployment of the arm (readiness, replicas router); defaults to name."
            ),
        },
        required=["name"],
        description=f"The {which}.",
    )


def _from_baseline(description: str, *, with_margin: bool) -> Schema:
    props: Schema = {
        "quantile": {
            "type": "number",
            "minimum": 0.5,
            "maximum": 1,
            "exclusiveMaximum": True,
            "description": "Quantile of the champion's baseline distribution.",
        }
    }
    if with_margin:
        props["margin"] = {
            "type": "number",
            "minimum": 0,
            "maximum": 10,
            "default": defaults.THRESHOLD_MARGIN,
            "description": "Inflation m: the threshold is the smallest histogram edge"
            " >= (1+m) x quantile.",
        }
    return _obj(props, required=["quantile"], description=description)


_ROUTER = _obj(
    {
        "gatewayAPI": _obj(
            {
                "httpRoute": _with(_NAME, "Name of the HTTPRoute in the experiment's namespace."),
                "ruleIndex": {
                    "type": "integer",
                    "minimum": 0,
                    "default": defaults.RULE_INDEX,
                    "description": "Index of the rule whose backendRefs carry the weights.",
                },
            },
            required=["httpRoute"],
            description="Gateway API HTTPRoute: backendRefs weights.",
        ),
        "istio": _obj(
            {
                "virtualService": _with(_NAME, "Name of the VirtualService."),
                "routeIndex": {
                    "type": "integer",
                    "minimum": 0,
                    "default": defaults.ROUTE_INDEX,
                    "description": "Index of the http route whose destinations carry the weights.",
                },
                "host": _with(_NAME, "Destination host; defaults to each arm's service."),
                "championSubset": _with(_NAME, "DestinationRule subset of the champion."),
                "challengerSubset": _with(_NAME, "DestinationRule subset of the challenger."),
            },
            required=["virtualService"],
            description="Istio VirtualService: route weights.",
            rules=[
                {
                    "rule": "!has(self.championSubset) || !has(self.challengerSubset)"
                    " || self.championSubset != self.challengerSubset",
                    "message": "championSubset and challengerSubset must differ",
                    "fieldPath": ".challengerSubset",
                }
            ],
        ),
        "kserve": _obj(
            {"inferenceService": _with(_NAME, "Name of the InferenceService.")},
            required=["inferenceService"],
            description="KServe InferenceService: latest revision at canaryTrafficPercent.",
        ),
        "replicas": _obj(
            {
                "totalReplicas": {
                    "type": "integer",
                    "minimum": 2,
                    "maximum": 1000,
                    "description": "Replicas shared by the two Deployments.",
                }
            },
            required=["totalReplicas"],
            description="Scale the two Deployments so that their ratio approximates the weight.",
        ),
    },
    description="Traffic router: exactly one of gatewayAPI, istio, kserve, replicas.",
    oneOf=[{"required": [k.value]} for k in spec.RouterKind],
    rules=[
        {
            "rule": "[has(self.gatewayAPI), has(self.istio), has(self.kserve), has(self.replicas)]"
            ".filter(x, x).size() == 1",
            "message": "exactly one router must be set: gatewayAPI, istio, kserve or replicas",
        }
    ],
)

_STEP = _obj(
    {
        "weight": {
            "type": "integer",
            "minimum": 1,
            "maximum": 100,
            "description": "Challenger traffic share in percent during the step.",
        },
        "minDuration": _with(_DURATION, "Minimum time at this weight before advancing."),
        "minSamples": {
            "type": "integer",
            "minimum": 0,
            "default": defaults.MIN_SAMPLES,
            "description": "Minimum requests per arm in this step before advancing.",
        },
    },
    required=["weight", "minDuration"],
    description="One traffic step.",
)

_GUARDRAIL = _obj(
    {
        "name": _with(
            _NAME,
            "Unique name; appears in reason codes (guardrail_failed:<name>).",
            maxLength=63,
            pattern="^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        ),
        "kind": {
            "type": "string",
            "enum": [k.value for k in spec.GuardrailKind],
            "description": "mean (capped revenue per request), tail (latency"
            " exceedances), rate (errors), latency (geometric-mean latency, lower is"
            " better).",
        },
        "direction": {
            "type": "string",
            "enum": [d.value for d in spec.Direction],
            # No schema default: the API server would add it to tail and rate guardrails too.
            "description": "mean only: which way is better (default higherIsBetter).",
        },
        "margin": _obj(
            {
                "relative": {
                    "type": "number",
                    "minimum": 0,
                    "maximum": 1,
                    "description": "Tolerated change as a fraction of the champion (0.02 = 2 %).",
                },
                "absolute": {
                    "type": "number",
                    "minimum": 0,
                    "description": "Tolerated change in the metric's unit.",
                },
            },
            description="mean and latency: tolerated change; exactly one of relative,"
            " absolute (latency: relative only, 0.05 = 5 % slower).",
            oneOf=[{"required": ["relative"]}, {"required": ["absolute"]}],
            rules=[
                {
                    "rule": "has(self.relative) != has(self.absolute)",
                    "message": "exactly one of relative, absolute must be set",
                }
            ],
        ),
        "thresholdMs": {
            "type": "number",
            "minimum": 0,
            "exclusiveMinimum": True,
            "maximum": 60000,
            "description": "tail only: latency threshold in milliseconds.",
        },
        "thresholdFromBaseline": _from_baseline(
            "tail only: derive the threshold from the baseline (e.g. quantile 0.99, margin 0.2).",
            with_margin=True,
        ),
        "kappa": {
            "type": "number",
            "minimum": 1,
            "maximum": 100,
            "description": "tail and rate: tolerated inflation of the exceedance or"
            " error rate (>= 1).",
        },
    },
    required=["name", "kind"],
    description="A guardrail the analysis engine evaluates every tick.",
    rules=[
        {
            "rule": "!(self.kind in ['mean', 'latency']) || has(self.margin)",
            "message": "mean and latency guardrails need margin",
            "fieldPath": ".margin",
        },
        {
            "rule": "!(self.kind in ['tail', 'rate']) || has(self.kappa)",
            "message": "tail and rate guardrails need kappa",
            "fieldPath": ".kappa",
        },
        {
            "rule": "self.kind in ['tail', 'rate'] || !has(self.kappa)",
            "message": "only tail and rate guardrails take kappa",
            "fieldPath": ".kappa",
        },
        {
            "rule": "self.kind != 'latency' || !has(self.margin) || !has(self.margin.absolute)",
            "message": "a latency guardrail takes a relative margin",
            "fieldPath": ".margin",
        },
        {
            "rule": "self.kind == 'mean' || !has(self.direction)",
            "message": "only mean guardrails take direction",
            "fieldPath": ".direction",
        },
        {
            "rule": "self.kind != 'tail' || has(self.thresholdMs) !="
            " has(self.thresholdFromBaseline)",
            "message": "a tail guardrail needs exactly one of thresholdMs, thresholdFromBaseline",
        },
        {
            "rule": "self.kind == 'tail' || (!has(self.thresholdMs) &&"
            " !has(self.thresholdFromBaseline))",
            "message": "only tail guardrails take a threshold",
        },
        {
            "rule": "self.kind in ['mean', 'latency'] || !has(self.margin)",
            "message": "only mean and latency guardrails take a margin",
            "fieldPath": ".margin",
        },
    ],
)

_WAITING = _obj(
    {
        "have": {"type": "integer", "minimum": 0},
        "need": {"type": "integer", "minimum": 0},
        "unit": {"type": "string"},
    },
    description="Set while the test waits for its own data (not yet eligible to decide):"
    " have of need units, e.g. 140 of 200 revenue events.",
)

_ANALYSIS = _obj(
    {
        "interval": _with(
            _DURATION, "Tick: how often the analysis runs.", default=defaults.INTERVAL
        ),
        "alpha": {
            "type": "number",
            "minimum": 0,
            "exclusiveMinimum": True,
            "maximum": defaults.ALPHA_MAX,
            "default": defaults.ALPHA,
            "description": "Family-wise probability of rolling back a healthy challenger.",
        },
        "guardrails": {
            "type": "array",
            "minItems": 1,
            "maxItems": 16,
            "items": _GUARDRAIL,
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name"],
            "description": "Guardrails; names are unique.",
        },
        "burnIn": _obj(
            {
                "minRequests": {
                    "type": "integer",
                    "minimum": 0,
                    "default": defaults.BURN_IN_MIN_REQUESTS,
                    "description": "Requests in a step's smaller arm before a mean (revenue)"
                    " test may decide.",
                },
                "minNonZeroRevenue": {
                    "type": "integer",
                    "minimum": 0,
                    "default": defaults.BURN_IN_MIN_NON_ZERO_REVENUE,
                    "description": "Requests with non-zero revenue in a step's smaller arm"
                    " before a mean (revenue) test may decide.",
                },
                "minEvents": {
                    "type": "integer",
                    "minimum": 0,
                    "default": defaults.BURN_IN_MIN_EVENTS,
                    "description": "Slow requests (tail) or errors (rate), both arms, before"
                    " a tail or rate test may decide.",
                },
                "minSrmRequests": {
                    "type": "integer",
                    "minimum": 0,
                    "default": defaults.BURN_IN_MIN_SRM_REQUESTS,
                    "description": "Requests in the smaller arm before the sample-ratio check"
                    " may decide.",
                },
            },
            description="The data each test needs before it may decide; each test waits"
            " for its own (docs/statistics.md, Eligibility).",
            default={},
        ),
        "revenueCap": _obj(
            {
                "value": {
                    "type": "number",
                    "minimum": 0,
                    "exclusiveMinimum": True,
                    "description": "Explicit per-request revenue cap.",
                },
                "fromBaseline": _from_baseline(
                    "Derive the cap as a quantile of the champion's baseline revenue.",
                    with_margin=False,
                ),
            },
            description="Cap on per-request revenue for the mean test; exactly one of"
            " value, fromBaseline.",
            oneOf=[{"required": ["value"]}, {"required": ["fromBaseline"]}],
            rules=[
                {
                    "rule": "has(self.value) != has(self.fromBaseline)",
                    "message": "exactly one of value, fromBaseline must be set",
                }
            ],
        ),
        "baseline": _obj(
            {
                "duration": _with(
                    _DURATION, "How long to measure the champion with the challenger at 0 %."
                )
            },
            required=["duration"],
            description="Baseline period; required when the cap or a threshold is derived.",
        ),
        "srm": _obj(
            {
                "enabled": {
                    "type": "boolean",
                    "default": defaults.SRM_ENABLED,
                    "description": "Check the sample ratio every tick; a mismatch rolls back.",
                }
            },
            description="Sample-ratio mismatch check.",
            default={},
        ),
        "allowedLateness": _with(
            _DURATION,
            "How late a request may arrive and still count.",
            default=defaults.ALLOWED_LATENESS,
        ),
        "onInconclusive": {
            "type": "string",
            "enum": [m.value for m in spec.InconclusivePolicy],
            "default": defaults.ON_INCONCLUSIVE.value,
            "description": "At maxDuration without PASS on every guardrail: rollback, or"
            " promote when no guardrail failed (reason no_harm_found, recording the largest"
            " harm each guardrail could not exclude).",
        },
        "tuning": _obj(
            {
                "samplesPerArm": {
                    "type": "integer",
                    "minimum": 1,
                    "description": "Per-arm sample size at which the bounds are tightest.",
                }
            },
            description="Optional tuning of the sequential tests.",
        ),
    },
    required=["guardrails"],
    description="Analysis settings; frozen when Progressing begins.",
    rules=[
        {
            "rule": "duration(self.interval) > duration('0s')",
            "message": "interval must be positive",
            "fieldPath": ".interval",
        },
        {
            "rule": "!has(self.baseline) || duration(self.baseline.duration) > duration('0s')",
            "message": "the baseline duration must be positive",
            "fieldPath": ".baseline",
        },
        {
            "rule": "((has(self.revenueCap) && has(self.revenueCap.fromBaseline))"
            " || self.guardrails.exists(g, has(g.thresholdFromBaseline))) ?"
            " has(self.baseline) : true",
            "message": "baseline is required when revenueCap or a tail threshold is fromBaseline",
            "fieldPath": ".baseline",
        },
        {
            "rule": "!has(self.baseline) || (has(self.revenueCap) &&"
            " has(self.revenueCap.fromBaseline))"
            " || self.guardrails.exists(g, has(g.thresholdFromBaseline))",
            "message": "baseline is set but neither revenueCap nor a tail threshold is"
            " fromBaseline",
            "fieldPath": ".baseline",
        },
        {
            "rule": "!self.guardrails.exists(g, g.kind == 'mean') || has(self.revenueCap)",
            "message": "a mean guardrail needs revenueCap",
            "fieldPath": ".revenueCap",
        },
    ],
)

_GRACE = _obj(
    {"gracePeriod": _with(_DURATION, "How long to hold before rolling back.")},
    description="Hold the current weight, then roll back after gracePeriod.",
)

_FAILURE_POLICY = _obj(
    {
        "missingData": _with(
            _GRACE,
            "No fresh data although the database answers.",
            default={"gracePeriod": defaults.MISSING_DATA_GRACE},
        ),
        "databaseUnreachable": _with(
            _GRACE,
            "The database does not answer.",
            default={"gracePeriod": defaults.DATABASE_UNREACHABLE_GRACE},
        ),
        "challengerNotReady": _with(
            _GRACE,
            "The challenger's pods are not ready.",
            default={"gracePeriod": defaults.CHALLENGER_NOT_READY_GRACE},
        ),
    },
    description="What missing data, an unreachable database or an unready challenger lead to.",
    default={},
)

SPEC_SCHEMA: Schema = _obj(
    {
        "champion": _arm("champion (current model)"),
        "challenger": _arm("challenger (candidate model)"),
        "router": _ROUTER,
        "steps": {
            "type": "array",
            "minItems": 1,
            "maxItems": 20,
            "items": _STEP,
            "description": "Traffic steps; weights strictly increasing.",
            "x-kubernetes-validations": [
                {
                    "rule": "self.map(s, s.weight).isSorted()"
                    " && self.all(s, self.exists_one(t, t.weight == s.weight))",
                    "message": "step weights must be strictly increasing",
                }
            ],
        },
        "analysis": _ANALYSIS,
        "promotion": _obj(
            {
                "mode": {
                    "type": "string",
                    "enum": [m.value for m in spec.PromotionMode],
                    "default": defaults.PROMOTION_MODE.value,
                    "description": "automatic, or manual (wait in AwaitingPromotion).",
                }
            },
            description="Promotion after the last step passes.",
            default={},
        ),
        "failurePolicy": _FAILURE_POLICY,
        "maxDuration": _with(
            _DURATION,
            "Longest the experiment may run; reaching it without PASS rolls back.",
            default=defaults.MAX_DURATION,
        ),
    },
    required=["champion", "challenger", "router", "steps", "analysis"],
    description="What to release, how to route traffic, step and judge it.",
    rules=[
        {
            "rule": "self.champion.name != self.challenger.name",
            "message": "champion and challenger must have different names",
            "fieldPath": ".challenger.name",
        },
        {
            "rule": "!has(self.router.replicas) || (has(self.champion.deployment)"
            " ? self.champion.deployment : self.champion.name) != (has(self.challenger.deployment)"
            " ? self.challenger.deployment : self.challenger.name)",
            "message": "the replicas router needs two different Deployments",
            "fieldPath": ".challenger.deployment",
        },
        {
            "rule": "duration(self.maxDuration) >= self.steps.map(s, duration(s.minDuration)).sum()"
            " + (has(self.analysis.baseline) ? duration(self.analysis.baseline.duration)"
            " : duration('0s'))",
            "message": "maxDuration must be at least the baseline duration plus the"
            " steps' minDuration",
            "fieldPath": ".maxDuration",
        },
    ],
)

_CONDITION = _obj(
    {
        "type": {"type": "string", "maxLength": 316},
        "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
        "reason": {"type": "string", "maxLength": 1024},
        "message": {"type": "string", "maxLength": 32768},
        "lastTransitionTime": {"type": "string", "format": "date-time"},
        "observedGeneration": {"type": "integer", "minimum": 0},
    },
    required=["type", "status"],
    description="A standard Kubernetes condition.",
)

_QUANTILES = ("p50", "p95", "p99")
#: The CRD's short name (``kubectl get cexp``).
SHORT_NAME = "cexp"

STATUS_SCHEMA: Schema = _obj(
    {
        "phase": {
            "type": "string",
            "enum": [p.value for p in spec.Phase],
            "description": "Lifecycle phase.",
        },
        "reasonCode": {
            "type": "string",
            "description": "Machine-readable reason of the last transition.",
        },
        "message": {
            "type": "string",
            "description": "Human-readable reason of the last transition.",
        },
        "phaseStartedAt": {"type": "string", "format": "date-time"},
        "startedAt": {
            "type": "string",
            "format": "date-time",
            "description": "When it left Pending.",
        },
        "stepIndex": {"type": "integer", "minimum": 0, "description": "Current step (0-based)."},
        "step": {"type": "string", "description": "Current step for display, e.g. 2/4."},
        "stepStartedAt": {"type": "string", "format": "date-time"},
        "challengerWeight": {"type": "integer", "minimum": 0, "maximum": 100},
        "verdict": {"type": "string", "description": "Last overall analysis verdict."},
        "frozenSettings": _obj(
            {
                "digest": {"type": "string"},
                "frozenAt": {"type": "string", "format": "date-time"},
                "snapshot": {
                    "type": "object",
                    "x-kubernetes-preserve-unknown-fields": True,
                    "description": "The analysis settings in force, derived values included.",
                },
            },
            description="Analysis settings recorded when Progressing began.",
        ),
        "handledRequests": {
            "type": "array",
            "items": {"type": "string"},
            "maxItems": 100,
            "description": "Ids of manual requests already acted on (newest last).",
        },
        "observedGeneration": {"type": "integer", "minimum": 0},
        "lastAnalysisAt": {
            "type": "string",
            "format": "date-time",
            "description": "When the analysis last ran on finalised data.",
        },
        "samples": _obj(
            {
                "champion": {"type": "integer", "minimum": 0},
                "challenger": {"type": "integer", "minimum": 0},
            },
            description="Finalised requests per arm in the current step.",
        ),
        "guardrails": {
            "type": "array",
            "description": "The latest result of each guardrail (stratified across steps).",
            "items": _obj(
                {
                    "name": {"type": "string"},
                    "kind": {"type": "string", "enum": [k.value for k in spec.GuardrailKind]},
                    "verdict": {"type": "string", "enum": [v.value for v in spec.Verdict]},
                    "reasonCode": {"type": "string"},
                    "reason": {"type": "string"},
                    "estimate": {"type": "number", "nullable": True},
                    "lower": {"type": "number", "nullable": True},
                    "upper": {"type": "number", "nullable": True},
                    "pValue": {"type": "number", "nullable": True},
                    "pValueNonInferiority": {"type": "number", "nullable": True},
                    "alpha": {
                        "type": "number",
                        "description": "The share of alpha this test is judged at (as frozen).",
                    },
                    "scale": {
                        "type": "string",
                        "enum": [s.value for s in spec.Scale],
                        "description": "What estimate and bounds measure: relative (B/A − 1),"
                        " absolute (B − A) or ratio (p_B/p_A).",
                    },
                    "marginLine": {
                        "type": "number",
                        "description": "Where harm begins on that scale (−margin, +margin or κ).",
                    },
                    "nullLine": {
                        "type": "number",
                        "description": "No effect on that scale (0, or 1 for a ratio).",
                    },
                    "metric": {
                        "type": "string",
                        "description": "What the guardrail measures in each arm:"
                        " revenue_per_request, error_rate, share_slower or"
                        " geometric_mean_latency_ms.",
                    },
                    "unit": {
                        "type": "string",
                        "description": "revenue (as logged), share (0-1) or ms.",
                    },
                    "champion": {"type": "number", "nullable": True},
                    "challenger": {"type": "number", "nullable": True},
                    "thresholdMs": {
                        "type": "number",
                        "description": "A tail guardrail's threshold (the histogram edge).",
                    },
                    "waiting": _WAITING,
                },
                required=["name", "verdict"],
                description="The figures of the latest look, with the alpha, scale and margin"
                " line they were judged at. Bounds are anytime-valid.",
            ),
        },
        "arms": _obj(
            {
                arm: _obj(
                    {
                        "requests": {"type": "integer", "minimum": 0},
                        "revenuePerRequest": {"type": "number", "nullable": True},
                        "errorRate": {"type": "number", "nullable": True},
                        "latencyMs": _obj(
                            {q: {"type": "number", "nullable": True} for q in _QUANTILES},
                            description="Latency quantiles from the histogram (ms).",
                        ),
                    },
                    description=f"The {arm}'s values over the evaluated steps.",
                )
                for arm in ("champion", "challenger")
            },
            description="Each arm's values in their own units, both arms pooled over the"
            " steps with the same weights.",
            nullable=True,
        ),
        "impact": _obj(
            {
                "guardrail": {"type": "string"},
                "revenuePerHour": {"type": "number", "nullable": True},
                "lower": {"type": "number", "nullable": True},
                "upper": {"type": "number", "nullable": True},
                "requestsPerHour": {"type": "number", "nullable": True},
                "championRevenuePerRequest": {"type": "number", "nullable": True},
            },
            description="Estimated revenue change per hour if the challenger took all"
            " the traffic: the revenue guardrail's estimate and bounds × the champion's"
            " revenue per request × the requests per hour observed.",
            nullable=True,
        ),
        "srm": _obj(
            {
                "enabled": {"type": "boolean"},
                "mismatch": {"type": "boolean"},
                "pValue": {"type": "number", "nullable": True},
                "observedShare": {"type": "number", "nullable": True},
                "expectedShare": {"type": "number", "nullable": True},
                "alpha": {"type": "number", "description": "Its share of alpha (0 when off)."},
                "waiting": _WAITING,
            },
            description="The sample-ratio check against the split the router reports.",
        ),
        "forecast": {
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": True,
            "description": "The decision forecast of the current step (stepIndex): when a"
            " healthy challenger is expected to be promoted, per guardrail, from the observed"
            " champion traffic; the blocking guardrail and its fix (condition DecisionForecast).",
        },
        "pendingDecisions": {
            "type": "array",
            "description": "Decisions taken while the database was unreachable, written to the "
            "decision log (once, by idempotency key) when it is back.",
            "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        },
        "conditions": {
            "type": "array",
            "items": _CONDITION,
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
        },
    },
    description="Observed state, written by the operator only.",
)


def build_crd() -> Schema:
    """Return the full CustomResourceDefinition as a dict."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{spec.PLURAL}.{spec.API_GROUP}"},
        "spec": {
            "group": spec.API_GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": spec.KIND,
                "listKind": f"{spec.KIND}List",
                "plural": spec.PLURAL,
                "singular": spec.KIND.lower(),
                # Not "exp": Argo Rollouts' Experiment has it (and Flagger, KServe, Seldon
                # use canary, isvc, tm, ig, sdep...): `kubectl get cexp` is never ambiguous.
                "shortNames": [SHORT_NAME],
                "categories": ["canaryctl"],
            },
            "versions": [
                {
                    "name": spec.API_VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                        {
                            "name": "Weight",
                            "type": "integer",
                            "jsonPath": ".status.challengerWeight",
                            "description": "Challenger traffic share in percent.",
                        },
                        {"name": "Step", "type": "string", "jsonPath": ".status.step"},
                        {"name": "Verdict", "type": "string", "jsonPath": ".status.verdict"},
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    ],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "A canary release of an ML model judged by"
                            " sequential tests.",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": SPEC_SCHEMA,
                                "status": STATUS_SCHEMA,
                            },
                        }
                    },
                }
            ],
        },
    }


def render() -> str:
    """The CRD as YAML, exactly as committed in ``manifests/crd.yaml``."""
    header = (
        "# Generated by `python -m controller.experiment.crd > manifests/crd.yaml`; do not edit.\n"
    )
    body: str = yaml.safe_dump(build_crd(), sort_keys=False, allow_unicode=True, width=100)
    return header + body


if __name__ == "__main__":
    sys.stdout.write(render())
