"""The numbers of a report, reproducible: the engine's input at the last look, and a snippet.

Sits after ``view``: :func:`inputs` gathers what the engine saw at the experiment's last look
(the per-step per-arm sufficient statistics of the look's step windows, the analysis
settings and guardrail specs as frozen, and the previous look's recorded always-valid
p-values, since the p-value shown is a running minimum over looks) as JSON-ready data;
:data:`SNIPPET` is a short Python program that recomputes the last look's estimates, bounds
and p-values from that data through the public ``analysis`` API. The HTML report embeds
both, the notebook returns both, and a test runs the snippet against the recorded values.
Pure: no queries; it runs no test itself.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from controller.experiment import frozen
from controller.operate import evaluate
from controller.reports import view as v

#: Recomputes the last look from ``DATA`` (the JSON of :func:`inputs`); prints one line a guardrail.
SNIPPET = """\
import json
import math

import analysis
from analysis.state import AnalysisState, RunningP

data = json.loads(DATA)  # the JSON block "canaryctl-inputs" of the report, or Report.inputs


def arm(d):
    hist = [0] * analysis.N_LATENCY_BUCKETS
    for bucket, count in d["latency_hist"].items():
        hist[int(bucket)] = count
    return analysis.ArmStats(
        n=d["n"],
        revenue=analysis.SufficientStats(d["n"], d["revenue_sum"], d["revenue_sum_sq"]),
        revenue_nonzero=d["revenue_nonzero"],
        errors=d["errors"],
        latency_hist=hist,
        log_latency=analysis.SufficientStats(d["n"], d["log_latency_sum"], d["log_latency_sum_sq"]),
    )


steps = [
    analysis.StepWindow(
        s["share"], arm(s["champion"]), arm(s["challenger"]),
        design_weight_challenger=s["weight"] / 100, closed=s["closed"],
    )
    for s in data["steps"]
]
# An always-valid p-value is the running minimum over looks: start from the previous look's.
previous = AnalysisState(
    running_p={name: RunningP(*p) for name, p in data["previous_p"].items()},
    srm_p=data["previous_srm_p"],
)
ev = analysis.evaluate(
    analysis.AnalysisSettings(**data["settings"]),
    [analysis.GuardrailSpec(**g) for g in data["guardrails"]],
    steps,
    previous,
)
# A latency guardrail is tested on mean log latency: exp(x) - 1 is the recorded relative change.
log_scale = {g["name"] for g in data["guardrails"] if g["metric"] == "log_latency"}
for g in ev.guardrails:
    f = math.expm1 if g.name in log_scale else float
    print(g.name, g.verdict.value, f(g.estimate), f(g.lower), f(g.upper), g.p_value, g.p_value_noninferiority)
print("srm", ev.srm.p_value)
"""


def inputs(report: v.ReportView) -> dict[str, Any] | None:
    """The engine's input at the last look as JSON-ready data (``None`` before any look)."""
    if not report.step_samples or not report.settings.snapshot:
        return None
    fs = frozen.from_json(
        dict(report.settings.snapshot), frozen_at=report.settings.frozen_at or report.created_at
    )
    settings = dataclasses.asdict(evaluate.settings_for(fs))
    guardrails = [
        {k: (x.value if hasattr(x, "value") else x) for k, x in dataclasses.asdict(g).items()}
        for g in evaluate.guardrails_for(fs)
    ]

    def before_last(points: tuple[v.GuardrailPoint, ...]) -> list[float]:
        p = points[-2] if len(points) > 1 else None
        return [
            1.0 if p is None or p.p_value is None else p.p_value,
            1.0 if p is None or p.p_value_noninferiority is None else p.p_value_noninferiority,
        ]

    looks = report.looks
    prev_srm = looks[-2].srm.p_value if len(looks) > 1 else None
    return {
        "evaluated_until": looks[-1].evaluated_until.isoformat() if looks else None,
        "settings": settings,
        "guardrails": guardrails,
        "steps": [
            {
                "index": s.index,
                "weight": s.weight,
                "share": s.share,
                "start": s.start.isoformat(),
                "end": s.end.isoformat(),
                "closed": s.closed,
                "champion": _arm(s.champion),
                "challenger": _arm(s.challenger),
            }
            for s in report.step_samples
        ],
        "previous_p": {name: before_last(points) for name, points in report.series.items()},
        "previous_srm_p": 1.0 if prev_srm is None else prev_srm,
    }


def _arm(a: Any) -> dict[str, Any]:
    out = dataclasses.asdict(a)
    out["latency_hist"] = {str(k): c for k, c in a.latency_hist.items()}
    return out


def program(report: v.ReportView) -> str | None:
    """The snippet with the data inlined: a whole program that runs as it is."""
    data = inputs(report)
    if data is None:
        return None
    return f"DATA = {json.dumps(json.dumps(data))}\n" + SNIPPET
