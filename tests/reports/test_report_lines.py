"""The line each guardrail's estimate is judged against, from a frozen snapshot (pure)."""

from __future__ import annotations

import pytest

from controller.reports import view


@pytest.mark.parametrize(
    ("guardrail", "derived", "expected"),
    [
        (
            {
                "name": "rev",
                "kind": "mean",
                "direction": "higherIsBetter",
                "margin": {"relative": 0.02},
            },
            {},
            ("relative", -0.02, 0.0, None),
        ),
        (
            {
                "name": "cost",
                "kind": "mean",
                "direction": "lowerIsBetter",
                "margin": {"relative": 0.1},
            },
            {},
            ("relative", 0.1, 0.0, None),
        ),
        (
            {
                "name": "rev",
                "kind": "mean",
                "direction": "higherIsBetter",
                "margin": {"absolute": 0.5},
            },
            {},
            ("absolute", -0.5, 0.0, None),
        ),
        (
            {
                "name": "p99",
                "kind": "tail",
                "kappa": 1.2,
                "thresholdFromBaseline": {"quantile": 0.99},
            },
            {"thresholdsMs": {"p99": 250.0}},
            ("ratio", 1.2, 1.0, 250.0),
        ),
        ({"name": "errors", "kind": "rate", "kappa": 1.5}, {}, ("ratio", 1.5, 1.0, None)),
    ],
)
def test_margin_lines(guardrail: dict, derived: dict, expected: tuple) -> None:  # type: ignore[type-arg]
    (info,) = view.guardrail_infos({"analysis": {"guardrails": [guardrail]}, "derived": derived})
    assert (info.scale, info.margin_line, info.null_line, info.threshold_ms) == expected
