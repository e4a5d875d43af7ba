"""Validation of pre-aggregated cells: per-minute, per-arm sufficient statistics from a sender.

A *cell* is what a streaming engine (the reference Spark job in ``scripts/spark/``) computes
for one experiment, arm and event-time minute: request count, revenue sums and sums of
squares (uncapped and capped), the non-zero revenue count, errors, log-latency sums, the
latency histogram on the engine's fixed edges and, optionally, the cell's largest revenue
values. ``prepare`` checks each cell as ``validate.prepare`` checks a raw row: a cell that
cannot be stored exactly as given gets a reason (the first that applies) and is quarantined
by the loader (``controller.ingest.aggregates``), the others load; only a batch unusable
as a whole raises ``validate.BatchRefused``. The format is documented in docs/scale.md.

Like ``validate``, this module reads no database and no clock: the registry of experiments
(with their frozen cap and lateness) and ``now`` are passed in.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from analysis import buckets
from analysis.state import ARM_FIELDS
from controller.ingest import load, validate
from controller.storage import rollups

REQUIRED = ("experiment", "arm", "minute", *ARM_FIELDS, "latency_hist")
#: Optional columns: the cap the capped sums used, the capped sums, the largest revenue
#: values, and the id of the latency edges the histogram was counted on.
OPTIONAL = ("revenue_cap", "revenue_capped_sum", "revenue_capped_sum_sq", "revenue_top",
            "latency_edges")  # fmt: skip

N_MAX = 10**12  # requests in one cell
TOP_MAX = 100_000  # revenue values one cell may carry
REL_TOL = 1e-9  # relative slack of the consistency checks (sums are float64 from the sender)
_MINUTE_US = 60_000_000
_LOG_MIN = math.log(rollups.LOG_LATENCY_FLOOR_MS)
_LOG_MAX = math.log(validate.LATENCY_MAX_MS)


def _edges_id(edges: npt.NDArray[np.float64]) -> str:
    digest = hashlib.sha256(np.ascontiguousarray(edges, dtype="<f8").tobytes()).hexdigest()
    return f"log-{len(edges)}-{digest[:16]}"


#: Names the engine's latency edges (``analysis.buckets``): a sender may pass it as
#: ``latency_edges`` to have a histogram counted on other edges refused.
LATENCY_EDGES_ID = _edges_id(buckets.LATENCY_EDGES_MS)


@dataclass(frozen=True)
class Cells:
    """The good cells of a batch, typed, plus the rejected ones with their reasons."""

    received: int
    rows: npt.NDArray[np.int64]  # 0-based positions of the good cells in the batch
    experiment_id: npt.NDArray[np.int64]
    arm: npt.NDArray[np.int64]
    minute: npt.NDArray[np.int64]  # minutes since the Unix epoch
    sums: dict[str, npt.NDArray[Any]]  # one array per ``rollups.ROLLUP_FIELDS`` name
    hist: npt.NDArray[np.int64]  # (cells, N_LATENCY_BUCKETS)
    tops: list[npt.NDArray[np.float64] | None]  # largest revenue values, descending
    capped_at: list[float | None]  # the cap the capped sums use (None: uncapped)
    late: npt.NDArray[np.bool_]
    rejects: list[validate.Reject]

    @property
    def loaded(self) -> int:
        return len(self.rows)


def _round(values: npt.NDArray[np.float64], digits: int = 12) -> npt.NDArray[np.float64]:
    """``values`` rounded to ``digits`` significant digits (non-finite values and zeros kept)."""
    out = values.copy()
    fine = np.isfinite(values) & (values != 0)
    if fine.any():
        exponent = np.floor(np.log10(np.abs(values[fine])))
        scale = 10.0 ** (digits - 1 - exponent)
        out[fine] = np.round(values[fine] * scale) / scale
    return out


def _canonical_column(col: pa.ChunkedArray) -> pa.Array:
    """A column with its floating-point values (also inside lists) rounded by ``_round``."""
    arr = col.combine_chunks()
    if pa.types.is_floating(arr.type):
        values = np.asarray(pc.fill_null(arr, math.nan).to_numpy(zero_copy_only=False), float)
        return pa.array(_round(values), mask=np.asarray(arr.is_null()), type=pa.float64())
    if (pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type)) and pa.types.is_floating(
        arr.type.value_type
    ):
        flat = arr.flatten()
        values = np.asarray(pc.fill_null(flat, math.nan).to_numpy(zero_copy_only=False), float)
        offsets = pc.subtract(arr.offsets, arr.offsets[0])
        return type(arr).from_arrays(offsets, pa.array(_round(values)), mask=arr.is_null())
    return arr


def digest(table: pa.Table) -> str:
    """``cells:sha256:…`` of a batch of cells, whatever the order of its cells.

    Floating-point values enter with 12 significant digits: a distributed engine that
    recomputes a cell (a replayed epoch) may add its values in another order and change the
    last bits of a sum, and that must be recognised as the same body (a duplicate), not a
    conflict. Different counts, minutes or values beyond rounding are a different body; so
    are the same cells with other column types (as for raw rows).
    """
    names = sorted(set(table.column_names))
    if len(names) != len(table.column_names):
        return "cells:" + load.content_hash(table)  # refused anyway: any stable hash will do
    canonical = pa.table({n: _canonical_column(table[n]) for n in names})
    keys = [
        (n, "ascending")
        for n in names
        if not pa.types.is_nested(canonical[n].type) and not pa.types.is_null(canonical[n].type)
    ]
    if keys:
        canonical = canonical.take(pc.sort_indices(canonical, sort_keys=keys))
    return "cells:" + load.content_hash(canonical)


def _numbers(
    table: pa.Table, name: str, reasons: npt.NDArray[np.object_], *, whole: bool = False
) -> npt.NDArray[np.float64]:
    """A column as float64; a missing, unparseable or non-finite value gets a reason."""
    if name not in table.column_names:
        return np.zeros(table.num_rows)
    col = table[name]
    if (
        pa.types.is_integer(col.type)
        or pa.types.is_floating(col.type)
        or pa.types.is_decimal(col.type)
    ):
        arr = pc.cast(col, pa.float64())
        values = np.asarray(pc.fill_null(arr, 0.0).to_numpy(zero_copy_only=False), dtype=float)
        missing = np.asarray(pc.is_null(arr).to_numpy(zero_copy_only=False), dtype=bool)
        unparseable = np.zeros(len(values), dtype=bool)
    else:
        raw = validate._strings(col, name)
        values = np.zeros(len(raw))
        missing = np.zeros(len(raw), dtype=bool)
        unparseable = np.zeros(len(raw), dtype=bool)
        for i, v in enumerate(raw):
            if v is None or not str(v).strip():
                missing[i] = True
                continue
            try:
                values[i] = float(str(v).strip())
            except (ValueError, OverflowError):
                unparseable[i] = True
    validate._flag(reasons, missing, f"{name} is missing")
    validate._flag(reasons, unparseable, f"{name} is not a number")
    validate._flag(reasons, ~np.isfinite(values), f"{name} is not finite")
    values = np.where(np.isfinite(values), values, 0.0)
    if whole:
        validate._flag(reasons, values != np.floor(values), f"{name} is not a whole number")
    return values


def _lists(table: pa.Table, name: str) -> list[npt.NDArray[np.float64] | str | None]:
    """Each cell's list of numbers (None: null; a string: why it is not a list of numbers)."""
    if name not in table.column_names:
        return [None] * table.num_rows
    col = table[name]
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    out: list[npt.NDArray[np.float64] | str | None] = []
    if pa.types.is_list(col.type) or pa.types.is_large_list(col.type):
        value_type = col.type.value_type
        if not (pa.types.is_integer(value_type) or pa.types.is_floating(value_type)):
            return [f"{name} is not a list of numbers"] * len(col)
        flat = np.asarray(
            pc.fill_null(pc.cast(col.flatten(), pa.float64()), math.nan).to_numpy(
                zero_copy_only=False
            ),
            dtype=float,
        )
        offsets = np.asarray(col.offsets.to_numpy(zero_copy_only=False), dtype=np.int64)
        valid = np.asarray(col.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
        base = offsets[0]
        for i in range(len(col)):
            out.append(flat[offsets[i] - base : offsets[i + 1] - base] if valid[i] else None)
        return out
    for value in validate._strings(col, name):
        if value is None:
            out.append(None)
            continue
        try:
            parsed = json.loads(str(value))
            if not isinstance(parsed, list) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in parsed
            ):
                raise TypeError
            out.append(np.asarray(parsed, dtype=float))
        except (ValueError, TypeError, OverflowError):
            out.append(f"{name} is not a list of numbers")
    return out


