"""Decisions: table of cases, state in and out, frozen steps, batch = one by one, replay."""

import json
import math

import numpy as np
import pytest

from analysis import (
    N_LATENCY_BUCKETS,
    AnalysisSettings,
    AnalysisState,
    ArmStats,
    BatchItem,
    GuardrailKind,
    GuardrailSpec,
    MeanMetric,
    ReasonCode,
    Scenario,
    StepWindow,
    SufficientStats,
    Verdict,
    evaluate,
    evaluate_batch,
    replay,
    simulate_minutes,
)

REVENUE = GuardrailSpec("revenue", GuardrailKind.MEAN, margin=0.02)
ERRORS = GuardrailSpec("errors", GuardrailKind.RATE, kappa=1.2)
SETTINGS = AnalysisSettings(burn_in_requests=1000, burn_in_nonzero=50)


def arm(n: int, mean: float, sd: float, errors: int = 0, nonzero: int | None = None) -> ArmStats:
    total = n * mean
    return ArmStats(
        n=n,
        revenue=SufficientStats(n, total, sd * sd * (n - 1) + total * mean),
        revenue_nonzero=n // 10 if nonzero is None else nonzero,
        errors=errors,
        latency_hist=np.zeros(N_LATENCY_BUCKETS, dtype=np.int64),
    )


@pytest.mark.parametrize(
    ("a", "b", "expected", "code"),
    [  # champion, challenger, verdict, reason
        (arm(200_000, 1.0, 2.0, 400), arm(200_000, 0.90, 2.0, 400), Verdict.FAIL, ReasonCode.HARM),
        (arm(200_000, 1.0, 2.0, 400), arm(200_000, 1.0, 2.0, 800), Verdict.FAIL, ReasonCode.HARM),
        (arm(400_000, 1.0, 1.0, 400), arm(400_000, 1.02, 1.0, 300), Verdict.PASS, ReasonCode.ALL_PASS),
        (arm(20_000, 1.0, 2.0, 40), arm(20_000, 1.0, 2.0, 40), Verdict.CONTINUE, ReasonCode.INCONCLUSIVE),
        (arm(500, 1.0, 2.0, 0), arm(500, 0.5, 2.0, 0), Verdict.CONTINUE, ReasonCode.BURN_IN),
        (arm(200_000, 1.0, 2.0, 400), arm(180_000, 1.0, 2.0, 360), Verdict.FAIL, ReasonCode.SRM),
    ],
)  # fmt: skip
def test_verdict_table(a: ArmStats, b: ArmStats, expected: Verdict, code: ReasonCode) -> None:
    ev = evaluate(SETTINGS, [REVENUE, ERRORS], [StepWindow(0.5, a, b)])
    assert ev.verdict == expected
    assert ev.reason_code == code
    assert ev.reason


def test_srm_voids_every_guardrail() -> None:
    ev = evaluate(
        SETTINGS,
        [REVENUE, ERRORS],
        [StepWindow(0.5, arm(200_000, 1, 2, 400), arm(180_000, 0.5, 2))],
    )
    assert ev.srm.mismatch
    assert all(g.reason_code == ReasonCode.VOID_SRM for g in ev.guardrails)


def test_a_disabled_srm_check_takes_no_alpha_and_voids_nothing() -> None:
    """``srm_check=False``: the split serves the guardrails only; a skewed split fails nothing."""
    off = AnalysisSettings(burn_in_requests=1000, burn_in_nonzero=50, srm_check=False)
    skewed = [StepWindow(0.5, arm(200_000, 1, 2, 400), arm(180_000, 1, 2, 360))]
    assert evaluate(SETTINGS, [REVENUE, ERRORS], skewed).verdict == Verdict.FAIL
    ev = evaluate(off, [REVENUE, ERRORS], skewed)
    assert not ev.srm.mismatch and ev.srm.alpha == 0.0
    assert ev.reason_code != ReasonCode.SRM
    assert all(g.reason_code != ReasonCode.VOID_SRM for g in ev.guardrails)
    assert all(g.alpha == pytest.approx(off.alpha / 2) for g in ev.guardrails)
    assert SETTINGS.alpha_each(2) == pytest.approx(SETTINGS.alpha / 3)


