"""``canaryctl plan``: how many samples and how much time a guardrail needs to detect an effect.

Before an experiment: from the traffic, the canary weight, the metric's baseline mean and
spread and the effect to detect, :func:`analysis.plan` gives the fixed-horizon sample size
and the sequential test's median and 90th-percentile detection (simulated with a fixed
seed, so the same inputs give the same plan). This module parses, formats and reports bad
input as the option it came from; the numbers are the analysis engine's.
"""

from __future__ import annotations

import itertools
import math
from datetime import timedelta
from enum import StrEnum
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


def parse_ramp(text: str) -> list[tuple[float, str | None, int]]:
    """``5:2h,25:4h,50`` -> (weight %, minDuration or None, minSamples); errors name --steps."""
    out: list[tuple[float, str | None, int]] = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        fields = part.split(":")
        try:
            weight = float(fields[0])
            samples = int(fields[2]) if len(fields) == 3 else 0
        except ValueError:
            weight, samples = math.nan, 0
        if not 1 <= len(fields) <= 3 or not math.isfinite(weight):
            fail(
                f"--steps: {part!r}: give weight[:minDuration[:minSamples]], e.g. 5:2h,25:4h,50",
                EXIT_USAGE,
            )
        if not 0 < weight < 100:
            fail(f"--steps: weight {weight:g} must lie strictly between 0 and 100", EXIT_USAGE)
        if samples < 0:
            fail(f"--steps: {part!r}: minSamples must be >= 0", EXIT_USAGE)
        out.append((weight, fields[1] if len(fields) > 1 else None, samples))
    if not out:
        fail("--steps: give at least one step, e.g. 5:2h,25:4h,50", EXIT_USAGE)
    if any(b[0] <= a[0] for a, b in itertools.pairwise(out)):
        fail("--steps: weights must increase from step to step", EXIT_USAGE)
    return out


def _times(t: dict[str, Any]) -> str:
    return f"median {t['median']}, 90th percentile {t['p90']}"


def forecast_table(doc: dict[str, Any], ramp_text: str) -> str:
    """The forecast as lines for people (``plan`` and ``start``)."""
    p, i = doc["promotion"], doc["inputs"]
    lines = [
        f"Forecast through {ramp_text}, maxDuration {doc['maxDuration']}, at "
        f"{doc['requestsPerMinute']:,.0f} requests/min"
        + (" on average, hour by hour" if doc.get("trafficPeriods", 1) > 1 else ""),
        f"(analysis.forecast: {doc['paths']} simulated runs of the decision rule, seed "
        f"{doc['seed']}; alpha {i['alpha']:g} over {i['guardrails']} guardrails and the SRM "
        "check):",
        f"  healthy challenger promoted   {_times(p)}; by maxDuration "
        f"{100 * p['probability']:.0f} %",
        f"  steps end                     {doc['stepsEnd']} (no promotion before)",
        f"  {'guardrail':<16}{'kind':<9}{'limit':<20}non-inferior after the steps",
    ]
    for g in doc["guardrails"]:
        lines.append(
            f"  {g['name']:<16}{g['kind']:<9}{g['limit']:<20}{_times(g)}; by maxDuration "
            f"{100 * g['probability']:.0f} %"
        )
    lines.append(f"  false rollback (healthy)      {100 * doc['falseRollback']:.1f} %")
    if "failure" in doc:
        f = doc["failure"]
        lines.append(
            f"  harm {i['effectText']:<24} fails: {_times(f)}; by maxDuration "
            f"{100 * f['probability']:.0f} %"
        )
    text = "\n".join(lines) + "\n"
    if not doc["likely"]:
        text += f"warning: {doc['advice']}\n"
    return text


def ramp_text(steps: list[Any]) -> str:
    """``5 % for 2h, 25 % for 4h, then 50 %`` from spec steps."""
    from controller.experiment import spec

    parts = [f"{s.weight:g} % for {spec.format_duration(s.min_duration)}" for s in steps[:-1]]
    last = steps[-1]
    tail = f"then {last.weight:g} %" + (
        f" (at least {spec.format_duration(last.min_duration)})"
        if last.min_duration.total_seconds() > 0
        else ""
    )
    return "the steps " + ", ".join([*parts, tail]) if parts else f"one step at {last.weight:g} %"


def _guardrail_range(field: str, sub: str | None = None) -> tuple[float, float]:
    """A guardrail field's range as the CRD schema states it (the one definition)."""
    from controller.experiment import crd

    node = crd.build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for key in ("spec", "analysis", "guardrails"):
        node = node["properties"][key]
    node = node["items"]["properties"][field]
    if sub is not None:
        node = node["properties"][sub]
    return float(node["minimum"]), float(node["maximum"])


