"""The results table, the per-step per-arm statistics and the SRM counts of a report.

Sits beside ``view``: where ``view`` turns the store's rows into the report's time series,
this module says, for the experiment's last look, what each arm measured in the metric's
own unit (through :mod:`analysis.arms`, never another pooling or quantile function), next to
the estimate, bounds, p-values and alpha **the engine recorded** (the final decision's
evidence, else the last look). It recomputes no test statistic. Pure: it reads values the
caller fetched (``read.build``), no queries.

The per-step per-arm sufficient statistics are those of the last look's step windows (the
look's evidence records them), so that :mod:`controller.reports.reproduce` can run the
engine on exactly what it saw.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from analysis import arms, buckets
from analysis.stats import ArmStats, SufficientStats

#: Reason codes of the final decision with a first screen of their own.
SRM = "srm"
INCONCLUSIVE = "inconclusive"
NO_HARM_FOUND = "no_harm_found"


@dataclass(frozen=True)
class ArmSample:
    """One arm's sufficient statistics over one step window (capped revenue), JSON-ready.

    ``latency_hist`` is sparse: bucket index → count, on ``analysis.LATENCY_EDGES_MS``.
    """

    n: int
    revenue_sum: float
    revenue_sum_sq: float
    revenue_nonzero: int
    errors: int
    log_latency_sum: float
    log_latency_sum_sq: float
    latency_hist: Mapping[int, int]

    @classmethod
    def from_stats(cls, s: ArmStats) -> ArmSample:
        hist = np.asarray(s.latency_hist)
        return cls(
            s.n,
            s.revenue.sum,
            s.revenue.sum_sq,
            s.revenue_nonzero,
            s.errors,
            s.log_latency.sum,
            s.log_latency.sum_sq,
            {int(i): int(hist[i]) for i in np.flatnonzero(hist)},
        )

    def arm_stats(self) -> ArmStats:
        """The engine's :class:`~analysis.ArmStats` (the inverse of :meth:`from_stats`)."""
        hist = np.zeros(buckets.N_LATENCY_BUCKETS, dtype=np.int64)
        for i, c in self.latency_hist.items():
            hist[int(i)] = c
        return ArmStats(
            n=self.n,
            revenue=SufficientStats(self.n, self.revenue_sum, self.revenue_sum_sq),
            revenue_nonzero=self.revenue_nonzero,
            errors=self.errors,
            latency_hist=hist,
            log_latency=SufficientStats(self.n, self.log_latency_sum, self.log_latency_sum_sq),
        )


@dataclass(frozen=True)
class StepSample:
    """One step window of the last look, as the engine read it, with both arms' statistics."""

    index: int
    weight: int
    share: float  # the challenger share the router reported (the tests' ρ)
    start: datetime
    end: datetime
    closed: bool
    champion: ArmSample
    challenger: ArmSample

    @property
    def expected_challenger(self) -> float:
        """Challenger requests the reported split predicts for the step's total."""
        return self.share * (self.champion.n + self.challenger.n)


@dataclass(frozen=True)
class ResultRow:
    """One guardrail in the results table: both arms in the metric's unit and the recorded test.

    ``estimate``/``lower``/``upper`` are on the guardrail's ``scale`` (a fraction for
    ``relative``, ``B − A`` for ``absolute``, ``p_B/p_A`` for ``ratio``); ``champion`` and
    ``challenger`` are in ``unit`` (``revenue`` per request, a ``share``, or ``ms``).
    ``decided_by`` names the test whose p-value decided the verdict (``harm`` for a fail,
    ``non-inferiority`` for a pass, ``None`` while neither did). ``largest_harm`` is the
    harmful-side bound the engine recorded: the largest harm the data do not exclude.
    """

    name: str
    kind: str
    scale: str
    metric: str | None
    unit: str | None
    champion: float | None
    challenger: float | None
    absolute_change: float | None
    relative_change: float | None
    threshold_ms: float | None
    estimate: float | None
    lower: float | None
    upper: float | None
    margin_line: float
    p_value_harm: float | None
    p_value_noninferiority: float | None
    alpha: float | None
    verdict: str
    reason_code: str
    reason: str
    decided_by: str | None
    largest_harm: float | None


@dataclass(frozen=True)
class LatencyRow:
    """Latency quantiles of one arm in milliseconds (pooled over the steps like the table)."""

    arm: str
    requests: float
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    geometric_mean_ms: float | None


def _num(value: Any) -> float | None:
    if value is None:
        return None
    x = float(value)
    return x if math.isfinite(x) else None


def harmful_bound(
    scale: str, direction: str | None, lower: float | None, upper: float | None
) -> float | None:
    """The bound on the harmful side: the lower one when higher is better, else the upper one."""
    return lower if scale != "ratio" and direction == "higherIsBetter" else upper


def result_rows(
    guardrails: Sequence[Any],
    specs: Mapping[str, Any],
    recorded: Sequence[Mapping[str, Any]],
    steps: Sequence[StepSample],
) -> tuple[ResultRow, ...]:
    """The table's rows (``guardrails``: ``view.GuardrailInfo``; ``specs``: engine specs by name).

    ``recorded`` is the ``guardrails`` list of the final decision's evidence or of the last
    look: every p-value, bound and alpha shown comes from there.
    """
    pooled = arms.pooled([(s.champion.arm_stats(), s.challenger.arm_stats()) for s in steps])
    by_name = {r.get("name"): r for r in recorded}
    out = []
    for info in guardrails:
        rec = by_name.get(info.name, {})
        values = None
        if pooled is not None and info.name in specs:
            values = arms.guardrail_values(specs[info.name], *pooled)
        verdict = str(rec.get("verdict", "") or "")
        lower, upper = _num(rec.get("lower")), _num(rec.get("upper"))
        largest = _num(rec.get("largestHarmNotExcluded"))
        out.append(
            ResultRow(
                name=info.name,
                kind=info.kind,
                scale=info.scale,
                metric=None if values is None else values.metric,
                unit=None if values is None else values.unit,
                champion=None if values is None else _num(values.champion),
                challenger=None if values is None else _num(values.challenger),
                absolute_change=None if values is None else _num(values.absolute_change),
                relative_change=None if values is None else _num(values.relative_change),
                threshold_ms=None if values is None else values.threshold_ms,
                estimate=_num(rec.get("estimate")),
                lower=lower,
                upper=upper,
                margin_line=info.margin_line,
                p_value_harm=_num(rec.get("pValue")),
                p_value_noninferiority=_num(rec.get("pValueNonInferiority")),
                alpha=_num(rec.get("alpha")),
                verdict=verdict,
                reason_code=str(rec.get("reasonCode", "") or ""),
                reason=str(rec.get("reason", "") or ""),
                decided_by={"fail": "harm", "pass": "non-inferiority"}.get(verdict),
                largest_harm=largest
                if largest is not None
                else harmful_bound(info.scale, info.direction, lower, upper),
            )
        )
    return tuple(out)


def latency_rows(steps: Sequence[StepSample]) -> tuple[LatencyRow, ...]:
    """p50, p95, p99 and the geometric mean per arm (``analysis.arms``), pooled over the steps."""
    pooled = arms.pooled([(s.champion.arm_stats(), s.challenger.arm_stats()) for s in steps])
    if pooled is None:
        return ()
    return tuple(
        LatencyRow(
            arm,
            values.requests,
            _num(values.latency_ms(0.5)),
            _num(values.latency_ms(0.95)),
            _num(values.latency_ms(0.99)),
            _num(values.geometric_mean_latency_ms),
        )
        for arm, values in zip(("champion", "challenger"), pooled, strict=True)
    )
