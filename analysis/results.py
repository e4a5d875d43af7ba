"""Results of a look: per-guardrail results, the SRM status, the evaluation, batch items.

Sits between ``decision`` (which builds them) and the controller, the reports and notebooks
(which read them). Values only: this module must not compute anything.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from analysis import spec, state


@dataclass(frozen=True)
class Waiting:
    """What a test still waits for before it may decide (its eligibility).

    ``have`` of ``need`` ``unit`` (e.g. 140 of 200 "revenue events"), counted as its rule
    says: a mean test in the current step's smaller arm; a count test over both arms and
    every step; the SRM check in the smaller arm over every step.
    """

    have: int
    need: int
    unit: str

    def describe(self) -> str:
        """``waiting for data: 140 of 200 revenue events``."""
        return f"waiting for data: {self.have} of {self.need} {self.unit}"


@dataclass(frozen=True)
class GuardrailResult:
    """One guardrail at one look.

    Attributes
    ----------
    name, kind : str, GuardrailKind
    verdict : Verdict
    reason_code : ReasonCode
    reason : str
        One sentence for people.
    estimate, lower, upper : float
        Stratified across steps. ``mean``: the difference B − A (a fraction when
        relative); ``tail``/``rate``: the ratio p_B/p_A. Bounds are the anytime-valid
        bounds dual to the two one-sided tests at ``alpha`` each (±inf before burn-in).
    p_value, log_e_value : float
        Harm test (challenger worse than the margin): running-minimum always-valid p-value
        and current ln E (product over steps).
    p_value_noninferiority, log_e_value_noninferiority : float
        The same for non-inferiority (challenger within the margin).
    alpha : float
        This guardrail's share of the experiment's alpha.
    waiting : Waiting, optional
        Set while the guardrail is not yet eligible (its own data do not suffice); it
        then neither fails nor passes.
    """

    name: str
    kind: spec.GuardrailKind
    verdict: spec.Verdict
    reason_code: spec.ReasonCode
    reason: str
    estimate: float
    lower: float
    upper: float
    p_value: float
    log_e_value: float
    p_value_noninferiority: float
    log_e_value_noninferiority: float
    alpha: float
    waiting: Waiting | None = None

    @property
    def eligible(self) -> bool:
        """True once the guardrail's own data suffice for it to decide."""
        return self.waiting is None

    @property
    def e_value(self) -> float:
        """E of the harm test (may be ``inf`` for overwhelming evidence)."""
        return math.exp(min(self.log_e_value, 709.0))


@dataclass(frozen=True)
class SrmStatus:
    """The sample-ratio check at one look, against the shares the router reported.

    ``alpha`` is the check's share of the family-wise alpha: 0 when the check is off
    (``AnalysisSettings.srm_check``), and ``mismatch`` is then always False. ``waiting``
    is set until the smaller arm has ``AnalysisSettings.srm_min_requests`` requests.
    """

    mismatch: bool
    p_value: float
    log_bayes_factor: float
    observed_share: float
    expected_share: float
    alpha: float
    waiting: Waiting | None = None

    @property
    def eligible(self) -> bool:
        """True once the check may decide."""
        return self.waiting is None


@dataclass(frozen=True)
class Evaluation:
    """An experiment at one look; ``state`` is what to persist and pass to the next look.

    ``burn_in_met`` is True when every guardrail and the SRM check are eligible (what a
    PASS needs); a FAIL needs only the failing test's own eligibility.
    """

    verdict: spec.Verdict
    reason_code: spec.ReasonCode
    reason: str
    burn_in_met: bool
    guardrails: tuple[GuardrailResult, ...]
    srm: SrmStatus
    state: state.AnalysisState


@dataclass(frozen=True)
class BatchItem:
    """One experiment of :func:`evaluate_batch`."""

    settings: spec.AnalysisSettings
    guardrails: Sequence[spec.GuardrailSpec]
    steps: Sequence[spec.StepWindow]
    state: state.AnalysisState