#: What --margin means for each kind that takes one (the error messages say it).
_MARGIN_MEANS = {
    "mean": "the tolerated relative drop (0.02 = 2 %)",
    "latency": "the tolerated relative slow-down (0.05 = 5 % slower)",
}


def _steps_guardrail(kind: str, margin: float | None, kappa: float | None) -> Any:
    """The one guardrail ``plan --steps`` forecasts, from --kind, --margin and --kappa."""
    import analysis
    from controller.operate import evaluate

    if kind in _MARGIN_MEANS:
        if kappa is not None:
            fail(
                f"--kappa: not with --kind {kind}: give --margin, {_MARGIN_MEANS[kind]}",
                EXIT_USAGE,
            )
        if margin is None:
            fail(f"--margin: give {_MARGIN_MEANS[kind]} for --kind {kind}", EXIT_USAGE)
        lo, hi = _guardrail_range("margin", "relative")
        if not (lo <= margin <= hi):
            fail(
                f"--margin: {margin:g} must lie in [{lo:g}, {hi:g}], {_MARGIN_MEANS[kind]}",
                EXIT_USAGE,
            )
        if kind == "latency":
            return evaluate.latency_spec("latency-mean", margin)
        return analysis.GuardrailSpec("revenue", analysis.GuardrailKind.MEAN, margin=margin)
    if margin is not None:
        fail(
            f"--margin: not with --kind {kind}: give --kappa, the tolerated inflation (1.2)",
            EXIT_USAGE,
        )
    if kappa is None:
        fail(f"--kappa: give the tolerated inflation for --kind {kind}, e.g. 1.2", EXIT_USAGE)
    lo, hi = _guardrail_range("kappa")
    if not (lo <= kappa <= hi):
        fail(
            f"--kappa: {kappa:g} must lie in [{lo:g}, {hi:g}], the tolerated inflation",
            EXIT_USAGE,
        )
    return analysis.GuardrailSpec(
        "latency" if kind == "tail" else "errors",
        analysis.GuardrailKind(kind),
        kappa=kappa,
        threshold_ms=1000.0 if kind == "tail" else None,
    )


def _harm(g: Any, effect: float) -> tuple[Any, str]:
    """The harm --effect describes for guardrail ``g``, and its words; refuses nonsense."""
    import analysis
    from analysis import forecast as fc

    if g.kind == analysis.GuardrailKind.MEAN:
        if not effect > -1:
            fail(f"--effect: {100 * effect:+g} % is a change of more than −100 %", EXIT_USAGE)
        if g.metric == analysis.MeanMetric.LOG_LATENCY:
            slower = math.expm1(g.margin)
            if not effect > slower:
                fail(
                    f"--effect: {100 * effect:+g} % is on the wrong side of the margin "
                    f"{100 * slower:+.3g} %: a harm to detect must be slower than the margin",
                    EXIT_USAGE,
                )
            return fc.Effect(latency_factor=1 + effect), f"{100 * effect:+g} % latency"
        if not effect < -g.margin:
            fail(
                f"--effect: {100 * effect:+g} % is on the wrong side of the margin "
                f"{-100 * g.margin:+g} %: a harm to detect must be worse than the margin",
                EXIT_USAGE,
            )
        return fc.Effect(revenue=effect), f"{100 * effect:+g} % revenue"
    if not effect > g.kappa:
        fail(
            f"--effect: ×{effect:g} is not beyond κ {g.kappa:g}: a harm to detect must "
            "inflate the rate by more than κ",
            EXIT_USAGE,
        )
    if g.kind == analysis.GuardrailKind.TAIL:
        return fc.Effect(tail_ratio=effect), f"×{effect:g} {g.name}"
    return fc.Effect(error_ratio=effect), f"×{effect:g} {g.name}"


