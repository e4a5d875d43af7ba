"""The public API of ``analysis`` is curated: this pins it."""

import analysis

EXPECTED = {
    "AnalysisSettings", "AnalysisState", "ArmStats", "BatchItem", "CountTest", "Direction",
    "Evaluation", "GuardrailKind", "GuardrailResult", "GuardrailSpec", "LATENCY_EDGES_MS",
    "MeanDifference", "MeanMetric", "MinuteStats", "N_LATENCY_BUCKETS", "Plan", "ReasonCode",
    "Replay", "RequestRows", "Scenario", "SrmResult", "SrmStatus", "StepWindow",
    "SufficientStats", "Verdict", "Waiting", "evaluate", "evaluate_batch", "exceedance_test",
    "fixed_horizon_n", "latency_bucket", "mean_difference", "plan", "replay",
    "simulate_minutes", "simulate_requests", "srm_test",
}  # fmt: skip


def test_all_is_sorted_and_pinned() -> None:
    assert analysis.__all__ == sorted(analysis.__all__)
    assert set(analysis.__all__) == EXPECTED


def test_every_exported_name_exists_and_public_functions_are_documented() -> None:
    for name in analysis.__all__:
        obj = getattr(analysis, name)
        if callable(obj):
            assert obj.__doc__, name


def test_verdict_is_a_str_enum() -> None:
    assert analysis.Verdict.FAIL == "fail"
    assert {v.value for v in analysis.Verdict} == {"pass", "fail", "continue"}
