"""Pre-aggregated cells: the same rollups, cap and verdicts as raw rows; quarantine; exactly once.

The loader commits its own transactions (``aggregates.load_cells``), so these tests use
``truncating_engine``.
"""

from __future__ import annotations

import math
from datetime import timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import sqlalchemy as sa

import analysis
from analysis import buckets
from controller.clock import SimulatedClock
from controller.ingest import aggregates, cells, load, validate
from controller.storage import experiments, rollups
from tests.storage.helpers import T0, evaluate_window, histogram_rows, outcomes, rollup_rows

RAW, AGG = "default/raw", "default/agg"
NOW = T0 + timedelta(hours=2)
CLOCK = SimulatedClock(NOW)


@pytest.fixture
def ids(truncating_engine: sa.Engine) -> dict[str, int]:
    with truncating_engine.begin() as conn:
        return {k: experiments.register_experiment(conn, k) for k in (RAW, AGG)}


def _named(table: pa.Table, key: str) -> pa.Table:
    return table.set_column(0, "experiment", pa.array([key] * table.num_rows))


def _assert_same_rollups(engine: sa.Engine, a: int, b: int, rel: float = 0.0) -> None:
    for table in ("rollups_minute", "rollups_hour"):
        left, right = rollup_rows(engine, a, table), rollup_rows(engine, b, table)
        assert len(left) == len(right) > 0
        for x, y in zip(left, right, strict=True):
            for field, value in x.items():
                if isinstance(value, Decimal) and rel:
                    assert math.isclose(value, y[field], rel_tol=rel), (table, field, x, y)
                else:
                    assert value == y[field], (table, field, x["period"], value, y[field])
    assert histogram_rows(engine, a) == histogram_rows(engine, b)


def _verdict(engine: sa.Engine, exp_id: int) -> analysis.Evaluation:
    return evaluate_window(  # type: ignore[no-any-return]
        engine, exp_id, T0, T0 + timedelta(hours=1), burn_in_requests=500, burn_in_nonzero=50
    )


def test_raw_rows_and_cells_give_the_same_cap_rollups_and_verdicts(
    truncating_engine: sa.Engine, ids: dict[str, int]
) -> None:
    """The lifecycle through both paths: a baseline without a cap (the cap is derived from
    the champion's p99 revenue), the freeze (which caps what was stored), then capped data;
    half of the capped minutes arrive capped by the sender, half uncapped with their
    largest values (canaryctl caps them)."""
    engine = truncating_engine
    rows = outcomes(120_000, seed=3, seconds=3600)
    ts = rows["ts"].to_numpy()
    cut = [np.datetime64((T0 + timedelta(minutes=m)).replace(tzinfo=None), "us") for m in (20, 40)]
    baseline = rows.filter(pa.array(ts < cut[0]))
    sender_capped = rows.filter(pa.array((ts >= cut[0]) & (ts < cut[1])))
    server_capped = rows.filter(pa.array(ts >= cut[1]))

    def send(part: pa.Table, key: str, **how: Any) -> None:
        raw = load.load_table(
            engine, _named(part, RAW), batch_key=f"raw-{key}", source="t", clock=CLOCK
        )
        agg = aggregates.load_cells(
            engine, cells.from_rows(_named(part, AGG), **how), batch_key=f"agg-{key}", source="t",
            clock=CLOCK,
        )  # fmt: skip
        assert raw.rejected == agg.rejected == 0
        assert raw.loaded == part.num_rows and agg.loaded == agg.received

    send(baseline, "baseline", top=200)
    with engine.connect() as conn:
        caps = [
            rollups.revenue_quantile(conn, ids[k], "champion", T0, T0 + timedelta(minutes=20), 0.99)
            for k in (RAW, AGG)
        ]
    assert caps[0] is not None and caps[0] > 0
    assert caps[0] == caps[1]
    cap = caps[0]
    with engine.begin() as conn:
        for key in (RAW, AGG):
            experiments.freeze_settings(
                conn, key, {"cap": cap}, now=NOW, revenue_cap=cap, allowed_lateness_seconds=120
            )
    _assert_same_rollups(engine, ids[RAW], ids[AGG])  # exact: both capped in numeric
    send(sender_capped, "capped", revenue_cap=cap)
    send(server_capped, "uncapped", top=400)
    # canaryctl caps the last part from float sums: equal up to rounding
    _assert_same_rollups(engine, ids[RAW], ids[AGG], rel=1e-12)
    raw, agg = _verdict(engine, ids[RAW]), _verdict(engine, ids[AGG])
    assert raw.verdict == agg.verdict
    for x, y in zip(raw.guardrails, agg.guardrails, strict=True):
        assert x.verdict == y.verdict
        assert math.isclose(x.estimate, y.estimate, rel_tol=1e-9, abs_tol=1e-15)
        assert math.isclose(x.log_e_value, y.log_e_value, rel_tol=1e-9, abs_tol=1e-12)


