"""Sequential state carried between looks: explicit in, explicit out, JSON-serialisable.

Sits between two calls of ``decision.evaluate``: the controller persists ``to_dict()`` in
Postgres and passes ``from_dict(...)`` back at the next look, so a restarted operator
continues the same test. It holds the closing statistics of every finished traffic step
(frozen: late data cannot rewrite a closed step, and their e-values multiply with the open
step's), the log e-values frozen at each close, and the running minimum of each
always-valid p-value. This module must not compute statistics.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

STATE_VERSION = 1


@dataclass(frozen=True)
class FrozenArm:
    """One arm's closing sufficient statistics for a finished step."""

    n: int
    revenue_sum: float
    revenue_sum_sq: float
    revenue_nonzero: int
    errors: int
    log_latency_sum: float
    log_latency_sum_sq: float


#: An arm's sufficient statistics by name, in the order every table of them uses (the
#: ingest's pre-aggregated cells, the report's per-step frame).
ARM_FIELDS = tuple(f.name for f in fields(FrozenArm))


def _arm_dict(arm: FrozenArm) -> dict[str, Any]:
    return {name: getattr(arm, name) for name in ARM_FIELDS}


@dataclass(frozen=True)
class FrozenStep:
    """A finished step: its reported share, closing statistics and frozen log e-values.

    ``exceedances`` maps a tail guardrail's name to (champion, challenger) counts above its
    threshold; ``log_e`` maps each guardrail's name to (harm, non-inferiority) ln E of the
    step alone; ``log_bf_srm`` is the step's SRM ln BF.
    """

    weight_challenger: float
    champion: FrozenArm
    challenger: FrozenArm
    exceedances: dict[str, tuple[int, int]] = field(default_factory=dict)
    log_e: dict[str, tuple[float, float]] = field(default_factory=dict)
    log_bf_srm: float = 0.0


@dataclass(frozen=True)
class RunningP:
    """Running minima of a guardrail's always-valid p-values."""

    harm: float = 1.0
    noninferiority: float = 1.0


@dataclass(frozen=True)
class AnalysisState:
    """Everything a look needs from earlier looks.

    Attributes
    ----------
    looks : int
        Looks evaluated so far.
    frozen_steps : tuple of FrozenStep
        Closed steps, in order; step ``i`` of the input is ``frozen_steps[i]`` when frozen.
    running_p : dict of str to RunningP
        Per guardrail name.
    srm_p : float
        Running minimum of the SRM p-value.
    """

    looks: int = 0
    frozen_steps: tuple[FrozenStep, ...] = ()
    running_p: dict[str, RunningP] = field(default_factory=dict)
    srm_p: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-compatible dictionary (finite floats, lists, strings).

        Written out by hand (the shape ``dataclasses.asdict`` gives, plus ``version``): the
        operator saves a state at every look, and ``asdict`` deep-copies every value."""
        return {
            "looks": self.looks,
            "frozen_steps": [
                {
                    "weight_challenger": step.weight_challenger,
                    "champion": _arm_dict(step.champion),
                    "challenger": _arm_dict(step.challenger),
                    "exceedances": {k: list(v) for k, v in step.exceedances.items()},
                    "log_e": {k: list(v) for k, v in step.log_e.items()},
                    "log_bf_srm": step.log_bf_srm,
                }
                for step in self.frozen_steps
            ],
            "running_p": {
                k: {"harm": v.harm, "noninferiority": v.noninferiority}
                for k, v in self.running_p.items()
            },
            "srm_p": self.srm_p,
            "version": STATE_VERSION,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AnalysisState:
        """Inverse of :meth:`to_dict`."""
        version = data.get("version")
        if version != STATE_VERSION:
            raise ValueError(f"data has state version {version!r}, expected {STATE_VERSION}")
        steps = tuple(
            FrozenStep(
                weight_challenger=float(s["weight_challenger"]),
                champion=FrozenArm(**s["champion"]),
                challenger=FrozenArm(**s["challenger"]),
                exceedances={k: (int(v[0]), int(v[1])) for k, v in s["exceedances"].items()},
                log_e={k: (float(v[0]), float(v[1])) for k, v in s["log_e"].items()},
                log_bf_srm=float(s["log_bf_srm"]),
            )
            for s in data["frozen_steps"]
        )
        running = {k: RunningP(**v) for k, v in data["running_p"].items()}
        return cls(int(data["looks"]), steps, running, float(data["srm_p"]))
