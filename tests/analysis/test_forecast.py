"""The forecast: reproducible, monotone in traffic, and in line with request-level replays."""

import math
from dataclasses import replace

import numpy as np
import pytest

from analysis import forecast as fc
from analysis import simulate, spec, trajectory

SETTINGS = spec.AnalysisSettings(burn_in_requests=300, burn_in_nonzero=20)
SCENARIO = simulate.Scenario(
    minutes=240,
    requests_per_minute=2000,
    ramp=((0, 0.2), (30, 0.5)),
    volume_amplitude=0.0,
    revenue_amplitude=0.0,
    latency_amplitude=0.0,
    error_amplitude=0.0,
)
THRESHOLD = SCENARIO.champion_p99_ms() * 1.1
GUARDRAILS = [
    spec.GuardrailSpec("revenue", spec.GuardrailKind.MEAN, margin=0.07),
    spec.GuardrailSpec("latency", spec.GuardrailKind.TAIL, kappa=1.5, threshold_ms=THRESHOLD),
    spec.GuardrailSpec("errors", spec.GuardrailKind.RATE, kappa=2.0),
]
RAMP = [fc.RampStep(0.2, 30), fc.RampStep(0.5, 30)]


def _forecast(rpm: float = 2000, **kw: object) -> fc.Forecast:
    traffic = fc.Traffic.from_scenario(SCENARIO, GUARDRAILS).scaled(rpm / 2000)
    return fc.forecast(SETTINGS, GUARDRAILS, RAMP, 240, traffic, paths=60, **kw)  # type: ignore[arg-type]


def test_the_same_inputs_give_the_same_forecast_and_another_seed_another() -> None:
    a, b = _forecast(), _forecast()
    assert a == b
    assert _forecast(seed=1).promotion != a.promotion or _forecast(seed=1).passing != a.passing


def test_more_traffic_promotes_earlier_and_more_often() -> None:
    low, mid, high = _forecast(500), _forecast(2000), _forecast(8000)
    assert low.promotion.probability <= mid.promotion.probability <= high.promotion.probability
    assert high.promotion.median <= mid.promotion.median <= low.promotion.median
    assert high.promotion.median < low.promotion.median
    # never before the steps' minimum durations
    assert high.promotion.median >= high.steps_minutes == 60


def test_the_forecast_median_agrees_with_replays_of_request_level_simulations() -> None:
    """The forecast's draws against simulate_minutes' per-request draws, same rule (replay)."""
    measured = float(np.median(_promotion_minutes(SCENARIO, range(24))))
    predicted = _forecast(look_minutes=1).promotion.median
    assert math.isfinite(measured)
    assert predicted == pytest.approx(measured, rel=0.25)


def _promotion_minutes(scenario: simulate.Scenario, seeds: range) -> list[float]:
    """Request-level days through the rule (replay): the first PASS after the steps."""
    promoted: list[float] = []
    for seed in seeds:
        minutes = simulate.simulate_minutes(scenario, seed, thresholds_ms=(THRESHOLD,))
        r = trajectory.replay(SETTINGS, GUARDRAILS, minutes)
        after = (np.arange(scenario.minutes) + 1 >= 60) & (r.verdict == "pass")
        hits = np.flatnonzero(after)
        ok = hits.size and (r.first_fail < 0 or r.first_fail > hits[0])
        promoted.append(hits[0] + 1 if ok else math.inf)
    return promoted


