"""Per-guardrail eligibility: each test decides once its own data suffice.

A latency regression may fail before revenue has its events; a PASS needs every guardrail
(and the SRM check) eligible; ``evaluate`` and ``replay`` agree minute by minute on who
is eligible; a guardrail that waits says for what (``Waiting``).
"""

import numpy as np
import pytest

from analysis import (
    N_LATENCY_BUCKETS,
    AnalysisSettings,
    ArmStats,
    GuardrailKind,
    GuardrailSpec,
    ReasonCode,
    Scenario,
    StepWindow,
    SufficientStats,
    Verdict,
    Waiting,
    evaluate,
    replay,
    simulate_minutes,
)

SC = Scenario(minutes=200, requests_per_minute=1000, ramp=((0, 0.05), (90, 0.25)))
P99 = SC.champion_p99_ms()
GUARDS = [
    GuardrailSpec("revenue", GuardrailKind.MEAN),
    GuardrailSpec("p99", GuardrailKind.TAIL, threshold_ms=P99),
    GuardrailSpec("errors", GuardrailKind.RATE),
]


def test_evaluate_and_replay_agree_on_eligibility_minute_by_minute() -> None:
    sc = SC.with_effect(latency_factor=1.03)
    ms = simulate_minutes(sc, 5, thresholds_ms=(P99,), histograms=True)
    settings = AnalysisSettings(min_events=40, srm_min_requests=300)
    rep = replay(settings, GUARDS, ms)
    state = None
    seen_waiting, seen_eligible = set(), set()
    for minute in [*range(0, 12), *range(12, 200, 7)]:
        ev = evaluate(settings, GUARDS, ms.steps_at(minute), state, with_bounds=False)
        state = ev.state
        assert ev.verdict == rep.verdict[minute], minute
        for g in ev.guardrails:
            first = rep.first_eligible[g.name]
            assert g.eligible == (0 <= first <= minute), (g.name, minute)
            (seen_eligible if g.eligible else seen_waiting).add(g.name)
        assert ev.srm.eligible == (0 <= rep.first_eligible["srm"] <= minute)
        assert ev.burn_in_met == (ev.srm.eligible and all(g.eligible for g in ev.guardrails))
    assert seen_waiting == seen_eligible == {"revenue", "p99", "errors"}
    # Revenue waits for 3,000 requests in the 5 % arm (about an hour); counts start sooner.
    assert rep.first_eligible["p99"] < rep.first_eligible["errors"] < rep.first_eligible["revenue"]


def test_a_latency_regression_fails_before_revenue_is_eligible() -> None:
    sc = SC.with_effect(latency_factor=1.5)
    ms = simulate_minutes(sc, 3, thresholds_ms=(P99,), histograms=True)
    rep = replay(AnalysisSettings(), GUARDS, ms)
    assert 0 <= rep.first_fail_by["p99"] < rep.first_eligible["revenue"]
    minute = rep.first_fail_by["p99"]
    ev = evaluate(AnalysisSettings(), GUARDS, ms.steps_at(minute))
    assert ev.verdict == Verdict.FAIL and ev.reason_code == ReasonCode.HARM
    by = {g.name: g for g in ev.guardrails}
    assert by["p99"].verdict == Verdict.FAIL
    assert by["revenue"].verdict == Verdict.CONTINUE
    assert by["revenue"].reason_code == ReasonCode.BURN_IN
    w = by["revenue"].waiting
    assert w is not None and w.unit == "requests" and w.have < w.need == 3000
    assert not ev.burn_in_met


def _arm(n: int, errors: int) -> ArmStats:
    hist = np.zeros(N_LATENCY_BUCKETS, dtype=np.int64)
    hist[10] = n
    total = 1.0 * n
    return ArmStats(
        n=n,
        revenue=SufficientStats(n, total, 4.0 * (n - 1) + total),
        revenue_nonzero=n // 10,
        errors=errors,
        latency_hist=hist,
    )


def test_pass_needs_every_guardrail_eligible() -> None:
    guards = [
        GuardrailSpec("revenue", GuardrailKind.MEAN, margin=0.1),
        GuardrailSpec("errors", GuardrailKind.RATE, kappa=2.0),
    ]
    step = [StepWindow(0.5, _arm(2_000_000, 2_000), _arm(2_000_000, 2_000))]
    ev = evaluate(AnalysisSettings(), guards, step)
    assert ev.verdict == Verdict.PASS and ev.burn_in_met
    strict = AnalysisSettings(min_events=10_000)
    ev = evaluate(strict, guards, step)
    by = {g.name: g for g in ev.guardrails}
    assert by["revenue"].verdict == Verdict.PASS
    assert by["errors"].verdict == Verdict.CONTINUE
    assert by["errors"].waiting == Waiting(4_000, 10_000, "errors")
    assert (ev.verdict, ev.reason_code, ev.burn_in_met) == (
        Verdict.CONTINUE,
        ReasonCode.BURN_IN,
        False,
    )
    assert "errors: waiting for data: 4000 of 10000 errors" in ev.reason
    ev = evaluate(AnalysisSettings(srm_min_requests=10_000_000), guards, step)
    assert ev.verdict == Verdict.CONTINUE and not ev.srm.eligible
    assert ev.srm.waiting == Waiting(2_000_000, 10_000_000, "requests")


@pytest.mark.parametrize(
    ("n", "nonzero", "expected"),
    [
        (1_000, 400, Waiting(1_000, 3_000, "requests")),
        (5_000, 150, Waiting(150, 200, "revenue events")),
        (2_500, 140, Waiting(140, 200, "revenue events")),  # 70 % of each: events shown
    ],
)
def test_a_mean_guardrail_waits_for_what_its_current_step_lacks(
    n: int, nonzero: int, expected: Waiting
) -> None:
    def arm(m: int) -> ArmStats:
        return ArmStats(
            n=m,
            revenue=SufficientStats(m, 0.1 * m, 0.5 * m),
            revenue_nonzero=nonzero,
            latency_hist=np.zeros(N_LATENCY_BUCKETS, dtype=np.int64),
        )

    ev = evaluate(AnalysisSettings(), GUARDS[:1], [StepWindow(0.05, arm(19 * n), arm(n))])
    (g,) = ev.guardrails
    assert g.waiting == expected
    assert g.reason == f"revenue: {expected.describe()}"
