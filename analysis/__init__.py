"""Anytime-valid statistics for canary analysis, on sufficient statistics.

This package is pure: it imports numpy, scipy and statsmodels only (an import-linter
contract enforces that it never reaches ``controller``, SQL, Kubernetes or HTTP code).
The controller calls :func:`evaluate` (or :func:`evaluate_batch`) at every look with the
per-step rollups and the state returned by the previous look; notebooks use the same
tests directly (:func:`mean_difference`, :func:`srm_test`, :func:`exceedance_test`).

The names below are imported on first use (module ``__getattr__``), so that importing one
light module of the package (``analysis.buckets``, say) does not import scipy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from analysis.buckets import LATENCY_EDGES_MS, N_LATENCY_BUCKETS, latency_bucket
    from analysis.counts import CountTest, exceedance_test
    from analysis.decision import evaluate, evaluate_batch
    from analysis.power import Plan, fixed_horizon_n, plan
    from analysis.results import BatchItem, Evaluation, GuardrailResult, SrmStatus, Waiting
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

_EXPORTS = {  # module -> the names it exports here
    "buckets": ("LATENCY_EDGES_MS", "N_LATENCY_BUCKETS", "latency_bucket"),
    "counts": ("CountTest", "exceedance_test"),
    "decision": ("evaluate", "evaluate_batch"),
    "power": ("Plan", "fixed_horizon_n", "plan"),
    "results": ("BatchItem", "Evaluation", "GuardrailResult", "SrmStatus", "Waiting"),
    "sequential": ("MeanDifference", "mean_difference"),
    "simulate": ("MinuteStats", "RequestRows", "Scenario", "simulate_minutes", "simulate_requests"),
    "spec": (
        "AnalysisSettings",
        "Direction",
        "GuardrailKind",
        "GuardrailSpec",
        "MeanMetric",
        "ReasonCode",
        "StepWindow",
        "Verdict",
    ),
    "srm": ("SrmResult", "srm_test"),
    "state": ("AnalysisState",),
    "stats": ("ArmStats", "SufficientStats"),
    "trajectory": ("Replay", "replay"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
# Submodules reachable as attributes of the package, as when it imported them all eagerly.
_SUBMODULES = frozenset({*_EXPORTS, "engine", "arms"})

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
    "Waiting",
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


def __getattr__(name: str) -> Any:
    """Import an exported name (or a submodule) on first use."""
    if name in _MODULE_OF:
        value = getattr(importlib.import_module(f"analysis.{_MODULE_OF[name]}"), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f"analysis.{name}")
    raise AttributeError(f"module 'analysis' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