def _hourly(scenario: simulate.Scenario, seed: int) -> fc.Schedule:
    """The champion's traffic and moments hour by hour, as observed on another day."""
    m = simulate.simulate_minutes(
        replace(scenario, ramp=((0, 1e-9),)), seed, thresholds_ms=(THRESHOLD,)
    )
    hours = []
    for h in range(scenario.minutes // 60):
        s = slice(60 * h, 60 * h + 60)
        n = m.n[s, 0].sum()
        mean, ll = m.revenue_sum[s, 0].sum() / n, m.log_latency_sum[s, 0].sum() / n
        hours.append(
            fc.Traffic(
                requests_per_minute=m.n[s].sum() / 60,
                revenue_mean=mean,
                revenue_sd=math.sqrt(m.revenue_sum_sq[s, 0].sum() / n - mean**2),
                revenue_nonzero=m.revenue_nonzero[s, 0].sum() / n,
                error_rate=m.errors[s, 0].sum() / n,
                tail_share={"latency": m.exceedances[s, 0, 0].sum() / n},
                log_latency_mean=ll,
                log_latency_sd=math.sqrt(m.log_latency_sum_sq[s, 0].sum() / n - ll**2),
            )
        )
    return fc.Schedule(tuple(hours))


def test_on_diurnal_traffic_the_hour_by_hour_schedule_agrees_and_the_days_mean_does_not() -> None:
    """A run at the day's peak (volume ×1.5, revenue ×1.3): the day's mean rate is late."""
    peak = replace(SCENARIO, volume_amplitude=0.6, revenue_amplitude=0.3, phase_minutes=270.0)
    measured = float(np.median(_promotion_minutes(peak, range(16))))
    hourly = fc.forecast(SETTINGS, GUARDRAILS, RAMP, 240, _hourly(peak, 100), paths=60)
    flat = fc.forecast(
        SETTINGS, GUARDRAILS, RAMP, 240, fc.Traffic.from_scenario(SCENARIO, GUARDRAILS), paths=60
    )
    assert hourly.promotion.median == pytest.approx(measured, rel=0.2)
    assert flat.promotion.median > 1.3 * measured


def test_a_schedule_of_one_period_is_constant_traffic_and_steps_read_its_hours() -> None:
    traffic = fc.Traffic.from_scenario(SCENARIO, GUARDRAILS)
    assert _forecast() == fc.forecast(
        SETTINGS, GUARDRAILS, RAMP, 240, fc.Schedule((traffic,)), paths=60
    )
    # 12,000 requests in the 20 % step's smaller arm are 60,000 in all: 10 min at 4,000/min,
    # 10 at 1,000/min, and the cycle repeats: 2.5 min more at 4,000/min; at 1,000/min, 60 min
    day = fc.Schedule((traffic.scaled(2), traffic.scaled(0.5)), period_minutes=10)
    samples = [fc.RampStep(0.2, 0, 12_000), fc.RampStep(0.5, 10)]
    assert fc.forecast(SETTINGS, GUARDRAILS, samples, 240, day, paths=2).steps_minutes == 32.5
    night = fc.Schedule((traffic.scaled(0.5), traffic.scaled(2)), period_minutes=120)
    assert fc.forecast(SETTINGS, GUARDRAILS, samples, 240, night, paths=2).steps_minutes == 70
    assert day.requests_per_minute == pytest.approx(1.25 * traffic.requests_per_minute)
    with pytest.raises(ValueError, match="periods"):
        fc.Schedule(())
    with pytest.raises(ValueError, match="period_minutes"):
        fc.Schedule((traffic,), period_minutes=0)


def test_a_harm_is_forecast_to_fail_on_its_own_guardrail() -> None:
    f = _forecast(effect=fc.Effect(error_ratio=4.0))
    assert f.failing["errors"].probability > 0.9
    assert f.failing["revenue"].probability < 0.1
    assert f.failure.median == f.failing["errors"].median < 240
    assert f.promotion == _forecast().promotion  # promotion is forecast for a healthy model
    assert f.false_rollback < 0.1


def test_an_unlikely_promotion_names_the_blocking_guardrail_and_what_would_fix_it() -> None:
    g = [spec.GuardrailSpec("revenue", spec.GuardrailKind.MEAN, margin=0.01), *GUARDRAILS[1:]]
    traffic = fc.Traffic.from_scenario(SCENARIO, g)
    f = fc.forecast(SETTINGS, g, RAMP, 240, traffic, paths=40, fixes=True)
    assert not f.likely
    assert f.blocking == "revenue"
    assert f.fix.margin is not None and f.fix.margin > 0.01
    assert f.fix.requests_per_minute is not None and f.fix.requests_per_minute > 2000
    assert f.fix.max_minutes is None or f.fix.max_minutes > 240
    likely = fc.forecast(
        SETTINGS, g, RAMP, 240, traffic.scaled(f.fix.requests_per_minute / 2000), paths=40
    )
    assert likely.promotion.probability >= 0.6


def test_traffic_from_a_scenario_matches_the_simulated_champion() -> None:
    minutes = simulate.simulate_minutes(SCENARIO, 3, thresholds_ms=(THRESHOLD,))
    t = fc.Traffic.from_scenario(SCENARIO, GUARDRAILS)
    n = minutes.n[:, 0].sum()
    mean = minutes.revenue_sum[:, 0].sum() / n
    sd = math.sqrt(minutes.revenue_sum_sq[:, 0].sum() / n - mean**2)
    assert mean == pytest.approx(t.revenue_mean, rel=0.05)
    assert sd == pytest.approx(t.revenue_sd, rel=0.08)
    assert minutes.exceedances[:, 0, 0].sum() / n == pytest.approx(t.tail_of("latency"), rel=0.1)


def test_a_step_that_lasts_no_time_is_skipped() -> None:
    ramp = [fc.RampStep(0.05, 0), fc.RampStep(0.2, 30), fc.RampStep(0.5, 30)]
    traffic = fc.Traffic.from_scenario(SCENARIO, GUARDRAILS)
    f = fc.forecast(SETTINGS, GUARDRAILS, ramp, 240, traffic, paths=10)
    assert f.steps_minutes == 60 and f.promotion.probability > 0.5


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_minutes": 0}, "max_minutes"),
        ({"ramp": []}, "ramp"),
        ({"guardrails": []}, "guardrails"),
    ],
)
def test_bad_arguments_are_refused_naming_them(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {
        "settings": SETTINGS,
        "guardrails": GUARDRAILS,
        "ramp": RAMP,
        "max_minutes": 240,
        "traffic": fc.Traffic(1000),
    }
    with pytest.raises(ValueError, match=message):
        fc.forecast(**{**args, **kwargs})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="weight"):
        fc.RampStep(1.5, 10)
    with pytest.raises(ValueError, match="revenue"):
        fc.Effect(revenue=-2.0)


