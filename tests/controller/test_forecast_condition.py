"""Reconcile records the operator's decision forecast: condition, status.forecast, events."""

from __future__ import annotations

from dataclasses import replace

from test_reconcile import BASE, NOW, T0, observed

from controller.decide import actions as p
from controller.decide import observed as obs
from controller.decide import reconcile, status

UNLIKELY = obs.ForecastNote(
    False,
    "PromotionUnlikely",
    "guardrail revenue (margin 2 %) blocks",
    {"stepIndex": 0, "likely": False, "blocking": "revenue"},
)
LIKELY = obs.ForecastNote(
    True, "PromotionLikely", "promoted with probability 97 %", {"stepIndex": 1}
)


def _forecast_condition(plan: p.Plan) -> obs.Condition | None:
    return next(
        (
            a.condition
            for a in plan.actions
            if isinstance(a, p.SetCondition)
            and a.condition.type is obs.ConditionType.DECISION_FORECAST
        ),
        None,
    )


def _events(plan: p.Plan) -> list[tuple[str, str]]:
    return [(a.type.value, a.reason) for a in plan.actions if isinstance(a, p.EmitEvent)]


def test_an_unlikely_forecast_sets_the_condition_false_with_a_warning() -> None:
    plan = reconcile.reconcile(BASE, replace(observed(), forecast=UNLIKELY), None, NOW)
    cond = _forecast_condition(plan)
    assert cond is not None and cond.status is obs.ConditionStatus.FALSE
    assert (cond.reason, cond.message) == (UNLIKELY.reason, UNLIKELY.message)
    assert ("Warning", "PromotionUnlikely") in _events(plan)
    assert status.apply_plan(plan, {})["forecast"]["blocking"] == "revenue"  # type: ignore[typeddict-item]


def test_a_likely_forecast_at_the_next_step_clears_it_with_a_normal_event() -> None:
    was = obs.Condition(
        obs.ConditionType.DECISION_FORECAST, obs.ConditionStatus.FALSE, "PromotionUnlikely", "m", T0
    )
    seen = observed(step=1, conditions=(was,))
    plan = reconcile.reconcile(BASE, replace(seen, forecast=LIKELY), None, NOW)
    cond = _forecast_condition(plan)
    assert cond is not None and cond.status is obs.ConditionStatus.TRUE
    assert cond.last_transition_time == NOW
    assert ("Normal", "PromotionLikely") in _events(plan)
    assert status.apply_plan(plan, {})["forecast"] == {"stepIndex": 1}  # type: ignore[typeddict-item]


def test_no_forecast_leaves_condition_and_status_alone() -> None:
    plan = reconcile.reconcile(BASE, observed(), None, NOW)
    assert _forecast_condition(plan) is None
    assert "forecast" not in status.apply_plan(plan, {})
