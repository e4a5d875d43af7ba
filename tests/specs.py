"""Experiment specs shared by the tests of the model, the parser and the CRD's CEL rules."""

from __future__ import annotations

from typing import Any

#: The smallest valid spec: defaults everywhere the CRD has one. Copy it before changing it.
MINIMAL: dict[str, Any] = {
    "champion": {"name": "a"},
    "challenger": {"name": "b"},
    "router": {"gatewayAPI": {"httpRoute": "r"}},
    "steps": [{"weight": 5, "minDuration": "10m"}, {"weight": 50, "minDuration": "10m"}],
    "analysis": {
        "revenueCap": {"value": 10},
        "guardrails": [
            {"name": "revenue", "kind": "mean", "margin": {"relative": 0.02}},
            {"name": "latency", "kind": "tail", "thresholdMs": 200, "kappa": 1.2},
            {"name": "errors", "kind": "rate", "kappa": 1.5},
        ],
    },
}
