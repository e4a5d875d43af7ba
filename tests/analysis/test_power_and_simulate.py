"""Planning figures against closed forms and STATISTICS.md §6; the simulator's contract."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from analysis import (
    Scenario,
    SufficientStats,
    fixed_horizon_n,
    latency_bucket,
    plan,
    power,
    simulate_minutes,
    simulate_requests,
)


def test_fixed_horizon_n_matches_the_closed_form() -> None:
    z = sps.norm.ppf(0.95) + sps.norm.ppf(0.8)
    assert fixed_horizon_n(0.1, 1.0, 0.5, alpha=0.05) == pytest.approx(2 * z * z / 0.01)
    assert fixed_horizon_n(0.1, 1.0, 0.05, alpha=0.05) == pytest.approx(
        z * z * (1 + 0.05 / 0.95) / 0.01
    )


@pytest.mark.parametrize(("mult", "target"), [(2, 0.29), (3, 0.16)])
def test_sequential_stopping_matches_statistics_section_6(mult: int, target: float) -> None:
    n = fixed_horizon_n(0.1, 1.0, 0.5, alpha=0.05)
    first = power.sequential_stopping(-0.1 * mult, 1.0, 0.5, 5 * n, alpha=0.05, n_star=n)
    assert power.quantile_with_inf(first, 0.5) / n == pytest.approx(target, abs=0.02)


def test_power_at_n_is_about_54_percent_and_grows_with_the_effect() -> None:
    n = fixed_horizon_n(0.1, 1.0, 0.5, alpha=0.05)
    at = [
        float(np.mean(power.sequential_stopping(-0.1 * m, 1.0, 0.5, n, alpha=0.05, n_star=n) <= n))
        for m in (1, 1.5, 2)
    ]
    assert at[0] == pytest.approx(0.54, abs=0.05)
    assert at[0] < at[1] < at[2]


def test_plan_is_consistent() -> None:
    small = plan(0.13, 0.7, 1000 / 60, 0.5, -0.05, deadline_seconds=86_400)
    large = plan(0.13, 0.7, 1000 / 60, 0.5, -0.10, deadline_seconds=86_400)
    assert large.median_seconds < small.median_seconds
    assert large.power_by_deadline >= small.power_by_deadline
    assert small.fixed_horizon_seconds == pytest.approx(small.fixed_horizon_n / (1000 / 60 * 0.5))
    assert small.effect_abs == pytest.approx(-0.0065)
    text = large.describe()
    assert "fixed-horizon" in text and "%" in text
    with pytest.raises(ValueError, match="requests_per_second"):
        plan(0.13, 0.7, 0, 0.5, -0.05)


SC = Scenario(minutes=60, requests_per_minute=500, ramp=((0, 0.2), (30, 0.5)), revenue_effect=-0.5,
              latency_factor=1.5, error_factor=3.0, error_rate=0.01)  # fmt: skip


def test_simulation_is_seeded() -> None:
    a, b = simulate_minutes(SC, 4), simulate_minutes(SC, 4)
    assert np.array_equal(a.n, b.n) and np.array_equal(a.revenue_sum, b.revenue_sum)
    assert not np.array_equal(a.n, simulate_minutes(SC, 5).n)


def test_rows_aggregate_to_the_minute_statistics() -> None:
    rows = simulate_requests(SC, 9)
    ms = simulate_minutes(SC, 9, thresholds_ms=(50.0,), histograms=True)
    assert np.all(np.diff(rows.ts_offset_s) >= 0)
    minute = (rows.ts_offset_s // 60).astype(int)
    for arm in (0, 1):
        sel = rows.arm == arm
        assert np.array_equal(np.bincount(minute[sel], minlength=60), ms.n[:, arm])
        capped = np.minimum(rows.revenue[sel], SC.cap)
        assert ms.revenue_sum[:, arm].sum() == pytest.approx(capped.sum())
        assert ms.errors[:, arm].sum() == rows.error[sel].sum()
        assert ms.hist is not None
        assert np.array_equal(
            np.bincount(latency_bucket(rows.latency_ms[sel]), minlength=ms.hist.shape[-1]),
            ms.hist[:, arm].sum(axis=0),
        )
        lat = SufficientStats.from_values(np.log(rows.latency_ms[sel]))
        assert ms.log_latency_sum[:, arm].sum() == pytest.approx(lat.sum)


def test_effects_move_the_challenger_in_the_injected_direction() -> None:
    ms = simulate_minutes(SC, 2)
    n = ms.n.sum(axis=0)
    rev = ms.revenue_uncapped_sum.sum(axis=0) / n
    lat = ms.log_latency_sum.sum(axis=0) / n
    err = ms.errors.sum(axis=0) / n
    assert rev[1] / rev[0] == pytest.approx(0.5, abs=0.15)
    assert lat[1] - lat[0] == pytest.approx(math.log(1.5), abs=0.02)
    assert err[1] / err[0] == pytest.approx(3.0, rel=0.3)
    assert n[1] / n.sum() == pytest.approx((0.2 + 0.5) / 2, abs=0.02)


def test_srm_shortfall_reduces_the_challenger_share() -> None:
    ms = simulate_minutes(Scenario(minutes=200, ramp=((0, 0.5),), srm_shortfall=0.1), 1)
    n = ms.n.sum(axis=0)
    assert n[1] / n.sum() == pytest.approx(0.45, abs=0.005)
    assert np.all(ms.weight == 0.5)
