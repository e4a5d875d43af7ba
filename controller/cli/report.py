"""``canaryctl report NAME``: an experiment's report as HTML, JSON or CSV, from the database.

Reads the store only (``--database-url`` / ``$CANARYCTL_DATABASE_URL``), so it works
without a cluster and after the Experiment is gone. Building the view is
``controller.reports.view``'s job, rendering ``render``'s; this module parses options,
reports errors as one line and writes the file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from controller.cli import kube, output
from controller.cli.common import (
    EXIT_USAGE,
    DatabaseUrl,
    database_error,
    fail,
    output_option,
    require_url,
)

app = typer.Typer()


def _key(name: str, namespace: str | None, kubeconfig: str | None, context: str | None) -> str:
    """``namespace/name`` from NAME (``ns/name`` or a bare name), ``-n`` and the context.

    A bare name is in ``-n``, else the kubeconfig context's namespace, as for ``status``.
    """
    from controller.storage import experiments

    try:
        ns, bare = experiments.parse_key(name)
    except ValueError as exc:
        fail(str(exc), EXIT_USAGE)
    if "/" in name:
        if namespace is not None and namespace != ns:
            fail(f"{name!r} names namespace {ns!r} but -n says {namespace!r}", EXIT_USAGE)
        return f"{ns}/{bare}"
    try:
        return f"{kube.namespace_of(kubeconfig, context, namespace)}/{bare}"
    except kube.KubeError as exc:
        fail(str(exc))


#: ``-o`` of ``report``: the report's own formats, and its JSON as yaml or through jsonpath.
VIEWS = ("html", "json", "csv", "yaml", "jsonpath")
HTML = output.Output(output.View.HTML)


@app.command()
def report(
    name: Annotated[
        str,
        typer.Argument(metavar="NAME", help="The experiment: NAME (with -n) or NAMESPACE/NAME."),
    ],
    out: Annotated[
        output.Output,
        output_option(
            VIEWS,
            "html (one self-contained file), json (the whole report), csv (the time "
            "series), yaml (the json as YAML) or jsonpath=TEMPLATE (over the json).",
        ),
    ] = HTML,
    legacy_format: Annotated[
        str | None,
        typer.Option("--format", hidden=True, help="Old spelling of -o (html, json or csv)."),
    ] = None,
    out_file: Annotated[
        Path | None,
        typer.Option(
            "--out", metavar="FILE", help="Write to this file instead of stdout.", dir_okay=False
        ),
    ] = None,
    kubeconfig: kube.Kubeconfig = None,
    context: kube.Context = None,
    namespace: kube.Namespace = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Write an experiment's report: outcome and reason, guardrails over time, traffic, settings.

    `canaryctl report ml/ranker-v42 --out ranker-v42.html`

    `canaryctl report ranker-v42 -n ml -o csv --out looks.csv`

    `canaryctl report ranker-v42 -o jsonpath={.outcome.reason_code}`

    Reads the database only; the kubeconfig is read for the context's namespace.

    Exit codes: 0 written; 1 unknown experiment, database or kubeconfig error; 2 bad input.
    """
    import sqlalchemy as sa

    from controller.reports import read, render
    from controller.storage import db, experiments

    if legacy_format is not None:
        try:
            out = output.parse_output(legacy_format, VIEWS)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--format") from None
    key = _key(name, namespace, kubeconfig, context)
    url = require_url(database_url)
    engine = db.make_engine(url)
    try:
        with engine.connect() as conn:
            built = read.build(conn, key)
    except experiments.UnknownExperimentError:
        fail(f"no experiment {key} in the database (it was never started, or the name is wrong)")
    except sa.exc.DBAPIError as exc:
        fail(database_error(exc))
    finally:
        engine.dispose()
    if out.view in (output.View.HTML, output.View.CSV, output.View.JSON):
        text = render.render(built, render.Format(out.view.value))
    else:
        doc = json.loads(render.render(built, render.Format.JSON))
        if out.view is output.View.JSONPATH:
            text = output.jsonpath(out.template, doc)
        else:
            text = output.dump(doc, output.Format.YAML)
    if out_file is None:
        typer.echo(text, nl=False)
        return
    try:
        out_file.write_text(text, encoding="utf-8")
    except OSError as exc:
        fail(f"cannot write {out_file}: {exc.strerror}")
    outcome = built.outcome
    why = "" if outcome is None else f" ({outcome.reason_code})"
    typer.echo(
        f"wrote the {out.view.value} report of {key}, {built.phase}{why}, to {out_file}", err=True
    )