def test_it_looks_at_the_interval_unless_told_fewer_looks() -> None:
    assert _forecast().look_minutes == 1.0
    assert _forecast(look_minutes=2.0).look_minutes == 2.0
    assert _forecast(looks=24).look_minutes == 10.0  # 240 minutes over 24 looks
    with pytest.raises(ValueError, match="look_minutes"):
        _forecast(look_minutes=0.0)


def test_replaying_all_paths_at_once_equals_replaying_each_path() -> None:
    """``trajectory.replay_paths`` (what the forecast runs) against ``replay`` path by path."""
    seeds = range(6)
    slower = SCENARIO.with_effect(latency_factor=1.2)
    runs = [
        simulate.simulate_minutes(slower if s % 2 else SCENARIO, s, thresholds_ms=(THRESHOLD,))
        for s in seeds
    ]
    fields = ("n", "revenue_sum", "revenue_sum_sq", "revenue_nonzero", "revenue_uncapped_sum")
    fields += ("errors", "log_latency_sum", "log_latency_sum_sq", "exceedances")
    stacked = simulate.MinuteStats(
        **{f: np.stack([getattr(r, f) for r in runs]) for f in fields},
        weight=runs[0].weight,
        step=runs[0].step,
        thresholds_ms=runs[0].thresholds_ms,
    )
    guards = [*GUARDRAILS, spec.GuardrailSpec("ll", spec.GuardrailKind.MEAN, metric="log_latency")]
    many = trajectory.replay_paths(SETTINGS, guards, stacked)
    decided = 0
    for p, r in enumerate(runs):
        one = trajectory.replay(SETTINGS, guards, r)
        np.testing.assert_array_equal(many.fail[p], one.verdict == "fail")
        np.testing.assert_array_equal(many.pass_all[p], one.verdict == "pass")
        for g in guards:
            np.testing.assert_array_equal(many.passing[g.name][p], one.passing[g.name])
            first = np.flatnonzero(many.fail_by[g.name][p])
            assert (first[0] if first.size else -1) == one.first_fail_by[g.name]
        decided += int((one.verdict != "continue").any())
    assert decided > 0  # the comparison covers decisions, not only "continue"
