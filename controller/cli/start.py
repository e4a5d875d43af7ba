"""``canaryctl start``: create an Experiment from a manifest or from flags for the common case.

The spec is validated with the operator's own validator (``validation.parse_experiment``)
before anything is sent, so a bad spec is refused here with the field that is wrong;
``--dry-run`` prints the object instead of creating it. Creates only: it never changes an
existing Experiment (``control`` writes requests, nothing writes ``spec`` after creation).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from controller.cli import kube, output
from controller.cli.common import EXIT_USAGE, DatabaseUrl, fail, output_option

app = typer.Typer()
#: ``start`` refused: another live Experiment already routes through the same objects.
EXIT_ROUTE_TAKEN = 5
_DNS_NAME = re.compile(r"(?=.{1,253}$)[a-z0-9]([-a-z0-9.]*[a-z0-9])?")


def read_manifest(path: str) -> dict[str, Any]:
    """One Experiment from a YAML or JSON file (``-`` is stdin); errors exit with 2."""
    import yaml

    where = "stdin" if path == "-" else path
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        fail(f"{path}: no such file", EXIT_USAGE)
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"{path}: cannot read: {exc}", EXIT_USAGE)
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        fail(f"{where}: not valid YAML{at}: {getattr(exc, 'problem', None) or exc}", EXIT_USAGE)
    if len(docs) != 1 or not isinstance(docs[0], dict):
        fail(f"{where}: expected one Experiment object, found {len(docs)} document(s)", EXIT_USAGE)
    body: dict[str, Any] = docs[0]
    return body


def parse_steps(text: str) -> list[dict[str, Any]]:
    """``5:1h,25:2h:20000`` -> steps (weight:minDuration[:minSamples])."""
    steps = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        fields = part.split(":")
        if len(fields) not in (2, 3) or not fields[0].isdigit():
            raise typer.BadParameter(f"{part!r}: give weight:minDuration[:minSamples], e.g. 5:1h")
        step: dict[str, Any] = {"weight": int(fields[0]), "minDuration": fields[1]}
        if len(fields) == 3:
            if not fields[2].isdigit():
                raise typer.BadParameter(f"{part!r}: minSamples must be a whole number")
            step["minSamples"] = int(fields[2])
        steps.append(step)
    if not steps:
        raise typer.BadParameter("give at least one step, e.g. 5:1h,25:1h,50:1h")
    return steps


def body_from_flags(
    *,
    name: str | None,
    champion: str,
    challenger: str,
    router: dict[str, Any],
    steps: list[dict[str, Any]],
    revenue_margin: float | None,
    revenue_cap: float | None,
    baseline: str | None,
    latency_ms: float | None,
    latency_kappa: float,
    error_kappa: float,
    manual_promotion: bool,
    max_duration: str | None,
    latency_mean_margin: float | None = None,
) -> dict[str, Any]:
    """The Experiment the ``start`` flags describe (validated afterwards like a file)."""
    from controller.experiment import spec

    guardrails: list[dict[str, Any]] = []
    analysis: dict[str, Any] = {"guardrails": guardrails}
    if revenue_margin is not None:
        guardrails.append(
            {"name": "revenue", "kind": "mean", "margin": {"relative": revenue_margin}}
        )
        if revenue_cap is not None:
            analysis["revenueCap"] = {"value": revenue_cap}
        elif baseline is not None:
            analysis["revenueCap"] = {"fromBaseline": {"quantile": 0.999}}
    if latency_ms is not None:
        guardrails.append(
            {"name": "latency", "kind": "tail", "thresholdMs": latency_ms, "kappa": latency_kappa}
        )
    if latency_mean_margin is not None:
        guardrails.append(
            {"name": "latency-mean", "kind": "latency", "margin": {"relative": latency_mean_margin}}
        )
    guardrails.append({"name": "errors", "kind": "rate", "kappa": error_kappa})
    if baseline is not None:
        analysis["baseline"] = {"duration": baseline}
    body: dict[str, Any] = {
        "apiVersion": f"{spec.API_GROUP}/{spec.API_VERSION}",
        "kind": spec.KIND,
        "metadata": {"name": name or challenger},
        "spec": {
            "champion": {"name": champion},
            "challenger": {"name": challenger},
            "router": router,
            "steps": steps,
            "analysis": analysis,
        },
    }
    if manual_promotion:
        body["spec"]["promotion"] = {"mode": "manual"}
    if max_duration is not None:
        body["spec"]["maxDuration"] = max_duration
    return body


def _router_from_flags(
    http_route: str | None,
    virtual_service: str | None,
    inference_service: str | None,
    replicas: int | None,
) -> dict[str, Any]:
    given = {
        "gatewayAPI": {"httpRoute": http_route} if http_route else None,
        "istio": {"virtualService": virtual_service} if virtual_service else None,
        "kserve": {"inferenceService": inference_service} if inference_service else None,
        "replicas": {"totalReplicas": replicas} if replicas is not None else None,
    }
    chosen = {k: v for k, v in given.items() if v is not None}
    if len(chosen) != 1:
        fail(
            "give exactly one router: --http-route, --virtual-service, --inference-service "
            "or --replicas",
            EXIT_USAGE,
        )
    return chosen


_FLAGS = "Without -f (the common case)"
DRY_RUN_YAML = output.Output(output.View.YAML)


def route_users(parsed: Any, name: str, namespace: str, items: list[dict[str, Any]]) -> str | None:
    """The live Experiments (not finished) routing through the objects ``parsed`` would use.

    ``parsed`` is the new Experiment's ``spec.ExperimentSpec``; the answer names each other
    Experiment with its phase and the object, e.g. ``ml/ranker-bad (Progressing) on
    HTTPRoute ml/ranker``, or is None when the route is free.
    """
    from controller.experiment import validation
    from controller.experiment.spec import TERMINAL_PHASES
    from controller.routers import base

    def objects(s: Any, owner: str) -> frozenset[str]:
        config = base.config_for(namespace, owner, s.champion, s.challenger, s.router)
        return base.routing_objects(config)

    mine = objects(parsed, name)
    found = []
    for item in items:
        meta, st = item.get("metadata") or {}, item.get("status") or {}
        phase = st.get("phase", "Pending")
        if meta.get("name") == name or phase in TERMINAL_PHASES:
            continue
        try:
            theirs = objects(validation.parse_experiment(item), str(meta.get("name")))
        except (validation.SpecError, ValueError):
            continue  # an invalid spec never routes
        shared = sorted(mine & theirs)
        if shared:
            found.append(f"{namespace}/{meta.get('name')} ({phase}) on {', '.join(shared)}")
    return "; ".join(found) or None


def _observed_traffic(url: str | None, champion: str, guardrails: list[Any]) -> tuple[Any, str]:
    """The champion's observed traffic in Postgres, or None and why not.

    Hour by hour from its last day of data when there is a whole day (a ``Schedule``: the
    run's hours see the traffic of the same hours the day before), else its last hour.
    """
    from datetime import UTC, datetime

    from controller.storage import db

    found = db.configured_url(url)
    if not found:
        return None, "no --traffic and no database configured"
    import sqlalchemy as sa

    from controller.operate import evaluate, forecasting
    from controller.storage import rollups

    try:
        engine = db.make_engine(
            found, connect_args={"options": "-c timezone=UTC", "connect_timeout": 5}
        )
    except db.DatabaseConfigError as exc:
        return None, str(exc)
    try:
        with engine.connect() as conn:
            day = rollups.champion_day_totals(conn, champion, datetime.now(UTC))
            recent = rollups.champion_recent_totals(conn, champion)
    except sa.exc.SQLAlchemyError as exc:
        return None, f"the database is not reachable ({type(exc).__name__})"
    finally:
        engine.dispose()
    if day is not None:
        schedule = forecasting.day_schedule(day, guardrails)
        if schedule is not None:
            return schedule, (
                f"observed for {champion} in Postgres hour by hour, at the same hours of "
                "its last day of data"
            )
    if recent is None:
        return None, f"no earlier experiment with champion {champion} in the database"
    totals, minutes = recent
    requests = sum(t.n for t in totals.values())
    traffic = forecasting.traffic_from(
        evaluate.arm_stats(totals["champion"]), requests, minutes, guardrails
    )
    if traffic is None:
        return None, f"too little recent traffic of champion {champion} in the database"
    return traffic, f"observed for {champion} over its last {minutes:.0f} min in Postgres"


def print_forecast(body: dict[str, Any], traffic: float | None, url: str | None) -> None:
    """The decision forecast of the spec to stderr, with a warning when promotion is unlikely."""
    from datetime import UTC, datetime

    from analysis import forecast as fc
    from controller.cli import plan
    from controller.experiment import validation
    from controller.operate import forecasting

    s = validation.parse_experiment(body)
    settings, guardrails = forecasting.spec_inputs(s, datetime.now(UTC))
    if traffic is not None:
        observed, source = fc.Traffic(traffic), "--traffic, default metric moments"
    else:
        observed, source = _observed_traffic(url, s.champion.name, guardrails)
    if observed is None:
        typer.echo(f"no decision forecast: {source}; give --traffic (requests/min)", err=True)
        return
    f = forecasting.run(
        settings,
        guardrails,
        forecasting.ramp(s.steps),
        s.max_duration,
        observed,
        interval=s.analysis.interval,
    )
    doc = forecasting.document(f, guardrails, observed)
    doc["inputs"] = {"alpha": s.analysis.alpha, "guardrails": len(guardrails)}
    typer.echo(f"traffic: {source}", err=True)
    typer.echo(plan.forecast_table(doc, plan.ramp_text(list(s.steps))), nl=False, err=True)


@app.command()
def start(
    filename: Annotated[
        str | None,
        typer.Option(
            "-f",
            "--filename",
            metavar="FILE",
            help="Experiment manifest (YAML or JSON; - for stdin).",
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(help="Experiment name (default: the challenger).", rich_help_panel=_FLAGS),
    ] = None,
    champion: Annotated[
        str | None, typer.Option(help="Current model.", rich_help_panel=_FLAGS)
    ] = None,
    challenger: Annotated[
        str | None, typer.Option(help="Candidate model.", rich_help_panel=_FLAGS)
    ] = None,
    http_route: Annotated[
        str | None, typer.Option(help="Gateway API HTTPRoute to weight.", rich_help_panel=_FLAGS)
    ] = None,
    virtual_service: Annotated[
        str | None, typer.Option(help="Istio VirtualService to weight.", rich_help_panel=_FLAGS)
    ] = None,
    inference_service: Annotated[
        str | None, typer.Option(help="KServe InferenceService.", rich_help_panel=_FLAGS)
    ] = None,
    replicas: Annotated[
        int | None,
        typer.Option(help="No mesh: total replicas shared by the arms.", rich_help_panel=_FLAGS),
    ] = None,
    steps: Annotated[
        str,
        typer.Option(
            help="weight:minDuration[:minSamples], comma-separated.", rich_help_panel=_FLAGS
        ),
    ] = "5:1h,25:1h,50:1h",
    revenue_margin: Annotated[
        float | None,
        typer.Option(
            help="Add a 'revenue' mean guardrail tolerating this relative drop (0.02 = 2%); "
            "needs --revenue-cap or --baseline.",
            rich_help_panel=_FLAGS,
        ),
    ] = None,
    revenue_cap: Annotated[
        float | None,
        typer.Option(help="Per-request revenue cap for the mean test.", rich_help_panel=_FLAGS),
    ] = None,
    baseline: Annotated[
        str | None,
        typer.Option(
            help="Measure the champion first for this long; the revenue cap becomes its p99.9.",
            rich_help_panel=_FLAGS,
        ),
    ] = None,
    latency_ms: Annotated[
        float | None,
        typer.Option(
            help="Add a 'latency' tail guardrail at this threshold (ms).", rich_help_panel=_FLAGS
        ),
    ] = None,
    latency_kappa: Annotated[
        float, typer.Option(help="Tolerated inflation of slow requests.", rich_help_panel=_FLAGS)
    ] = 1.2,
    latency_mean_margin: Annotated[
        float | None,
        typer.Option(
            help="Add a 'latency-mean' guardrail on the geometric-mean latency tolerating this "
            "relative slowdown (0.05 = 5% slower; 0 = none).",
            rich_help_panel=_FLAGS,
        ),
    ] = None,
    error_kappa: Annotated[
        float,
        typer.Option(
            help="The 'errors' guardrail's tolerated inflation of the error rate.",
            rich_help_panel=_FLAGS,
        ),
    ] = 1.5,
    manual_promotion: Annotated[
        bool,
        typer.Option(
            "--manual-promotion",
            help="Wait in AwaitingPromotion for `canaryctl promote`.",
            rich_help_panel=_FLAGS,
        ),
    ] = False,
    max_duration: Annotated[
        str | None, typer.Option(help="Longest run (default 24h).", rich_help_panel=_FLAGS)
    ] = None,
    traffic: Annotated[
        float | None,
        typer.Option(
            help="Total requests per minute for the decision forecast (default: the champion's "
            "latest traffic in Postgres, when reachable).",
        ),
    ] = None,
    no_forecast: Annotated[
        bool, typer.Option("--no-forecast", help="Skip the decision forecast.")
    ] = False,
    database_url: DatabaseUrl = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Validate and print the object; create nothing.")
    ] = False,
    out: Annotated[
        output.Output,
        output_option(("yaml", "json"), "Format of the --dry-run object: yaml or json."),
    ] = DRY_RUN_YAML,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Create it even when another live Experiment uses the same route; it then "
            "waits (held) until the route is free.",
        ),
    ] = False,
    kubeconfig: kube.Kubeconfig = None,
    context: kube.Context = None,
    namespace: kube.Namespace = None,
) -> None:
    """Create an Experiment from a manifest (-f) or from flags; the spec is validated first.

    `canaryctl start -f experiment.yaml -n ranking`

    `canaryctl start --champion ranker-v41 --challenger ranker-v42 --http-route ranker --steps 5:1h,25:2h,50:2h --latency-ms 250 --dry-run`

    Exit codes: 0 created (or printed), 2 bad input (missing file, invalid spec: the field is named), 5 another live Experiment uses the same route (--force creates it anyway, held until the route is free), 1 other errors (e.g. it exists already).
    """
    from controller.experiment import spec, validation

    flagged = [
        champion,
        challenger,
        name,
        http_route,
        virtual_service,
        inference_service,
        replicas,
        revenue_margin,
        revenue_cap,
        baseline,
        latency_ms,
        latency_mean_margin,
        max_duration,
    ]
    if filename is not None:
        if any(v is not None for v in flagged) or manual_promotion:
            fail("give either -f FILE or the experiment flags, not both", EXIT_USAGE)
        body = read_manifest(filename)
        source = "stdin" if filename == "-" else filename
    else:
        if champion is None or challenger is None:
            fail("give -f FILE, or at least --champion, --challenger and a router", EXIT_USAGE)
        body = body_from_flags(
            name=name,
            champion=champion,
            challenger=challenger,
            router=_router_from_flags(http_route, virtual_service, inference_service, replicas),
            steps=parse_steps(steps),
            revenue_margin=revenue_margin,
            revenue_cap=revenue_cap,
            baseline=baseline,
            latency_ms=latency_ms,
            latency_kappa=latency_kappa,
            latency_mean_margin=latency_mean_margin,
            error_kappa=error_kappa,
            manual_promotion=manual_promotion,
            max_duration=max_duration,
        )
        source = "flags"
    try:
        parsed = validation.parse_experiment(body)
    except validation.SpecError as exc:
        fail(f"{source}: invalid spec: {exc}", EXIT_USAGE)
    if traffic is not None and not (traffic > 0 and traffic < float("inf")):
        fail(f"--traffic: must be > 0 requests per minute (got {traffic:g})", EXIT_USAGE)

    body.setdefault("apiVersion", f"{spec.API_GROUP}/{spec.API_VERSION}")
    body.setdefault("kind", spec.KIND)
    body.pop("status", None)
    meta = body.setdefault("metadata", {})
    if not isinstance(meta, dict) or not meta.get("name"):
        fail(f"{source}: metadata.name: is required", EXIT_USAGE)
    if not _DNS_NAME.fullmatch(str(meta["name"])):
        fail(
            f"{source}: metadata.name: {meta['name']!r} must be a lowercase DNS name "
            "(a-z, 0-9, '-' and '.', at most 253 characters, starting and ending alphanumeric)",
            EXIT_USAGE,
        )
    in_file = meta.get("namespace")
    if in_file and namespace and in_file != namespace:
        fail(
            f"{source}: the namespace of the object ({in_file}) does not match --namespace "
            f"({namespace})",
            EXIT_USAGE,
        )
    cluster = None
    try:
        cluster = kube.connect(kubeconfig, context, namespace or in_file)
        target = cluster.namespace
    except kube.KubeError as exc:
        if not dry_run:
            fail(str(exc))
        target = namespace or in_file or "default"
    meta["namespace"] = target
    if dry_run:
        assert out.format is not None  # yaml or json, as the option allows
        typer.echo(output.dump(body, out.format), nl=False)
        typer.echo(
            f"dry run: experiment.{spec.API_GROUP}/{meta['name']} would be created in "
            f"namespace {target} (nothing was sent)",
            err=True,
        )
        if not no_forecast:
            print_forecast(body, traffic, database_url)
        return
    assert cluster is not None
    experiments = kube.Experiments(cluster)
    try:
        taken = route_users(parsed, str(meta["name"]), target, experiments.list())
    except kube.KubeError as exc:
        fail(str(exc))
    if taken:
        what = f"{taken} already uses the same route"
        if not force:
            fail(
                f"{what}; wait until it finishes, or pass --force to queue behind it",
                EXIT_ROUTE_TAKEN,
            )
        typer.echo(f"warning: {what}; {meta['name']} will wait until it is free", err=True)
    try:
        experiments.create(body)
    except kube.KubeError as exc:
        fail(str(exc))
    typer.echo(f"experiment.{spec.API_GROUP}/{meta['name']} created in namespace {target}")
    if not no_forecast:
        print_forecast(body, traffic, database_url)
    typer.echo(f"follow it: canaryctl status {meta['name']} -n {target} --watch", err=True)