def _forecast_mode(
    *,
    filename: str | None,
    steps: str | None,
    traffic: float | None,
    kind: str | None,
    margin: float | None,
    kappa: float | None,
    effect: float | None,
    mean: float | None,
    sd: float | None,
    nonzero_share: float,
    error_rate: float,
    tail_share: float,
    log_latency_sd: float,
    alpha: float,
    guardrails: int,
    deadline: str | None,
    burn_in: int,
    samples_per_arm: int | None,
    out: output.Format,
) -> None:
    """``canaryctl plan --steps … --traffic …`` or ``-f experiment.yaml --traffic …``."""
    from datetime import UTC, datetime

    import analysis
    from analysis import forecast as fc
    from controller.experiment import spec, validation
    from controller.operate import forecasting

    if traffic is None:
        fail("--traffic: give the total requests per minute to forecast at", EXIT_USAGE)
    if not (traffic > 0 and math.isfinite(traffic)):
        fail(f"--traffic: must be > 0 requests per minute (got {traffic:g})", EXIT_USAGE)
    if not 0 < alpha <= defaults.ALPHA_MAX:
        fail(f"--alpha: must lie in (0, {defaults.ALPHA_MAX:g}] (got {alpha:g})", EXIT_USAGE)
    if guardrails < 1:
        fail(f"--guardrails: must be at least 1 (got {guardrails})", EXIT_USAGE)
    if filename is not None:
        if steps is not None or margin is not None or kappa is not None or kind is not None:
            fail(
                "give either -f FILE or --steps with --kind/--margin/--kappa, not both", EXIT_USAGE
            )
        from controller.cli.start import read_manifest

        try:
            s = validation.parse_experiment(read_manifest(filename))
        except validation.SpecError as exc:
            fail(f"{filename}: invalid spec: {'; '.join(str(i) for i in exc.issues)}", EXIT_USAGE)
        settings, specs = forecasting.spec_inputs(s, datetime.now(UTC))
        ramp_steps = list(s.steps)
        max_duration = s.max_duration
        n_guardrails = len(specs)
    else:
        assert steps is not None
        parsed = parse_ramp(steps)
        try:
            ramp_steps = [
                spec.Step(
                    int(w) if w == int(w) else w,  # type: ignore[arg-type]
                    spec.parse_duration(d) if d else spec.parse_duration("0s"),
                    n,
                )
                for w, d, n in parsed
            ]
        except ValueError:
            fail(f"--steps: {steps!r}: a duration is not like '2h' or '30m'", EXIT_USAGE)
        max_duration = spec.parse_duration(defaults.MAX_DURATION)
        g = _steps_guardrail(kind or Kind.MEAN.value, margin, kappa)
        specs = [g]
        base = analysis.AnalysisSettings(
            alpha=alpha,
            burn_in_requests=burn_in,
            n_star=float(samples_per_arm) if samples_per_arm else analysis.AnalysisSettings.n_star,
        )
        settings = fc.alone(base, guardrails)
        n_guardrails = guardrails
    if deadline is not None:
        try:
            max_duration = spec.parse_duration(deadline)
        except ValueError:
            fail(f"--deadline: {deadline!r} is not a duration like '6h' or '24h'", EXIT_USAGE)
    harm, effect_text = (None, "") if effect is None else _harm(specs[0], effect)
    try:
        t = fc.Traffic(
            requests_per_minute=traffic,
            revenue_mean=mean if mean is not None else fc.Traffic.revenue_mean,
            revenue_sd=sd if sd is not None else fc.Traffic.revenue_sd,
            revenue_nonzero=nonzero_share,
            error_rate=error_rate,
            tail_share=tail_share,
            log_latency_sd=log_latency_sd,
        )
    except ValueError as exc:
        text = str(exc)
        option = {
            "revenue_mean": "--mean",
            "revenue_sd": "--sd",
            "revenue_nonzero": "--nonzero-share",
            "error_rate": "--error-rate",
            "tail_share": "--tail-share",
            "log_latency_sd": "--log-latency-sd",
        }
        name = next((o for a, o in option.items() if text.startswith(a)), "--mean")
        fail(f"{name}: {text}", EXIT_USAGE)
    try:
        f = forecasting.run(settings, specs, forecasting.ramp(ramp_steps), max_duration, t, harm)
    except ValueError as exc:
        fail(str(exc), EXIT_USAGE)
    doc = forecasting.document(f, specs, t, harm=harm is not None)
    doc["inputs"] = {
        "steps": [
            {"weight": st.weight, "minDuration": spec.format_duration(st.min_duration)}
            for st in ramp_steps
        ],
        "alpha": alpha if filename is None else s.analysis.alpha,
        "guardrails": n_guardrails,
        "effect": effect,
        "effectText": effect_text,
    }
    if out is output.Format.TABLE:
        typer.echo(forecast_table(doc, ramp_text(ramp_steps)), nl=False)
    else:
        typer.echo(output.dump(doc, out), nl=False)


_FORECAST = "Forecast through a ramp (--steps or -f)"


class Kind(StrEnum):
    """The guardrail kind ``plan --steps`` forecasts (the Experiment's ``kind`` values)."""

    MEAN = "mean"
    TAIL = "tail"
    RATE = "rate"
    LATENCY = "latency"


