"""Promotion benchmark: how often and when a healthy challenger is promoted, against the forecast.

Writes its section of bench/RESULTS.md. Run: nice .venv/bin/python bench/promotion.py [--runs
300 --runs-high 10 --procs 2]. The harness of issue 11: a 60-minute champion pre-period (the
revenue cap is its p99.9, the tail threshold its p99 × 1.1, as ``thresholdFromBaseline`` would
set), then the challenger at 5 % for 2 h, 25 % for 4 h, then 50 %; a look every minute; 24 h;
diurnal volume and baselines ±30 %; zero-inflated lognormal revenue (σ 1.0). The guardrails of
``manifests/examples/gateway-api.yaml``: revenue (margin 2 %), latency-p99 (tail, κ 1.2),
errors (κ 1.5), latency-mean (geometric-mean latency, 5 % slower), alpha 0.05 over the four and
the SRM check; also with the revenue margin at 5 % (about what the forecast proposes at 1,000
requests/min) and with every margin 0.

Measured side: an independent request-level simulation (``analysis.simulate``: every request
drawn, aggregated per minute; simulated in hour-long chunks above 5 M requests a day) run
through the decision rule minute by minute (``analysis.trajectory.replay``); promotion is the
first minute after the steps with PASS and no FAIL before it. Forecast side: what the product
computes (``analysis.forecast.forecast``, 200 paths, a look every minute) fed what ``canaryctl
start`` and the operator read from Postgres (``rollups.champion_day_totals``): the champion's
traffic and moments hour by hour over an earlier day at the same clock hours (another
simulated champion-only day; above 4,000 requests/min its moments are measured on 4,000/min
and its volume scaled). Beside it, the forecast at that day's mean rate held constant (what
the product fed it before).
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from analysis import forecast as fc
from analysis import simulate, spec, trajectory
from bench._results import table, write_section
from controller.operate import evaluate

DAY = simulate.MINUTES_PER_DAY
STEPS_END = 360
RAMP = ((0, 0.05), (120, 0.25), (STEPS_END, 0.5))
FORECAST_RAMP = [fc.RampStep(0.05, 120), fc.RampStep(0.25, 240), fc.RampStep(0.5, 0)]
SETTINGS = spec.AnalysisSettings(alpha=0.05)  # burn-in 3,000 / 200 as in the example manifest
#: Revenue margin, tail κ, errors κ, latency-mean margin (a relative slow-down).
MARGINS = {
    "example": (0.02, 1.2, 1.5, 0.05),
    "revenue 5 %": (0.05, 1.2, 1.5, 0.05),
    "0": (0.0, 1.0, 1.0, 0.0),
}
CHUNK = 60
#: Above this rate the earlier day's moments are measured at this rate, its volume scaled.
SAMPLE_RATE = 4000.0


def guardrails(
    margins: tuple[float, float, float, float], threshold_ms: float
) -> list[spec.GuardrailSpec]:
    revenue, tail, errors, latency = margins
    return [
        spec.GuardrailSpec("revenue", spec.GuardrailKind.MEAN, margin=revenue),
        spec.GuardrailSpec(
            "latency-p99", spec.GuardrailKind.TAIL, kappa=tail, threshold_ms=threshold_ms
        ),
        spec.GuardrailSpec("errors", spec.GuardrailKind.RATE, kappa=errors),
        evaluate.latency_spec("latency-mean", latency),  # as the operator maps kind: latency
    ]


def pre_period(rate: float, seed: int, phase: float = 0.0) -> tuple[float, float, fc.Traffic]:
    """Cap, tail threshold and the day's mean traffic from 60 champion-only minutes."""
    sc = simulate.Scenario(
        minutes=60, requests_per_minute=rate, ramp=((0, 1e-9),), phase_minutes=phase - 60.0
    )
    rows = simulate.simulate_requests(sc, 10_000 + seed)
    cap = float(np.quantile(rows.revenue, 0.999))
    threshold = float(np.quantile(rows.latency_ms, 0.99)) * 1.1
    capped = np.minimum(rows.revenue, cap)
    edge = spec.GuardrailSpec("t", spec.GuardrailKind.TAIL, threshold_ms=threshold)
    log_lat = np.log(rows.latency_ms)
    # The forecast is diurnal-free: feed it the day's mean rate, not the pre-period's hour
    # (the volume curve is known here; the operator re-forecasts at each step instead).
    day_mean = rows.arm.size / 60 / float(np.mean(sc.curve_at(sc.volume_amplitude, np.arange(60))))
    traffic = fc.Traffic(
        requests_per_minute=day_mean,
        revenue_mean=float(capped.mean()),
        revenue_sd=float(capped.std()),
        revenue_nonzero=float(np.mean(rows.revenue > 0)),
        error_rate=float(np.mean(rows.error)),
        tail_share=float(np.mean(rows.latency_ms >= edge.threshold_edge_ms)),
        log_latency_mean=float(log_lat.mean()),
        log_latency_sd=float(log_lat.std()),
    )
    return cap, threshold, traffic


