"""``simulate.minute_requests``: one minute of the traffic model at a split the caller gives."""

from __future__ import annotations

import numpy as np
import pytest

from analysis import Scenario, simulate


def _minutes(sc: Scenario, share: float, count: int, seed: int = 0) -> list[simulate.RequestRows]:
    rng = np.random.default_rng(seed)
    return [simulate.minute_requests(sc, m, share, rng) for m in range(count)]


def test_rows_of_a_minute_are_sorted_within_the_minute() -> None:
    rows = simulate.minute_requests(
        Scenario(requests_per_minute=5000), 2000, 0.3, np.random.default_rng(1)
    )
    assert 4000 < rows.arm.size < 9000
    assert np.all(np.diff(rows.ts_offset_s) >= 0)
    assert rows.ts_offset_s.min() >= 0 and rows.ts_offset_s.max() < 60
    assert set(np.unique(rows.arm)) == {0, 1}
    assert rows.revenue.size == rows.latency_ms.size == rows.error.size == rows.arm.size


@pytest.mark.parametrize(
    ("share", "shortfall", "expected"), [(0.0, 0.0, 0.0), (1.0, 0.0, 1.0), (0.5, 0.1, 0.45)]
)
def test_the_challenger_gets_the_share_less_the_srm_shortfall(
    share: float, shortfall: float, expected: float
) -> None:
    sc = Scenario(requests_per_minute=2000, srm_shortfall=shortfall)
    arms = np.concatenate([r.arm for r in _minutes(sc, share, 50)])
    assert float(arms.mean()) == pytest.approx(expected, abs=0.01)


def test_effects_reach_the_challenger_only() -> None:
    sc = Scenario(requests_per_minute=4000, latency_factor=1.3, error_factor=4.0)
    rows = _minutes(sc, 0.5, 30)
    arm = np.concatenate([r.arm for r in rows])
    latency = np.concatenate([r.latency_ms for r in rows])
    error = np.concatenate([r.error for r in rows])
    median = [float(np.median(latency[arm == a])) for a in (0, 1)]
    assert median[1] / median[0] == pytest.approx(1.3, rel=0.05)
    assert error[arm == 1].mean() > 2.5 * error[arm == 0].mean()


def test_the_same_model_as_the_simulated_day() -> None:
    sc = Scenario(minutes=120, requests_per_minute=3000, ramp=((0, 0.25),))
    day = simulate.simulate_requests(sc, 3)
    live = _minutes(sc, 0.25, 120, seed=4)
    for field in ("revenue", "latency_ms"):
        a = getattr(day, field)
        b = np.concatenate([getattr(r, field) for r in live])
        assert float(np.median(b[b > 0])) == pytest.approx(float(np.median(a[a > 0])), rel=0.03)
    assert sum(r.arm.size for r in live) == pytest.approx(day.arm.size, rel=0.01)


@pytest.mark.parametrize(
    ("minute", "share", "bad"), [(0, 1.5, "share"), (0, -0.1, "share"), (-1, 0.5, "minute")]
)
def test_bad_arguments_are_named(minute: int, share: float, bad: str) -> None:
    with pytest.raises(ValueError, match=bad):
        simulate.minute_requests(Scenario(), minute, share, np.random.default_rng(0))
