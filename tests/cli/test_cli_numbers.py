"""One number format for the CLI, the demo and the reports (``controller.numbers``)."""

from __future__ import annotations

import math

import pytest

from controller import numbers


@pytest.mark.parametrize(
    ("function", "value", "text"),
    [
        (numbers.change, -0.12943, "−12.9 %"),
        (numbers.change, 0.031, "+3.1 %"),
        (numbers.ratio, 3.886, "×3.89"),
        (numbers.ratio, 0.976, "×0.98"),
        (numbers.share, 0.013773, "1.38 %"),
        (numbers.share, 0.00189, "0.189 %"),
        (numbers.ms, 80.5884, "80.6 ms"),
        (numbers.ms, 1250.0, "1,250 ms"),
        (numbers.revenue, 0.124730, "0.1247"),
        (numbers.revenue, -20618.2, "−20,618"),
        (numbers.count, 600000, "600,000"),
        (numbers.change, math.nan, "–"),
        (numbers.ratio, None, "–"),
    ],
)
def test_each_kind_of_number_reads_one_way(function: object, value: float, text: str) -> None:
    assert function(value) == text  # type: ignore[operator]


def test_an_effect_reads_on_its_recorded_scale() -> None:
    assert numbers.effect(-0.05, "relative") == "−5.0 %"
    assert numbers.effect(1.25, "ratio") == "×1.25"
    assert numbers.effect(-0.004, "absolute") == "−0.004"
