"""spec.analysis.onInconclusive: rollback by default, opt-in promotion as ``no_harm_found``."""

from __future__ import annotations

from datetime import timedelta

import pytest
from test_reconcile import NOW, T0, make_spec, observed

from controller.decide import actions as p
from controller.decide import observed as obs
from controller.decide import reconcile
from controller.experiment import defaults, spec, validation
from controller.experiment import frozen as frozen_settings

PROMOTE = make_spec(analysis_onInconclusive="promote")
PROMOTE_FROZEN = frozen_settings.freeze(PROMOTE, T0)
LATE = NOW - timedelta(hours=3)  # started 3 h ago: maxDuration reached
LAST = 2


def _verdicts(*, fail: str | None = None, burn_in: bool = True) -> obs.Verdicts:
    rows = (
        ("revenue", obs.Verdict.CONTINUE, -0.031, -0.02, "relative"),
        ("latency", obs.Verdict.PASS, 1.12, 1.2, "ratio"),
        ("errors", obs.Verdict.CONTINUE, 1.8, 1.5, "ratio"),
    )
    guardrails = tuple(
        obs.GuardrailVerdict(
            name,
            obs.Verdict.FAIL if name == fail else verdict,
            "harm" if name == fail else "inconclusive",
            "",
            harm_bound=bound,
            margin_line=line,
            scale=scale,
        )
        for name, verdict, bound, line, scale in rows
    )
    overall = obs.Verdict.FAIL if fail else obs.Verdict.CONTINUE
    return obs.Verdicts(overall, guardrails, burn_in_met=burn_in)


def _end(plan: p.Plan) -> tuple[p.SetPhase, p.RecordDecision]:
    phase = next(a for a in plan.actions if isinstance(a, p.SetPhase))
    record = next(a for a in plan.actions if isinstance(a, p.RecordDecision))
    return phase, record


def test_opted_in_maxduration_without_failure_promotes_as_no_harm_found() -> None:
    seen = observed(step=LAST, started=LATE, frozen=PROMOTE_FROZEN)
    plan = reconcile.reconcile(PROMOTE, seen, _verdicts(), NOW)
    phase, record = _end(plan)
    assert (phase.phase, phase.reason_code) == (obs.Phase.PROMOTED, "no_harm_found")
    assert any(isinstance(a, p.PromoteRoute) for a in plan.actions)
    assert "non-inferiority NOT shown" in phase.message
    assert "revenue: harm up to -3.10 % not excluded (margin -2.00 %)" in phase.message
    assert "errors: harm up to ×1.8 not excluded (margin ×1.5)" in phase.message
    assert "latency:" not in phase.message  # it passed: nothing left open
    assert record.kind is p.DecisionKind.PROMOTE and record.reason_code == "no_harm_found"
    bounds = {b["name"]: b for b in record.evidence["noHarmFound"]}
    assert bounds["revenue"]["largestHarmNotExcluded"] == -0.031
    assert bounds["errors"]["marginLine"] == 1.5
    assert bounds["latency"]["verdict"] == "pass"


@pytest.mark.parametrize(
    ("spec_", "frozen", "step", "verdicts", "code"),
    [
        (make_spec(), None, LAST, _verdicts(), "inconclusive"),  # the default
        (PROMOTE, PROMOTE_FROZEN, 0, _verdicts(), "inconclusive"),  # steps not done
        (PROMOTE, PROMOTE_FROZEN, LAST, _verdicts(burn_in=False), "inconclusive"),
        (PROMOTE, PROMOTE_FROZEN, LAST, None, "inconclusive"),  # no analysis
        (PROMOTE, PROMOTE_FROZEN, LAST, _verdicts(fail="errors"), "guardrail_failed:errors"),
    ],
)
def test_otherwise_maxduration_still_rolls_back(
    spec_: spec.ExperimentSpec,
    frozen: frozen_settings.FrozenSettings | None,
    step: int,
    verdicts: obs.Verdicts | None,
    code: str,
) -> None:
    kw = {} if frozen is None else {"frozen": frozen}
    plan = reconcile.reconcile(spec_, observed(step=step, started=LATE, **kw), verdicts, NOW)
    phase, _ = _end(plan)
    assert (phase.phase, phase.reason_code) == (obs.Phase.ROLLED_BACK, code)


def test_the_policy_is_frozen_and_older_records_read_as_rollback() -> None:
    doc = frozen_settings.to_json(PROMOTE_FROZEN)
    assert doc["analysis"]["onInconclusive"] == "promote"
    back = frozen_settings.from_json(doc, frozen_at=T0)
    assert back.analysis.on_inconclusive is spec.InconclusivePolicy.PROMOTE
    default = frozen_settings.to_json(frozen_settings.freeze(make_spec(), T0))
    assert "onInconclusive" not in default["analysis"]  # digests of older records unchanged
    read = frozen_settings.from_json(default, frozen_at=T0)
    assert read.analysis.on_inconclusive is defaults.ON_INCONCLUSIVE
    assert defaults.ON_INCONCLUSIVE is spec.InconclusivePolicy.ROLLBACK
    assert PROMOTE_FROZEN.digest != frozen_settings.freeze(make_spec(), T0).digest


def test_an_unknown_policy_is_refused_naming_the_field() -> None:
    with pytest.raises(validation.SpecError, match="onInconclusive"):
        make_spec(analysis_onInconclusive="ship-it")
