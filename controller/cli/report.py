"""``canaryctl report NAME``: an experiment's report as HTML, JSON or CSV, from the database.

Reads the store only (``--database-url`` / ``$CANARYCTL_DATABASE_URL``), so it works
without a cluster and after the Experiment is gone. Building the view is
``controller.reports.view``'s job, rendering ``render``'s; this module parses options,
reports errors as one line and writes the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from controller.cli.common import EXIT_USAGE, DatabaseUrl, fail, require_url

app = typer.Typer()


def _key(name: str, namespace: str | None) -> str:
    """``namespace/name`` from NAME (``ns/name`` or a bare name) and ``-n``."""
    from controller.storage import experiments

    try:
        ns, bare = experiments.parse_key(name)
    except ValueError as exc:
        fail(str(exc), EXIT_USAGE)
    if "/" in name:
        if namespace is not None and namespace != ns:
            fail(f"{name!r} names namespace {ns!r} but -n says {namespace!r}", EXIT_USAGE)
        return f"{ns}/{bare}"
    return f"{namespace or experiments.DEFAULT_NAMESPACE}/{bare}"


@app.command()
def report(
    name: Annotated[
        str,
        typer.Argument(metavar="NAME", help="The experiment: NAME (with -n) or NAMESPACE/NAME."),
    ],
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            "-f",
            help="html (one self-contained file), json (the whole report) or csv (the time series).",
        ),
    ] = "html",
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Write to this file instead of stdout.", dir_okay=False),
    ] = None,
    namespace: Annotated[
        str | None,
        typer.Option("-n", "--namespace", help="Namespace of the experiment (default: default)."),
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Write an experiment's report: outcome and reason, guardrails over time, traffic, settings.

    `canaryctl report ml/ranker-v42 --out ranker-v42.html`

    `canaryctl report ranker-v42 -n ml --format csv --out looks.csv`

    Exit codes: 0 written; 1 unknown experiment or database error; 2 bad input.
    """
    import sqlalchemy as sa

    from controller.reports import read, render
    from controller.storage import db, experiments

    try:
        chosen = render.Format(fmt.lower())
    except ValueError:
        raise typer.BadParameter(
            f"{fmt!r} is not one of html, json, csv", param_hint="--format"
        ) from None
    key = _key(name, namespace)
    url = require_url(database_url)
    engine = db.make_engine(url)
    try:
        with engine.connect() as conn:
            built = read.build(conn, key)
    except experiments.UnknownExperimentError:
        fail(f"no experiment {key} in the database (it was never started, or the name is wrong)")
    except sa.exc.OperationalError as exc:
        fail(f"cannot reach the database: {' '.join(str(exc.orig).split())}")
    finally:
        engine.dispose()
    text = render.render(built, chosen)
    if out is None:
        typer.echo(text, nl=False)
        return
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        fail(f"cannot write {out}: {exc.strerror}")
    outcome = built.outcome
    why = "" if outcome is None else f" ({outcome.reason_code})"
    typer.echo(f"wrote the {chosen.value} report of {key}, {built.phase}{why}, to {out}", err=True)
