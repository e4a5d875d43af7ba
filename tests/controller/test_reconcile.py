"""Table-driven tests of the pure reconcile function: one row per transition."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.decide import actions as p
from controller.decide import deletion, manual, reconcile, status
from controller.decide import observed as obs
from controller.decide import windows as win
from controller.experiment import crd, spec, validation
from controller.experiment import frozen as frozen_settings

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
NOW = T0 + timedelta(hours=1)

RAW: dict[str, Any] = {
    "champion": {"name": "ranker-v41"},
    "challenger": {"name": "ranker-v42"},
    "router": {"gatewayAPI": {"httpRoute": "ranker"}},
    "steps": [
        {"weight": 5, "minDuration": "10m", "minSamples": 1000},
        {"weight": 25, "minDuration": "10m", "minSamples": 1000},
        {"weight": 50, "minDuration": "10m", "minSamples": 1000},
    ],
    "analysis": {
        "interval": "1m",
        "revenueCap": {"value": 50},
        "allowedLateness": "2m",
        "guardrails": [
            {"name": "revenue", "kind": "mean", "margin": {"relative": 0.02}},
            {"name": "latency", "kind": "tail", "thresholdMs": 250, "kappa": 1.2},
            {"name": "errors", "kind": "rate", "kappa": 1.5},
        ],
    },
    "failurePolicy": {
        "missingData": {"gracePeriod": "10m"},
        "databaseUnreachable": {"gracePeriod": "10m"},
        "challengerNotReady": {"gracePeriod": "10m"},
    },
    "maxDuration": "3h",
}

ROOT = Path(__file__).resolve().parents[2]


def make_spec(**changes: Any) -> spec.ExperimentSpec:
    """The base spec with top-level or ``analysis.*`` keys replaced."""
    raw = copy.deepcopy(RAW)
    for key, value in changes.items():
        if key.startswith("analysis_"):
            raw["analysis"][key.removeprefix("analysis_")] = value
        else:
            raw[key] = value
    return validation.validate_spec(raw)


BASE = make_spec()
MANUAL = make_spec(promotion={"mode": "manual"})
DERIVED = make_spec(
    analysis_revenueCap={"fromBaseline": {"quantile": 0.999}}, analysis_baseline={"duration": "30m"}
)
NO_SRM = make_spec(analysis_srm={"enabled": False})
FROZEN = frozen_settings.freeze(BASE, T0)
WEIGHTS = (5, 25, 50)


def cond(type_: obs.ConditionType, status: str, since: datetime) -> obs.Condition:
    return obs.Condition(type_, obs.ConditionStatus(status), "r", "m", since)


def observed(
    phase: obs.Phase = obs.Phase.PROGRESSING,
    step: int = 0,
    *,
    weight: int | None = None,
    ready: bool = True,
    samples: int = 5000,
    db: bool = True,
    last_data: datetime | None = NOW - timedelta(seconds=30),
    step_age: timedelta = timedelta(minutes=15),
    phase_age: timedelta = timedelta(minutes=15),
    started: datetime | None = T0,
    conditions: tuple[obs.Condition, ...] = (),
    request: manual.ManualRequest | manual.MalformedRequest | None = None,
    handled: tuple[str, ...] = (),
    baseline: obs.BaselineResult | None = None,
    frozen: frozen_settings.FrozenSettings | None = FROZEN,
    other_owner: str | None = None,
    missing: tuple[str, str] | None = None,
) -> obs.Observed:
    """An observation that is healthy unless told otherwise."""
    before_start = phase in (obs.Phase.PENDING, obs.Phase.BASELINE)
    if weight is None:
        weight = 0 if before_start else WEIGHTS[step]
    return obs.Observed(
        created_at=T0,
        status=obs.StoredStatus(
            phase=phase,
            phase_started_at=NOW - phase_age,
            started_at=None if phase is obs.Phase.PENDING else started,
            step_index=step,
            step_started_at=None if before_start else NOW - step_age,
            frozen=None if before_start else frozen,
            handled_requests=handled,
            conditions=conditions,
        ),
        router=obs.RouterState(
            challenger_weight=weight,
            challenger_ready=ready and missing is None,
            route="HTTPRoute ml/ranker",
            other_owner=other_owner,
            missing=missing,
        ),
        samples=obs.ArmCounts(champion=samples * 19, challenger=samples),
        database_reachable=db,
        last_data_at=last_data,
        baseline=baseline,
        request=request,
    )


def verdicts(
    overall: str = "CONTINUE", *, fail: str | None = None, srm: bool = False, burn_in: bool = True
) -> obs.Verdicts:
    each = obs.Verdict.PASS if overall == "PASS" else obs.Verdict.CONTINUE
    guardrails = tuple(
        obs.GuardrailVerdict(
            name,
            obs.Verdict.FAIL if name == fail else each,
            "harm_detected" if name == fail else "ok",
            "challenger worse than the margin" if name == fail else "",
        )
        for name in ("revenue", "latency", "errors")
    )
    return obs.Verdicts(
        obs.Verdict.FAIL if fail else obs.Verdict[overall], guardrails, srm, burn_in
    )


def request(action: str, *, full: bool = False, rid: str = "req-1") -> manual.ManualRequest:
    return manual.ManualRequest(rid, manual.RequestAction(action), "alice@example.com", "why", full)


GRACE_AGO = NOW - timedelta(minutes=11)
DB_DOWN_LONG = (cond(obs.ConditionType.DATABASE_REACHABLE, "False", GRACE_AGO),)
NOT_READY_LONG = (cond(obs.ConditionType.CHALLENGER_READY, "False", GRACE_AGO),)
NO_ANALYSIS_LONG = (cond(obs.ConditionType.ANALYSIS_AVAILABLE, "False", GRACE_AGO),)
OWNED_LONG = (cond(obs.ConditionType.ROUTE_AVAILABLE, "False", GRACE_AGO),)
NO_ROUTE = ("RouteNotFound", "HTTPRoute ml/ranker not found")
LAST = 2  # index of the last step
Ph = obs.Phase


@dataclass(frozen=True)
class Row:
    id: str
    observed: obs.Observed
    verdicts: obs.Verdicts | None
    phase: obs.Phase | None = None  # phase the plan moves to (None: stays)
    weight: int | None = None  # challenger weight the plan sets (None: untouched)
    code: str | None = None  # reason code of the phase change or of the decision
    spec: spec.ExperimentSpec | validation.SpecError = BASE
    step: int | None = None  # step the plan moves to
    handled: str | None = None  # request id marked handled
    conditions: tuple[tuple[obs.ConditionType, str], ...] = ()  # conditions set


ROWS = [
    # Pending
    Row(
        "pending starts step 1",
        observed(Ph.PENDING),
        None,
        phase=Ph.PROGRESSING,
        weight=5,
        code="started",
        step=0,
    ),
    Row(
        "pending with derived cap enters baseline",
        observed(Ph.PENDING),
        None,
        phase=Ph.BASELINE,
        code="baseline",
        spec=DERIVED,
    ),
    Row(
        "pending waits for a challenger not ready",
        observed(Ph.PENDING, ready=False),
        None,
        conditions=((obs.ConditionType.CHALLENGER_READY, "False"),),
    ),
    Row(
        "pending rolls back a challenger never ready",
        observed(Ph.PENDING, ready=False, conditions=NOT_READY_LONG),
        None,
        phase=Ph.ROLLED_BACK,
        code="challenger_not_ready",
    ),
    Row(
        "pending waits for the database",
        observed(Ph.PENDING, db=False),
        None,
        conditions=((obs.ConditionType.DATABASE_REACHABLE, "False"),),
    ),
    # Baseline
    Row(
        "baseline not over yet",
        observed(Ph.BASELINE, phase_age=timedelta(minutes=10)),
        None,
        spec=DERIVED,
    ),
    Row(
        "baseline over but values not computed",
        observed(Ph.BASELINE, phase_age=timedelta(hours=1)),
        None,
        spec=DERIVED,
        conditions=((obs.ConditionType.BASELINE_READY, "False"),),
    ),
    Row(
        "baseline over starts step 1",
        observed(
            Ph.BASELINE, phase_age=timedelta(hours=1), baseline=obs.BaselineResult(revenue_cap=12.5)
        ),
        None,
        phase=Ph.PROGRESSING,
        weight=5,
        code="started",
        spec=DERIVED,
        step=0,
    ),
    Row(
        "baseline puts a drifted route back to 0 %",
        observed(Ph.BASELINE, weight=10),
        None,
        weight=0,
        spec=DERIVED,
    ),
    Row(
        "baseline without data for longer than the grace rolls back",
        observed(Ph.BASELINE, last_data=None, started=NOW - timedelta(minutes=30)),
        None,
        phase=Ph.ROLLED_BACK,
        code="no_data",
        spec=DERIVED,
    ),
    # Progressing: holding
    Row("step too young", observed(step_age=timedelta(minutes=5)), verdicts()),
    Row("not enough data yet", observed(samples=300), verdicts()),
    Row("router not yet at the step's weight", observed(weight=0), verdicts(), weight=5),
    Row(
        "router above the step's weight is brought down", observed(weight=40), verdicts(), weight=5
    ),
    Row(
        "challenger not ready: hold, never raise the weight",
        observed(weight=0, ready=False),
        verdicts(),
        conditions=((obs.ConditionType.CHALLENGER_READY, "False"),),
    ),
    Row("challenger not ready: no advance", observed(ready=False), verdicts()),
    Row(
        "challenger not ready past the grace rolls back (and the hold no longer says it holds)",
        observed(ready=False, conditions=NOT_READY_LONG),
        verdicts(),
        phase=Ph.ROLLED_BACK,
        code="challenger_not_ready",
        conditions=((obs.ConditionType.CHALLENGER_READY, "Unknown"),),
    ),
    Row(
        "database unreachable: hold",
        observed(db=False),
        verdicts(),
        conditions=((obs.ConditionType.DATABASE_REACHABLE, "False"),),
    ),
    Row(
        "database unreachable past the grace rolls back",
        observed(db=False, conditions=DB_DOWN_LONG),
        None,
        phase=Ph.ROLLED_BACK,
        code="database_unreachable",
    ),
    Row(
        "data late within the grace: hold",
        observed(last_data=NOW - timedelta(minutes=5)),
        verdicts(),
        conditions=((obs.ConditionType.DATA_FRESH, "False"),),
    ),
    Row(
        "no data at all rolls back",
        observed(last_data=None),
        verdicts(),
        phase=Ph.ROLLED_BACK,
        code="no_data",
    ),
    Row(
        "analysis could not run: hold",
        observed(),
        None,
        conditions=((obs.ConditionType.ANALYSIS_AVAILABLE, "False"),),
    ),
    Row(
        "analysis unavailable past the grace rolls back",
        observed(conditions=NO_ANALYSIS_LONG),
        None,
        phase=Ph.ROLLED_BACK,
        code="analysis_unavailable",
    ),
    # Progressing: a transition whose route write landed but whose status did not (crash)
    Row(
        "route already at the next step re-decides the advance without moving it back",
        observed(step=0, weight=25),
        verdicts(),
        weight=25,
        step=1,
        code="step_complete",
    ),
    Row(
        "route already at the next step goes back when the advance no longer holds",
        observed(step=0, weight=25, samples=10),
        verdicts(),
        weight=5,
    ),
    Row(
        "route already promoted re-decides the promotion",
        observed(step=LAST, weight=100),
        verdicts("PASS"),
        phase=Ph.PROMOTED,
        code="promoted",
    ),
    Row(
        "route already promoted goes back when the guardrails no longer pass",
        observed(step=LAST, weight=100),
        verdicts(),
        weight=50,
    ),
    Row(
        "route found promoted under manual promotion is brought back first",
        observed(step=LAST, weight=100),
        verdicts("PASS"),
        weight=50,
        spec=MANUAL,
    ),
    # Progressing: moving
    Row("step complete advances", observed(), verdicts(), weight=25, code="step_complete", step=1),
    Row("second step complete advances", observed(step=1), verdicts(), weight=50, step=2),
    Row(
        "guardrail FAIL rolls back at once",
        observed(step_age=timedelta(minutes=1)),
        verdicts(fail="revenue"),
        phase=Ph.ROLLED_BACK,
        code="guardrail_failed:revenue",
    ),
    Row(
        "sample-ratio mismatch rolls back",
        observed(),
        verdicts(srm=True),
        phase=Ph.ROLLED_BACK,
        code="srm",
    ),
    Row(
        "sample-ratio mismatch ignored when the check is off",
        observed(frozen=frozen_settings.freeze(NO_SRM, T0)),
        verdicts(srm=True),
        weight=25,
        spec=NO_SRM,
        step=1,
    ),
    Row("last step without PASS waits", observed(step=LAST), verdicts()),
    Row(
        "last step PASS without burn-in waits", observed(step=LAST), verdicts("PASS", burn_in=False)
    ),
    Row(
        "last step PASS promotes",
        observed(step=LAST),
        verdicts("PASS"),
        phase=Ph.PROMOTED,
        code="promoted",
    ),
    Row(
        "last step PASS awaits a manual promotion",
        observed(step=LAST),
        verdicts("PASS"),
        phase=Ph.AWAITING_PROMOTION,
        code="passed",
        spec=MANUAL,
    ),
    Row(
        "PASS while the database is unreachable never promotes",
        observed(step=LAST, db=False),
        verdicts("PASS"),
    ),
    Row(
        "max duration without PASS is inconclusive",
        observed(started=NOW - timedelta(hours=3)),
        verdicts(),
        phase=Ph.ROLLED_BACK,
        code="inconclusive",
    ),
    Row(
        "max duration with PASS on the last step promotes",
        observed(step=LAST, started=NOW - timedelta(hours=3)),
        verdicts("PASS"),
        phase=Ph.PROMOTED,
        code="promoted",
    ),
    # Paused
    Row("paused holds the step", observed(Ph.PAUSED), verdicts()),
    Row(
        "paused still rolls back on FAIL",
        observed(Ph.PAUSED),
        verdicts(fail="latency"),
        phase=Ph.ROLLED_BACK,
        code="guardrail_failed:latency",
    ),
    Row(
        "paused still rolls back on SRM",
        observed(Ph.PAUSED),
        verdicts(srm=True),
        phase=Ph.ROLLED_BACK,
        code="srm",
    ),
    Row(
        "paused is inconclusive at max duration",
        observed(Ph.PAUSED, started=NOW - timedelta(hours=4)),
        verdicts(),
        phase=Ph.ROLLED_BACK,
        code="inconclusive",
    ),
    # AwaitingPromotion
    Row(
        "awaiting promotion holds",
        observed(Ph.AWAITING_PROMOTION, step=LAST),
        verdicts("PASS"),
        spec=MANUAL,
    ),
    Row(
        "awaiting promotion rolls back on FAIL",
        observed(Ph.AWAITING_PROMOTION, step=LAST),
        verdicts(fail="errors"),
        phase=Ph.ROLLED_BACK,
        code="guardrail_failed:errors",
        spec=MANUAL,
    ),
    Row(
        "awaiting promotion rolls back on SRM",
        observed(Ph.AWAITING_PROMOTION, step=LAST),
        verdicts("PASS", srm=True),
        phase=Ph.ROLLED_BACK,
        code="srm",
        spec=MANUAL,
    ),
    Row(
        "awaiting promotion without PASS is inconclusive at max duration",
        observed(Ph.AWAITING_PROMOTION, step=LAST, started=NOW - timedelta(hours=3)),
        verdicts(),
        phase=Ph.ROLLED_BACK,
        code="inconclusive",
        spec=MANUAL,
    ),
    Row(
        "baseline is inconclusive at max duration",
        observed(Ph.BASELINE, started=NOW - timedelta(hours=4)),
        None,
        phase=Ph.ROLLED_BACK,
        code="inconclusive",
        spec=DERIVED,
    ),
    Row(
        "baseline values incomplete: hold",
        observed(
            Ph.BASELINE,
            phase_age=timedelta(hours=1),
            baseline=obs.BaselineResult(thresholds_ms={"latency": 300.0}),
        ),
        None,
        spec=DERIVED,
        conditions=((obs.ConditionType.BASELINE_READY, "False"),),
    ),
    # Manual requests
    Row(
        "manual rollback",
        observed(request=request("rollback")),
        verdicts(),
        phase=Ph.ROLLED_BACK,
        code="manual_rollback",
        handled="req-1",
    ),
    Row(
        "manual rollback while paused",
        observed(Ph.PAUSED, request=request("rollback")),
        verdicts(),
        phase=Ph.ROLLED_BACK,
        code="manual_rollback",
        handled="req-1",
    ),
    Row(
        "manual rollback in baseline",
        observed(Ph.BASELINE, request=request("rollback")),
        None,
        phase=Ph.ROLLED_BACK,
        code="manual_rollback",
        spec=DERIVED,
        handled="req-1",
    ),
    Row(
        "manual rollback while the database is down",
        observed(db=False, request=request("rollback")),
        None,
        phase=Ph.ROLLED_BACK,
        code="manual_rollback",
        handled="req-1",
    ),
    Row(
        "promote in AwaitingPromotion",
        observed(Ph.AWAITING_PROMOTION, step=LAST, request=request("promote")),
        verdicts("PASS"),
        phase=Ph.PROMOTED,
        code="manual_promote",
        spec=MANUAL,
        handled="req-1",
    ),
    Row(
        "promote refused while the database is unreachable",
        observed(Ph.AWAITING_PROMOTION, step=LAST, db=False, request=request("promote")),
        verdicts("PASS"),
        code="request_rejected:promote",
        spec=MANUAL,
        handled="req-1",
    ),
    Row(
        "promote without full refused in Progressing",
        observed(request=request("promote")),
        verdicts(),
        weight=25,
        code="request_rejected:promote",
        handled="req-1",
        step=1,
    ),
    Row(
        "promote full skips the remaining steps",
        observed(step_age=timedelta(minutes=1), request=request("promote", full=True)),
        verdicts(),
        phase=Ph.PROMOTED,
        code="manual_promote_full",
        handled="req-1",
    ),
    Row(
        "promote full from Paused",
        observed(Ph.PAUSED, request=request("promote", full=True)),
        verdicts(),
        phase=Ph.PROMOTED,
        code="manual_promote_full",
        handled="req-1",
    ),
    Row(
        "promote full refused while the database is unreachable",
        observed(db=False, request=request("promote", full=True)),
        verdicts(),
        code="request_rejected:promote",
        handled="req-1",
    ),
    Row(
        "promote full loses to a FAIL",
        observed(request=request("promote", full=True)),
        verdicts(fail="revenue"),
        phase=Ph.ROLLED_BACK,
        code="guardrail_failed:revenue",
    ),
    Row(
        "promote full refused in Pending, which then starts",
        observed(Ph.PENDING, request=request("promote", full=True)),
        None,
        phase=Ph.PROGRESSING,
        weight=5,
        code="request_rejected:promote",
        handled="req-1",
        step=0,
    ),
    Row(
        "pause",
        observed(request=request("pause")),
        verdicts(),
        phase=Ph.PAUSED,
        code="manual_pause",
        handled="req-1",
    ),
    Row(
        "resume",
        observed(Ph.PAUSED, request=request("resume")),
        verdicts(),
        phase=Ph.PROGRESSING,
        code="manual_resume",
        handled="req-1",
    ),
    Row(
        "resume refused when not paused",
        observed(request=request("resume")),
        verdicts(),
        weight=25,
        code="request_rejected:resume",
        handled="req-1",
        step=1,
    ),
    Row(
        "pause refused in AwaitingPromotion",
        observed(Ph.AWAITING_PROMOTION, step=LAST, request=request("pause")),
        verdicts("PASS"),
        code="request_rejected:pause",
        spec=MANUAL,
        handled="req-1",
    ),
    Row(
        "a handled request is not acted on again",
        observed(request=request("rollback"), handled=("req-1",)),
        verdicts(),
        weight=25,
        step=1,
    ),
    Row(
        "a malformed request is rejected once",
        observed(request=manual.MalformedRequest("malformed-abc", "not JSON")),
        verdicts(),
        weight=25,
        code="request_rejected:unknown",
        handled="malformed-abc",
        step=1,
    ),
    # Holds on the route: no grace, no claim, no step while they last
    Row(
        "pending waits while another experiment owns the route",
        observed(Ph.PENDING, other_owner="ml/ranker-bad"),
        None,
        conditions=((obs.ConditionType.ROUTE_AVAILABLE, "False"),),
    ),
    Row(
        "pending with a baseline waits (no claim) while the route is taken",
        observed(Ph.PENDING, other_owner="ml/ranker-bad", conditions=OWNED_LONG),
        None,
        spec=DERIVED,
    ),
    Row(
        "pending starts once the route is free",
        observed(Ph.PENDING, conditions=OWNED_LONG),
        None,
        phase=Ph.PROGRESSING,
        weight=5,
        code="started",
        step=0,
        conditions=((obs.ConditionType.ROUTE_AVAILABLE, "True"),),
    ),
    Row(
        "route missing holds the step (no rollback, no advance)",
        observed(
            missing=NO_ROUTE, conditions=(cond(obs.ConditionType.ROUTE_FOUND, "False", GRACE_AGO),)
        ),
        verdicts(),
        conditions=((obs.ConditionType.ROUTE_FOUND, "False"),),
    ),
    Row(
        "a backend missing from the route holds pending",
        observed(Ph.PENDING, missing=("BackendNotFound", "no backendRef to Service 'ranker-v42'")),
        None,
        conditions=((obs.ConditionType.ROUTE_FOUND, "False"),),
    ),
    # Terminal phases
    Row(
        "rolled back clears DatabaseReachable once the database answers",
        observed(Ph.ROLLED_BACK, weight=0, conditions=DB_DOWN_LONG),
        None,
        conditions=((obs.ConditionType.DATABASE_REACHABLE, "True"),),
    ),
    Row("rolled back re-finalises a drifted route", observed(Ph.ROLLED_BACK, weight=5), None),
    Row(
        "promoted rejects a late request",
        observed(Ph.PROMOTED, step=LAST, weight=100, request=request("rollback")),
        None,
        code="request_rejected:rollback",
        handled="req-1",
    ),
    Row("failed stays failed", observed(Ph.FAILED, weight=0), None),
    # Invalid spec
    Row(
        "invalid spec while progressing fails and finalises",
        observed(),
        verdicts(),
        phase=Ph.FAILED,
        code="invalid_spec",
        spec=validation.SpecError([validation.SpecIssue("spec.steps[1].weight", "too small")]),
    ),
    Row(
        "invalid spec in pending fails",
        observed(Ph.PENDING),
        None,
        phase=Ph.FAILED,
        code="invalid_spec",
        spec=validation.SpecError([validation.SpecIssue("spec.router", "exactly one")]),
    ),
]


def _codes(plan: p.Plan) -> list[str]:
    codes = [a.reason_code for a in plan.of_type(p.SetPhase)]
    return codes + [a.reason_code for a in plan.of_type(p.RecordDecision)]


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_transition(row: Row) -> None:
    plan = reconcile.reconcile(row.spec, row.observed, row.verdicts, NOW)

    assert plan.phase == row.phase
    weights = [a.weight for a in plan.of_type(p.SetWeight)]
    assert weights == ([] if row.weight is None else [row.weight])
    if row.code is not None:
        assert row.code in _codes(plan)
    if row.step is not None:
        assert [a.index for a in plan.of_type(p.SetStep)] == [row.step]
    else:
        assert not plan.of_type(p.SetStep)
    handled = [a.request_id for a in plan.of_type(p.MarkRequestHandled)]
    assert handled == ([] if row.handled is None else [row.handled])
    set_conditions = {
        (a.condition.type, a.condition.status.value) for a in plan.of_type(p.SetCondition)
    }
    assert set(row.conditions) <= set_conditions

    # Invariants every row must satisfy.
    ending = row.phase in (Ph.ROLLED_BACK, Ph.FAILED)
    if (ending and row.observed.router.challenger_weight > 0) or row.phase is Ph.ROLLED_BACK:
        assert plan.actions[0] == p.FinalizeRoute()
    if (row.phase and row.phase.terminal) or row.observed.status.phase.terminal:
        assert not plan.of_type(p.RequeueAfter)
    else:
        assert plan.of_type(p.RequeueAfter) == (p.RequeueAfter(timedelta(minutes=1)),)
    if not row.observed.database_reachable:
        assert not plan.of_type(p.PromoteRoute)
    if row.phase is Ph.PROMOTED:
        assert plan.actions[0] == p.PromoteRoute()
    for a in plan.of_type(p.SetPhase):
        assert a.at == NOW


def test_a_taken_route_is_a_condition_and_an_event_naming_the_owner() -> None:
    plan = reconcile.reconcile(BASE, observed(Ph.PENDING, other_owner="ml/ranker-bad"), None, NOW)
    (held,) = [
        a.condition
        for a in plan.of_type(p.SetCondition)
        if a.condition.type is obs.ConditionType.ROUTE_AVAILABLE
    ]
    assert (held.status, held.reason) == (obs.ConditionStatus.FALSE, "OwnedByAnotherExperiment")
    assert "HTTPRoute ml/ranker is owned by ml/ranker-bad" in held.message
    (event,) = [e for e in plan.of_type(p.EmitEvent) if e.reason == "OwnedByAnotherExperiment"]
    assert event.type is p.EventType.WARNING and "ml/ranker-bad" in event.message
    assert not plan.of_type(p.ClaimRoute) and not plan.of_type(p.SetWeight)


def test_a_hold_that_clears_says_so_once() -> None:
    plan = reconcile.reconcile(BASE, observed(Ph.PENDING, conditions=OWNED_LONG), None, NOW)
    cleared = [e for e in plan.of_type(p.EmitEvent) if e.message.startswith("no longer holding")]
    assert [(e.type, e.reason) for e in cleared] == [(p.EventType.NORMAL, "Available")]
    again = observed(
        Ph.PENDING,
        conditions=(
            obs.Condition(
                obs.ConditionType.ROUTE_AVAILABLE,
                obs.ConditionStatus.TRUE,
                "Available",
                "HTTPRoute ml/ranker is free or this experiment's",
                NOW,
            ),
        ),
    )
    plan = reconcile.reconcile(BASE, again, None, NOW)
    assert not [e for e in plan.of_type(p.EmitEvent) if "holding" in e.message]


def test_every_hold_code_comes_from_the_one_table() -> None:
    """Each hold reconcile puts in ``tick.holds`` is a code of ``observed.HOLDS``."""
    cases = [
        observed(Ph.PENDING, other_owner="ml/x"),
        observed(missing=NO_ROUTE),
        observed(db=False),
        observed(ready=False),
        observed(last_data=NOW - timedelta(minutes=5)),
    ]
    from controller.decide import safety
    from controller.decide.tick import Tick

    seen: set[str] = set()
    for o in cases:
        tick = Tick(o, verdicts() if o.status.phase is Ph.PROGRESSING else None, NOW)
        assert safety.check(tick, BASE, BASE.analysis) is None
        seen |= set(tick.holds)
    assert seen <= set(obs.HOLDS.values())
    assert {
        "route_owned",
        "route_not_found",
        "database_unreachable",
        "challenger_not_ready",
        "no_data",
    } <= seen


def test_rolled_back_route_is_finalised_again() -> None:
    plan = reconcile.reconcile(BASE, observed(Ph.ROLLED_BACK, weight=5), None, NOW)
    assert plan.actions == (p.FinalizeRoute(),)


def test_rollback_records_the_evidence() -> None:
    plan = reconcile.reconcile(BASE, observed(), verdicts(fail="latency"), NOW)
    decision = plan.first(p.RecordDecision)
    assert decision is not None
    assert decision.kind is p.DecisionKind.ROLLBACK
    assert decision.actor == reconcile.ACTOR
    failing = [g for g in decision.evidence["verdicts"]["guardrails"] if g["verdict"] == "fail"]
    assert failing == [
        {
            "name": "latency",
            "verdict": "fail",
            "reasonCode": "harm_detected",
            "reason": "challenger worse than the margin",
        }
    ]
    events = plan.of_type(p.EmitEvent)
    assert [e.type for e in events] == [p.EventType.WARNING]


def test_manual_decision_names_the_actor() -> None:
    plan = reconcile.reconcile(BASE, observed(request=request("pause")), verdicts(), NOW)
    decision = plan.first(p.RecordDecision)
    assert decision is not None and decision.actor == "alice@example.com"
    assert "why" in decision.reason


def test_start_freezes_the_settings_with_derived_values() -> None:
    o = observed(
        Ph.BASELINE,
        phase_age=timedelta(hours=1),
        baseline=obs.BaselineResult(revenue_cap=12.5, thresholds_ms={"latency": 310.0}),
    )
    plan = reconcile.reconcile(DERIVED, o, None, NOW)
    freeze = plan.first(p.FreezeSettings)
    assert freeze is not None
    assert freeze.settings.digest == frozen_settings.digest(DERIVED.analysis)
    assert (freeze.settings.revenue_cap, freeze.settings.revenue_cap_source) == (
        12.5,
        "baseline p99.9 of the champion",
    )
    assert freeze.settings.frozen_at == NOW
    # started_at is kept from the baseline, not reset
    assert plan.first(p.SetPhase) == p.SetPhase(
        Ph.PROGRESSING, "started", "step 1/3: challenger at 5 %", NOW, started_at=None
    )


def test_edited_analysis_is_refused_and_the_frozen_settings_stay() -> None:
    edited = make_spec(analysis_alpha=0.2, analysis_srm={"enabled": False})
    plan = reconcile.reconcile(edited, observed(), verdicts(srm=True), NOW)
    # The frozen settings still have the SRM check on, so the mismatch still rolls back.
    assert plan.phase is Ph.ROLLED_BACK
    assert "settings_change_refused" in _codes(plan)
    conditions = {a.condition.type: a.condition for a in plan.of_type(p.SetCondition)}
    assert conditions[obs.ConditionType.SETTINGS_FROZEN].status is obs.ConditionStatus.FALSE


def test_refusal_is_recorded_once() -> None:
    edited = make_spec(analysis_alpha=0.2)
    refused = obs.Condition(
        obs.ConditionType.SETTINGS_FROZEN,
        obs.ConditionStatus.FALSE,
        "SettingsChangeRefused",
        "spec.analysis was edited after Progressing began; the frozen settings stay",
        T0,
    )
    plan = reconcile.reconcile(edited, observed(conditions=(refused,)), verdicts(), NOW)
    assert "settings_change_refused" not in _codes(plan)
    assert not [
        a
        for a in plan.of_type(p.SetCondition)
        if a.condition.type is obs.ConditionType.SETTINGS_FROZEN
    ]


def test_unchanged_conditions_are_not_rewritten() -> None:
    first = reconcile.reconcile(BASE, observed(db=False), verdicts(), NOW)
    stored = tuple(a.condition for a in first.of_type(p.SetCondition))
    later = NOW + timedelta(minutes=1)
    second = reconcile.reconcile(BASE, observed(db=False, conditions=stored), verdicts(), later)
    assert not second.of_type(p.SetCondition)
    assert not second.of_type(p.EmitEvent)


def test_hold_keeps_the_time_it_began() -> None:
    first = reconcile.reconcile(BASE, observed(ready=False), verdicts(), NOW)
    (ready,) = [
        a.condition
        for a in first.of_type(p.SetCondition)
        if a.condition.type is obs.ConditionType.CHALLENGER_READY
    ]
    assert ready.last_transition_time == NOW
    # Nine minutes later it still holds; at ten it rolls back.
    held = reconcile.reconcile(
        BASE, observed(ready=False, conditions=(ready,)), verdicts(), NOW + timedelta(minutes=9)
    )
    assert held.phase is None
    gone = reconcile.reconcile(
        BASE, observed(ready=False, conditions=(ready,)), verdicts(), NOW + timedelta(minutes=10)
    )
    assert gone.phase is Ph.ROLLED_BACK


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="now"):
        reconcile.reconcile(BASE, observed(), verdicts(), NOW.replace(tzinfo=None))


def test_same_inputs_same_plan() -> None:
    o = observed(request=request("pause"))
    assert reconcile.reconcile(BASE, o, verdicts(), NOW) == reconcile.reconcile(
        BASE, o, verdicts(), NOW
    )


_phases = st.sampled_from(list(obs.Phase))
_verdicts = st.one_of(
    st.none(),
    st.builds(
        verdicts,
        overall=st.sampled_from(["PASS", "CONTINUE"]),
        fail=st.sampled_from([None, "revenue", "latency", "errors"]),
        srm=st.booleans(),
        burn_in=st.booleans(),
    ),
)
_requests = st.one_of(
    st.none(),
    st.builds(
        request, st.sampled_from([a.value for a in manual.RequestAction]), full=st.booleans()
    ),
)


@settings(max_examples=300, deadline=None)
@given(
    phase=_phases,
    step=st.integers(0, LAST),
    weight=st.sampled_from([0, 5, 25, 50, 100]),
    ready=st.booleans(),
    db=st.booleans(),
    samples=st.sampled_from([0, 5000]),
    data_age=st.sampled_from([None, 0, 5, 60]),
    v=_verdicts,
    req=_requests,
    mode=st.sampled_from([BASE, MANUAL, DERIVED]),
)
def test_safety_properties(
    phase: obs.Phase,
    step: int,
    weight: int,
    ready: bool,
    db: bool,
    samples: int,
    data_age: int | None,
    v: obs.Verdicts | None,
    req: manual.ManualRequest | None,
    mode: spec.ExperimentSpec,
) -> None:
    o = observed(
        phase,
        step,
        weight=weight,
        ready=ready,
        db=db,
        samples=samples,
        last_data=None if data_age is None else NOW - timedelta(minutes=data_age),
        request=req,
    )
    plan = reconcile.reconcile(mode, o, v, NOW)
    weights = [a.weight for a in plan.of_type(p.SetWeight)]
    if plan.phase is Ph.ROLLED_BACK:
        assert plan.actions[0] == p.FinalizeRoute()
        assert not weights and not plan.of_type(p.PromoteRoute)
    if p.PromoteRoute() in plan.actions:
        assert db and plan.phase is Ph.PROMOTED
        assert v is not None and not v.failed and not (v.srm_mismatch)
    if not db or not ready:
        assert all(w <= weight for w in weights), "never raise the weight while holding"
    active = phase in (Ph.PROGRESSING, Ph.PAUSED, Ph.AWAITING_PROMOTION)
    if active and v is not None and (v.failed or v.srm_mismatch):
        assert plan.phase is Ph.ROLLED_BACK
    if phase.terminal:
        assert plan.phase is None and not weights and not plan.of_type(p.RequeueAfter)
    assert len(plan.of_type(p.SetPhase)) <= 1
    assert len(plan.of_type(p.MarkRequestHandled)) <= 1


def test_rows_cover_every_phase() -> None:
    assert {r.observed.status.phase for r in ROWS} == set(obs.Phase)
    assert {r.phase for r in ROWS} - {None} == set(obs.Phase) - {Ph.PENDING}


def test_plan_values_are_frozen() -> None:
    plan = reconcile.reconcile(BASE, observed(), verdicts(), NOW)
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.actions = ()  # type: ignore[misc]
    assert replace(plan) == plan


# -- whole lifecycles: reconcile, a fake router and the stored status, minute by minute ----

STATUS_VALIDATOR = jsonschema.Draft4Validator(crd.STATUS_SCHEMA)
RATE = 1000  # requests per minute


@dataclass
class World:
    """A fake router and data source; ``verdict`` scripts the analysis."""

    spec: spec.ExperimentSpec
    verdict: Callable[[int, int], obs.Verdicts | None]  # (minute, weight) -> verdicts
    requests: dict[int, manual.ManualRequest] = dataclasses.field(default_factory=dict)
    weight: int = 0
    raw: status.StatusDict = dataclasses.field(default_factory=dict)  # type: ignore[assignment]
    trace: list[tuple[int, str, int]] = dataclasses.field(default_factory=list)
    decisions: list[p.RecordDecision] = dataclasses.field(default_factory=list)

    def run(self, minutes: int = 600) -> status.StatusDict:
        request: manual.ManualRequest | None = None
        for minute in range(minutes):
            now = T0 + timedelta(minutes=minute)
            stored = status.read_status(self.raw)
            in_step = 0 if stored.step_started_at is None else (now - stored.step_started_at)
            n = int(in_step.total_seconds() // 60) if in_step else 0
            request = self.requests.get(minute, request)
            o = obs.Observed(
                created_at=T0,
                status=stored,
                router=obs.RouterState(self.weight, challenger_ready=True),
                samples=obs.ArmCounts(
                    n * RATE * (100 - self.weight) // 100, n * RATE * self.weight // 100
                ),
                database_reachable=True,
                last_data_at=now - timedelta(seconds=30),
                baseline=obs.BaselineResult(revenue_cap=9.5),
                request=request,
            )
            plan = reconcile.reconcile(self.spec, o, self.verdict(minute, self.weight), now)
            for action in plan.actions:
                if isinstance(action, p.SetWeight):
                    self.weight = action.weight
                elif isinstance(action, p.PromoteRoute):
                    self.weight = 100
                elif isinstance(action, p.FinalizeRoute):
                    self.weight = 0
            self.decisions += plan.of_type(p.RecordDecision)
            self.raw = status.apply_plan(plan, self.raw)
            STATUS_VALIDATOR.validate(self.raw)
            assert status.read_status(self.raw).phase.value == self.raw["phase"]
            if not self.trace or self.trace[-1][1:] != (self.raw["phase"], self.weight):
                self.trace.append((minute, self.raw["phase"], self.weight))
            if obs.Phase(self.raw["phase"]).terminal:
                return self.raw
        return self.raw


def pass_at_last_step(minute: int, weight: int) -> obs.Verdicts:
    return verdicts("PASS" if weight == 50 else "CONTINUE")


def test_lifecycle_promotes_a_healthy_challenger() -> None:
    world = World(BASE, pass_at_last_step)
    final = world.run()
    assert final["phase"] == "Promoted" and final["reasonCode"] == "promoted"
    assert [(ph, w) for _, ph, w in world.trace] == [
        ("Progressing", 5),
        ("Progressing", 25),
        ("Progressing", 50),
        ("Promoted", 100),
    ]
    assert final["frozenSettings"]["digest"] == frozen_settings.digest(BASE.analysis)
    assert [d.key for d in world.decisions] == ["start", "advance:1", "advance:2", "promote"]
    # 1,000 samples of the challenger at 5 % take 20 minutes, longer than minDuration.
    assert world.trace[1][0] == 20


def test_lifecycle_rolls_back_on_a_failure() -> None:
    def fail_late(minute: int, weight: int) -> obs.Verdicts:
        return verdicts(fail="latency" if minute >= 30 else None)

    world = World(BASE, fail_late)
    final = world.run()
    assert final["phase"] == "RolledBack"
    assert final["reasonCode"] == "guardrail_failed:latency"
    assert world.weight == 0 and final["challengerWeight"] == 0
    assert world.trace[-1] == (30, "RolledBack", 0)


def test_lifecycle_with_a_baseline_and_manual_promotion() -> None:
    spec_ = make_spec(
        promotion={"mode": "manual"},
        analysis_revenueCap={"fromBaseline": {"quantile": 0.999}},
        analysis_baseline={"duration": "30m"},
    )
    world = World(spec_, pass_at_last_step, requests={200: request("promote", rid="ok-1")})
    final = world.run()
    phases = [ph for _, ph, _ in world.trace]
    assert phases == [
        "Baseline",
        "Progressing",
        "Progressing",
        "Progressing",
        "AwaitingPromotion",
        "Promoted",
    ]
    assert world.trace[1][0] == 30  # step 1 after the 30-minute baseline
    assert final["reasonCode"] == "manual_promote"
    assert final["handledRequests"] == ["ok-1"]
    assert final["frozenSettings"]["snapshot"]["revenueCap"]["value"] == 9.5


def test_lifecycle_never_passing_is_inconclusive() -> None:
    world = World(BASE, lambda minute, weight: verdicts())
    final = world.run()
    assert final["phase"] == "RolledBack" and final["reasonCode"] == "inconclusive"
    assert world.trace[-1][0] == 180  # maxDuration 3h


def test_lifecycle_pause_and_resume() -> None:
    world = World(
        BASE,
        pass_at_last_step,
        requests={5: request("pause", rid="p"), 60: request("resume", rid="r")},
    )
    final = world.run()
    assert [(ph, w) for _, ph, w in world.trace][:3] == [
        ("Progressing", 5),
        ("Paused", 5),
        ("Progressing", 5),
    ]
    assert final["phase"] == "Promoted"
    assert final["handledRequests"] == ["p", "r"]
    keys = [d.key for d in world.decisions]
    assert len(keys) == len(set(keys)), "one decision-log row per transition"


PURE_PACKAGES = ("controller/decide", "controller/experiment")


@pytest.mark.parametrize(
    "path",
    sorted(str(f) for pkg in PURE_PACKAGES for f in (ROOT / pkg).glob("*.py")),
)
def test_decision_modules_read_no_clock_and_open_no_file(path: str) -> None:
    """The import contracts keep I/O packages out; this keeps the clock and files out too."""
    source = Path(path).read_text()
    for banned in (".now(", ".utcnow(", ".today(", "time.time(", "open(", "import random"):
        assert banned not in source, f"{path} uses {banned}"


def test_an_srm_rollback_carries_the_analysis_sentence() -> None:
    v = dataclasses.replace(
        verdicts(srm=True),
        srm_reason="challenger got 4.53 % of requests, the router reported 5.00 %",
    )
    plan = reconcile.reconcile(BASE, observed(), v, NOW)
    phase = plan.first(p.SetPhase)
    assert phase is not None and (phase.phase, phase.reason_code) == (Ph.ROLLED_BACK, "srm")
    assert phase.message == "challenger got 4.53 % of requests, the router reported 5.00 %"


def test_a_step_advance_updates_the_status_message_without_a_new_phase() -> None:
    before: dict[str, Any] = {
        "phase": "Progressing",
        "reasonCode": "started",
        "message": "step 1/3: challenger at 5 %",
    }
    plan = reconcile.reconcile(BASE, observed(step=0), verdicts(), NOW)
    assert plan.phase is None and plan.first(p.SetStep) is not None
    after = status.apply_plan(plan, before)  # type: ignore[arg-type]
    assert (after["phase"], after["reasonCode"], after["stepIndex"]) == (
        "Progressing",
        "step_complete",
        1,
    )
    assert after["message"] == "step 2/3: challenger at 25 %"
    assert "phaseStartedAt" not in after  # the phase did not change


# -- the plan carries every effect: status fields, evidence, held decisions ------------------


def test_the_plan_carries_the_status_fields_and_the_evidence() -> None:
    v = dataclasses.replace(
        verdicts(fail="latency"),
        status_fields={"guardrails": [{"name": "latency"}], "srm": {"mismatch": False}},
        evidence={"verdict": "fail", "steps": []},
    )
    plan = reconcile.reconcile(BASE, observed(samples=100), v, NOW)
    assert plan.status_fields == {
        "samples": {"champion": 1900, "challenger": 100},
        "lastAnalysisAt": "2026-01-01T13:00:00Z",
        "guardrails": [{"name": "latency"}],
        "srm": {"mismatch": False},
    }
    decision = plan.first(p.RecordDecision)
    assert decision is not None and decision.evidence["analysis"] == {
        "verdict": "fail",
        "steps": [],
    }
    after = status.apply_plan(plan, {})
    assert after["lastAnalysisAt"] == "2026-01-01T13:00:00Z"  # type: ignore[typeddict-item]


def test_without_an_analysis_only_the_samples_are_written() -> None:
    plan = reconcile.reconcile(BASE, observed(samples=10), None, NOW)
    assert plan.status_fields == {"samples": {"champion": 190, "challenger": 10}}


def test_decisions_are_held_while_the_database_is_away_and_cleared_once_flushed() -> None:
    down = reconcile.reconcile(BASE, observed(db=False, conditions=DB_DOWN_LONG), None, NOW)
    assert down.hold_decisions and down.phase is Ph.ROLLED_BACK
    back = reconcile.reconcile(BASE, replace(observed(), held_flushed=True), verdicts(), NOW)
    assert not back.hold_decisions
    assert back.status_fields["pendingDecisions"] == []


def test_the_frozen_settings_carry_the_cap_ingest_applies() -> None:
    plan = reconcile.reconcile(BASE, observed(Ph.PENDING), None, NOW)
    freeze = plan.first(p.FreezeSettings)
    assert freeze is not None and freeze.settings.revenue_cap == 50.0
    o = observed(Ph.BASELINE, phase_age=timedelta(hours=1), baseline=obs.BaselineResult(12.5))
    derived = reconcile.reconcile(DERIVED, o, None, NOW).first(p.FreezeSettings)
    assert derived is not None and derived.settings.revenue_cap == 12.5


def test_the_baseline_claims_the_route_at_zero() -> None:
    plan = reconcile.reconcile(DERIVED, observed(Ph.PENDING), None, NOW)
    assert plan.phase is Ph.BASELINE
    assert p.ClaimRoute() in plan.actions and not plan.of_type(p.SetWeight)


# -- deletion ------------------------------------------------------------------------------


def deleting(**changes: Any) -> obs.Deleting:
    seen = obs.Deleting(
        key="ml/exp-a",
        router_found=True,
        route_owner="ml/exp-a",
        challenger_weight=25,
        finalizer_present=True,
        database_reachable=True,
    )
    return replace(seen, **changes)


ROLLBACK_ON_DELETE = p.RecordDecision(
    p.DecisionKind.ROLLBACK, "deleted", deletion.REASON, "canaryctl", NOW, key="deleted"
)


@pytest.mark.parametrize(
    ("seen", "expected"),
    [
        (deleting(), (p.FinalizeRoute(), ROLLBACK_ON_DELETE, p.RemoveFinalizer())),
        (deleting(challenger_weight=0), (p.FinalizeRoute(), p.RemoveFinalizer())),
        (deleting(route_owner="ml/other"), (p.FinalizeRoute(), p.RemoveFinalizer())),
        (deleting(route_owner=None), (p.FinalizeRoute(), p.RemoveFinalizer())),
        (deleting(database_reachable=False), (p.FinalizeRoute(), p.RemoveFinalizer())),
        (
            deleting(router_found=False, route_owner=None, challenger_weight=0),
            (p.RemoveFinalizer(),),
        ),
        (deleting(finalizer_present=False), (p.FinalizeRoute(), ROLLBACK_ON_DELETE)),
    ],
    ids=[
        "in flight",
        "at 0 %",
        "another's route",
        "released",
        "no database",
        "no router",
        "no finalizer",
    ],
)
def test_deletion(seen: obs.Deleting, expected: tuple[p.Action, ...]) -> None:
    plan = deletion.decide(seen, NOW)
    assert plan.actions == expected
    assert not plan.write_status, "the resource is going away: its status is not written"


# -- step windows --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("route_weight", "evaluated", "consistent", "expected"),
    [
        (5, T0 + timedelta(minutes=9), None, None),  # the route agrees with the step
        (None, None, None, None),  # no router to ask
        (25, T0 + timedelta(minutes=9), T0 + timedelta(minutes=7), T0 + timedelta(minutes=9)),
        (25, None, T0 + timedelta(minutes=7), T0 + timedelta(minutes=7)),
        (0, None, None, T0),
    ],
)
def test_the_window_is_cut_where_the_route_left_the_step(
    route_weight: int | None,
    evaluated: datetime | None,
    consistent: datetime | None,
    expected: datetime | None,
) -> None:
    cut = win.cut_at(
        route_weight=route_weight,
        step_weight=5,
        evaluated_until=evaluated,
        last_consistent=consistent,
        step_started_at=T0,
    )
    assert cut == expected


def test_a_cut_window_closes_and_a_restored_step_opens_a_new_stratum() -> None:
    start = T0 + timedelta(seconds=30)
    history = win.update_history(
        [], step_index=0, step_started_at=start, weight=5, share=0.05, now=start
    )
    assert history == [win.StepRecord(0, 5, 0.05, T0 + timedelta(minutes=1))]
    cut = T0 + timedelta(minutes=10, seconds=20)
    history = win.update_history(
        history, step_index=0, step_started_at=start, weight=5, share=0.05, now=cut, cut=cut
    )
    assert history[-1].end == T0 + timedelta(minutes=10)
    later = T0 + timedelta(minutes=12, seconds=5)
    history = win.update_history(
        history, step_index=0, step_started_at=start, weight=5, share=0.05, now=later
    )
    assert [(r.start, r.end) for r in history] == [
        (T0 + timedelta(minutes=1), T0 + timedelta(minutes=10)),
        (T0 + timedelta(minutes=13), None),
    ]
    clipped = win.windows(history, final_until=T0 + timedelta(minutes=15))
    assert [(s, e, closed) for _, s, e, closed in clipped] == [
        (T0 + timedelta(minutes=1), T0 + timedelta(minutes=10), True),
        (T0 + timedelta(minutes=13), T0 + timedelta(minutes=15), False),
    ]
    assert [r.to_dict() for r in history] == [
        win.StepRecord.from_dict(r.to_dict()).to_dict() for r in history
    ]
