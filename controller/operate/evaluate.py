"""The bridge between the controller and ``analysis``: settings, step windows, verdicts.

Maps an Experiment's frozen analysis settings to ``analysis`` guardrail specs, storage's
rollup totals to ``analysis.ArmStats``, and an ``analysis.Evaluation`` to the
``observed.Verdicts`` reconcile reads and the status fields people read. It also keeps
the per-step window history that stratification needs. Pure: no I/O, no clock.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import numpy as np

import analysis
from controller.decide import observed as obs
from controller.experiment import spec
from controller.storage import rollups

MINUTE = timedelta(minutes=1)


def floor_minute(t: datetime) -> datetime:
    return t.replace(second=0, microsecond=0)


def ceil_minute(t: datetime) -> datetime:
    floor = floor_minute(t)
    return floor if floor == t else floor + MINUTE


def watermark(now: datetime, lateness: timedelta) -> datetime:
    """The end of the last finalised minute: minutes ending at or before ``now − lateness``."""
    return floor_minute(now - lateness)


def settings_for(a: spec.Analysis) -> analysis.AnalysisSettings:
    kwargs: dict[str, Any] = {
        "alpha": a.alpha,
        "burn_in_requests": a.burn_in.min_requests,
        "burn_in_nonzero": a.burn_in.min_non_zero_revenue,
    }
    if a.tuning.samples_per_arm:
        kwargs["n_star"] = float(a.tuning.samples_per_arm)
    return analysis.AnalysisSettings(**kwargs)


def guardrails_for(a: spec.Analysis, derived: Mapping[str, Any]) -> list[analysis.GuardrailSpec]:
    """The analysis engine's guardrail specs; derived thresholds come from the frozen snapshot."""
    thresholds = derived.get("thresholdsMs", {})
    out = []
    for g in a.guardrails:
        if isinstance(g, spec.MeanGuardrail):
            out.append(
                analysis.GuardrailSpec(
                    g.name,
                    analysis.GuardrailKind.MEAN,
                    metric=analysis.MeanMetric.REVENUE,
                    direction=analysis.Direction[g.direction.name],
                    margin=g.margin.value,
                    relative=g.margin.kind is spec.MarginKind.RELATIVE,
                )
            )
        elif isinstance(g, spec.TailGuardrail):
            threshold = g.threshold_ms if g.threshold_ms is not None else thresholds[g.name]
            out.append(
                analysis.GuardrailSpec(
                    g.name, analysis.GuardrailKind.TAIL, kappa=g.kappa, threshold_ms=threshold
                )
            )
        else:
            out.append(analysis.GuardrailSpec(g.name, analysis.GuardrailKind.RATE, kappa=g.kappa))
    return out


def arm_stats(t: rollups.ArmTotals) -> analysis.ArmStats:
    """Storage's exact totals as the analysis engine's arm statistics (capped revenue)."""
    return analysis.ArmStats(
        n=t.n,
        revenue=analysis.SufficientStats(
            t.n, float(t.revenue_capped_sum), float(t.revenue_capped_sum_sq)
        ),
        revenue_nonzero=t.revenue_nonzero,
        errors=t.errors,
        latency_hist=t.latency_hist,
        log_latency=analysis.SufficientStats(
            t.n, float(t.log_latency_sum), float(t.log_latency_sum_sq)
        ),
    )


# ----------------------------------------------------------------------------- step history


@dataclass(frozen=True)
class StepRecord:
    """One traffic step's window: [start, end) in whole minutes, and its reported share."""

    index: int
    weight: int
    share: float
    start: datetime
    end: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "weight": self.weight,
            "share": self.share,
            "start": self.start.isoformat(),
            "end": None if self.end is None else self.end.isoformat(),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> StepRecord:
        return cls(
            int(d["index"]),
            int(d["weight"]),
            float(d["share"]),
            datetime.fromisoformat(d["start"]),
            None if d.get("end") is None else datetime.fromisoformat(d["end"]),
        )


def update_history(
    history: Sequence[StepRecord],
    *,
    step_index: int,
    step_started_at: datetime,
    weight: int,
    share: float,
    now: datetime,
    cut: datetime | None = None,
) -> list[StepRecord]:
    """The history after this tick: the current step's window opened, the previous one closed.

    A step's window starts at the first whole minute after its weight was set and ends at
    the minute the next step's weight was set, so no minute of mixed weights enters a test.
    Steps at 0 % or 100 % are not windows of a test.

    ``cut`` says the route is not at the weight the status says (an operator died between
    writing the route and the status, or someone edited the route): the open window ends
    there, and minutes after it enter no test. When the route is back at the step's
    weight, the step continues in a new window (a new stratum) from the next minute.
    """
    steps = list(history)
    if cut is not None:
        if steps and steps[-1].end is None:
            steps[-1] = replace(steps[-1], end=max(steps[-1].start, floor_minute(cut)))
        return steps
    if not 0 < weight < 100:
        return steps
    fair = share if 0 < share < 1 else weight / 100
    if steps and steps[-1].index == step_index:
        last = steps[-1]
        if last.end is None:
            steps[-1] = replace(last, share=fair)
        else:  # the step was cut and its weight is restored: a new stratum from now on
            steps.append(StepRecord(step_index, weight, fair, ceil_minute(now)))
        return steps
    if steps and steps[-1].end is None:
        steps[-1] = replace(steps[-1], end=floor_minute(step_started_at))
    steps.append(StepRecord(step_index, weight, fair, ceil_minute(step_started_at)))
    return steps


