"""Sufficient statistics: what storage rolls up and every test in this package consumes.

Sits at the bottom of ``analysis``: the tests (``sequential``, ``counts``, ``srm``) and the
decision (``decision``) read these values; storage writes them. This module must not
compute any test and must not know where the numbers come from (no SQL, no I/O).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from analysis import buckets


@dataclass(frozen=True)
class SufficientStats:
    """Count, sum and sum of squares of a metric, mergeable with ``+``.

    Parameters
    ----------
    n : int
        Number of observations (requests), ``n >= 0``.
    sum : float
        Sum of the observations.
    sum_sq : float
        Sum of the squared observations.

    Notes
    -----
    ``variance`` uses the unbiased estimator and is clamped at zero against rounding.
    ``from_values`` sums with :func:`math.fsum` so that the cancellation in
    ``sum_sq - sum**2 / n`` is computed from correctly rounded sums (STATISTICS.md §2);
    storage should accumulate in ``numeric`` for the same reason.
    """

    n: int
    sum: float
    sum_sq: float

    def __post_init__(self) -> None:
        if self.n < 0:
            raise ValueError(f"n must be >= 0, got {self.n}")
        if self.sum_sq < 0:
            raise ValueError(f"sum_sq must be >= 0, got {self.sum_sq}")

    @classmethod
    def zero(cls) -> SufficientStats:
        """The empty sample."""
        return cls(0, 0.0, 0.0)

    @classmethod
    def from_values(cls, values: npt.ArrayLike) -> SufficientStats:
        """Sufficient statistics of a one-dimensional array of observations."""
        x = np.asarray(values, dtype=np.float64).ravel()
        if not np.all(np.isfinite(x)):
            raise ValueError("values must be finite")
        return cls(int(x.size), math.fsum(x.tolist()), math.fsum((x * x).tolist()))

    def __add__(self, other: SufficientStats) -> SufficientStats:
        return SufficientStats(self.n + other.n, self.sum + other.sum, self.sum_sq + other.sum_sq)

    @property
    def mean(self) -> float:
        """Sample mean (``nan`` when empty)."""
        return self.sum / self.n if self.n > 0 else math.nan

    @property
    def variance(self) -> float:
        """Unbiased sample variance (``nan`` below two observations)."""
        if self.n < 2:
            return math.nan
        centred = self.sum_sq - self.sum * self.sum / self.n
        return max(centred, 0.0) / (self.n - 1)


def _empty_hist() -> npt.NDArray[np.int64]:
    return np.zeros(buckets.N_LATENCY_BUCKETS, dtype=np.int64)


@dataclass(frozen=True, eq=False)
class ArmStats:
    """One arm's rollup over one traffic step (the contract with storage).

    Parameters
    ----------
    n : int
        Requests served by the arm in the window.
    revenue : SufficientStats
        Revenue per request, capped at the experiment's frozen cap (zeros included).
    revenue_nonzero : int
        Requests with revenue > 0 (the burn-in counts these).
    errors : int
        Requests that failed.
    latency_hist : ndarray of int, length ``N_LATENCY_BUCKETS``
        Latency counts on :data:`analysis.buckets.LATENCY_EDGES_MS`.
    log_latency : SufficientStats
        Natural log of latency in milliseconds.
    """

    n: int
    revenue: SufficientStats = field(default_factory=SufficientStats.zero)
    revenue_nonzero: int = 0
    errors: int = 0
    latency_hist: npt.NDArray[np.int64] = field(default_factory=_empty_hist)
    log_latency: SufficientStats = field(default_factory=SufficientStats.zero)

    def __post_init__(self) -> None:
        hist = np.asarray(self.latency_hist, dtype=np.int64)
        if hist.shape != (buckets.N_LATENCY_BUCKETS,):
            raise ValueError(
                f"latency_hist must have length {buckets.N_LATENCY_BUCKETS}, got {hist.shape}"
            )
        if np.any(hist < 0):
            raise ValueError("latency_hist must not contain negative counts")
        object.__setattr__(self, "latency_hist", hist)
        for name in ("n", "revenue_nonzero", "errors"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.revenue_nonzero > self.n:
            raise ValueError("revenue_nonzero must not exceed n")
        if self.errors > self.n:
            raise ValueError("errors must not exceed n")

    def slower_than(self, edge_index: int) -> int:
        """Requests at or above ``LATENCY_EDGES_MS[edge_index]``."""
        return int(self.latency_hist[edge_index + 1 :].sum())

    def __add__(self, other: ArmStats) -> ArmStats:
        return ArmStats(
            n=self.n + other.n,
            revenue=self.revenue + other.revenue,
            revenue_nonzero=self.revenue_nonzero + other.revenue_nonzero,
            errors=self.errors + other.errors,
            latency_hist=self.latency_hist + other.latency_hist,
            log_latency=self.log_latency + other.log_latency,
        )
