"""``canaryctl promote|rollback|pause|resume NAME``: manual control through the request annotation.

Safe under GitOps: the CLI never edits ``spec``. It reads the Experiment, refuses what the
controller would refuse (:func:`refusal`, the rules of docs/spec.md "Manual control"), then
merge-patches the ``canaryctl.dev/request`` annotation (``manual.format_request``) guarded by
the resourceVersion it read, so a concurrent change makes it re-read and decide again. The
operator acts on each request id once and records it in ``status.handledRequests``.

The four commands differ only in their action, help and options; they are made from one
table (:data:`REQUESTS`) by :func:`_command`.
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import typer

from controller.cli import kube, output
from controller.cli.common import EXIT_USAGE, fail

if TYPE_CHECKING:
    from controller.decide import manual

app = typer.Typer()

_ATTEMPTS = 3


def refusal(action: manual.RequestAction, full: bool, body: Mapping[str, Any]) -> str | None:
    """Why the controller would reject this request now, or None when it would act on it.

    The controller's own rules (``manual.refusal``, which reconcile uses), read from the
    stored status (holds from its conditions). Two more, because the CLI sees less than the
    controller: a promote is refused while the last look shows a failing guardrail, and a
    request the operator has not handled yet is only replaced by a rollback.
    """
    from controller.decide import manual
    from controller.experiment.spec import TERMINAL_PHASES

    A = manual.RequestAction
    st = body.get("status") or {}
    phase = st.get("phase", "Pending")
    pending = output.pending_request(body)
    finished = phase in TERMINAL_PHASES
    if pending is not None and action is not A.ROLLBACK and not finished:
        return f"an earlier request is still waiting for the operator: {pending}"
    holds = [code for code, _ in output.holds(body)]
    why = manual.refusal(action, full=full, phase=phase, holds=holds)
    if why is not None:
        return why
    if action is A.PROMOTE:
        failing = [
            g.get("name", "?") for g in st.get("guardrails") or [] if g.get("verdict") == "fail"
        ]
        if failing or st.get("verdict") == "fail":
            names = f" ({', '.join(failing)})" if failing else ""
            return f"cannot promote while a guardrail is failing{names}"
    return None


def new_request_id(action: manual.RequestAction) -> str:
    return f"{action.value}-{uuid.uuid4().hex[:16]}"


def send(
    action: manual.RequestAction,
    name: str,
    reason: str,
    full: bool,
    kubeconfig: str | None,
    context: str | None,
    namespace: str | None,
) -> None:
    """Check, then write one request annotation (re-checking after a conflict)."""
    from controller.clock import SYSTEM_CLOCK
    from controller.decide import manual

    cluster = kube.connect_or_fail(kubeconfig, context, namespace)
    experiments = kube.Experiments(cluster)
    identity = None
    for _ in range(_ATTEMPTS):
        try:
            body = experiments.get(name)
        except kube.KubeError as exc:
            fail(str(exc))
        why = refusal(action, full, body)
        if why is not None:
            fail(f"cannot {action.value} {name}: {why}")
        replaced = output.pending_request(body)
        identity = identity or kube.whoami(cluster)
        request = manual.ManualRequest(
            id=new_request_id(action),
            action=action,
            actor=identity.actor,
            reason=reason,
            full=full,
            requested_at=SYSTEM_CLOCK.now().replace(microsecond=0),
        )
        try:
            experiments.annotate(
                name, manual.format_request(request), body["metadata"]["resourceVersion"]
            )
        except kube.KubeError as exc:
            if exc.code == 409:
                continue  # changed since we read it: decide again on the new state
            fail(str(exc))
        if replaced is not None:
            typer.echo(f"replaced the pending request {replaced}", err=True)
        what = f"{action.value} --full" if full else action.value
        typer.echo(f"{what} requested for {name} (request {request.id} by {identity.actor})")
        typer.echo(
            f"the operator acts on it at its next tick; follow it: canaryctl status {name} "
            f"-n {cluster.namespace} --watch",
            err=True,
        )
        return
    fail(f"{name} kept changing while the request was written; try again")


Name = Annotated[
    str,
    typer.Argument(
        metavar="NAME", help="Name of the Experiment.", autocompletion=kube.complete_names
    ),
]
Reason = Annotated[
    str, typer.Option(metavar="TEXT", help="Why; recorded in the decision log.", show_default=False)
]
RequiredReason = Annotated[
    str,
    typer.Option(
        metavar="TEXT", help="Why (required); recorded in the decision log.", show_default=False
    ),
]
Full = Annotated[
    bool, typer.Option("--full", help="Skip the remaining steps (from Progressing or Paused).")
]
EXIT_CODES = (
    "Exit codes: 0 request written, 1 refused (the reason is printed) or other errors, 2 bad input."
)


@dataclass(frozen=True)
class Request:
    """One request command: the action it asks for, its help and the options it takes."""

    action: str  # a manual.RequestAction value, also the command's name
    summary: str
    example: str
    full: bool = False  # takes --full
    reason_required: bool = False


REQUESTS = (
    Request(
        "promote",
        "Ask the operator to promote (from AwaitingPromotion; with --full also mid-rollout).",
        'canaryctl promote ranker-v42 --reason "dashboards look fine"',
        full=True,
    ),
    Request(
        "rollback",
        "Ask the operator to roll back at once (allowed until the experiment has finished).",
        'canaryctl rollback ranker-v42 --reason "bad recommendations in FR"',
        reason_required=True,
    ),
    Request(
        "pause",
        "Ask the operator to stop stepping (from Progressing); guardrails keep being checked.",
        'canaryctl pause ranker-v42 --reason "holiday traffic"',
    ),
    Request(
        "resume",
        "Ask the operator to resume stepping (from Paused).",
        "canaryctl resume ranker-v42",
    ),
)


def _parameter(name: str, annotation: Any, default: Any = inspect.Parameter.empty) -> Any:
    kind = inspect.Parameter.KEYWORD_ONLY
    return inspect.Parameter(name, kind, annotation=annotation, default=default)


def _command(request: Request) -> Callable[..., None]:
    """The command function of one row: its signature (what typer reads) from the row."""

    def command(
        name: str,
        reason: str = "",
        full: bool = False,
        kubeconfig: str | None = None,
        context: str | None = None,
        namespace: str | None = None,
    ) -> None:
        from controller.decide import manual

        if request.reason_required and not reason.strip():
            fail("--reason: say why you roll back", EXIT_USAGE)
        action = manual.RequestAction(request.action)
        send(action, name, reason, full, kubeconfig, context, namespace)

    parameters = [_parameter("name", Name)]
    if request.full:
        parameters.append(_parameter("full", Full, False))
    if request.reason_required:
        parameters.append(_parameter("reason", RequiredReason))
    else:
        parameters.append(_parameter("reason", Reason, ""))
    parameters += [
        _parameter("kubeconfig", kube.Kubeconfig, None),
        _parameter("context", kube.Context, None),
        _parameter("namespace", kube.Namespace, None),
    ]
    command.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    command.__name__ = command.__qualname__ = request.action
    command.__doc__ = f"{request.summary}\n\n`{request.example}`\n\n{EXIT_CODES}"
    return command


for _request in REQUESTS:
    app.command(name=_request.action)(_command(_request))
