"""The loading core on the real server: bad input, duplicates, faults, late rows, exact rollups."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal, getcontext

import numpy as np
import pyarrow as pa
import pytest
import sqlalchemy as sa

from analysis import buckets
from controller.clock import SimulatedClock
from controller.ingest import load, validate
from controller.storage import experiments, partitions, rollups
from tests.storage.helpers import T0, outcomes, row, rows_table

NOW = T0 + timedelta(hours=3, minutes=1)


@pytest.fixture
def clock() -> SimulatedClock:
    return SimulatedClock(NOW)


@pytest.fixture
def exp_id(conn: sa.Connection) -> int:
    return experiments.register_experiment(conn, "default/ranker", allowed_lateness_seconds=300)


def _count(conn: sa.Connection, sql: str) -> int:
    return int(conn.execute(sa.text(sql)).scalar_one())


BAD_ROWS = [
    (row(revenue="nan"), "revenue is NaN"),
    (row(revenue="inf"), "revenue is infinite"),
    (row(latency_ms="-1"), "latency_ms is negative"),
    (row(revenue="-0.5"), "revenue is negative"),
    (row(revenue="abc"), "revenue is not a number"),
    (row(latency_ms=""), "latency_ms is missing"),
    (row(arm="treatment"), "unknown arm 'treatment' (expected champion or challenger)"),
    (row(experiment="default/unknown"), "experiment default/unknown is not registered"),
    (row(experiment="ghost"), "experiment default/ghost is not registered"),
    (row(ts="yesterday-ish"), "ts is not a valid timestamp (ISO 8601 or epoch seconds)"),
    (row(ts=(NOW + timedelta(hours=1)).isoformat()), "ts is more than 0:05:00 in the future"),
    (row(error="maybe"), "error is not a boolean (true/false or 1/0)"),
]


@pytest.mark.parametrize(("bad", "reason"), BAD_ROWS, ids=[r for _, r in BAD_ROWS])
def test_each_bad_row_is_quarantined_with_its_reason(
    conn: sa.Connection, exp_id: int, clock: SimulatedClock, bad: dict[str, str], reason: str
) -> None:
    table = rows_table([row(), bad, row(arm="challenger")])
    result = load.load(conn, table, batch_key="b", source="test", clock=clock)
    assert (result.received, result.loaded, result.rejected) == (3, 2, 1)
    assert [(r.row, r.reason) for r in result.rejects] == [(2, reason)]
    stored = conn.execute(sa.text("SELECT row_number, reason, raw FROM ingest_rejects")).all()
    assert [(r.row_number, r.reason) for r in stored] == [(2, reason)]
    assert stored[0].raw["arm"] == bad["arm"]
    assert _count(conn, "SELECT count(*) FROM observations") == 2
    assert _count(conn, "SELECT sum(n) FROM rollups_minute") == 2


def test_counts_reconcile_on_a_mixed_batch(
    conn: sa.Connection, exp_id: int, clock: SimulatedClock
) -> None:
    good = [row(ts=(T0 + timedelta(seconds=i)).isoformat()) for i in range(50)]
    bad = [b for b, _ in BAD_ROWS]
    result = load.load(conn, rows_table(good + bad), batch_key="mixed", source="test", clock=clock)
    assert result.loaded + result.rejected == result.received == 50 + len(BAD_ROWS)
    assert result.rejected == len(BAD_ROWS)
    assert _count(conn, "SELECT count(*) FROM observations") == result.loaded
    assert _count(conn, "SELECT count(*) FROM ingest_rejects") == result.rejected
    batch = (result.received, result.loaded, result.rejected)
    stored = conn.execute(sa.text("SELECT received, loaded, rejected FROM ingest_batches")).one()
    assert tuple(stored) == batch


def test_a_missing_column_refuses_the_batch_whole(
    conn: sa.Connection, exp_id: int, clock: SimulatedClock
) -> None:
    table = rows_table([row()]).drop_columns(["latency_ms"])
    with pytest.raises(validate.BatchError, match=r"missing required column.*latency_ms"):
        load.load(conn, table, batch_key="nocol", source="test", clock=clock)
    assert _count(conn, "SELECT count(*) FROM ingest_batches") == 0


def test_the_same_batch_twice_is_counted_once(
    conn: sa.Connection, exp_id: int, clock: SimulatedClock
) -> None:
    table = outcomes(5_000, seed=3)
    first = load.load(conn, table, batch_key="dup", source="test", clock=clock)
    second = load.load(conn, table, batch_key="dup", source="test", clock=clock)
    assert not first.duplicate and second.duplicate
    assert (second.received, second.loaded) == (first.received, first.loaded) == (5_000, 5_000)
    assert _count(conn, "SELECT count(*) FROM observations") == 5_000
    assert _count(conn, "SELECT sum(n) FROM rollups_minute") == 5_000
    assert _count(conn, "SELECT sum(n) FROM rollups_hour") == 5_000


@pytest.mark.parametrize("point", ["after_copy", "after_rollups"])
def test_a_failure_mid_batch_leaves_no_trace_and_a_retry_loads_it(
    truncating_engine: sa.Engine, clock: SimulatedClock, point: str
) -> None:
    """``load_table`` owns its transaction: a crash inside it leaves nothing committed."""
    with truncating_engine.begin() as conn:
        experiments.register_experiment(conn, "default/ranker")
    table = outcomes(2_000, seed=4)

    def crash(where: str) -> None:
        if where == point:
            raise ConnectionError(f"simulated crash {where}")

    with pytest.raises(ConnectionError):
        load.load_table(
            truncating_engine, table, batch_key="crashy", source="test", clock=clock, fault=crash
        )
    with truncating_engine.connect() as conn:
        for t in ("observations", "rollups_minute", "rollups_hour", "latency_minute"):
            assert _count(conn, f"SELECT count(*) FROM {t}") == 0, t
        assert _count(conn, "SELECT count(*) FROM ingest_batches") == 0
    retry = load.load_table(
        truncating_engine, table, batch_key="crashy", source="test", clock=clock
    )
    assert retry.loaded == 2_000 and not retry.duplicate
    with truncating_engine.connect() as conn:
        assert _count(conn, "SELECT sum(n) FROM rollups_minute") == 2_000


def test_a_load_in_a_rolled_back_transaction_leaves_nothing_behind(
    truncating_engine: sa.Engine, clock: SimulatedClock
) -> None:
    """What the ``conn`` fixture relies on: rows and the partitions created vanish together."""
    day = datetime(2026, 9, 1, 9, tzinfo=UTC)
    with truncating_engine.connect() as conn:
        outer = conn.begin()
        experiments.register_experiment(conn, "default/ranker")
        result = load.load(
            conn, outcomes(100, seed=6, start=day), batch_key="gone", source="t", clock=clock
        )
        assert result.loaded == 100
        assert "observations_p20260901" in partitions.existing_partitions(conn)
        outer.rollback()
        assert partitions.existing_partitions(conn) == {}
        for t in ("experiments", "ingest_batches", "rollups_minute"):
            assert _count(conn, f"SELECT count(*) FROM {t}") == 0, t


def test_late_rows_are_stored_and_flagged_never_dropped(
    conn: sa.Connection, exp_id: int, clock: SimulatedClock
) -> None:
    # allowed lateness 300 s: at NOW, minutes ending more than 5 minutes ago are closed
    on_time = NOW - timedelta(minutes=2)
    closed = NOW - timedelta(minutes=30)
    table = rows_table(
        [row(ts=on_time.isoformat()), row(ts=closed.isoformat()), row(ts=closed.isoformat())]
    )
    result = load.load(conn, table, batch_key="late", source="test", clock=clock)
    assert (result.loaded, result.late) == (3, 2)
    flags = conn.execute(sa.text("SELECT ts, late FROM observations ORDER BY ts")).all()
    late_n = conn.execute(sa.text("SELECT sum(late_n), sum(n) FROM rollups_minute")).one()
    assert [f.late for f in flags] == [True, True, False]
    assert tuple(late_n) == (2, 3)


@pytest.mark.parametrize("edited", [0, 3600], ids=["edited-shorter", "edited-longer"])
def test_late_rows_follow_the_frozen_lateness_after_the_spec_is_edited(
    conn: sa.Connection, exp_id: int, clock: SimulatedClock, edited: int
) -> None:
    """An edit of the live spec after the freeze, registered again on an operator restart,
    changes nothing: ingest keeps the frozen lateness (300 s)."""
    experiments.freeze_settings(
        conn,
        "default/ranker",
        {"alpha": 0.05},
        now=NOW,
        revenue_cap=None,
        allowed_lateness_seconds=300,
    )
    again = experiments.register_experiment(
        conn, "default/ranker", spec={"edited": True}, allowed_lateness_seconds=edited
    )
    assert again == exp_id
    stored = experiments.get_experiment(conn, "default/ranker")
    assert (stored.allowed_lateness_seconds, stored.spec) == (300, {"edited": True})
    on_time = NOW - timedelta(minutes=2)  # late if the lateness were 0 s
    closed = NOW - timedelta(minutes=30)  # on time if it were 3600 s
    table = rows_table([row(ts=on_time.isoformat()), row(ts=closed.isoformat())])
    result = load.load(conn, table, batch_key="after-edit", source="test", clock=clock)
    flags = conn.execute(sa.text("SELECT late FROM observations ORDER BY ts")).scalars().all()
    assert (result.late, flags) == (1, [True, False])


def test_freezing_sets_the_lateness_ingest_uses(
    conn: sa.Connection, exp_id: int, clock: SimulatedClock
) -> None:
    """Registered with 300 s from the live spec, frozen with 3600 s: ingest follows the freeze."""
    experiments.freeze_settings(
        conn,
        "default/ranker",
        {"alpha": 0.05},
        now=NOW,
        revenue_cap=None,
        allowed_lateness_seconds=3600,
    )
    closed_for_300s = NOW - timedelta(minutes=30)
    result = load.load(
        conn,
        rows_table([row(ts=closed_for_300s.isoformat())]),
        batch_key="f",
        source="t",
        clock=clock,
    )
    assert result.late == 0


def _decimal_recompute(
    conn: sa.Connection, exp_id: int, cap: float | None
) -> dict[tuple[int, datetime], dict[str, Decimal]]:
    """Per (arm, minute) sums recomputed from raw rows in Python Decimal arithmetic."""
    getcontext().prec = 60
    rows = conn.execute(
        sa.text(
            "SELECT arm, ts, revenue, latency_ms, error FROM observations WHERE experiment_id = :e"
        ),
        {"e": exp_id},
    ).all()
    out: dict[tuple[int, datetime], dict[str, Decimal]] = {}
    for r in rows:
        key = (r.arm, r.ts.replace(second=0, microsecond=0))
        acc = out.setdefault(
            key, {k: Decimal(0) for k in ("n", "rs", "rss", "cs", "css", "ls", "lss", "err", "nz")}
        )
        rev = Decimal(r.revenue)
        capped = rev if cap is None else min(rev, Decimal(cap))
        lat = Decimal(math.log(max(r.latency_ms, rollups.LOG_LATENCY_FLOOR_MS)))
        acc["n"] += 1
        acc["rs"] += rev
        acc["rss"] += rev * rev
        acc["cs"] += capped
        acc["css"] += capped * capped
        acc["ls"] += lat
        acc["lss"] += lat * lat
        acc["err"] += int(r.error)
        acc["nz"] += int(r.revenue > 0)
    return out


def _assert_close(got: Decimal, want: Decimal, what: str) -> None:
    scale = max(abs(want), Decimal("1e-300"))
    assert abs(Decimal(got) - want) / scale <= Decimal("1e-9"), (what, got, want)


def _check_rollups_against_raw(conn: sa.Connection, exp_id: int, cap: float | None) -> None:
    want = _decimal_recompute(conn, exp_id, cap)
    got = conn.execute(
        sa.text("SELECT * FROM rollups_minute WHERE experiment_id = :e"), {"e": exp_id}
    ).all()
    assert len(got) == len(want)
    for g in got:
        w = want[(g.arm, g.period)]
        assert g.n == w["n"] and g.errors == w["err"] and g.revenue_nonzero == w["nz"]
        for col, k in (
            ("revenue_sum", "rs"),
            ("revenue_sum_sq", "rss"),
            ("revenue_capped_sum", "cs"),
            ("revenue_capped_sum_sq", "css"),
            ("log_latency_sum", "ls"),
            ("log_latency_sum_sq", "lss"),
        ):
            _assert_close(getattr(g, col), w[k], col)


def test_rollups_equal_a_decimal_recomputation_over_several_batches(
    conn: sa.Connection, exp_id: int, clock: SimulatedClock
) -> None:
    for i in range(3):  # batches overlap in time, so upserts merge into the same minutes
        load.load(
            conn,
            outcomes(4_000, seed=10 + i, unit_ids=i == 1),
            batch_key=f"m{i}",
            source="test",
            clock=clock,
        )
    _check_rollups_against_raw(conn, exp_id, cap=None)
    # merged over a window: hour rollups + ragged minutes give the same totals as raw rows
    start, end = T0 + timedelta(minutes=17), T0 + timedelta(hours=2, minutes=41)
    window = rollups.window_totals(conn, exp_id, start, end)
    raw = conn.execute(
        sa.text(
            "SELECT arm, count(*) n, sum(revenue::numeric) rs, count(*) FILTER (WHERE error) err "
            "FROM observations WHERE experiment_id = :e AND ts >= :s AND ts < :t GROUP BY arm"
        ),
        {"e": exp_id, "s": start, "t": end},
    ).all()
    lat = conn.execute(
        sa.text("SELECT arm, latency_ms FROM observations WHERE ts >= :s AND ts < :t"),
        {"s": start, "t": end},
    ).all()
    by_arm = {r.arm: r for r in raw}
    for arm, code in (("champion", 0), ("challenger", 1)):
        assert window[arm].n == by_arm[code].n
        assert window[arm].errors == by_arm[code].err
        _assert_close(window[arm].revenue_sum, by_arm[code].rs, "window revenue")
        hist = np.bincount(
            buckets.latency_bucket([r.latency_ms for r in lat if r.arm == code]),
            minlength=buckets.N_LATENCY_BUCKETS,
        )
        assert np.array_equal(window[arm].latency_hist, hist)


def test_freezing_a_cap_rebuilds_rollups_from_raw_rows(
    conn: sa.Connection, exp_id: int, clock: SimulatedClock
) -> None:
    load.load(conn, outcomes(6_000, seed=21), batch_key="before-cap", source="test", clock=clock)
    frozen = experiments.freeze_settings(
        conn,
        "default/ranker",
        {"alpha": 0.05},
        now=NOW,
        revenue_cap=2.0,
        allowed_lateness_seconds=300,
    )
    assert frozen
    load.load(conn, outcomes(3_000, seed=22), batch_key="after-cap", source="test", clock=clock)
    _check_rollups_against_raw(conn, exp_id, cap=2.0)
    assert not experiments.freeze_settings(
        conn,
        "default/ranker",
        {"alpha": 0.05},
        now=NOW,
        revenue_cap=2.0,
        allowed_lateness_seconds=300,
    )
    with pytest.raises(experiments.SettingsFrozenError, match="cannot change"):
        experiments.freeze_settings(
            conn,
            "default/ranker",
            {"alpha": 0.01},
            now=NOW,
            revenue_cap=2.0,
            allowed_lateness_seconds=300,
        )


def test_many_windows_in_one_query_equal_each_window_read_alone(
    conn: sa.Connection, exp_id: int, clock: SimulatedClock
) -> None:
    load.load(
        conn, outcomes(4_000, seed=13, seconds=3 * 3600), batch_key="many", source="t", clock=clock
    )
    other = experiments.register_experiment(conn, "default/empty")
    windows = [
        (exp_id, T0 + timedelta(minutes=17), T0 + timedelta(hours=2, minutes=41)),  # hours inside
        (exp_id, T0 + timedelta(minutes=5), T0 + timedelta(minutes=50)),  # minutes only
        (other, T0, T0 + timedelta(hours=2)),  # no data: zero totals
        (exp_id, T0 + timedelta(hours=1), T0 + timedelta(hours=1)),  # empty window
        (exp_id, T0, T0 + timedelta(hours=3)),  # whole hours only
    ]
    many = rollups.windows_totals(conn, windows)
    assert rollups.windows_totals(conn, []) == []
    assert len(many) == len(windows)
    assert many[0]["champion"].n > 0 and many[2]["champion"].n == 0
    for (e, start, end), got in zip(windows, many, strict=True):
        alone = rollups.window_totals(conn, e, start, end)
        for arm in ("champion", "challenger"):
            a, b = got[arm], alone[arm]
            assert np.array_equal(a.latency_hist, b.latency_hist)
            assert {f: getattr(a, f) for f in rollups.ROLLUP_FIELDS} == {
                f: getattr(b, f) for f in rollups.ROLLUP_FIELDS
            }


def test_window_bounds_must_be_whole_minutes(conn: sa.Connection, exp_id: int) -> None:
    with pytest.raises(ValueError, match="start: window bounds are whole minutes"):
        rollups.window_totals(conn, exp_id, T0 + timedelta(seconds=30), T0 + timedelta(hours=1))


def test_minute_series_is_one_row_per_minute_and_arm(
    conn: sa.Connection, exp_id: int, clock: SimulatedClock
) -> None:
    load.load(
        conn, outcomes(3_000, seed=5, seconds=600), batch_key="series", source="test", clock=clock
    )
    series = rollups.minute_series(conn, exp_id, T0, T0 + timedelta(minutes=10))
    assert {(s["period"], s["arm"]) for s in series} == {
        (T0 + timedelta(minutes=m), arm) for m in range(10) for arm in ("champion", "challenger")
    }
    assert sum(s["n"] for s in series) == 3_000


def test_timestamps_in_every_accepted_form(
    conn: sa.Connection, exp_id: int, clock: SimulatedClock
) -> None:
    when = T0 + timedelta(minutes=7, seconds=3)
    forms = [
        when.isoformat(),
        when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        when.strftime("%Y-%m-%d %H:%M:%S"),
        when.astimezone(__import__("zoneinfo").ZoneInfo("Europe/Berlin")).isoformat(),
    ]
    result = load.load(
        conn, rows_table([row(ts=f) for f in forms]), batch_key="ts", source="test", clock=clock
    )
    assert result.rejected == 0
    epoch = pa.table(
        {
            **{k: pa.array([v]) for k, v in row().items() if k != "ts"},
            "ts": pa.array([when.timestamp()]),
        }
    )
    assert load.load(conn, epoch, batch_key="epoch", source="test", clock=clock).rejected == 0
    stored = conn.execute(sa.text("SELECT DISTINCT ts FROM observations")).scalars().all()
    assert stored == [when]


def test_retention_drops_old_partitions_and_keeps_rollups(conn: sa.Connection, exp_id: int) -> None:
    old_clock = SimulatedClock(datetime(2026, 10, 1, 12, tzinfo=UTC))
    load.load(
        conn,
        outcomes(500, seed=1, start=datetime(2026, 10, 1, 9, tzinfo=UTC)),
        batch_key="old",
        source="t",
        clock=old_clock,
    )
    clock = SimulatedClock(NOW)
    load.load(conn, outcomes(500, seed=2), batch_key="new", source="t", clock=clock)
    result = partitions.drop_partitions_before(conn, NOW - timedelta(days=30))
    assert result.dropped == ["observations_p20261001"] and result.kept == [
        "observations_p20261126"
    ]
    assert _count(conn, "SELECT count(*) FROM observations") == 500
    assert _count(conn, "SELECT sum(n) FROM rollups_minute") == 1_000
