"""Anytime-valid statistics for canary analysis, on sufficient statistics.

This package is pure: it imports numpy, scipy and statsmodels only (an import-linter
contract enforces that it never reaches ``controller``, SQL, Kubernetes or HTTP code).
"""

from analysis.buckets import LATENCY_EDGES_MS, N_LATENCY_BUCKETS, latency_bucket

__all__ = ["LATENCY_EDGES_MS", "N_LATENCY_BUCKETS", "latency_bucket"]
