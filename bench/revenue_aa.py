"""Revenue guardrail alone: A/A false FAILs at its share, and detection of drops, many streams.

The focused check behind docs/statistics.md, "Revenue at small n": the revenue mean test at
its share α/4 = 1.25 % (α = 0.05 over three guardrails and the SRM check), on the issue's ramp
(1,000 requests/min, 5 % for 2 h, 25 % for 4 h, then 50 %, a look every minute for 24 h; cap
at the champion's p99.9), streams from ``bench/_fastsim.py``. Prints its table (it writes no
section of RESULTS.md; bench/detection.py does the full benchmark).
Run: .venv/bin/python bench/revenue_aa.py [--aa 4000 --runs 300 --procs 2]
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from analysis import power, simulate, spec, trajectory
from bench import _fastsim

GUARD = (spec.GuardrailSpec("revenue", spec.GuardrailKind.MEAN),)
SETTINGS = spec.AnalysisSettings(alpha=0.025)  # one guardrail + SRM: α/2 = 1.25 %


def first_fail(args: tuple[float, float, int]) -> float:
    sigma, effect, seed = args
    sc = simulate.Scenario(revenue_log_sigma=sigma, revenue_effect=effect)
    m = trajectory.replay(SETTINGS, GUARD, _fastsim.simulate_minutes(sc, 77_000 + seed))
    return m.first_fail_by["revenue"] + 1.0 if m.first_fail_by["revenue"] >= 0 else math.inf


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--aa", type=int, default=4000)
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--procs", type=int, default=2)
    args = ap.parse_args()
    share = SETTINGS.alpha_each(1)
    print("| revenue σ | effect | streams | FAILs ± MC se | median min | p90 min |")
    print("|---|---|---|---|---|---|")
    with multiprocessing.Pool(args.procs) as pool:
        for sigma, effect, n in ((1.0, 0.0, args.aa), (1.5, 0.0, args.aa), (1.0, -0.10, args.runs),
                                 (1.0, -0.05, args.runs)):  # fmt: skip
            t = np.array(pool.map(first_fail, [(sigma, effect, s) for s in range(n)], 50))
            r = float(np.mean(np.isfinite(t)))
            print(
                f"| {sigma} | {effect:+.0%} | {n} | {r:.4f} ± {math.sqrt(r * (1 - r) / n):.4f} "
                f"| {power.quantile_with_inf(t, 0.5):.0f} | {power.quantile_with_inf(t, 0.9):.0f} |"
            )
    print(
        f"share α_g = {share}; limit α_g + 2 se = {share + 2 * math.sqrt(share * (1 - share) / args.aa):.4f}"
    )


if __name__ == "__main__":
    main()