def _cell_problem(
    i: int,
    v: dict[str, npt.NDArray[np.float64]],
    hist: npt.NDArray[np.float64] | str | None,
    top: npt.NDArray[np.float64] | str | None,
    cap_given: bool,
) -> str | None:
    """The first inconsistency of cell ``i``'s values (each already a finite number)."""
    n = v["n"][i]

    def above(x: float, bound: float) -> bool:
        return x > bound + REL_TOL * abs(bound) + 1e-12

    for name in ("revenue_nonzero", "errors"):
        if v[name][i] < 0:
            return f"{name} is negative"
        if v[name][i] > n:
            return f"{name} ({v[name][i]:.0f}) exceeds n ({n:.0f})"
    pairs = [("revenue_sum", "revenue_sum_sq"), ("log_latency_sum", "log_latency_sum_sq")]
    if cap_given:
        pairs.insert(1, ("revenue_capped_sum", "revenue_capped_sum_sq"))
    for s, sq in pairs:
        if v[sq][i] < 0:
            return f"{sq} is negative"
        if s.startswith("revenue") and v[s][i] < 0:
            return f"{s} is negative"
        if above(v[s][i] ** 2, n * v[sq][i]):
            return f"{s}² exceeds n·{sq} (impossible for real values: Cauchy–Schwarz)"
    if above(v["revenue_sum"][i], n * validate.REVENUE_MAX):
        return f"revenue_sum is above n × {validate.REVENUE_MAX:g}"
    if above(v["revenue_sum_sq"][i], n * validate.REVENUE_MAX**2):
        return f"revenue_sum_sq is above n × {validate.REVENUE_MAX**2:g}"
    if not n * _LOG_MIN - 1e-9 * n <= v["log_latency_sum"][i] <= n * _LOG_MAX + 1e-9 * n:
        return "log_latency_sum is outside n × [ln 0.01, ln 1e9] (latencies in ms, floored at 0.01)"
    if v["revenue_nonzero"][i] == 0 and v["revenue_sum"][i] > 0:
        return "revenue_sum is positive but revenue_nonzero is 0"
    if v["revenue_nonzero"][i] > 0 and v["revenue_sum"][i] == 0:
        return "revenue_nonzero is positive but revenue_sum is 0"
    if cap_given:
        cap = v["revenue_cap"][i]
        if not cap > 0:
            return "revenue_cap is not positive"
        if above(v["revenue_capped_sum"][i], v["revenue_sum"][i]):
            return "revenue_capped_sum exceeds revenue_sum"
        if above(v["revenue_capped_sum_sq"][i], v["revenue_sum_sq"][i]):
            return "revenue_capped_sum_sq exceeds revenue_sum_sq"
        if above(v["revenue_capped_sum"][i], n * cap):
            return "revenue_capped_sum exceeds n × revenue_cap"
    if hist is None:
        return "latency_hist is missing"
    if isinstance(hist, str):
        return hist
    if len(hist) != buckets.N_LATENCY_BUCKETS:
        return (
            f"latency_hist has {len(hist)} buckets where the engine's edges make "
            f"{buckets.N_LATENCY_BUCKETS} (see latencyEdgesMs in the settings)"
        )
    if not np.all(np.isfinite(hist)) or np.any(hist != np.floor(hist)):
        return "latency_hist holds a count that is not a whole number"
    if np.any(hist < 0):
        return "latency_hist holds a negative count"
    if hist.sum() != n:
        return f"latency_hist counts {hist.sum():.0f} requests where n is {n:.0f}"
    if isinstance(top, str):
        return top
    if top is not None:
        if not np.all(np.isfinite(top)):
            return "revenue_top holds a value that is not finite"
        if np.any(top < 0) or np.any(top > validate.REVENUE_MAX):
            return f"revenue_top holds a value outside [0, {validate.REVENUE_MAX:g}]"
        if len(top) > min(n, TOP_MAX):
            return f"revenue_top holds {len(top)} values, more than n or {TOP_MAX}"
        if np.count_nonzero(top) > v["revenue_nonzero"][i]:
            return "revenue_top holds more positive values than revenue_nonzero"
        if above(math.fsum(top.tolist()), v["revenue_sum"][i]):
            return "revenue_top adds up to more than revenue_sum"
        if above(math.fsum((top * top).tolist()), v["revenue_sum_sq"][i]):
            return "revenue_top's squares add up to more than revenue_sum_sq"
        if len(top) == n and not math.isclose(
            math.fsum(top.tolist()), v["revenue_sum"][i], rel_tol=1e-6, abs_tol=1e-9
        ):
            return "revenue_top holds all n values but does not add up to revenue_sum"
    return None


