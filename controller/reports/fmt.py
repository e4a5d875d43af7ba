"""How a report writes its numbers: one formatter per kind, shared by the page and its charts.

Sits under ``render`` and ``charts`` (both show the same figures, in text and in tooltips).
Pure text formatting: no statistics, no HTML.
"""

from __future__ import annotations

import math
from datetime import datetime

MINUS = "−"


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
    """A guardrail's effect as people read it: ``−25.90 %`` (relative), ``×1.130`` (ratio)."""
    if x is None or not math.isfinite(x):
        return "–"
    if scale == "relative":
        return _minus(f"{100 * x:+.2f} %")
    if scale == "ratio":
        return f"×{x:.3f}"
    return _minus(f"{x:+.4g}")


def bounds(lower: float | None, upper: float | None, scale: str | None) -> str:
    return f"[{value(lower, scale)}, {value(upper, scale)}]"


def p(x: float | None) -> str:
    """A p-value: four decimals, or two significant digits below 0.001."""
    if x is None or not math.isfinite(x):
        return "–"
    return f"{x:.2g}" if x < 0.001 else f"{x:.4f}"


def alpha(x: float | None) -> str:
    return "–" if x is None else f"{x:.4g}"


def time(t: datetime | None) -> str:
    return "–" if t is None else t.strftime("%Y-%m-%d %H:%M UTC")


def clock(t: datetime | None) -> str:
    return "–" if t is None else t.strftime("%H:%M UTC")


def in_unit(x: float | None, unit: str | None) -> str:
    """A per-arm value in its metric's unit: ``0.0812`` revenue, ``0.204 %``, ``41.3 ms``."""
    if x is None or not math.isfinite(x):
        return "–"
    if unit == "share":
        return f"{100 * x:.3g} %"
    if unit == "ms":
        return f"{x:.3g} ms"
    return f"{x:.4g}"


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
    return "–" if n is None else f"{n:,.0f}"