@app.command()
def plan(
    rps: Annotated[
        float | None, typer.Option("--rps", help="Total traffic, requests per second.")
    ] = None,
    weight: Annotated[
        float | None,
        typer.Option("--weight", help="Canary weight: the challenger's share in percent."),
    ] = None,
    mean: Annotated[
        float | None,
        typer.Option("--mean", help="The metric's baseline mean per request (capped revenue)."),
    ] = None,
    sd: Annotated[
        float | None,
        typer.Option("--sd", help="The metric's baseline standard deviation per request."),
    ] = None,
    effect: Annotated[
        float | None,
        typer.Option(
            "--effect",
            help="Effect to detect: a fraction of the mean (-0.05 is a 5 % drop), or with "
            "--absolute a change in the metric's unit; with --kind latency, a slow-down "
            "(0.10 is 10 % slower); with --kind tail or rate, a ratio of rates (1.5).",
        ),
    ] = None,
    steps: Annotated[
        str | None,
        typer.Option(
            "--steps",
            help="The ramp, weight[:minDuration[:minSamples]] comma-separated (5:2h,25:4h,50): "
            "forecast when a healthy challenger is promoted.",
            rich_help_panel=_FORECAST,
        ),
    ] = None,
    filename: Annotated[
        str | None,
        typer.Option(
            "-f",
            "--filename",
            help="Forecast an Experiment manifest (its steps, guardrails, alpha, maxDuration).",
            rich_help_panel=_FORECAST,
        ),
    ] = None,
    traffic: Annotated[
        float | None,
        typer.Option(help="Total requests per minute.", rich_help_panel=_FORECAST),
    ] = None,
    kind: Annotated[
        Kind | None,
        typer.Option(help="Guardrail kind with --steps (default mean).", rich_help_panel=_FORECAST),
    ] = None,
    margin: Annotated[
        float | None,
        typer.Option(
            help="--kind mean: tolerated relative drop (0.02 = 2 %); --kind latency: tolerated "
            "relative slow-down of the geometric-mean latency (0.05 = 5 % slower).",
            rich_help_panel=_FORECAST,
        ),
    ] = None,
    kappa: Annotated[
        float | None,
        typer.Option(
            help="--kind tail or rate: tolerated inflation (1.2).", rich_help_panel=_FORECAST
        ),
    ] = None,
    nonzero_share: Annotated[
        float,
        typer.Option(help="Share of requests with revenue > 0.", rich_help_panel=_FORECAST),
    ] = 0.08,
    error_rate: Annotated[
        float, typer.Option(help="The champion's error rate.", rich_help_panel=_FORECAST)
    ] = 0.002,
    tail_share: Annotated[
        float,
        typer.Option(
            help="Share of the champion's requests above the tail threshold.",
            rich_help_panel=_FORECAST,
        ),
    ] = 0.01,
    log_latency_sd: Annotated[
        float,
        typer.Option(
            help="--kind latency: standard deviation of ln(latency) of the champion's requests "
            "(about ln(p99 / p50) / 2.33).",
            rich_help_panel=_FORECAST,
        ),
    ] = 0.35,
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
        str | None,
        typer.Option(
            help="Deadline for the power figure: the experiment's maxDuration (default 24h, or "
            "the manifest's)."
        ),
    ] = None,
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
    """How long until a healthy model is promoted through a ramp; or what one step detects.

    `canaryctl plan --steps 5:2h,25:4h,50 --traffic 1000 --margin 0.02`

    `canaryctl plan --steps 5:2h,25:4h,50 --traffic 1000 --kind latency --margin 0.05`

    `canaryctl plan -f experiment.yaml --traffic 89000 -o json`

    `canaryctl plan --rps 200 --weight 10 --mean 0.13 --sd 0.7 --effect -0.05`
    """
    import analysis
    from analysis import sequential
    from controller.experiment import spec

    if steps is not None or filename is not None:
        for value, flag in ((rps, "--rps"), (weight, "--weight")):
            if value is not None:
                fail(f"{flag}: not with --steps or -f (give --traffic)", EXIT_USAGE)
        _forecast_mode(
            filename=filename,
            steps=steps,
            traffic=traffic,
            kind=None if kind is None else kind.value,
            margin=margin,
            kappa=kappa,
            effect=effect,
            mean=mean,
            sd=sd,
            nonzero_share=nonzero_share,
            error_rate=error_rate,
            tail_share=tail_share,
            log_latency_sd=log_latency_sd,
            alpha=alpha,
            guardrails=guardrails,
            deadline=deadline,
            burn_in=burn_in,
            samples_per_arm=samples_per_arm,
            out=out,
        )
        return
    missing = [
        o
        for v, o in ((rps, "--rps"), (weight, "--weight"), (mean, "--mean"), (sd, "--sd"))
        if v is None
    ] + (["--effect"] if effect is None else [])
    if missing:
        fail(
            f"{missing[0]}: required (give --steps or -f with --traffic to forecast a ramp, "
            "or --rps, --weight, --mean, --sd and --effect for one step)",
            EXIT_USAGE,
        )
    assert rps is not None and weight is not None and mean is not None and sd is not None
    assert effect is not None
    deadline_text = deadline or defaults.MAX_DURATION

    try:
        deadline_td = spec.parse_duration(deadline_text)
    except ValueError:
        fail(f"--deadline: {deadline_text!r} is not a duration like '6h' or '24h'", EXIT_USAGE)
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
