"""Detection benchmark: canaryctl's tests against per-look baselines on the same simulated streams.

Writes its section of bench/RESULTS.md. Run: .venv/bin/python bench/detection.py [--aa 1000 --runs 200
--procs 2]. Traffic: 1,000 requests/min, challenger weight 5 % for 2 h, 25 % for 4 h, then 50 %;
a look every minute for 24 h; diurnal volume and baselines ±30 %. See docs/statistics.md.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats as sps

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import analysis
from analysis import decision, power, simulate, spec, trajectory
from bench._results import write_section

DAY = simulate.MINUTES_PER_DAY
NEVER = math.inf
BASE = simulate.Scenario()
P99 = BASE.champion_p99_ms()
GUARDRAILS = (
    spec.GuardrailSpec("revenue", spec.GuardrailKind.MEAN),
    spec.GuardrailSpec("p99", spec.GuardrailKind.TAIL, threshold_ms=P99),
    spec.GuardrailSpec("errors", spec.GuardrailKind.RATE),
    spec.GuardrailSpec(
        "log_latency", spec.GuardrailKind.MEAN, metric=spec.MeanMetric.LOG_LATENCY, relative=False
    ),
)
SETTINGS = spec.AnalysisSettings(alpha=0.05)
SCENARIOS: dict[str, dict[str, float]] = {
    "A/A": {},
    "revenue -2 %": {"revenue_effect": -0.02},
    "revenue -5 %": {"revenue_effect": -0.05},
    "revenue -10 %": {"revenue_effect": -0.10},
    "latency x1.05": {"latency_factor": 1.05},
    "latency x1.10": {"latency_factor": 1.10},
    "latency x1.20": {"latency_factor": 1.20},
    "errors x1.5": {"error_factor": 1.5},
    "errors x2": {"error_factor": 2.0},
    "SRM -5 %": {"srm_shortfall": 0.05},
}
METHODS = ("canaryctl", "Welch 24 h", "Welch every min", "Kayenta MW 30 min", "Flagger +10 %")


def _welch(n: np.ndarray, s: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided Welch p-value and B − A difference; arrays (..., 2)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        m = s / n
        v = np.maximum(q - s * m, 0.0) / (n - 1)
        se2 = v / n
        diff = m[..., 1] - m[..., 0]
        se = np.sqrt(se2.sum(axis=-1))
        df = se2.sum(axis=-1) ** 2 / (
            se2[..., 0] ** 2 / (n[..., 0] - 1) + se2[..., 1] ** 2 / (n[..., 1] - 1)
        )
        p = 2 * sps.t.sf(np.abs(diff / se), df)
    return np.where(np.isfinite(p), p, 1.0), diff


METRICS = ("revenue", "p99", "errors", "log_latency")


def _metrics(ms: simulate.MinuteStats) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, float]]:
    """(sum, sum_sq, per-minute n, sign) per metric of METRICS; sign −1 when lower is better."""
    ex = ms.exceedances[..., 0].astype(float)
    err = ms.errors.astype(float)
    return [
        (ms.revenue_sum, ms.revenue_sum_sq, ms.n, 1.0),
        (ex, ex, ms.n, -1.0),
        (err, err, ms.n, -1.0),
        (ms.log_latency_sum, ms.log_latency_sum_sq, ms.n, -1.0),
    ]


def _first(mask: np.ndarray) -> float:
    hits = np.flatnonzero(mask)
    return float(hits[0] + 1) if hits.size else NEVER  # minutes elapsed at the look


def baselines(ms: simulate.MinuteStats) -> dict[str, float]:
    """First rollback minute of each baseline method (pooled across steps, as those tools do)."""
    n_cum = np.cumsum(ms.n, axis=0).astype(float)
    burn = n_cum.min(axis=1) >= SETTINGS.burn_in_requests
    out: dict[str, float] = {}
    flag_any = np.zeros(DAY, dtype=bool)
    for metric, (s, q, n, sign) in zip(METRICS, _metrics(ms), strict=True):
        p, diff = _welch(n_cum, np.cumsum(s, axis=0), np.cumsum(q, axis=0))
        bad = (p < 0.05) & (sign * diff < 0)
        out[f"Welch every min:{metric}"] = _first(bad & burn)
        out[f"Welch 24 h:{metric}"] = float(DAY) if bad[-1] else NEVER
        with np.errstate(divide="ignore", invalid="ignore"):
            per_min = s / n
        blocks = per_min.reshape(DAY // 30, 30, 2)
        mw = sps.mannwhitneyu(blocks[..., 1], blocks[..., 0], axis=1, alternative="two-sided")
        worse = sign * (np.nanmean(blocks[..., 1], axis=1) - np.nanmean(blocks[..., 0], axis=1)) < 0
        kay = (np.nan_to_num(mw.pvalue, nan=1.0) < 0.02) & worse
        kay_minutes = np.flatnonzero(kay)
        out[f"Kayenta MW 30 min:{metric}"] = (
            float((kay_minutes[0] + 1) * 30) if kay_minutes.size else NEVER
        )
        win_s = np.cumsum(s, axis=0)
        win_n = np.cumsum(n, axis=0).astype(float)
        win_s[5:] -= win_s[:-5].copy()
        win_n[5:] -= win_n[:-5].copy()
        with np.errstate(divide="ignore", invalid="ignore"):
            val = win_s / win_n
        fail = val[:, 1] < 0.9 * val[:, 0] if sign > 0 else val[:, 1] > 1.1 * val[:, 0]
        fail &= np.arange(DAY) >= 4
        flag_any |= fail
        out[f"Flagger +10 %:{metric}"] = _first(np.cumsum(fail) >= 5)
    out["Flagger +10 %"] = _first(np.cumsum(flag_any) >= 5)
    for method in METHODS[1:]:
        if method.startswith("Flagger"):  # one failed check = any metric failing that minute
            continue
        out[method] = min(out[f"{method}:{m}"] for m in METRICS)
    return out


def one_run(args: tuple[str, int]) -> dict[str, float]:
    """All methods on one seeded stream; values are minutes to the first rollback."""
    name, seed = args
    sc = BASE.with_effect(**SCENARIOS[name])
    ms = simulate.simulate_minutes(sc, seed, thresholds_ms=(P99,))
    rep = trajectory.replay(SETTINGS, GUARDRAILS, ms)
    out = {"canaryctl": rep.first_fail + 1.0 if rep.first_fail >= 0 else NEVER}
    for g, m in rep.first_fail_by.items():
        out[f"canaryctl:{g}"] = m + 1.0 if m >= 0 else NEVER
    out.update(baselines(ms))
    return out


@dataclass(frozen=True)
class Row:
    rate: float
    se: float
    by1: float
    by6: float
    by24: float
    median: float
    p90: float


def summarise(times: np.ndarray) -> Row:
    r = float(np.mean(np.isfinite(times)))
    return Row(
        r,
        math.sqrt(r * (1 - r) / times.size),
        float(np.mean(times <= 60)),
        float(np.mean(times <= 360)),
        float(np.mean(times <= DAY)),
        power.quantile_with_inf(times, 0.5),
        power.quantile_with_inf(times, 0.9),
    )


def _fmt_t(x: float) -> str:
    return "never" if not math.isfinite(x) else f"{x:.0f}"


def capped_effect(nominal: float, draws: np.ndarray) -> float:
    """Relative effect on the capped mean of scaling revenue by 1 + nominal."""
    cap = BASE.cap
    return float(np.minimum(draws * (1 + nominal), cap).mean() / np.minimum(draws, cap).mean() - 1)


def efficiency(runs: int, pool: multiprocessing.pool.Pool) -> list[str]:
    """Median stop / N at 2x and 3x the fixed-horizon MDE, constant 50/50 split, no drift."""
    flat = dict(
        ramp=((0, 0.5),),
        volume_amplitude=0.0,
        revenue_amplitude=0.0,
        latency_amplitude=0.0,
        error_amplitude=0.0,
    )
    rng = np.random.default_rng(7)
    draws = np.exp(BASE.revenue_log_sigma * rng.standard_normal(2_000_000))
    draws = np.where(rng.random(draws.size) < BASE.click_rate, draws, 0.0)
    cap = BASE.cap
    mean, sd = float(np.minimum(draws, cap).mean()), float(np.minimum(draws, cap).std())
    alpha_g = SETTINGS.alpha_each(len(GUARDRAILS))
    n_fixed = 720_000.0 / 2  # challenger requests in 12 h at 500/min
    definitions = [
        (f"one-sided α = {alpha_g:.2f} (canaryctl's per-guardrail share)", 1 - alpha_g),
        ("two-sided α = 0.05 (the usual fixed-horizon test)", 0.975),
    ]
    lines = [
        f"Fixed horizon: N = {n_fixed:,.0f} challenger requests (12 h at 50/50), 80 % power; the",
        "MDE is the capped-revenue effect that test detects at N (sd/mean of capped revenue per",
        f"request = {sd / mean:.2f}). canaryctl (all 4 guardrails + SRM, α/5 each) tuned with",
        f"n_star = 0.3·N = {0.3 * n_fixed:,.0f}; stop = first FAIL of the revenue guardrail.",
        "",
        "| fixed-horizon test | effect (capped mean) | runs | detected by 24 h "
        "| median stop / N | target | met |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, q in definitions:
        z = sps.norm.ppf(q) + sps.norm.ppf(0.8)
        mde = z * sd * math.sqrt(2 / n_fixed) / mean
        for mult, target in ((2, 0.33), (3, 0.18)):
            want = -mult * mde
            lo, hi = want * 3, want
            for _ in range(40):  # nominal scaling whose capped effect is `want`
                mid = 0.5 * (lo + hi)
                lo, hi = (mid, hi) if capped_effect(mid, draws) < want else (lo, mid)
            nominal = 0.5 * (lo + hi)
            res = pool.map(_eff_run, [(nominal, flat, seed) for seed in range(runs)])
            t = np.array(res)
            med = power.quantile_with_inf(t, 0.5) * 500 / n_fixed
            lines.append(
                f"| {label}, MDE {100 * mde:.2f} % | {mult}× MDE = {100 * want:.2f} % "
                f"(nominal {100 * nominal:.2f} %) | {runs} | {np.mean(np.isfinite(t)):.3f} "
                f"| {med:.3f} | ≤ {target} | {'yes' if med <= target else 'NO'} |"
            )
    return lines


def _eff_run(args: tuple[float, dict[str, object], int]) -> float:
    nominal, flat, seed = args
    sc = simulate.Scenario(revenue_effect=nominal, **flat)  # type: ignore[arg-type]
    ms = simulate.simulate_minutes(sc, 50_000 + seed, thresholds_ms=(P99,))
    n_fixed = 360_000.0
    settings = spec.AnalysisSettings(alpha=0.05, n_star=0.3 * n_fixed)
    rep = trajectory.replay(settings, GUARDRAILS, ms)
    m = rep.first_fail_by["revenue"]
    return m + 1.0 if m >= 0 else NEVER


def batch_tick(n_exp: int = 1000) -> list[str]:
    """One analysis tick for n_exp experiments × 4 guardrails: batch vs one by one."""
    sims = [
        simulate.simulate_minutes(BASE, 900 + i, thresholds_ms=(P99,), histograms=True)
        for i in range(5)
    ]
    items = [
        analysis.BatchItem(
            SETTINGS,
            GUARDRAILS,
            sims[i % 5].steps_at(300 + (i % 97)),
            analysis.AnalysisState(),
        )
        for i in range(n_exp)
    ]
    best_b, best_l = math.inf, math.inf
    for _ in range(3):
        t0 = time.perf_counter()
        batch = decision.evaluate_batch(items)
        best_b = min(best_b, time.perf_counter() - t0)
        t0 = time.perf_counter()
        single = [decision.evaluate(it.settings, it.guardrails, it.steps, it.state) for it in items]
        best_l = min(best_l, time.perf_counter() - t0)
    same = all(
        a.verdict == b.verdict and a.guardrails == b.guardrails
        for a, b in zip(batch, single, strict=True)
    )
    return [
        "| path | wall time (best of 3) | per experiment |",
        "|---|---|---|",
        f"| `evaluate_batch` ({n_exp} experiments × 4 guardrails, bounds on) "
        f"| {best_b * 1e3:.0f} ms | {best_b / n_exp * 1e6:.0f} µs |",
        f"| `evaluate` one by one | {best_l * 1e3:.0f} ms | {best_l / n_exp * 1e6:.0f} µs |",
        "",
        f"Speed-up ×{best_l / best_b:.1f}; identical results: {same}.",
    ]


HEADER = """\
Traffic: 1,000 requests/min (diurnal ±30 %), challenger weight 5 % for 2 h, 25 % for 4 h, then
50 %; a look every minute for 24 h. Revenue: click rate 0.08 × lognormal(0, 1), capped at the
champion's pre-period p99.9 ({cap:.2f}), baseline ±30 %. Latency: lognormal median 30 ms, σ 0.35,
0.5 % of requests ×3 slower, baseline ±10 %; tail threshold = champion p99 {p99:.1f} ms snapped up
to a histogram edge. Errors 0.2 % (±30 %). Effects apply to the challenger from minute 0; SRM −5 %
means the challenger receives 95 % of the share the router reports.

