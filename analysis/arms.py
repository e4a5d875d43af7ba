"""Per-arm values in the metric's own unit: what "by how much" means in absolute terms.

Sits beside the tests: where ``decision`` answers whether the challenger is worse, this
module says what each arm measured (revenue per request, error rate, the share of requests
slower than a tail threshold, latency quantiles in milliseconds) so that status, the
reports and the notebook frames can show the champion's and the challenger's values next
to the relative effect. It reads :class:`~analysis.stats.ArmStats` only and must not run
any test or compute any bound: bounds come from what the engine recorded.

Pooling over traffic steps
--------------------------
The engine compares the arms within each step and combines the steps, because traffic and
the metric drift between steps (a ramp on a diurnal baseline). Pooling each arm over all
steps with its own counts as weights would mix that drift into the difference (the
champion carries more of the early steps, the challenger more of the late ones). So
:func:`pooled` weighs both arms' per-step values by the same weights, the step's total
requests, and uses only steps where both arms served traffic: the two values differ only by
what differs between the arms.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from analysis import buckets
from analysis.spec import GuardrailKind, GuardrailSpec, MeanMetric
from analysis.stats import ArmStats

FloatArray = npt.NDArray[np.float64]

#: The latency quantiles every surface shows.
QUANTILES: tuple[float, ...] = (0.5, 0.95, 0.99)


def latency_quantile(hist: npt.ArrayLike, q: float) -> float:
    """The ``q``-quantile in milliseconds of a latency histogram on the engine's edges.

    Interpolates geometrically inside the bucket that holds the quantile (the edges are
    log-spaced, 2 % apart, so the error is below 2 %). ``nan`` for an empty histogram;
    the first or last edge when the quantile falls in the underflow or overflow bucket.
    """
    h = np.asarray(hist, dtype=np.float64)
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"q must be within [0, 1], got {q}")
    total = float(h.sum())
    if total <= 0:
        return math.nan
    edges = buckets.LATENCY_EDGES_MS
    cum = np.cumsum(h)
    target = q * total
    i = int(np.searchsorted(cum, target, side="left"))
    i = min(i, h.size - 1)
    if i == 0:
        return float(edges[0])
    if i >= len(edges):
        return float(edges[-1])
    lo, hi = float(edges[i - 1]), float(edges[i])
    before = float(cum[i - 1])
    frac = (target - before) / float(h[i]) if h[i] > 0 else 0.0
    return float(lo * (hi / lo) ** min(max(frac, 0.0), 1.0))


@dataclass(frozen=True)
class ArmValues:
    """One arm's metrics in their own units.

    Attributes
    ----------
    requests : float
        Requests counted (a weighted count after :func:`pooled`).
    revenue_per_request : float
        Mean capped revenue per request, zeros included.
    revenue_nonzero_share : float
        Share of requests with revenue > 0.
    error_rate : float
        Share of requests that failed.
    latency_hist : ndarray of float
        Latency distribution on the engine's edges (shares after :func:`pooled`).
    geometric_mean_latency_ms : float
        ``exp`` of the mean log latency.
    """

    requests: float
    revenue_per_request: float
    revenue_nonzero_share: float
    error_rate: float
    latency_hist: FloatArray
    geometric_mean_latency_ms: float

    @classmethod
    def from_stats(cls, s: ArmStats) -> ArmValues:
        """The values of one rollup (``nan`` where the arm has no requests)."""
        n = s.n
        mean_log = s.log_latency.mean
        return cls(
            requests=float(n),
            revenue_per_request=s.revenue.sum / n if n else math.nan,
            revenue_nonzero_share=s.revenue_nonzero / n if n else math.nan,
            error_rate=s.errors / n if n else math.nan,
            latency_hist=s.latency_hist.astype(np.float64),
            geometric_mean_latency_ms=math.exp(mean_log) if math.isfinite(mean_log) else math.nan,
        )

    def latency_ms(self, q: float) -> float:
        """Latency quantile in milliseconds (see :func:`latency_quantile`)."""
        return latency_quantile(self.latency_hist, q)

    def share_slower(self, edge_index: int) -> float:
        """Share of requests at or above ``LATENCY_EDGES_MS[edge_index]``."""
        total = float(self.latency_hist.sum())
        return float(self.latency_hist[edge_index + 1 :].sum()) / total if total else math.nan

    def quantiles_ms(self) -> dict[float, float]:
        """The :data:`QUANTILES` in milliseconds."""
        return {q: self.latency_ms(q) for q in QUANTILES}


def _weighted(values: Sequence[ArmValues], weights: FloatArray) -> ArmValues:
    w = weights / weights.sum()

    def avg(xs: list[float]) -> float:
        return float(np.dot(w, xs))

    hists = np.stack([v.latency_hist / max(v.latency_hist.sum(), 1.0) for v in values])
    logs = [math.log(v.geometric_mean_latency_ms) for v in values]
    gm = avg(logs)
    return ArmValues(
        requests=float(sum(v.requests for v in values)),
        revenue_per_request=avg([v.revenue_per_request for v in values]),
        revenue_nonzero_share=avg([v.revenue_nonzero_share for v in values]),
        error_rate=avg([v.error_rate for v in values]),
        latency_hist=(w[:, None] * hists).sum(axis=0),
        geometric_mean_latency_ms=math.exp(gm) if math.isfinite(gm) else math.nan,
    )


def pooled(steps: Sequence[tuple[ArmStats, ArmStats]]) -> tuple[ArmValues, ArmValues] | None:
    """Champion's and challenger's values over the steps, both weighted alike.

    Each step with requests in both arms weighs by its total requests (module docstring);
    ``requests`` is the arm's plain total over those steps. ``None`` when no step had
    requests in both arms (the baseline, or no data yet).
    """
    both = [(a, b) for a, b in steps if a.n > 0 and b.n > 0]
    if not both:
        return None
    weights = np.array([float(a.n + b.n) for a, b in both])
    champion = _weighted([ArmValues.from_stats(a) for a, _ in both], weights)
    challenger = _weighted([ArmValues.from_stats(b) for _, b in both], weights)
    return champion, challenger


@dataclass(frozen=True)
class GuardrailValues:
    """A guardrail's metric in each arm, and the change between them.

    Attributes
    ----------
    metric : str
        What is measured: ``revenue_per_request``, ``error_rate``, ``share_slower``
        (with ``threshold_ms``) or ``geometric_mean_latency_ms``.
    unit : str
        ``revenue`` (the unit revenue is logged in), ``share`` or ``ms``.
    champion, challenger : float
    threshold_ms : float or None
        The tail guardrail's snapped threshold.
    """

    metric: str
    unit: str
    champion: float
    challenger: float
    threshold_ms: float | None = None

    @property
    def absolute_change(self) -> float:
        """``challenger − champion`` in the metric's unit."""
        return self.challenger - self.champion

    @property
    def relative_change(self) -> float:
        """``challenger / champion − 1`` (``nan`` when the champion's value is 0)."""
        return self.challenger / self.champion - 1.0 if self.champion else math.nan


def guardrail_values(
    g: GuardrailSpec, champion: ArmValues, challenger: ArmValues
) -> GuardrailValues:
    """The metric guardrail ``g`` tests, read off both arms."""
    if g.kind == GuardrailKind.RATE:
        return GuardrailValues("error_rate", "share", champion.error_rate, challenger.error_rate)
    if g.kind == GuardrailKind.TAIL:
        e = g.edge_index
        return GuardrailValues(
            "share_slower",
            "share",
            champion.share_slower(e),
            challenger.share_slower(e),
            threshold_ms=g.threshold_edge_ms,
        )
    if g.metric == MeanMetric.LOG_LATENCY:
        return GuardrailValues(
            "geometric_mean_latency_ms",
            "ms",
            champion.geometric_mean_latency_ms,
            challenger.geometric_mean_latency_ms,
        )
    return GuardrailValues(
        "revenue_per_request",
        "revenue",
        champion.revenue_per_request,
        challenger.revenue_per_request,
    )
