"""How the experiment's family-wise alpha is shared among its tests (Bonferroni).

The one statement of the split: ``AnalysisSettings.alpha_each`` uses it at every look, and
the controller records its result in the frozen settings, so every reader shows the alpha
each test was judged at instead of recomputing it. Pure arithmetic; imports nothing
(the CLI reads it without loading numpy or scipy).
"""

from __future__ import annotations

import math


def alpha_each(alpha: float, n_guardrails: int, *, srm_check: bool = True) -> float:
    """Bonferroni share of ``alpha`` for each guardrail and, when it runs, the SRM check.

    Parameters
    ----------
    alpha : float
        Family-wise probability of rolling back a healthy challenger, in (0, 1).
    n_guardrails : int
        Guardrails tested at every look, ≥ 1.
    srm_check : bool
        Whether the sample-ratio check runs (and rolls back) too; a disabled check takes
        no share.
    """
    if not (0.0 < alpha < 1.0 and math.isfinite(alpha)):
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    if n_guardrails < 1:
        raise ValueError(f"n_guardrails must be >= 1, got {n_guardrails}")
    return alpha / (n_guardrails + (1 if srm_check else 0))
