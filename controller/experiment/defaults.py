"""Every default of the Experiment spec, stated once.

The CRD builder (``crd``) writes them into the schema, the parser (``validation``) fills
them in, ``docs/spec.md`` shows them (a test holds the three together), and the CLI's
options reuse them. Ranges live in the schema itself, which the parser checks with
jsonschema, so they too are written once. Values only: no logic, no imports beyond the
enums they name.
"""

from __future__ import annotations

from typing import Any

from controller.experiment.spec import Direction, InconclusivePolicy, PromotionMode

#: ``spec.analysis.interval``: how often the operator reconciles and the analysis runs.
INTERVAL = "1m"
#: ``spec.analysis.alpha``: family-wise false-rollback probability.
ALPHA = 0.05
#: The largest alpha the schema accepts: beyond even odds a "test" is a coin toss.
ALPHA_MAX = 0.5
#: ``spec.analysis.burnIn``: the data each test needs before it may decide (its eligibility):
#: requests and non-zero revenue events in a step's smaller arm for a mean (revenue) test,
#: bad events for a tail or rate test, requests in the smaller arm for the SRM check. They
#: equal ``analysis.AnalysisSettings``' defaults (a test holds them together).
BURN_IN_MIN_REQUESTS = 3000
BURN_IN_MIN_NON_ZERO_REVENUE = 200
BURN_IN_MIN_EVENTS = 10
BURN_IN_MIN_SRM_REQUESTS = 100
#: ``spec.analysis.srm.enabled``.
SRM_ENABLED = True
#: ``spec.analysis.allowedLateness``.
ALLOWED_LATENESS = "2m"
#: ``spec.analysis.onInconclusive``: maxDuration without PASS rolls back unless opted in.
ON_INCONCLUSIVE = InconclusivePolicy.ROLLBACK
#: ``spec.analysis.guardrails[].direction`` (mean guardrails only).
DIRECTION = Direction.HIGHER_IS_BETTER
#: ``spec.analysis.guardrails[].thresholdFromBaseline.margin``.
THRESHOLD_MARGIN = 0.0
#: ``spec.steps[].minSamples``.
MIN_SAMPLES = 0
#: ``spec.router.gatewayAPI.ruleIndex`` and ``spec.router.istio.routeIndex``.
RULE_INDEX = 0
ROUTE_INDEX = 0
#: ``spec.promotion.mode``.
PROMOTION_MODE = PromotionMode.AUTOMATIC
#: ``spec.failurePolicy.*.gracePeriod``.
MISSING_DATA_GRACE = "15m"
DATABASE_UNREACHABLE_GRACE = "10m"
CHALLENGER_NOT_READY_GRACE = "10m"
#: ``spec.maxDuration``.
MAX_DURATION = "24h"

#: The defaults by field path under ``spec`` (what ``docs/spec.md`` must show).
BY_PATH: dict[str, Any] = {
    "router.gatewayAPI.ruleIndex": RULE_INDEX,
    "router.istio.routeIndex": ROUTE_INDEX,
    "steps[].minSamples": MIN_SAMPLES,
    "analysis.interval": INTERVAL,
    "analysis.alpha": ALPHA,
    "analysis.guardrails[].direction": DIRECTION.value,
    "analysis.guardrails[].thresholdFromBaseline.margin": THRESHOLD_MARGIN,
    "analysis.burnIn.minRequests": BURN_IN_MIN_REQUESTS,
    "analysis.burnIn.minNonZeroRevenue": BURN_IN_MIN_NON_ZERO_REVENUE,
    "analysis.burnIn.minEvents": BURN_IN_MIN_EVENTS,
    "analysis.burnIn.minSrmRequests": BURN_IN_MIN_SRM_REQUESTS,
    "analysis.srm.enabled": SRM_ENABLED,
    "analysis.allowedLateness": ALLOWED_LATENESS,
    "analysis.onInconclusive": ON_INCONCLUSIVE.value,
    "promotion.mode": PROMOTION_MODE.value,
    "failurePolicy.missingData.gracePeriod": MISSING_DATA_GRACE,
    "failurePolicy.databaseUnreachable.gracePeriod": DATABASE_UNREACHABLE_GRACE,
    "failurePolicy.challengerNotReady.gracePeriod": CHALLENGER_NOT_READY_GRACE,
    "maxDuration": MAX_DURATION,
}