canaryctl: 4 guardrails (revenue relative mean, p99 exceedances κ = 1, error rate κ = 1,
log-latency mean), margins 0, plus SRM (Dirichlet k = 10,000); α = 0.05 family-wise, α/5 each;
burn-in 3,000 requests and 200 non-zero revenue events in the smaller arm; stratified by step;
count-test harm mixtures centred on a doubling; n_star = 100,000. Baselines test the same four
metrics, pooled across steps as those tools do, each at its own level, and roll back when any
metric is significantly worse: Welch at 24 h (α 0.05 each), Welch every minute after the same
burn-in (α 0.05 each), Kayenta-style two-sided Mann–Whitney at 98 % on each 30-minute interval's
per-minute values, Flagger-style check each minute of the last 5 minutes against the champion
+10 % (−10 % for revenue), rollback after 5 failed checks. Times are minutes since the start;
'never' when fewer than half (median) or 90 % (p90) of runs rolled back by 24 h."""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--aa", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--eff-runs", type=int, default=200)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--out", default=None, help="also write the section to this file")
    args = ap.parse_args()
    t_start = time.time()
    table = [
        "| scenario | method | runs | rollback rate ± MC se | by 1 h | by 6 h | by 24 h "
        "| median min | p90 min |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    aa_rates: dict[str, Row] = {}
    wrong: list[str] = []
    per_metric = [
        "| method | " + " | ".join(METRICS) + " | any |",
        "|---|" + "---|" * (len(METRICS) + 1),
    ]
    link = {
        "revenue": ["revenue"],
        "latency": ["p99", "log_latency"],
        "errors": ["errors"],
        "SRM": ["srm"],
    }
    with multiprocessing.Pool(args.procs) as pool:
        for name in SCENARIOS:
            runs = args.aa if name == "A/A" else args.runs
            res = pool.map(
                one_run,
                [(name, 10_000 * (i + 1) + seed) for i, seed in enumerate(range(runs))],
                chunksize=8,
            )
            for method in METHODS:
                row = summarise(np.array([r[method] for r in res]))
                if name == "A/A":
                    aa_rates[method] = row
                table.append(
                    f"| {name} | {method} | {runs} | {row.rate:.3f} ± {row.se:.3f} "
                    f"| {row.by1:.2f} | "
                    f"{row.by6:.2f} | {row.by24:.2f} | {_fmt_t(row.median)} | {_fmt_t(row.p90)} |"
                )
            if name == "A/A":
                for method in METHODS:
                    cells = [
                        f"{np.mean(np.isfinite([r[f'{method}:{m}'] for r in res])):.3f}"
                        for m in METRICS
                    ]
                    per_metric.append(
                        f"| {method} | " + " | ".join(cells) + f" | {aa_rates[method].rate:.3f} |"
                    )
            kind = name.split()[0]
            if kind in link:
                others = [g for g in [*(g.name for g in GUARDRAILS), "srm"] if g not in link[kind]]
                t_other = np.array([min(r[f"canaryctl:{g}"] for g in others) for r in res])
                wrong.append(f"| {name} | {np.mean(np.isfinite(t_other)):.3f} |")
            print(name, f"{time.time() - t_start:.0f}s", flush=True)
        eff = efficiency(args.eff_runs, pool)
    tick = batch_tick()
    aa = aa_rates["canaryctl"]
    lines = [
        "# Detection benchmark (bench/detection.py)",
        "",
        f"Generated by `bench/detection.py --aa {args.aa} --runs {args.runs} "
        f"--eff-runs {args.eff_runs}` in {(time.time() - t_start) / 60:.1f} min "
        f"on {args.procs} processes.",
        "",
        *HEADER.format(cap=BASE.cap, p99=P99).splitlines(),
        "",
        *table,
        "",
        "## A/A false rollbacks by metric",
        "",
        "canaryctl at α/5 each; baselines at their own level each.",
        "",
        *per_metric,
        "",
        "## Rollbacks by canaryctl attributed to a guardrail the effect does not touch",
        "",
        "| scenario | share of runs with a FAIL from an unaffected guardrail or SRM |",
        "|---|---|",
        *wrong,
        "",
        "## Targets",
        "",
        f"- A/A false rollbacks of canaryctl: {aa.rate:.3f} ± {aa.se:.3f} (limit α = 0.05): "
        f"{'met' if aa.rate <= 0.05 else 'NOT met'}; upper 2-se bound {aa.rate + 2 * aa.se:.3f}.",
        *[
            f"- {m}: {aa_rates[m].rate:.3f} ± {aa_rates[m].se:.3f} "
            f"({'exceeds α' if aa_rates[m].rate > 0.05 else 'does not exceed α'})"
            for m in METHODS[1:]
        ],
        "",
        "## Efficiency against a fixed-horizon test (constant 50/50, no drift, revenue guardrail)",
        "",
        *eff,
        "",
        "## One analysis tick",
        "",
        *tick,
        "",
    ]
    text = "\n".join(lines)
    write_section("detection", text.replace("# Detection benchmark", "## Detection benchmark", 1))
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    print(text)


if __name__ == "__main__":
    main()
