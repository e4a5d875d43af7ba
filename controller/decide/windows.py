"""Which minutes enter the analysis: each traffic step's window, and where a window is cut.

The operator keeps, per Experiment, the history of its traffic steps as windows of whole
minutes (persisted with the analysis state). Each tick it asks this module whether the
route still agrees with the status (``cut_at``), updates the history (``update_history``)
and clips it to the finalised minutes (``windows``); the analysis then reads the rollups
of exactly those windows. Pure: no I/O, no clock (``now`` is an argument).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

MINUTE = timedelta(minutes=1)


def floor_minute(t: datetime) -> datetime:
    return t.replace(second=0, microsecond=0)


def ceil_minute(t: datetime) -> datetime:
    floor = floor_minute(t)
    return floor if floor == t else floor + MINUTE


def watermark(now: datetime, lateness: timedelta) -> datetime:
    """The end of the last finalised minute: minutes ending at or before ``now − lateness``."""
    return floor_minute(now - lateness)


@dataclass(frozen=True)
class StepRecord:
    """One traffic step's window: [start, end) in whole minutes, and its reported share."""

    index: int
    weight: int
    share: float
    start: datetime
    end: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "weight": self.weight,
            "share": self.share,
            "start": self.start.isoformat(),
            "end": None if self.end is None else self.end.isoformat(),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> StepRecord:
        return cls(
            int(d["index"]),
            int(d["weight"]),
            float(d["share"]),
            datetime.fromisoformat(d["start"]),
            None if d.get("end") is None else datetime.fromisoformat(d["end"]),
        )


#: A step's window clipped to the finalised minutes: (record, start, end, closed for good).
Window = tuple[StepRecord, datetime, datetime, bool]


def cut_at(
    *,
    route_weight: int | None,
    step_weight: int,
    evaluated_until: datetime | None,
    last_consistent: datetime | None,
    step_started_at: datetime,
) -> datetime | None:
    """Where the open window ends because the route disagrees with the status (None: it agrees).

    The route at another weight than the status's step means an operator died between
    writing the route and the status, or someone edited the route: minutes after the last
    one the analysis already used (else the last analysis, else the step's start) enter no
    test. ``route_weight`` is None when there is no router to ask.
    """
    if route_weight is None or route_weight == step_weight:
        return None
    return evaluated_until or last_consistent or step_started_at


def update_history(
    history: Sequence[StepRecord],
    *,
    step_index: int,
    step_started_at: datetime,
    weight: int,
    share: float,
    now: datetime,
    cut: datetime | None = None,
) -> list[StepRecord]:
    """The history after this tick: the current step's window opened, the previous one closed.

    A step's window starts at the first whole minute after its weight was set and ends at
    the minute the next step's weight was set, so no minute of mixed weights enters a test.
    Steps at 0 % or 100 % are not windows of a test.

    ``cut`` (from ``cut_at``) ends the open window there, and minutes after it enter no
    test. When the route is back at the step's weight, the step continues in a new window
    (a new stratum) from the next minute.
    """
    steps = list(history)
    if cut is not None:
        if steps and steps[-1].end is None:
            steps[-1] = replace(steps[-1], end=max(steps[-1].start, floor_minute(cut)))
        return steps
    if not 0 < weight < 100:
        return steps
    fair = share if 0 < share < 1 else weight / 100
    if steps and steps[-1].index == step_index:
        last = steps[-1]
        if last.end is None:
            steps[-1] = replace(last, share=fair)
        else:  # the step was cut and its weight is restored: a new stratum from now on
            steps.append(StepRecord(step_index, weight, fair, ceil_minute(now)))
        return steps
    if steps and steps[-1].end is None:
        steps[-1] = replace(steps[-1], end=floor_minute(step_started_at))
    steps.append(StepRecord(step_index, weight, fair, ceil_minute(step_started_at)))
    return steps


def windows(history: Sequence[StepRecord], final_until: datetime) -> list[Window]:
    """Each step's window clipped to finalised minutes, and whether it is closed for good.

    A step whose end lies beyond the watermark is still open (late data may still arrive),
    and the steps after it wait: only the last window passed to the analysis may be open.
    """
    out = []
    for record in history:
        end = final_until if record.end is None else min(record.end, final_until)
        end = max(end, record.start)
        closed = record.end is not None and record.end <= final_until
        out.append((record, record.start, end, closed))
        if not closed:
            break
    return out