def earlier_day(rate: float, cap: float, threshold: float, phase: float, seed: int) -> fc.Schedule:
    """The champion's traffic hour by hour on an earlier day, from the run's clock hour on.

    What ``rollups.champion_day_totals`` reads and ``forecasting.day_schedule`` turns into a
    ``Schedule``: requests per minute and the champion's moments (revenue capped at the
    run's cap) of each hour, here of a simulated champion-only day a day before the run.
    """
    sample = min(rate, SAMPLE_RATE)
    sc = simulate.Scenario(
        minutes=DAY, requests_per_minute=sample, ramp=((0, 1e-9),), phase_minutes=phase - DAY
    )
    rows = simulate.simulate_requests(sc, 20_000 + seed)
    edge = spec.GuardrailSpec("t", spec.GuardrailKind.TAIL, threshold_ms=threshold)
    hour = (rows.ts_offset_s // 3600).astype(np.int64)
    periods = []
    for h in range(24):
        m = hour == h
        capped = np.minimum(rows.revenue[m], cap)
        log_lat = np.log(rows.latency_ms[m])
        periods.append(
            fc.Traffic(
                requests_per_minute=float(m.sum()) / 60 * rate / sample,
                revenue_mean=float(capped.mean()),
                revenue_sd=float(capped.std()),
                revenue_nonzero=float(np.mean(rows.revenue[m] > 0)),
                error_rate=float(np.mean(rows.error[m])),
                tail_share=float(np.mean(rows.latency_ms[m] >= edge.threshold_edge_ms)),
                log_latency_mean=float(log_lat.mean()),
                log_latency_sd=float(log_lat.std()),
            )
        )
    return fc.Schedule(tuple(periods))


def _chunk(sc: simulate.Scenario, start: int, seed: int, threshold: float) -> simulate.MinuteStats:
    """Minutes [start, start + CHUNK) of ``sc``: its own draws, the day's curves and ramp."""
    local = [(0, float(sc.weights()[start]))] + [
        (m - start, w) for m, w in RAMP if start < m < start + CHUNK
    ]
    part = replace(sc, minutes=CHUNK, phase_minutes=sc.phase_minutes + start, ramp=tuple(local))
    return simulate.simulate_minutes(part, seed, thresholds_ms=(threshold,))


def _join(parts: list[simulate.MinuteStats], sc: simulate.Scenario) -> simulate.MinuteStats:
    t = sum(p.n.shape[0] for p in parts)
    fields = (
        "n",
        "revenue_sum",
        "revenue_sum_sq",
        "revenue_nonzero",
        "revenue_uncapped_sum",
        "errors",
        "log_latency_sum",
        "log_latency_sum_sq",
        "exceedances",
    )
    return simulate.MinuteStats(
        **{f: np.concatenate([getattr(p, f) for p in parts]) for f in fields},
        weight=sc.weights()[:t],
        step=sc.step_index()[:t],
        thresholds_ms=parts[0].thresholds_ms,
    )


#: The diurnal curves switched off (``--no-diurnal`` rows): the traffic the forecast assumes.
FLAT = {
    "volume_amplitude": 0.0,
    "revenue_amplitude": 0.0,
    "latency_amplitude": 0.0,
    "error_amplitude": 0.0,
}


def measured(args: tuple[float, str, int, bool, float]) -> tuple[float, float]:
    """One request-level day: (promotion minute, first FAIL minute), ``inf`` for never.

    ``args``: rate, margins, seed, whether the day has no diurnal curves, and the phase of
    the diurnal curves at the run's start (minutes).
    """
    rate, margins, seed, flat, phase = args
    cap, threshold, _ = pre_period(rate, seed, phase)
    sc = simulate.Scenario(
        requests_per_minute=rate, ramp=RAMP, revenue_cap=cap, phase_minutes=phase
    )
    if flat:
        sc = replace(sc, **FLAT)
    g = guardrails(MARGINS[margins], threshold)
    if rate * DAY <= 5e6:  # small enough to draw the whole day at once, replayed once
        r = trajectory.replay(
            SETTINGS, g, simulate.simulate_minutes(sc, seed, thresholds_ms=(threshold,))
        )
        return _promotion(r, DAY)
    parts: list[simulate.MinuteStats] = []
    for start in range(0, DAY, CHUNK):
        parts.append(_chunk(sc, start, seed * 100 + start // CHUNK, threshold))
        end = start + CHUNK
        if end < STEPS_END + CHUNK and end < DAY:
            continue
        promoted, fail = _promotion(trajectory.replay(SETTINGS, g, _join(parts, sc)), end)
        if math.isfinite(promoted) or math.isfinite(fail):
            return promoted, fail
    return math.inf, math.inf


def _promotion(r: trajectory.Replay, end: int) -> tuple[float, float]:
    """First minute after the steps with PASS and no FAIL before, and the first FAIL."""
    minute = np.arange(end) + 1
    fail = r.first_fail + 1 if r.first_fail >= 0 else math.inf
    ok = (minute >= STEPS_END) & (r.verdict == "pass") & (minute < fail)
    hits = np.flatnonzero(ok)
    return (float(minute[hits[0]]) if hits.size else math.inf), fail


def _fmt_min(x: float) -> str:
    return "never" if not math.isfinite(x) else f"{x:.0f}"


def _pct(x: float) -> str:
    return f"{100 * x:.0f} %"


def _median(x: npt.NDArray[np.float64]) -> float:
    """The median over all runs, never-promoted ones included (``inf`` when half are never)."""
    return float(np.sort(x)[math.ceil(0.5 * x.size) - 1])


def _ratio(forecast: float, measured: float) -> str:
    ok = math.isfinite(forecast) and math.isfinite(measured)
    return f"{forecast / measured:.2f}" if ok else "-"


#: (requests/min, margins, runs option, no diurnal curves, phase of the curves at the start)
CASES = (
    (1000.0, "example", "runs", False, 0.0),
    (1000.0, "revenue 5 %", "runs", False, 0.0),
    (1000.0, "revenue 5 %", "runs_other", False, 720.0),
    (1000.0, "revenue 5 %", "runs_other", True, 0.0),
    (1000.0, "0", "runs_other", False, 0.0),
    (4000.0, "example", "runs_mid", False, 0.0),
    (89_000.0, "example", "runs_high", False, 0.0),
    (89_000.0, "0", "runs_high_zero", False, 0.0),
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=300, help="runs of the 1,000/min main rows")
    ap.add_argument(
        "--runs-other",
        type=int,
        default=200,
        help="runs of the other 1,000/min rows (curves at another phase or off; margins 0)",
    )
    ap.add_argument("--runs-mid", type=int, default=200, help="runs at 4,000 requests/min")
    ap.add_argument("--runs-high", type=int, default=10, help="runs at 89,000 requests/min")
    ap.add_argument(
        "--runs-high-zero",
        type=int,
        default=2,
        help="runs at 89,000 requests/min with margins 0 (never promoted: every run lasts 24 h)",
    )
    ap.add_argument("--procs", type=int, default=2)
    opts = ap.parse_args()
    rows = []
    started = time.perf_counter()
    for rate, name, runs_option, flat, phase in CASES:
        runs = getattr(opts, runs_option)
        if not runs:
            continue
        with multiprocessing.Pool(opts.procs) as pool:
            out = pool.map(measured, [(rate, name, s, flat, phase) for s in range(runs)])
        promo = np.array([p for p, _ in out])
        cap, threshold, day_mean = pre_period(rate, 0, phase)
        g = guardrails(MARGINS[name], threshold)
        day = earlier_day(rate, cap, threshold, phase, 0)
        if flat:
            day = fc.Schedule((day_mean,))  # a day without curves: its hours are its mean
        t0 = time.perf_counter()
        f = fc.forecast(SETTINGS, g, FORECAST_RAMP, DAY, day)
        took = time.perf_counter() - t0
        const = fc.forecast(SETTINGS, g, FORECAST_RAMP, DAY, day_mean).promotion
        p = f.promotion
        m_median, hit = _median(promo), promo[np.isfinite(promo)]
        m_reached = float(np.median(hit)) if hit.size else math.inf
        label = f"{name}, no diurnal" if flat else name
        if phase:
            label += f", start at minute {phase:.0f} of the curve"
        rows.append(
            [
                f"{rate:,.0f}",
                label,
                str(runs),
                f"{_pct(np.mean(promo <= STEPS_END + 1))} / {_pct(p.share_by(STEPS_END + 1))}",
                f"{_pct(np.mean(promo <= DAY))} / {_pct(p.probability)}",
                f"{_fmt_min(m_median)} / {_fmt_min(p.median)}",
                _ratio(p.median, m_median),
                f"{_fmt_min(m_reached)} / {_fmt_min(p.reached_median)}",
                f"{_fmt_min(const.median)} ({_ratio(const.median, m_median)}), "
                f"{_pct(const.probability)}",
                f"{f.blocking or '-'}",
                f"{took:.1f} s",
            ]
        )
        print(rows[-1], flush=True)
        _write(rows, opts, time.perf_counter() - started)


def _write(rows: list[list[str]], opts: argparse.Namespace, seconds: float) -> None:
    """The section with the rows so far (rewritten after each case)."""
    body = "\n".join(
        [
            "## Promotion of healthy challengers, measured and forecast (`bench/promotion.py`)",
            "",
            "Issue 11's harness: 60-min champion pre-period (cap = its p99.9 revenue, tail",
            "threshold = its p99 latency × 1.1), challenger 5 % for 2 h, 25 % for 4 h, then 50 %;",
            "a look every minute; 24 h; diurnal volume and baselines ±30 % (the run starts at",
            "minute 0 of the curve: rising, peak at minute 360, unless stated). The guardrails of",
            "the example manifest, alpha 0.05 over them and the SRM check: 'example' = revenue",
            "margin 2 %, latency-p99 κ 1.2, errors κ 1.5, latency-mean 5 % slower; 'revenue 5 %'",
            "the same with a revenue margin of 5 %; '0' every margin 0 (κ 1). Each cell:",
            "measured (independent request-level simulation through `trajectory.replay`) /",
            "forecast (`analysis.forecast`, 200 paths, a look every minute, fed the champion's",
            "traffic and moments hour by hour over an earlier day at the same clock hours, as",
            "`canaryctl start` and the operator read them from Postgres; here another simulated",
            "champion-only day, its moments measured at 4,000/min above that rate and its volume",
            "scaled). Minutes count from",
            "the challenger's first step; the steps end at minute 360 (6 h). 'median' is over",
            "all runs (never when fewer than half are promoted); ratio = forecast / measured",
            "(target 0.8–1.2); 'median if promoted' over the promoted runs only. Last columns:",
            "the forecast fed that day's mean rate held constant instead (median, its ratio,",
            "probability by 24 h), and the forecast's time.",
            "",
            table(
                [
                    "req/min",
                    "margins",
                    "runs",
                    "promoted by end of steps (6 h)",
                    "by 24 h",
                    "median minute",
                    "ratio",
                    "median if promoted",
                    "constant day mean: median (ratio), by 24 h",
                    "forecast blocks",
                    "forecast time",
                ],
                rows,
            ),
            "",
            f"Run time {seconds:.0f} s on this machine, shared with another benchmark (--runs "
            f"{opts.runs} --runs-other {opts.runs_other} --runs-mid {opts.runs_mid} "
            f"--runs-high {opts.runs_high} --runs-high-zero {opts.runs_high_zero} --procs "
            f"{opts.procs}).",
        ]
    )
    write_section("promotion", body)


if __name__ == "__main__":
    main()
