"""Anytime-valid statistics for canary analysis, on sufficient statistics.

This package is pure: it imports numpy, scipy and statsmodels only (an import-linter
contract enforces that it never reaches ``controller``, SQL, Kubernetes or HTTP code).
The controller calls :func:`evaluate` (or :func:`evaluate_batch`) at every look with the
per-step rollups and the state returned by the previous look; notebooks use the same
tests directly (:func:`mean_difference`, :func:`srm_test`, :func:`exceedance_test`).
"""

from analysis.buckets import LATENCY_EDGES_MS, N_LATENCY_BUCKETS, latency_bucket
from analysis.counts import CountTest, exceedance_test
from analysis.decision import evaluate, evaluate_batch
from analysis.power import Plan, fixed_horizon_n, plan
from analysis.results import BatchItem, Evaluation, GuardrailResult, SrmStatus
from analysis.sequential import MeanDifference, mean_difference
from analysis.simulate import (
    MinuteStats,
    RequestRows,
    Scenario,
    simulate_minutes,
    simulate_requests,
)
from analysis.spec import (
    AnalysisSettings,
    Direction,
    GuardrailKind,
    GuardrailSpec,
    MeanMetric,
    ReasonCode,
    StepWindow,
    Verdict,
)
from analysis.srm import SrmResult, srm_test
from analysis.state import AnalysisState
from analysis.stats import ArmStats, SufficientStats
from analysis.trajectory import Replay, replay

__all__ = [  # noqa: RUF022 - plain sorted(), pinned by tests/analysis/test_api.py
    "AnalysisSettings",
    "AnalysisState",
    "ArmStats",
    "BatchItem",
    "CountTest",
    "Direction",
    "Evaluation",
    "GuardrailKind",
    "GuardrailResult",
    "GuardrailSpec",
    "LATENCY_EDGES_MS",
    "MeanDifference",
    "MeanMetric",
    "MinuteStats",
    "N_LATENCY_BUCKETS",
    "Plan",
    "ReasonCode",
    "Replay",
    "RequestRows",
    "Scenario",
    "SrmResult",
    "SrmStatus",
    "StepWindow",
    "SufficientStats",
    "Verdict",
    "evaluate",
    "evaluate_batch",
    "exceedance_test",
    "fixed_horizon_n",
    "latency_bucket",
    "mean_difference",
    "plan",
    "replay",
    "simulate_minutes",
    "simulate_requests",
    "srm_test",
]