def _lateness(info: validate.ExperimentInfo | None) -> timedelta:
    assert info is not None  # a good cell names a registered experiment
    return info.allowed_lateness


def covers(top: npt.NDArray[np.float64] | None, n: int, cap: float) -> bool:
    """Whether ``top`` (a cell's largest values, descending) holds every value above ``cap``."""
    if top is None:
        return False
    return len(top) >= n or (len(top) > 0 and top[-1] <= cap)


def recap(
    total: float, total_sq: float, top: npt.NDArray[np.float64], cap: float
) -> tuple[float, float]:
    """Capped sum and sum of squares from the uncapped ones and the values above ``cap``."""
    over = top[top > cap]
    excess = math.fsum((over - cap).tolist())
    excess_sq = math.fsum((over * over - cap * cap).tolist())
    return total - excess, max(total_sq - excess_sq, 0.0)


def prepare(
    table: pa.Table,
    registry: Mapping[str, validate.ExperimentInfo],
    *,
    now: datetime,
    future_tolerance: timedelta = timedelta(minutes=5),
) -> Cells:
    """Validate a batch of cells and split it into typed good cells and rejects with reasons.

    Revenue is capped with each experiment's cap in ``registry`` (its frozen cap): a cell
    capped with that cap is taken as given; a cell capped otherwise (or not at all) is
    capped here from its ``revenue_top`` when those values reach down to the cap, and
    quarantined when they do not. Before a cap is frozen, the capped sums are the uncapped
    ones, as for raw rows. Raises ``validate.BatchRefused`` only for a batch unusable as a
    whole (a missing or repeated column).
    """
    names = table.column_names
    twice = sorted({c for c in names if names.count(c) > 1})
    if twice:
        raise validate.BatchError(f"column(s) {', '.join(map(repr, twice))} appear more than once")
    missing = [c for c in REQUIRED if c not in names]
    if missing:
        raise validate.BatchError(f"batch of cells is missing column(s): {', '.join(missing)}")
    n_cells = table.num_rows
    reasons = np.full(n_cells, None, dtype=object)
    if validate.PROBLEM_COLUMN in names:
        validate._flag_each(reasons, validate._strings(table[validate.PROBLEM_COLUMN], "x"))

    keys, key_index = validate._experiment_keys(table["experiment"])
    infos = [registry.get(k) if k else None for k in keys]
    why = np.array(
        [validate._experiment_reason(k, i is not None) for k, i in zip(keys, infos, strict=True)]
        + [None],
        dtype=object,
    )
    validate._flag_each(reasons, why[key_index])
    exp_ids = np.array([-1 if i is None else i.id for i in infos] + [-1], dtype=np.int64)
    arm = validate._arms(table["arm"], reasons).astype(np.int64)

    ts_us, ts_code = validate._timestamps(table["minute"])
    validate._flag(reasons, ts_code != 0, "minute is not a valid timestamp (ISO 8601 or epoch s)")
    validate._flag(reasons, ts_us < 0, "minute is before 1970-01-01T00:00:00Z")
    validate._flag(reasons, ts_us % _MINUTE_US != 0, "minute is not the start of a minute")
    limit = (now + future_tolerance - validate.TS_MIN) // timedelta(microseconds=1)
    validate._flag(reasons, ts_us > limit, f"minute is more than {future_tolerance} in the future")

    v: dict[str, npt.NDArray[np.float64]] = {}
    for name in ("n", "revenue_nonzero", "errors"):
        v[name] = _numbers(table, name, reasons, whole=True)
    validate._flag(reasons, v["n"] < 1, "n is below 1 (a cell holds at least one request)")
    validate._flag(reasons, v["n"] > N_MAX, f"n is above {N_MAX:g}")
    for name in ("revenue_sum", "revenue_sum_sq", "log_latency_sum", "log_latency_sum_sq"):
        v[name] = _numbers(table, name, reasons)
    cap_given = np.zeros(n_cells, dtype=bool)
    if "revenue_cap" in names:
        cap_col = table["revenue_cap"]
        cap_given = ~np.asarray(pc.is_null(cap_col).to_numpy(zero_copy_only=False), dtype=bool)
        scratch = np.full(n_cells, None, dtype=object)  # reasons that count only when capped
        for name in ("revenue_cap", "revenue_capped_sum", "revenue_capped_sum_sq"):
            if name not in names:
                validate._flag(scratch, np.ones(n_cells, bool), f"{name} is missing")
            v[name] = _numbers(table, name, scratch)
        validate._flag_each(reasons, np.where(cap_given, scratch, np.full(n_cells, None)))
    if "latency_edges" in names:
        edges = validate._strings(table["latency_edges"], "latency_edges")
        wrong = np.array([e is not None and e != LATENCY_EDGES_ID for e in edges], dtype=bool)
        validate._flag(
            reasons,
            wrong,
            f"latency_edges is not the engine's edges ({LATENCY_EDGES_ID}); count the "
            "histogram on latencyEdgesMs from the settings",
        )
    hists = _lists(table, "latency_hist")
    tops = _lists(table, "revenue_top")
    for i in np.flatnonzero(reasons == None):  # noqa: E711 - elementwise on an object array
        reasons[i] = _cell_problem(int(i), v, hists[i], tops[i], bool(cap_given[i]))

    # Capping: the experiment's frozen cap decides; the cell's own capped sums are used when
    # they were computed with it, else they are recomputed from the cell's largest values.
    capped_sum = v["revenue_sum"].copy()
    capped_sq = v["revenue_sum_sq"].copy()
    capped_at: list[float | None] = [None] * n_cells
    sorted_tops: list[npt.NDArray[np.float64] | None] = [None] * n_cells
    info_of = [*infos, None]
    for i in np.flatnonzero(reasons == None):  # noqa: E711
        top = tops[i]
        if isinstance(top, np.ndarray):
            sorted_tops[i] = np.sort(top)[::-1]
        info = info_of[key_index[i]]
        cap = None if info is None else info.revenue_cap
        if cap is None:
            continue
        if cap_given[i] and v["revenue_cap"][i] == cap:
            capped_sum[i], capped_sq[i] = v["revenue_capped_sum"][i], v["revenue_capped_sum_sq"][i]
        elif covers(sorted_tops[i], int(v["n"][i]), cap):
            top_i = sorted_tops[i]
            assert top_i is not None
            capped_sum[i], capped_sq[i] = recap(
                v["revenue_sum"][i], v["revenue_sum_sq"][i], top_i, cap
            )
        else:
            given = f"capped at {v['revenue_cap'][i]:g}" if cap_given[i] else "not capped"
            reasons[i] = (
                f"revenue is {given} but the experiment's frozen cap is {cap!r}, and "
                "revenue_top does not reach down to it; send revenue_cap with that cap"
            )
            continue
        capped_at[i] = cap

    fine = reasons == None  # noqa: E711
    good, bad = np.flatnonzero(fine), np.flatnonzero(~fine)
    minute = ts_us[good] // _MINUTE_US
    exp_good = exp_ids[key_index[good]]
    lateness_us = np.array(
        [
            lateness // timedelta(microseconds=1)
            for lateness in (_lateness(info_of[key_index[i]]) for i in good)
        ],
        dtype=np.int64,
    )
    now_us = (now - validate.TS_MIN) // timedelta(microseconds=1)
    late = (minute + 1) * _MINUTE_US + lateness_us <= now_us
    n_good = v["n"][good].astype(np.int64)
    sums: dict[str, npt.NDArray[Any]] = {
        "n": n_good,
        "revenue_sum": v["revenue_sum"][good],
        "revenue_sum_sq": v["revenue_sum_sq"][good],
        "revenue_capped_sum": capped_sum[good],
        "revenue_capped_sum_sq": capped_sq[good],
        "revenue_nonzero": v["revenue_nonzero"][good].astype(np.int64),
        "log_latency_sum": v["log_latency_sum"][good],
        "log_latency_sum_sq": v["log_latency_sum_sq"][good],
        "errors": v["errors"][good].astype(np.int64),
        "late_n": np.where(late, n_good, 0).astype(np.int64),
    }
    hist = np.zeros((len(good), buckets.N_LATENCY_BUCKETS), dtype=np.int64)
    for j, i in enumerate(good):
        h = hists[i]
        assert isinstance(h, np.ndarray)
        hist[j] = h.astype(np.int64)
    return Cells(
        received=n_cells,
        rows=good,
        experiment_id=exp_good,
        arm=arm[good],
        minute=minute,
        sums=sums,
        hist=hist,
        tops=[sorted_tops[i] for i in good],
        capped_at=[capped_at[i] for i in good],
        late=late,
        rejects=[validate.Reject(int(i) + 1, str(reasons[i])) for i in bad],
    )


