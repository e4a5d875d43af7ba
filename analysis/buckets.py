"""Fixed log-spaced latency histogram buckets shared by storage and the tail tests.

Edges run from 0.1 ms to 60 s; adjacent edges differ by a factor below 1.02. Bucket 0
holds values below the first edge, bucket ``i`` (1 ≤ i ≤ len(edges) − 1) holds
``edges[i-1] <= x < edges[i]`` and the last bucket holds values at or above 60 s. The
edges never change: rollups stored under one set of edges stay comparable forever.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

_LOW_MS = 0.1
_HIGH_MS = 60_000.0
_MAX_RATIO = 1.02
_N_INTERVALS = math.ceil(math.log(_HIGH_MS / _LOW_MS) / math.log(_MAX_RATIO))

#: Histogram edges in milliseconds, strictly increasing, ratio between neighbours < 1.02.
LATENCY_EDGES_MS: npt.NDArray[np.float64] = np.geomspace(_LOW_MS, _HIGH_MS, _N_INTERVALS + 1)
LATENCY_EDGES_MS.setflags(write=False)

#: Number of histogram buckets, underflow and overflow included.
N_LATENCY_BUCKETS: int = len(LATENCY_EDGES_MS) + 1


def latency_bucket(latency_ms: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Return the bucket index of each latency in milliseconds (see module docstring)."""
    values = np.asarray(latency_ms, dtype=np.float64)
    return np.searchsorted(LATENCY_EDGES_MS, values, side="right").astype(np.int64)
