"""The decision at one look: guardrail verdicts, the SRM check and the experiment's verdict.

Sits between the controller (which reads rollups per traffic step and persists the state)
and ``engine`` (the vectorised statistics). ``evaluate`` handles one experiment and
``evaluate_batch`` many in one call; both lay the steps out as arrays and go through the
same code. Pure: no clock, no I/O, no randomness; the state goes in and comes out. This
module must not pool arms across steps and must not relax the family-wise alpha: the
experiment's alpha is split equally over the guardrails and the SRM check (Bonferroni).

Sources: STATISTICS.md §§1–5; Schultzberg, Ankargren & Frånberg (2024) for the
promote-only-when-every-guardrail-is-non-inferior rule.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from analysis import engine, results, spec, state, stats

FloatArray = npt.NDArray[np.float64]

_ARM_FIELDS = ("n", "rev_sum", "rev_sq", "nonzero", "errors", "ll_sum", "ll_sq")


def _frozen_arm(arm: stats.ArmStats) -> state.FrozenArm:
    return state.FrozenArm(
        arm.n,
        arm.revenue.sum,
        arm.revenue.sum_sq,
        arm.revenue_nonzero,
        arm.errors,
        arm.log_latency.sum,
        arm.log_latency.sum_sq,
    )


def _arm_row(arm: state.FrozenArm) -> tuple[float, ...]:
    return (
        arm.n,
        arm.revenue_sum,
        arm.revenue_sum_sq,
        arm.revenue_nonzero,
        arm.errors,
        arm.log_latency_sum,
        arm.log_latency_sum_sq,
    )


def _check(item: results.BatchItem) -> None:
    names = [g.name for g in item.guardrails]
    if len(set(names)) != len(names):
        raise ValueError("guardrails must have unique names")
    for step in item.state.frozen_steps:
        if set(step.log_e) != set(names):
            raise ValueError("guardrails differ from those the state's frozen steps were tested on")
    if not item.steps:
        raise ValueError("steps must contain at least one traffic step")
    if len(item.steps) < len(item.state.frozen_steps):
        raise ValueError("steps must include every step frozen in state")
    if any(not s.closed for s in item.steps[:-1]):
        raise ValueError("steps: only the last step may be open")


def evaluate(
    settings: spec.AnalysisSettings,
    guardrails: Sequence[spec.GuardrailSpec],
    steps: Sequence[spec.StepWindow],
    previous: state.AnalysisState | None = None,
    *,
    with_bounds: bool = True,
) -> results.Evaluation:
    """Evaluate one experiment at one look.

    Parameters
    ----------
    settings : AnalysisSettings
    guardrails : sequence of GuardrailSpec
    steps : sequence of StepWindow
        Every traffic step since the start, in order, each cumulative since it began; only
        the last may be open. Steps already frozen in ``previous`` are read from the state.
    previous : AnalysisState, optional
        The state returned by the previous look (``None`` at the first look).
    with_bounds : bool
        Compute the confidence bounds (the verdicts do not need them).

    Returns
    -------
    Evaluation
        FAIL as soon as a guardrail shows harm beyond its margin or the split mismatches;
        PASS when every guardrail shows non-inferiority; otherwise CONTINUE.

    Notes
    -----
    Mean tests: half-normal mixture mSPRT on each step's difference (Johari et al. 2022);
    tail and rate: truncated Beta-mixture count e-process (Lindon & Malek 2022); SRM:
    Dirichlet–multinomial Bayes factor. Per-step e-values multiply (STATISTICS.md §5).
    Checked by ``tests/analysis/test_decision.py`` and the A/A simulations.
    """
    item = results.BatchItem(settings, guardrails, steps, previous or state.AnalysisState())
    return evaluate_batch([item], with_bounds=with_bounds)[0]


def evaluate_batch(
    items: Sequence[results.BatchItem], *, with_bounds: bool = True
) -> list[results.Evaluation]:
    """Evaluate many experiments at one look in one vectorised pass (see :func:`evaluate`)."""
    for item in items:
        _check(item)
    n_exp = len(items)
    if n_exp == 0:
        return []
    k_max = max(len(it.steps) for it in items)
    arms = np.zeros((n_exp, k_max, 2, len(_ARM_FIELDS)))
    rho = np.full((n_exp, k_max), 0.5)
    present = np.zeros((n_exp, k_max), dtype=bool)
    frozen_arms: list[list[tuple[state.FrozenArm, state.FrozenArm]]] = []
    for i, it in enumerate(items):
        rows = []
        n_frozen = len(it.state.frozen_steps)
        for j, step in enumerate(it.steps):
            if j < n_frozen:
                fz = it.state.frozen_steps[j]
                pair = (fz.champion, fz.challenger)
                rho[i, j] = fz.weight_challenger
            else:
                pair = (_frozen_arm(step.champion), _frozen_arm(step.challenger))
                rho[i, j] = step.weight_challenger
            rows.append(pair)
            arms[i, j, 0] = _arm_row(pair[0])
            arms[i, j, 1] = _arm_row(pair[1])
            present[i, j] = True
        frozen_arms.append(rows)

    # Rows: one per (experiment, guardrail).
    mean_rows: list[tuple[int, spec.GuardrailSpec]] = []
    count_rows: list[tuple[int, spec.GuardrailSpec]] = []
    for i, it in enumerate(items):
        for g in it.guardrails:
            (mean_rows if g.kind == spec.GuardrailKind.MEAN else count_rows).append((i, g))

    def alpha_of(i: int) -> float:
        return items[i].settings.alpha_each(len(items[i].guardrails))

    by_row: dict[tuple[int, str], tuple[engine.Combined, int]] = {}
    waiting: dict[tuple[int, str], results.Waiting] = {}
    if mean_rows:
        idx = np.array([i for i, _ in mean_rows])
        is_rev = np.array([g.metric == spec.MeanMetric.REVENUE for _, g in mean_rows])
        sel = arms[idx]
        total = np.where(is_rev[:, None, None], sel[..., 1], sel[..., 5])
        total_sq = np.where(is_rev[:, None, None], sel[..., 2], sel[..., 6])
        summ = engine.mean_summaries(
            sel[..., 0],
            total,
            total_sq,
            np.where(is_rev[:, None, None], sel[..., 3], np.inf),
            relative=np.array([g.relative for _, g in mean_rows]),
            min_requests=np.array([_min_requests(items[i].settings, g) for i, g in mean_rows]),
            min_nonzero=np.where(
                is_rev, [float(items[i].settings.burn_in_nonzero) for i in idx], 0.0
            ),
            n_star=np.array([float(items[i].settings.n_star) for i in idx]),
            alpha=np.array([alpha_of(i) for i in idx]),
            null_ratio=np.array([1.0 - g.sign * g.margin for _, g in mean_rows]),
        )
        comb = engine.combine_means(
            summ,
            sign=np.array([g.sign for _, g in mean_rows]),
            margin=np.array([g.margin for _, g in mean_rows]),
            alpha=np.array([alpha_of(i) for i in idx]),
            with_bounds=with_bounds,
        )
        mean_ok = engine.mean_eligible(summ)
        for r, (i, g) in enumerate(mean_rows):
            by_row[(i, g.name)] = (comb, r)
            if not mean_ok[r]:
                waiting[(i, g.name)] = _mean_waiting(
                    items[i].settings, g, arms[i, len(items[i].steps) - 1]
                )
    exceed: dict[tuple[int, str], list[tuple[int, int]]] = {}
    if count_rows:
        events = np.zeros((len(count_rows), k_max, 2))
        for r, (i, g) in enumerate(count_rows):
            it = items[i]
            n_frozen = len(it.state.frozen_steps)
            pairs: list[tuple[int, int]] = []
            for j, step in enumerate(it.steps):
                cpair: tuple[int, int]
                if g.kind == spec.GuardrailKind.RATE:
                    cpair = (frozen_arms[i][j][0].errors, frozen_arms[i][j][1].errors)
                elif j < n_frozen:
                    cpair = it.state.frozen_steps[j].exceedances[g.name]
                else:
                    e = g.edge_index
                    cpair = (step.champion.slower_than(e), step.challenger.slower_than(e))
                events[r, j] = cpair
                pairs.append(cpair)
            exceed[(i, g.name)] = pairs
        idx = np.array([i for i, _ in count_rows])
        comb = engine.combine_counts(
            events,
            arms[idx][..., 0],
            rho[idx],
            present[idx],
            kappa=np.array([g.kappa for _, g in count_rows]),
            alpha=np.array([alpha_of(i) for i in idx]),
            a=np.array([items[i].settings.beta_a for i in idx]),
            b=np.array([items[i].settings.beta_b for i in idx]),
            prior_ratio=np.array([_ratio(items[i].settings) for i in idx], dtype=np.float64),
            with_bounds=with_bounds,
        )
        min_events = np.array([float(items[i].settings.min_events) for i in idx])
        count_ok = engine.count_eligible(events, present[idx], min_events)
        for r, (i, g) in enumerate(count_rows):
            by_row[(i, g.name)] = (comb, r)
            if not count_ok[r]:
                unit = "slow requests" if g.kind == spec.GuardrailKind.TAIL else "errors"
                have = int(events[r, : len(items[i].steps)].sum())
                waiting[(i, g.name)] = results.Waiting(have, items[i].settings.min_events, unit)
    conc = np.array([it.settings.srm_concentration for it in items])[:, None, None]
    srm_steps = np.where(present, engine.srm_step_log_bf(arms[..., 0], rho, conc), 0.0)
    return [
        _assemble(it, i, arms[i], rho[i], srm_steps[i], by_row, exceed, waiting)
        for i, it in enumerate(items)
    ]


def _min_requests(settings: spec.AnalysisSettings, g: spec.GuardrailSpec) -> float:
    """Requests a mean guardrail's step needs in its smaller arm before it counts."""
    if g.metric == spec.MeanMetric.REVENUE:
        return float(settings.burn_in_requests)
    return float(settings.mean_min_requests)