def from_rows(
    rows: pa.Table, *, revenue_cap: float | None = None, top: int | None = None
) -> pa.Table:
    """The cells of clean, typed request rows: what a sender computes, as a reference.

    ``rows`` has ``experiment``, ``arm``, ``ts`` (an Arrow timestamp), ``revenue``,
    ``latency_ms`` and ``error``, every value valid (this does not validate). Sums are taken
    in row order with float64, as the raw path's loader takes them, so one batch of rows
    and its cells give the same rollups. ``revenue_cap``: the capped sums use it (and the
    cells say so); ``top``: each cell carries its ``top`` largest revenue values (all of
    them when it has fewer requests). The reference Spark job computes the same columns.
    """
    exp_names, exp_idx = validate._encode(rows["experiment"], "experiment")
    arm_names, arm_idx = validate._encode(rows["arm"], "arm")
    ts = np.asarray(
        pc.cast(rows["ts"], pa.timestamp("us", tz="UTC"))
        .cast(pa.int64())
        .to_numpy(zero_copy_only=False),
        dtype=np.int64,
    )
    revenue = np.asarray(rows["revenue"].to_numpy(zero_copy_only=False), dtype=np.float64)
    latency = np.asarray(rows["latency_ms"].to_numpy(zero_copy_only=False), dtype=np.float64)
    error = np.asarray(rows["error"].to_numpy(zero_copy_only=False), dtype=bool)
    minute = ts // _MINUTE_US
    key = (exp_idx << 40) | (arm_idx << 32) | minute
    keys, inverse = np.unique(key, return_inverse=True)
    inverse = inverse.reshape(-1)
    g = len(keys)

    def total(values: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
        return np.bincount(inverse, weights=values, minlength=g)  # type: ignore[return-value]

    log_lat = np.log(np.maximum(latency, rollups.LOG_LATENCY_FLOOR_MS))
    columns: dict[str, Any] = {
        "experiment": [exp_names[k >> 40] for k in keys],
        "arm": [arm_names[(k >> 32) & 0xFF] for k in keys],
        "minute": pa.array(
            ((keys & 0xFFFFFFFF) * _MINUTE_US).astype("datetime64[us]"),
            type=pa.timestamp("us", tz="UTC"),
        ),
        "n": np.bincount(inverse, minlength=g).astype(np.int64),
        "revenue_sum": total(revenue),
        "revenue_sum_sq": total(revenue * revenue),
        "revenue_nonzero": np.bincount(inverse, weights=revenue > 0, minlength=g).astype(np.int64),
        "errors": np.bincount(inverse, weights=error, minlength=g).astype(np.int64),
        "log_latency_sum": total(log_lat),
        "log_latency_sum_sq": total(log_lat * log_lat),
    }
    if revenue_cap is not None:
        capped = np.minimum(revenue, revenue_cap)
        columns["revenue_cap"] = np.full(g, revenue_cap)
        columns["revenue_capped_sum"] = total(capped)
        columns["revenue_capped_sum_sq"] = total(capped * capped)
    hist = np.zeros((g, buckets.N_LATENCY_BUCKETS), dtype=np.int64)
    np.add.at(hist, (inverse, buckets.latency_bucket(latency)), 1)
    columns["latency_hist"] = pa.array(list(hist), type=pa.list_(pa.int64()))
    if top is not None:
        order = np.lexsort((-revenue, inverse))
        starts = np.searchsorted(inverse[order], np.arange(g))
        ends = np.append(starts[1:], len(order))
        columns["revenue_top"] = pa.array(
            [revenue[order[s : min(e, s + top)]] for s, e in zip(starts, ends, strict=True)],
            type=pa.list_(pa.float64()),
        )
    columns["latency_edges"] = [LATENCY_EDGES_ID] * g
    return pa.table(columns)