def test_bounds_are_dual_to_the_verdicts() -> None:
    ev = evaluate(
        SETTINGS, [REVENUE], [StepWindow(0.5, arm(200_000, 1.0, 2.0), arm(200_000, 0.9, 2.0))]
    )
    g = ev.guardrails[0]
    assert g.verdict == Verdict.FAIL
    assert g.upper < -REVENUE.margin < 0
    assert g.lower < g.estimate < g.upper
    assert g.estimate == pytest.approx(-0.1, abs=1e-9)


def _sim(seed: int = 5) -> tuple[Scenario, object]:
    sc = Scenario(minutes=300, ramp=((0, 0.1), (100, 0.3), (200, 0.5)), revenue_effect=-0.1)
    return sc, simulate_minutes(sc, seed, thresholds_ms=(sc.champion_p99_ms(),), histograms=True)


GUARDS = [
    GuardrailSpec("revenue", GuardrailKind.MEAN),
    GuardrailSpec("p99", GuardrailKind.TAIL, threshold_ms=Scenario().champion_p99_ms()),
    GuardrailSpec("errors", GuardrailKind.RATE),
    GuardrailSpec("lat", GuardrailKind.MEAN, metric=MeanMetric.LOG_LATENCY, relative=False),
]


def test_state_round_trips_through_json_and_a_restart_continues_the_same_test() -> None:
    _, ms = _sim()
    settings = AnalysisSettings()
    straight, restarted = None, None
    for minute in range(40, 300, 20):
        steps = ms.steps_at(minute)  # type: ignore[attr-defined]
        a = evaluate(settings, GUARDS, steps, straight)
        persisted = (
            json.loads(json.dumps(restarted.to_dict(), allow_nan=False)) if restarted else None
        )
        b = evaluate(
            settings, GUARDS, steps, AnalysisState.from_dict(persisted) if persisted else None
        )
        assert a.guardrails == b.guardrails and a.verdict == b.verdict
        straight, restarted = a.state, b.state
    assert len(straight.frozen_steps) == 2
    assert straight == restarted


def test_closed_steps_are_frozen_and_their_e_values_multiply() -> None:
    _, ms = _sim()
    settings = AnalysisSettings()
    state = None
    for minute in (99, 150):  # minute 99 is the last of step 0, 150 lies in step 1
        ev = evaluate(settings, GUARDS, ms.steps_at(minute), state)  # type: ignore[attr-defined]
        state = ev.state
    assert len(state.frozen_steps) == 1
    # Late data for the closed step changes nothing: the frozen rollup is used.
    steps = ms.steps_at(150)  # type: ignore[attr-defined]
    tampered = [
        StepWindow(
            steps[0].weight_challenger,
            steps[0].champion,
            steps[0].challenger + steps[0].challenger,
            closed=True,
        ),
        steps[1],
    ]
    ev_a = evaluate(settings, GUARDS, steps, state)
    ev_b = evaluate(settings, GUARDS, tampered, state)
    assert ev_a.guardrails == ev_b.guardrails
    # The total ln E is the frozen step's ln E plus the open step's own.
    open_only = evaluate(
        settings,
        GUARDS,
        [StepWindow(steps[1].weight_challenger, steps[1].champion, steps[1].challenger)],
    )
    for g, alone in zip(ev_a.guardrails, open_only.guardrails, strict=True):
        frozen = state.frozen_steps[0].log_e[g.name][0]
        assert g.log_e_value == pytest.approx(frozen + alone.log_e_value, rel=1e-9, abs=1e-9)


def test_batch_equals_one_by_one() -> None:
    _, ms = _sim()
    settings = AnalysisSettings()
    items = [
        BatchItem(settings, GUARDS[: 1 + i % 4], ms.steps_at(60 + 23 * i), AnalysisState())  # type: ignore[attr-defined]
        for i in range(10)
    ]
    batch = evaluate_batch(items)
    for item, got in zip(items, batch, strict=True):
        one = evaluate(item.settings, item.guardrails, item.steps, item.state)
        assert got.guardrails == one.guardrails
        assert got.verdict == one.verdict and got.srm == one.srm