def _mean_waiting(
    settings: spec.AnalysisSettings, g: spec.GuardrailSpec, last: FloatArray
) -> results.Waiting:
    """What a mean guardrail's current step still lacks: the unmet minimum furthest from done.

    ``last`` holds the current step's arm rows (2, fields).
    """
    need = [(int(last[:, 0].min()), max(int(_min_requests(settings, g)), 2), "requests")]
    if g.metric == spec.MeanMetric.REVENUE:
        need.append((int(last[:, 3].min()), settings.burn_in_nonzero, "revenue events"))
    unmet = [w for w in need if w[0] < w[1]] or need[-1:]
    have, want, unit = min(unmet, key=lambda w: w[0] / w[1] if w[1] else 1.0)
    return results.Waiting(have, want, unit)


def _ratio(settings: spec.AnalysisSettings) -> float:
    r = settings.count_prior_ratio
    return math.inf if r is None else r


def _fmt(x: float, relative: bool) -> str:
    if not math.isfinite(x):
        return str(x)
    x = x + 0.0  # no negative zero in reasons
    return f"{100 * x:+.2f} %" if relative else f"{x:+.4g}"


def _fmt_ratio(x: float) -> str:
    return f"×{x:.3g}" if math.isfinite(x) else str(x)


def _assemble(
    it: results.BatchItem,
    i: int,
    arms: FloatArray,
    rho: FloatArray,
    srm_steps: FloatArray,
    by_row: dict[tuple[int, str], tuple[engine.Combined, int]],
    exceed: dict[tuple[int, str], list[tuple[int, int]]],
    waiting: dict[tuple[int, str], results.Waiting],
) -> results.Evaluation:
    st, settings = it.state, it.settings
    k = len(it.steps)
    alpha_g = settings.alpha_each(len(it.guardrails))
    big_l = engine.log_threshold(alpha_g)
    n_arm = arms[:k, :, 0].sum(axis=0)
    srm_ok = bool(
        engine.srm_eligible(
            arms[None, :k, :, 0], np.ones((1, k), dtype=bool), np.array([settings.srm_min_requests])
        )[0]
    )
    srm_wait = (
        None if srm_ok else results.Waiting(int(n_arm.min()), settings.srm_min_requests, "requests")
    )
    log_bf = float(srm_steps[:k].sum())
    srm_p = min(st.srm_p, math.exp(-log_bf) if log_bf > -700 else 1.0) if srm_ok else st.srm_p
    srm_fired = settings.srm_check and srm_ok and log_bf >= big_l
    expected = float((rho[:k] * arms[:k, :, 0].sum(axis=1)).sum() / max(n_arm.sum(), 1.0))
    observed = float(n_arm[1] / n_arm.sum()) if n_arm.sum() > 0 else math.nan
    srm_alpha = alpha_g if settings.srm_check else 0.0
    srm_status = results.SrmStatus(
        srm_fired, srm_p, log_bf, observed, expected, srm_alpha, srm_wait
    )

    out: list[results.GuardrailResult] = []
    running: dict[str, state.RunningP] = {}
    for g in it.guardrails:
        comb, r = by_row[(i, g.name)]
        wait = waiting.get((i, g.name))
        harm, noninf = float(comb.log_e_harm[r]), float(comb.log_e_noninf[r])
        prev = st.running_p.get(g.name, state.RunningP())
        if wait is None:
            prev = state.RunningP(
                min(prev.harm, math.exp(-harm) if harm > -700 else 1.0),
                min(prev.noninferiority, math.exp(-noninf) if noninf > -700 else 1.0),
            )
        running[g.name] = prev
        rel = g.kind == spec.GuardrailKind.MEAN and g.relative
        est, lo, hi = float(comb.estimate[r]), float(comb.lower[r]), float(comb.upper[r])
        geometric = g.metric == spec.MeanMetric.LOG_LATENCY and not g.relative
        if geometric:  # a difference of mean logs: shown as the geometric-mean ratio
            r_est, r_lo, r_hi = (_fmt_ratio(math.exp(x)) for x in (est, lo, hi))
            shown = f"geometric-mean ratio {r_est}, bounds [{r_lo}, {r_hi}]"
        elif g.kind == spec.GuardrailKind.MEAN:
            shown = f"estimate {_fmt(est, rel)}, bounds [{_fmt(lo, rel)}, {_fmt(hi, rel)}]"
        else:
            shown = f"ratio {_fmt_ratio(est)}, bounds [{_fmt_ratio(lo)}, {_fmt_ratio(hi)}]"
        if geometric:
            limit = f"a geometric-mean ratio of {_fmt_ratio(math.exp(-g.sign * g.margin))}"
        elif g.kind == spec.GuardrailKind.MEAN:
            limit = f"the margin {_fmt(-g.sign * g.margin, rel)}"
        else:
            limit = f"κ = {g.kappa:g} times the champion's rate"
        if srm_fired:
            verdict, code = spec.Verdict.CONTINUE, spec.ReasonCode.VOID_SRM
            text = "void: the traffic split does not match the reported split"
        elif wait is not None:
            verdict, code, text = spec.Verdict.CONTINUE, spec.ReasonCode.BURN_IN, wait.describe()
        elif harm >= big_l and bool(comb.harmful[r]):
            verdict, code = spec.Verdict.FAIL, spec.ReasonCode.HARM
            text = f"challenger worse than {limit} ({shown}, ln E = {harm:.2f} ≥ {big_l:.2f})"
        elif noninf >= big_l and bool(comb.safe[r]):
            verdict, code = spec.Verdict.PASS, spec.ReasonCode.NON_INFERIOR
            text = f"challenger within {limit} ({shown})"
        else:
            verdict, code = spec.Verdict.CONTINUE, spec.ReasonCode.INCONCLUSIVE
            text = f"not yet conclusive against {limit} ({shown})"
        out.append(
            results.GuardrailResult(
                g.name,
                g.kind,
                verdict,
                code,
                f"{g.name}: {text}",
                est,
                lo,
                hi,
                prev.harm,
                harm,
                prev.noninferiority,
                noninf,
                alpha_g,
                wait,
            )
        )

    all_eligible = srm_ok and all(r.eligible for r in out)
    fails = [r for r in out if r.verdict == spec.Verdict.FAIL]
    if srm_fired:
        verdict, code = spec.Verdict.FAIL, spec.ReasonCode.SRM
        reason = (
            f"sample-ratio mismatch: challenger got {100 * observed:.2f} % of requests, "
            f"the router reported {100 * expected:.2f} % (ln BF = {log_bf:.2f}); results void"
        )
        design = [
            (j, s.design_weight_challenger, s.weight_challenger)
            for j, s in enumerate(it.steps)
            if s.design_weight_challenger is not None
            and abs(s.design_weight_challenger - s.weight_challenger) > 1e-9
        ]
        if design:
            j, want, got = design[-1]
            reason += f"; step {j}: design {100 * want:.2f} % but router reported {100 * got:.2f} %"
    elif fails:
        verdict, code = spec.Verdict.FAIL, spec.ReasonCode.HARM
        reason = "; ".join(r.reason for r in fails)
    elif out and all_eligible and all(r.verdict == spec.Verdict.PASS for r in out):
        verdict, code, reason = (
            spec.Verdict.PASS,
            spec.ReasonCode.ALL_PASS,
            ("every guardrail shows non-inferiority"),
        )
    elif not all_eligible:
        waits = [r.reason for r in out if not r.eligible]
        if srm_wait is not None:
            waits.append(f"srm: {srm_wait.describe()}")
        verdict, code = spec.Verdict.CONTINUE, spec.ReasonCode.BURN_IN
        reason = "; ".join(waits)
    else:
        verdict, code, reason = (
            spec.Verdict.CONTINUE,
            spec.ReasonCode.INCONCLUSIVE,
            ("no guardrail shows harm yet and not all show non-inferiority"),
        )

    frozen = list(st.frozen_steps)
    for j in range(len(frozen), k):
        step = it.steps[j]
        if not step.closed:
            break
        log_e: dict[str, tuple[float, float]] = {}
        for g in it.guardrails:
            comb, r = by_row[(i, g.name)]
            log_e[g.name] = (float(comb.step_log_e_harm[r, j]), float(comb.step_log_e_noninf[r, j]))
        frozen.append(
            state.FrozenStep(
                step.weight_challenger,
                _frozen_arm(step.champion),
                _frozen_arm(step.challenger),
                {
                    g.name: exceed[(i, g.name)][j]
                    for g in it.guardrails
                    if g.kind == spec.GuardrailKind.TAIL
                },
                log_e,
                float(srm_steps[j]),
            )
        )
    new_state = state.AnalysisState(st.looks + 1, tuple(frozen), running, srm_p)
    return results.Evaluation(
        verdict, code, reason, all_eligible, tuple(out), srm_status, new_state
    )