def test_too_few_top_values_make_the_quantile_a_flagged_lower_bound(
    truncating_engine: sa.Engine, ids: dict[str, int], caplog: pytest.LogCaptureFixture
) -> None:
    engine = truncating_engine
    part = outcomes(20_000, seed=5, seconds=600)
    load.load_table(engine, _named(part, RAW), batch_key="raw", source="t", clock=CLOCK)
    aggregates.load_cells(
        engine, cells.from_rows(_named(part, AGG), top=2), batch_key="agg", source="t", clock=CLOCK
    )
    with engine.connect() as conn:
        exact = rollups.revenue_quantile(
            conn, ids[RAW], "champion", T0, T0 + timedelta(minutes=10), 0.99
        )
        found = rollups.revenue_quantile(
            conn, ids[AGG], "champion", T0, T0 + timedelta(minutes=10), 0.99
        )
    assert exact is not None
    assert found is None or found <= exact
    assert "cells must send more revenue_top values" in caplog.text or "not exact" in caplog.text
    with engine.begin() as conn:  # freezing the cap cannot cap those cells exactly: it says so
        experiments.freeze_settings(
            conn, AGG, {}, now=NOW, revenue_cap=exact, allowed_lateness_seconds=120
        )
    assert "sent too few revenue_top values to be capped exactly" in caplog.text


def _good_cell(**overrides: Any) -> dict[str, Any]:
    hist = [0] * buckets.N_LATENCY_BUCKETS
    hist[400] = 3
    cell = {
        "experiment": AGG,
        "arm": "champion",
        "minute": (T0 + timedelta(minutes=5)).isoformat(),
        "n": 3,
        "revenue_sum": 3.0,
        "revenue_sum_sq": 5.0,
        "revenue_nonzero": 2,
        "errors": 1,
        "log_latency_sum": 3 * math.log(30.0),
        "log_latency_sum_sq": 3 * math.log(30.0) ** 2,
        "latency_hist": hist,
        "revenue_top": [2.0, 1.0, 0.0],
    }
    cell.update(overrides)
    return cell


