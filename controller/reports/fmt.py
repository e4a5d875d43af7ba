"""How a report writes its numbers: one formatter per kind, shared by the page and its charts.

Sits under ``render`` and ``charts`` (both show the same figures, in text and in tooltips).
Pure text formatting: no statistics, no HTML. Numbers read as in ``canaryctl status`` and the
demo: every kind the CLI also shows is formatted by ``controller.numbers``; this module adds
only what a report alone shows (coverages, percentage points, times).
"""

from __future__ import annotations

import math
from datetime import datetime

from controller import numbers

MINUS = numbers.MINUS


def _minus(text: str) -> str:
    return text.replace("-", MINUS)


def coverage(percent: float) -> str:
    """A coverage like 99.9875 % shown with enough digits not to round up to 100 %."""
    for digits in range(1, 6):
        text = f"{percent:.{digits}f}"
        if float(text) < 100.0:
            return text
    return f"{percent:.6f}"


def value(x: float | None, scale: str | None) -> str:
    """A guardrail's effect as people read it: ``−25.9 %`` (relative), ``×1.13`` (ratio)."""
    return numbers.effect(x, scale or "absolute")


def bounds(lower: float | None, upper: float | None, scale: str | None) -> str:
    return f"[{value(lower, scale)}, {value(upper, scale)}]"


def p(x: float | None) -> str:
    """A p-value: four decimals, or two significant digits below 0.001."""
    return numbers.p_value(x)


def alpha(x: float | None) -> str:
    return "–" if x is None else f"{x:.4g}"


def time(t: datetime | None) -> str:
    return "–" if t is None else t.strftime("%Y-%m-%d %H:%M UTC")


def clock(t: datetime | None) -> str:
    return "–" if t is None else t.strftime("%H:%M UTC")


def in_unit(x: float | None, unit: str | None) -> str:
    """A per-arm value in its metric's unit: ``0.0812`` revenue, ``0.204 %``, ``41.3 ms``."""
    if unit == "share":
        return numbers.share(x)
    if unit == "ms":
        return numbers.ms(x)
    return numbers.revenue(x)


def change(x: float | None, unit: str | None) -> str:
    """An absolute change in the metric's unit (percentage points for shares)."""
    if x is None or not math.isfinite(x):
        return "–"
    if unit == "share":
        return _minus(f"{100 * x:+.3g} pp")
    if unit == "ms":
        return _minus(f"{x:+.3g} ms")
    return _minus(f"{x:+.4g}")


def percent(x: float | None, digits: int = 2) -> str:
    """A fraction as a signed percentage: ``+2.10 %``."""
    return "–" if x is None or not math.isfinite(x) else _minus(f"{100 * x:+.{digits}f} %")


def count(n: float | None) -> str:
    return numbers.count(n)
