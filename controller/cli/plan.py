"""``canaryctl plan``: how many samples and how much time a guardrail needs to detect an effect.

Before an experiment: from the traffic, the canary weight, the metric's baseline mean and
spread and the effect to detect, :func:`analysis.plan` gives the fixed-horizon sample size
and the sequential test's median and 90th-percentile detection (simulated with a fixed
seed, so the same inputs give the same plan). This module parses, formats and reports bad
input as the option it came from; the numbers are the analysis engine's.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Annotated, Any

import typer

from controller.cli import output
from controller.cli.common import EXIT_USAGE, fail
from controller.experiment import defaults

app = typer.Typer()

#: analysis.plan's argument names, as the options people typed.
_OPTION_OF = {
    "requests_per_second": "--rps",
    "weight_challenger": "--weight",
    "sd": "--sd",
    "baseline_sd": "--sd",
    "effect": "--effect",
    "alpha": "--alpha",
    "power": "--power",
    "n_guardrails": "--guardrails",
    "deadline_seconds": "--deadline",
}


def _duration(seconds: float) -> str | None:
    if not math.isfinite(seconds):
        return None
    from controller.experiment import spec

    return spec.format_duration(timedelta(seconds=round(seconds)))


def _count(n: float) -> int | None:
    return math.ceil(n) if math.isfinite(n) else None


def plan_document(inputs: dict[str, Any], p: Any) -> dict[str, Any]:
    """The plan as data (``-o json|yaml``): the inputs and the engine's figures."""
    from analysis import multiplicity

    rate_b = inputs["requestsPerSecond"] * inputs["weight"] / 100
    return {
        "inputs": inputs,
        "alphaPerGuardrail": multiplicity.alpha_each(inputs["alpha"], inputs["guardrails"]),
        "effectAbsolute": p.effect_abs,
        "fixedHorizon": {
            "challengerSamples": _count(p.fixed_horizon_n),
            "championSamples": _count(
                p.fixed_horizon_n * (100 - inputs["weight"]) / inputs["weight"]
            ),
            "seconds": p.fixed_horizon_seconds,
            "duration": _duration(p.fixed_horizon_seconds),
        },
        "sequential": {
            "medianChallengerSamples": _count(p.median_n),
            "medianDuration": _duration(p.median_n / rate_b),
            "p90ChallengerSamples": _count(p.p90_n),
            "p90Duration": _duration(p.p90_n / rate_b),
            "powerByDeadline": p.power_by_deadline,
            "nStar": p.n_star,
        },
    }


def plan_table(doc: dict[str, Any]) -> str:
    i, fh, sq = doc["inputs"], doc["fixedHorizon"], doc["sequential"]
    rate_b = i["requestsPerSecond"] * i["weight"] / 100
    effect = (
        f"{100 * i['effect']:+g} % of the mean {i['mean']:g} = {doc['effectAbsolute']:+.4g} per request"
        if i["relative"]
        else f"{doc['effectAbsolute']:+.4g} per request (mean {i['mean']:g})"
    ).replace("-", "−")

    def when(n: int | None, d: str | None) -> str:
        return "not by the deadline" if n is None else f"{n:,} challenger samples, {d}"

    lines = [
        "One mean guardrail, planned with the analysis engine (analysis.plan):",
        f"  traffic            {i['requestsPerSecond']:g} req/s, {i['weight']:g} % on the challenger "
        f"({rate_b:g} req/s)",
        f"  metric             mean {i['mean']:g}, standard deviation {i['sd']:g}",
        f"  effect to detect   {effect}",
        f"  alpha              {i['alpha']:g} over {i['guardrails']} guardrails and the SRM check: "
        f"{doc['alphaPerGuardrail']:.4g} per test",
        f"Fixed horizon ({100 * i['power']:g} % power):",
        f"  samples            {fh['challengerSamples']:,} challenger, {fh['championSamples']:,} champion",
        f"  time               {fh['duration']}",
        "Sequential test canaryctl runs (anytime-valid; simulated, fixed seed):",
        f"  median detection   {when(sq['medianChallengerSamples'], sq['medianDuration'])}",
        f"  90th percentile    {when(sq['p90ChallengerSamples'], sq['p90Duration'])}",
        f"  power by deadline  {100 * sq['powerByDeadline']:.0f} % within {i['deadline']}",
        f"  tuning             n* = {sq['nStar']:,.0f} samples per arm "
        f"(spec.analysis.tuning.samplesPerArm)",
    ]
    return "\n".join(lines) + "\n"