def _table(cells_: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(cells_)


BAD = [
    ({"experiment": "default/nope"}, "experiment default/nope is not registered"),
    ({"arm": "canary"}, "unknown arm 'canary'"),
    ({"minute": (T0 + timedelta(minutes=5, seconds=3)).isoformat()}, "not the start of a minute"),
    ({"minute": (NOW + timedelta(hours=1)).isoformat()}, "in the future"),
    ({"n": -3}, "n is below 1"),
    ({"n": 2.5}, "n is not a whole number"),
    ({"revenue_nonzero": 4}, "revenue_nonzero (4) exceeds n (3)"),
    ({"errors": -1}, "errors is negative"),
    ({"revenue_sum": math.nan}, "revenue_sum is not finite"),
    ({"revenue_sum_sq": math.inf}, "revenue_sum_sq is not finite"),
    ({"revenue_sum": 9.0}, "Cauchy–Schwarz"),
    ({"revenue_sum": 0.0, "revenue_sum_sq": 0.0, "revenue_top": None}, "revenue_nonzero is positive"),
    ({"log_latency_sum": 500.0, "log_latency_sum_sq": 1e6}, "log_latency_sum is outside"),
    ({"latency_hist": [3]}, f"latency_hist has 1 buckets where the engine's edges make {buckets.N_LATENCY_BUCKETS}"),
    ({"latency_hist": [0] * (buckets.N_LATENCY_BUCKETS - 1) + [2]}, "latency_hist counts 2 requests where n is 3"),
    ({"latency_hist": [-1] * 3 + [0] * (buckets.N_LATENCY_BUCKETS - 3)}, "negative count"),
    ({"latency_edges": "log-10-abc"}, "latency_edges is not the engine's edges"),
    ({"revenue_top": [2.0, 1.5, 1.0, 0.0]}, "more than n"),
    ({"revenue_top": [5.0]}, "adds up to more than revenue_sum"),
    ({"revenue_cap": 1.5, "revenue_capped_sum": 3.5, "revenue_capped_sum_sq": 4.5}, "revenue_capped_sum exceeds revenue_sum"),
]  # fmt: skip


def test_bad_cells_are_quarantined_with_their_reason_and_the_others_load(
    truncating_engine: sa.Engine, ids: dict[str, int]
) -> None:
    batch = [_good_cell()] + [_good_cell(**o) for o, _ in BAD]
    batch = [{**_good_cell(), "latency_edges": cells.LATENCY_EDGES_ID, "revenue_cap": None,
              "revenue_capped_sum": None, "revenue_capped_sum_sq": None, **c} for c in batch]  # fmt: skip
    result = aggregates.load_cells(
        truncating_engine, _table(batch), batch_key="bad", source="t", clock=CLOCK
    )
    assert result.received == len(batch)
    assert result.loaded + result.rejected == result.received
    assert result.loaded == 1
    reasons = {r.row: r.reason for r in result.rejects}
    for i, (_, expected) in enumerate(BAD, start=2):
        assert expected in reasons[i], (i, reasons[i])
    with truncating_engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT count(*) FROM ingest_rejects")).scalar_one()
        n = conn.execute(sa.text("SELECT sum(n) FROM rollups_minute")).scalar_one()
    assert stored == len(BAD)
    assert n == 3


def test_a_cell_capped_otherwise_is_capped_from_its_top_values_or_quarantined(
    truncating_engine: sa.Engine, ids: dict[str, int]
) -> None:
    with truncating_engine.begin() as conn:
        experiments.freeze_settings(
            conn, AGG, {}, now=NOW, revenue_cap=1.5, allowed_lateness_seconds=120
        )
    covered = _good_cell()  # values 2, 1, 0: capped at 1.5 → 1.5 + 1 + 0
    short = _good_cell(arm="challenger", revenue_top=[2.0])  # 2 > 1.5, the rest unknown
    result = aggregates.load_cells(
        truncating_engine, _table([covered, short]), batch_key="caps", source="t", clock=CLOCK
    )
    assert result.loaded == 1
    assert "frozen cap is 1.5" in result.rejects[0].reason
    with truncating_engine.connect() as conn:
        row = conn.execute(
            sa.text("SELECT revenue_capped_sum, revenue_capped_sum_sq FROM rollups_minute")
        ).one()
    assert row == (Decimal("2.5"), Decimal("3.25"))


def test_a_batch_id_loads_once_and_another_body_under_it_is_a_conflict(
    truncating_engine: sa.Engine, ids: dict[str, int]
) -> None:
    first = [_good_cell(), _good_cell(arm="challenger")]
    done = aggregates.load_cells(
        truncating_engine, _table(first), batch_key="k", source="t", clock=CLOCK
    )
    # the same cells in another order, with sums that differ in the last bits: a replay
    replay = [_good_cell(arm="challenger"), _good_cell(revenue_sum=3.0 + 1e-15)]
    again = aggregates.load_cells(
        truncating_engine, _table(replay), batch_key="k", source="t", clock=CLOCK
    )
    assert (done.duplicate, again.duplicate) == (False, True)
    assert again.loaded == done.loaded == 2
    with pytest.raises(load.BatchConflict, match="already used for a different body"):
        aggregates.load_cells(
            truncating_engine, _table([_good_cell(n=4, revenue_sum=3.0, latency_hist=None)]),
            batch_key="k", source="t", clock=CLOCK,
        )  # fmt: skip
    with pytest.raises(validate.BatchRefused, match="missing column"):
        aggregates.load_cells(
            truncating_engine,
            _table([{"experiment": AGG}]),
            batch_key="k2",
            source="t",
            clock=CLOCK,
        )
    with truncating_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT sum(n) FROM rollups_minute")).scalar_one() == 6
        assert conn.execute(sa.text("SELECT count(*) FROM ingest_batches")).scalar_one() == 1


def test_late_cells_are_flagged_with_the_raw_rule(
    truncating_engine: sa.Engine, ids: dict[str, int]
) -> None:
    # lateness 120 s: a minute is closed once its end + 2 min has passed
    closed = _good_cell(minute=(NOW - timedelta(minutes=3)).isoformat())
    open_ = _good_cell(minute=(NOW - timedelta(minutes=2)).isoformat(), arm="challenger")
    result = aggregates.load_cells(
        truncating_engine, _table([closed, open_]), batch_key="late", source="t", clock=CLOCK
    )
    assert result.late == 1
    with truncating_engine.connect() as conn:
        late = dict(conn.execute(sa.text("SELECT arm, late_n FROM rollups_minute")).all())
    assert late == {0: 3, 1: 0}
