"""Typed inputs of the decision: guardrails, analysis settings and traffic-step windows.

Sits at the boundary between the controller and ``decision``: the controller builds these
values from the experiment's recorded settings and the Postgres rollups, ``decision``
trusts them. Validation happens here, once (``ValueError`` naming the argument). This
module must not compute any statistic.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import numpy as np

from analysis import buckets, multiplicity, sequential, srm, stats


class Verdict(enum.StrEnum):
    """Outcome of a guardrail or an experiment at one look."""

    PASS = "pass"
    FAIL = "fail"
    CONTINUE = "continue"


class ReasonCode(enum.StrEnum):
    """Machine-readable reason behind a verdict."""

    BURN_IN = "burn_in"
    HARM = "harm"
    NON_INFERIOR = "non_inferior"
    INCONCLUSIVE = "inconclusive"
    SRM = "srm"
    VOID_SRM = "void_srm"
    ALL_PASS = "all_pass"


class GuardrailKind(enum.StrEnum):
    """``mean``: a mean per request; ``tail``: share slower than a threshold; ``rate``: errors."""

    MEAN = "mean"
    TAIL = "tail"
    RATE = "rate"


class Direction(enum.StrEnum):
    """Which way is good for the metric."""

    HIGHER_IS_BETTER = "higher_is_better"
    LOWER_IS_BETTER = "lower_is_better"


class MeanMetric(enum.StrEnum):
    """The sufficient statistics a ``mean`` guardrail reads."""

    REVENUE = "revenue"
    LOG_LATENCY = "log_latency"


@dataclass(frozen=True)
class GuardrailSpec:
    """One guardrail, fixed before the canary starts.

    Parameters
    ----------
    name : str
        Unique within the experiment; keys the sequential state.
    kind : GuardrailKind
    metric : MeanMetric
        For ``mean`` guardrails: capped revenue (default) or log latency.
    direction : Direction, optional
        Defaults to higher-is-better for revenue, lower-is-better otherwise; ``tail`` and
        ``rate`` count bad events and must be lower-is-better.
    margin : float
        ``mean`` only: tolerated harm, ≥ 0, a fraction of the champion's mean when
        ``relative`` (0.02 tolerates a 2 % drop) or in metric units otherwise.
    relative : bool
        ``mean`` only: test ``mean_B / mean_A − 1`` (delta method, per step).
    kappa : float
        ``tail`` and ``rate``: tolerated inflation of the event rate, p_B ≤ κ·p_A, > 0.
    threshold_ms : float, optional
        ``tail`` only: snapped up to the smallest histogram edge ≥ it.
    """

    name: str
    kind: GuardrailKind
    metric: MeanMetric = MeanMetric.REVENUE
    direction: Direction | None = None
    margin: float = 0.0
    relative: bool = True
    kappa: float = 1.0
    threshold_ms: float | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("name must not be empty")
        object.__setattr__(self, "kind", GuardrailKind(self.kind))
        object.__setattr__(self, "metric", MeanMetric(self.metric))
        if self.direction is not None:
            object.__setattr__(self, "direction", Direction(self.direction))
        if not (self.margin >= 0 and math.isfinite(self.margin)):
            raise ValueError(f"margin must be finite and >= 0, got {self.margin}")
        if not (self.kappa > 0 and math.isfinite(self.kappa)):
            raise ValueError(f"kappa must be finite and > 0, got {self.kappa}")
        if self.kind != GuardrailKind.MEAN and self.direction == Direction.HIGHER_IS_BETTER:
            raise ValueError("direction must be lower_is_better for tail and rate guardrails")
        top = buckets.LATENCY_EDGES_MS[-1]
        if self.kind == GuardrailKind.TAIL and not (
            self.threshold_ms is not None and 0 < self.threshold_ms <= top
        ):
            raise ValueError(
                "threshold_ms must be set within the histogram range for a tail guardrail"
            )

    @property
    def sign(self) -> float:
        """+1 when higher is better, −1 when lower is better."""
        if self.direction is not None:
            return 1.0 if self.direction == Direction.HIGHER_IS_BETTER else -1.0
        if self.kind == GuardrailKind.MEAN and self.metric == MeanMetric.REVENUE:
            return 1.0
        return -1.0

    @property
    def edge_index(self) -> int:
        """Index of the histogram edge the tail threshold snaps to."""
        if self.threshold_ms is None:
            raise ValueError("threshold_ms is not set")
        return int(np.searchsorted(buckets.LATENCY_EDGES_MS, self.threshold_ms, side="left"))

    @property
    def threshold_edge_ms(self) -> float:
        """The snapped threshold in milliseconds."""
        return float(buckets.LATENCY_EDGES_MS[self.edge_index])


#: Per-guardrail eligibility defaults (docs/statistics.md, "Eligibility").
DEFAULT_BURN_IN_REQUESTS = 3000
DEFAULT_BURN_IN_NONZERO = 200
DEFAULT_MEAN_MIN_REQUESTS = 500
DEFAULT_MIN_EVENTS = 10
DEFAULT_SRM_MIN_REQUESTS = 100


@dataclass(frozen=True)
class AnalysisSettings:
    """An experiment's recorded analysis settings.

    Parameters
    ----------
    alpha : float
        Family-wise probability that a healthy challenger is rolled back for any reason;
        split equally (Bonferroni) over the guardrails and, when it runs, the SRM check.
    burn_in_requests : int
        ``mean`` guardrails on revenue: requests in a step's smaller arm before that step's
        test counts (enough for the plug-in variance; STATISTICS.md §2). A mean guardrail
        is *eligible* (may decide) once one of its steps counts.
    burn_in_nonzero : int
        ``mean`` guardrails on revenue: requests with revenue > 0 in a step's smaller arm
        before that step's test counts (STATISTICS.md §2).
    mean_min_requests : int
        ``mean`` guardrails on other metrics (log latency, not heavy-tailed): requests in a
        step's smaller arm before that step's test counts.
    min_events : int
        ``tail`` and ``rate`` guardrails: bad events (slow requests or errors, both arms,
        all steps) before the guardrail may decide. The count test is exact at any count,
        so this is a small floor, not a validity condition.
    srm_min_requests : int
        Requests in the smaller arm (all steps) before the SRM check may decide (exact
        test; a small floor).
    n_star : float
        Smaller-arm sample size per step at which mean tests are tightest (τ² tuning).
    srm_concentration : float
        Dirichlet prior concentration of the SRM test.
    beta_a, beta_b : float
        Beta prior of the count tests before truncation.
    srm_check : bool
        Whether a sample-ratio mismatch voids the results and fails the experiment. When
        False the SRM statistic is still reported, but it takes no share of ``alpha``
        and never fails or voids anything.
    """

    alpha: float = 0.05
    burn_in_requests: int = DEFAULT_BURN_IN_REQUESTS
    burn_in_nonzero: int = DEFAULT_BURN_IN_NONZERO
    mean_min_requests: int = DEFAULT_MEAN_MIN_REQUESTS
    min_events: int = DEFAULT_MIN_EVENTS
    srm_min_requests: int = DEFAULT_SRM_MIN_REQUESTS
    n_star: float = sequential.DEFAULT_N_STAR
    srm_concentration: float = srm.DEFAULT_CONCENTRATION
    beta_a: float = 1.0
    beta_b: float = 1.0
    count_prior_ratio: float | None = 2.0
    srm_check: bool = True

    def __post_init__(self) -> None:
        sequential.check_alpha(self.alpha)
        if self.burn_in_requests < 0:
            raise ValueError(f"burn_in_requests must be >= 0, got {self.burn_in_requests}")
        if self.burn_in_nonzero < 0:
            raise ValueError(f"burn_in_nonzero must be >= 0, got {self.burn_in_nonzero}")
        if self.mean_min_requests < 0:
            raise ValueError(f"mean_min_requests must be >= 0, got {self.mean_min_requests}")
        if self.min_events < 0:
            raise ValueError(f"min_events must be >= 0, got {self.min_events}")
        if self.srm_min_requests < 0:
            raise ValueError(f"srm_min_requests must be >= 0, got {self.srm_min_requests}")
        if not self.n_star > 0:
            raise ValueError(f"n_star must be > 0, got {self.n_star}")
        if not self.srm_concentration > 0:
            raise ValueError(f"srm_concentration must be > 0, got {self.srm_concentration}")
        if not (self.beta_a > 0 and self.beta_b > 0):
            raise ValueError("beta_a and beta_b must be > 0")
        r = self.count_prior_ratio
        if r is not None and not (r > 1 and math.isfinite(r)):
            raise ValueError(f"count_prior_ratio must be finite and > 1, got {r}")

    def alpha_each(self, n_guardrails: int) -> float:
        """Bonferroni share of alpha for each guardrail and for the SRM check (if it runs)."""
        return multiplicity.alpha_each(self.alpha, n_guardrails, srm_check=self.srm_check)


@dataclass(frozen=True, eq=False)
class StepWindow:
    """One traffic step: a window of constant challenger weight, cumulative since it began.

    Parameters
    ----------
    weight_challenger : float
        The challenger share the router reported for the step, in (0, 1).
    champion, challenger : ArmStats
        Rollups of each arm over the step so far (finalised minutes only).
    design_weight_challenger : float, optional
        The share the experiment's plan asked for (reported in the SRM reason).
    closed : bool
        True once the step has ended; its summaries are then frozen in the state.
    """

    weight_challenger: float
    champion: stats.ArmStats
    challenger: stats.ArmStats
    design_weight_challenger: float | None = None
    closed: bool = False

    def __post_init__(self) -> None:
        if not 0.0 < self.weight_challenger < 1.0:
            raise ValueError(f"weight_challenger must lie in (0, 1), got {self.weight_challenger}")
        d = self.design_weight_challenger
        if d is not None and not 0.0 < d < 1.0:
            raise ValueError(f"design_weight_challenger must lie in (0, 1), got {d}")