def windows(
    history: Sequence[StepRecord], final_until: datetime
) -> list[tuple[StepRecord, datetime, datetime, bool]]:
    """Each step's window clipped to finalised minutes, and whether it is closed for good.

    A step whose end lies beyond the watermark is still open (late data may still arrive),
    and the steps after it wait: only the last window passed to the analysis may be open.
    """
    out = []
    for record in history:
        end = final_until if record.end is None else min(record.end, final_until)
        end = max(end, record.start)
        closed = record.end is not None and record.end <= final_until
        out.append((record, record.start, end, closed))
        if not closed:
            break
    return out


# ----------------------------------------------------------------------------- verdicts


def summarise(ev: analysis.Evaluation, *, srm_enabled: bool) -> obs.Verdicts:
    """The controller-side summary reconcile reads."""
    srm_mismatch = bool(srm_enabled and ev.srm.mismatch)
    overall = obs.Verdict(ev.verdict.value)
    if not srm_enabled and ev.srm.mismatch and overall is obs.Verdict.FAIL:
        failing = [g for g in ev.guardrails if g.verdict is analysis.Verdict.FAIL]
        overall = obs.Verdict.FAIL if failing else obs.Verdict.CONTINUE
    return obs.Verdicts(
        overall=overall,
        guardrails=tuple(
            obs.GuardrailVerdict(
                g.name, obs.Verdict(g.verdict.value), g.reason_code.value, g.reason
            )
            for g in ev.guardrails
        ),
        srm_mismatch=srm_mismatch,
        burn_in_met=ev.burn_in_met,
        srm_reason=ev.reason if srm_mismatch and ev.reason_code is analysis.ReasonCode.SRM else "",
    )


def _num(x: float) -> float | None:
    return None if not math.isfinite(x) else float(x)


def status_fields(
    ev: analysis.Evaluation | None, samples: obs.ArmCounts, at: datetime
) -> dict[str, Any]:
    """``status.samples``, ``status.guardrails`` and ``status.srm`` for people and the CLI."""
    out: dict[str, Any] = {
        "samples": {"champion": samples.champion, "challenger": samples.challenger}
    }
    if ev is None:
        return out
    out["lastAnalysisAt"] = at.isoformat().replace("+00:00", "Z")
    out["guardrails"] = [
        {
            "name": g.name,
            "kind": g.kind.value,
            "verdict": g.verdict.value,
            "reasonCode": g.reason_code.value,
            "reason": g.reason,
            "estimate": _num(g.estimate),
            "lower": _num(g.lower),
            "upper": _num(g.upper),
            "pValue": _num(g.p_value),
            "pValueNonInferiority": _num(g.p_value_noninferiority),
        }
        for g in ev.guardrails
    ]
    out["srm"] = {
        "mismatch": bool(ev.srm.mismatch),
        "pValue": _num(ev.srm.p_value),
        "observedShare": _num(ev.srm.observed_share),
        "expectedShare": _num(ev.srm.expected_share),
    }
    return out


def evidence(
    ev: analysis.Evaluation, steps: Sequence[tuple[StepRecord, datetime, datetime, bool]]
) -> dict[str, Any]:
    """The statistics a decision was based on, for the decision log."""
    fields = status_fields(ev, obs.ArmCounts(), datetime.min)
    return {
        "verdict": ev.verdict.value,
        "reasonCode": ev.reason_code.value,
        "guardrails": fields["guardrails"],
        "srm": fields["srm"],
        "steps": [
            {
                "index": r.index,
                "weight": r.weight,
                "share": r.share,
                "start": s.isoformat(),
                "end": e.isoformat(),
                "closed": c,
            }
            for r, s, e, c in steps
        ],
    }


def quantile_from_hist(hist: np.ndarray, q: float) -> float:
    """Upper edge (ms) of the histogram bucket holding the ``q`` quantile."""
    total = int(hist.sum())
    if total == 0:
        raise ValueError("hist: no latency data")
    index = int(np.searchsorted(np.cumsum(hist), q * total, side="left"))
    edges = analysis.LATENCY_EDGES_MS
    return float(edges[min(index, len(edges) - 1)])


def derived_threshold(hist: np.ndarray, quantile: float, margin: float) -> float:
    """The smallest histogram edge ≥ (1 + margin) × the champion's ``quantile`` latency."""
    target = (1 + margin) * quantile_from_hist(hist, quantile)
    edges = analysis.LATENCY_EDGES_MS
    return float(edges[min(int(np.searchsorted(edges, target, side="left")), len(edges) - 1)])
