"""One number format for every surface people read: the CLI, the demo and the reports.

Pure functions from numbers to short strings; nothing here reads a spec or a status. A
relative change is a signed percentage with one decimal (``−12.9 %``), a ratio has two
decimals after a ×, (``×3.89``), a share of requests is a percentage with three significant
digits (``1.38 %``), a latency has three significant digits and ``ms``, revenue four
significant digits; negative numbers carry the minus sign U+2212; a missing or non-finite
number is ``–``. Durations are Go-style (``controller.experiment.spec.format_duration``).
Only the standard library: the CLI imports this at start-up.
"""

from __future__ import annotations

import math

MISSING = "–"
MINUS = "−"


def _ok(x: float | None) -> bool:
    return x is not None and not isinstance(x, bool) and math.isfinite(x)


def _minus(text: str) -> str:
    return text.replace("-", MINUS)


def change(x: float | None) -> str:
    """A relative change ``B/A − 1``: ``+2.3 %``, ``−12.9 %``."""
    return _minus(f"{100 * x:+.1f} %") if _ok(x) else MISSING  # type: ignore[operator]


def ratio(x: float | None) -> str:
    """A ratio ``B/A``: ``×3.89``, ``×0.98``."""
    return f"×{x:.2f}" if _ok(x) else MISSING


def share(x: float | None) -> str:
    """A share of requests in [0, 1]: ``1.38 %``, ``0.189 %``, ``100 %``."""
    if not _ok(x):
        return MISSING
    return f"{100 * x:.3g} %"  # type: ignore[operator]


def ms(x: float | None) -> str:
    """A latency: ``80.6 ms``, ``125 ms``, ``1,250 ms``."""
    if not _ok(x):
        return MISSING
    return f"{x:,.0f} ms" if abs(x) >= 1000 else f"{x:.3g} ms"  # type: ignore[arg-type]


def revenue(x: float | None, signed: bool = False) -> str:
    """An amount of revenue, in the unit it is logged in: ``0.1247``, ``−1,234``."""
    if not _ok(x):
        return MISSING
    assert x is not None
    sign = "+" if signed else ""
    text = f"{x:{sign},.0f}" if abs(x) >= 1000 else f"{x:{sign}.4g}"
    return _minus(text)


def p_value(x: float | None) -> str:
    """An always-valid p-value: four decimals, or two significant digits below 0.001."""
    if not _ok(x):
        return MISSING
    return f"{x:.2g}" if x < 0.001 else f"{x:.4f}"  # type: ignore[operator]


def count(n: float | None) -> str:
    """A count of requests: ``600,000``."""
    return f"{round(n):,}" if _ok(n) else MISSING  # type: ignore[arg-type]


def effect(x: float | None, scale: str) -> str:
    """A guardrail's estimate or bound on its recorded scale (relative, ratio, absolute)."""
    if scale == "relative":
        return change(x)
    if scale == "ratio":
        return ratio(x)
    return revenue(x, signed=True)