def test_replay_matches_evaluate_minute_by_minute() -> None:
    sc = Scenario(
        minutes=400,
        ramp=((0, 0.05), (120, 0.25), (240, 0.5)),
        latency_factor=1.03,
        error_factor=1.5,
        revenue_effect=-0.05,
    )
    ms = simulate_minutes(sc, 11, thresholds_ms=(sc.champion_p99_ms(),), histograms=True)
    settings = AnalysisSettings()
    rep = replay(settings, GUARDS, ms)
    state = None
    for minute in range(0, 400, 9):
        ev = evaluate(settings, GUARDS, ms.steps_at(minute), state, with_bounds=False)
        state = ev.state
        assert ev.verdict == rep.verdict[minute], minute
        for g in ev.guardrails:
            if ev.burn_in_met:
                assert g.log_e_value == pytest.approx(rep.log_e_harm[g.name][minute], abs=1e-6)
    assert rep.first_fail >= 0


def test_p_values_never_increase_across_looks() -> None:
    _, ms = _sim(8)
    settings = AnalysisSettings()
    state, last = None, {}
    for minute in range(0, 300, 5):
        ev = evaluate(settings, GUARDS, ms.steps_at(minute), state)  # type: ignore[attr-defined]
        state = ev.state
        for g in ev.guardrails:
            assert g.p_value <= last.get(g.name, 1.0)
            last[g.name] = g.p_value
            if not g.eligible:
                assert g.verdict == Verdict.CONTINUE and g.reason_code == ReasonCode.BURN_IN
                assert g.reason.endswith(g.waiting.describe())  # type: ignore[union-attr]
    assert min(last.values()) < 1.0
    assert not math.isnan(sum(last.values()))


def test_a_look_before_any_traffic_continues() -> None:
    empty = ArmStats(n=0)
    ev = evaluate(AnalysisSettings(), GUARDS, [StepWindow(0.05, empty, empty)])
    assert ev.verdict == Verdict.CONTINUE and ev.reason_code == ReasonCode.BURN_IN
    assert all(g.log_e_value == 0.0 for g in ev.guardrails)
    assert json.loads(json.dumps(ev.state.to_dict(), allow_nan=False))["looks"] == 1


def test_srm_reason_names_a_design_and_router_disagreement() -> None:
    a, b = arm(200_000, 1, 2, 400), arm(180_000, 1, 2, 360)
    ev = evaluate(SETTINGS, [REVENUE], [StepWindow(0.5, a, b, design_weight_challenger=0.45)])
    assert ev.verdict == Verdict.FAIL and ev.reason_code == ReasonCode.SRM
    assert "design 45.00 %" in ev.reason


def test_changing_guardrails_mid_experiment_is_refused() -> None:
    _, ms = _sim()
    ev = evaluate(AnalysisSettings(), GUARDS, ms.steps_at(150))  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="guardrails"):
        evaluate(AnalysisSettings(), GUARDS[:2], ms.steps_at(160), ev.state)  # type: ignore[attr-defined]


def test_state_to_dict_is_the_dataclass_shape_with_its_version() -> None:
    from dataclasses import asdict

    from analysis.state import STATE_VERSION, AnalysisState, FrozenArm, FrozenStep, RunningP

    arm = FrozenArm(10, 1.5, 3.25, 4, 1, 20.0, 41.0)
    state = AnalysisState(
        3,
        (FrozenStep(0.1, arm, arm, {"p99": (2, 3)}, {"revenue": (0.5, -0.25)}, 0.125),),
        {"revenue": RunningP(0.5, 0.25)},
        0.75,
    )
    expected = asdict(state) | {"version": STATE_VERSION}
    expected["frozen_steps"] = list(expected["frozen_steps"])  # a JSON list, not a tuple
    step = expected["frozen_steps"][0]
    step["exceedances"], step["log_e"] = {"p99": [2, 3]}, {"revenue": [0.5, -0.25]}
    assert state.to_dict() == expected
    assert AnalysisState.from_dict(state.to_dict()) == state