@app.command()
def plan(
    rps: Annotated[float, typer.Option("--rps", help="Total traffic, requests per second.")],
    weight: Annotated[
        float, typer.Option("--weight", help="Canary weight: the challenger's share in percent.")
    ],
    mean: Annotated[float, typer.Option("--mean", help="The metric's baseline mean per request.")],
    sd: Annotated[
        float, typer.Option("--sd", help="The metric's baseline standard deviation per request.")
    ],
    effect: Annotated[
        float,
        typer.Option(
            "--effect",
            help="Effect to detect: a fraction of the mean (-0.05 is a 5 % drop), or with "
            "--absolute a change in the metric's unit.",
        ),
    ],
    absolute: Annotated[
        bool, typer.Option("--absolute", help="--effect is absolute, not relative.")
    ] = False,
    alpha: Annotated[
        float, typer.Option(help="The experiment's family-wise alpha.")
    ] = defaults.ALPHA,
    guardrails: Annotated[
        int, typer.Option(help="Guardrails sharing alpha (with the SRM check).")
    ] = 3,
    power: Annotated[float, typer.Option(help="Power of the fixed-horizon comparison.")] = 0.8,
    deadline: Annotated[
        str, typer.Option(help="Deadline for the power figure (the experiment's maxDuration).")
    ] = defaults.MAX_DURATION,
    samples_per_arm: Annotated[
        int | None,
        typer.Option(help="τ² tuning, as spec.analysis.tuning.samplesPerArm (default: engine's)."),
    ] = None,
    burn_in: Annotated[
        int, typer.Option(help="Burn-in: requests in the smaller arm before any verdict.")
    ] = defaults.BURN_IN_MIN_REQUESTS,
    out: Annotated[
        output.Format, typer.Option("-o", "--output", help="Output format: table, json or yaml.")
    ] = output.Format.TABLE,
) -> None:
    """How many samples and how much time a guardrail needs to detect an effect.

    `canaryctl plan --rps 200 --weight 10 --mean 0.13 --sd 0.7 --effect -0.05`

    `canaryctl plan --rps 200 --weight 50 --mean 0.13 --sd 0.7 --effect -0.02 -o json`
    """
    import analysis
    from analysis import sequential
    from controller.experiment import spec

    try:
        deadline_td = spec.parse_duration(deadline)
    except ValueError:
        fail(f"--deadline: {deadline!r} is not a duration like '6h' or '24h'", EXIT_USAGE)
    if not 0 < alpha <= defaults.ALPHA_MAX:
        fail(
            f"--alpha: must lie in (0, {defaults.ALPHA_MAX:g}], as spec.analysis.alpha (got {alpha:g})",
            EXIT_USAGE,
        )
    if not 0 < weight < 100:
        fail(f"--weight: must lie strictly between 0 and 100 (got {weight:g})", EXIT_USAGE)
    if not (math.isfinite(mean) and (mean != 0 or absolute)):
        fail("--mean: must be a non-zero number for a relative effect", EXIT_USAGE)
    if samples_per_arm is not None and samples_per_arm < 1:
        fail(f"--samples-per-arm: must be at least 1 (got {samples_per_arm})", EXIT_USAGE)
    try:
        p = analysis.plan(
            mean,
            sd,
            rps,
            weight / 100,
            effect,
            relative=not absolute,
            alpha=alpha,
            n_guardrails=guardrails,
            power=power,
            deadline_seconds=deadline_td.total_seconds(),
            n_star=float(samples_per_arm or sequential.DEFAULT_N_STAR),
            burn_in_requests=float(burn_in),
        )
    except ValueError as exc:
        text = str(exc)
        option = next((o for a, o in _OPTION_OF.items() if text.startswith(a)), None)
        fail(f"{option}: {text}" if option else text, EXIT_USAGE)
    inputs = {
        "requestsPerSecond": rps,
        "weight": weight,
        "mean": mean,
        "sd": sd,
        "effect": effect,
        "relative": not absolute,
        "alpha": alpha,
        "guardrails": guardrails,
        "power": power,
        "deadline": spec.format_duration(deadline_td),
        "burnIn": burn_in,
    }
    doc = plan_document(inputs, p)
    if out is output.Format.TABLE:
        typer.echo(plan_table(doc), nl=False)
    else:
        typer.echo(output.dump(doc, out), nl=False)
