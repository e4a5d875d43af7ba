"""``canaryctl status --wait-for`` and ``--watch``: the exit codes a CI pipeline branches on.

The operator is played by an emulator hook that writes the status when the CLI's n-th read
arrives (deterministic, no sleeps), or by a thread writing through the status subresource.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import kubernetes.client
import pytest
from conftest import NAMESPACE, Cluster, Run, experiment

from canaryctl_demo.kube import emulator
from controller.cli import experiments

FAST = ("--interval", "10ms")


def on_read(cluster: Cluster, name: str, statuses: dict[int, dict[str, Any]]) -> None:
    """Before the n-th GET of ``name`` is served, write ``statuses[n]`` (the operator's move)."""
    reads = 0

    def hook(request: emulator.LoggedRequest) -> None:
        nonlocal reads
        if request.method == "GET" and request.path.endswith(f"/experiments/{name}"):
            reads += 1
            if reads in statuses:
                cluster.set_status(name, statuses[reads])

    cluster.emulator.hooks.append(hook)


@pytest.mark.parametrize(
    ("target", "final", "code", "message"),
    [
        ("Promoted", "Promoted", 0, "exp-a reached Promoted (all steps passed)\n"),
        (
            "Promoted",
            "RolledBack",
            3,
            "exp-a ended in RolledBack instead of Promoted (errors up)\n",
        ),
        ("AwaitingPromotion", "AwaitingPromotion", 0, "exp-a reached AwaitingPromotion"),
        ("RolledBack", "Promoted", 3, "exp-a ended in Promoted instead of RolledBack"),
        ("AwaitingPromotion", "Failed", 3, "exp-a ended in Failed instead of AwaitingPromotion"),
    ],
)
def test_wait_for_exit_codes(
    cli: Run, cluster: Cluster, target: str, final: str, code: int, message: str
) -> None:
    cluster.create(experiment("exp-a"))
    reasons = {
        "Promoted": ("promoted", "all steps passed"),
        "RolledBack": ("guardrail_failed:errors", "errors up"),
    }
    reason, text = reasons.get(final, ("x", "y"))
    on_read(
        cluster,
        "exp-a",
        {
            2: {"phase": "Progressing", "challengerWeight": 10, "step": "1/2"},
            4: {"phase": final, "reasonCode": reason, "message": text},
        },
    )
    result = cli("status", "exp-a", "--wait-for", target, *FAST)
    assert result.exit_code == code, result.output
    assert result.stderr.splitlines()[:2] == [
        "exp-a: Pending",
        "exp-a: Progressing, weight 10 %, step 1/2",
    ]
    assert message in result.stderr


def test_wait_for_times_out_with_exit_4(cli: Run, cluster: Cluster) -> None:
    cluster.create(experiment("exp-a"))
    cluster.set_status("exp-a", {"phase": "Progressing", "challengerWeight": 10})
    result = cli("status", "exp-a", "--wait-for", "Promoted", "--timeout", "50ms", *FAST)
    assert result.exit_code == experiments.EXIT_TIMEOUT
    assert result.stderr.splitlines()[-1] == (
        "exp-a timed out after 50ms waiting for Promoted; it is Progressing, weight 10 %"
    )


def test_wait_for_an_operator_thread_writing_the_status(
    cli: Run, cluster: Cluster, served: emulator.Served
) -> None:
    cluster.create(experiment("exp-a"))
    done = threading.Event()

    def operator() -> None:
        api = served.api_client()
        custom = kubernetes.client.CustomObjectsApi(api)
        try:
            while not done.is_set() and not any(
                r.method == "GET" and r.path.endswith("/exp-a") for r in served.emulator.log
            ):
                time.sleep(0.005)
            custom.patch_namespaced_custom_object_status(
                "canaryctl.dev",
                "v1alpha1",
                NAMESPACE,
                "experiments",
                "exp-a",
                {"status": {"phase": "Promoted", "challengerWeight": 100}},
            )
        finally:
            api.close()

    thread = threading.Thread(target=operator)
    thread.start()
    try:
        result = cli("status", "exp-a", "--wait-for", "Promoted", "-o", "json", *FAST)
    finally:
        done.set()
        thread.join()
    assert result.exit_code == 0, result.output
    assert '"phase": "Promoted"' in result.stdout


def test_watch_renders_until_the_experiment_finishes(cli: Run, cluster: Cluster) -> None:
    cluster.create(experiment("exp-a"))
    on_read(cluster, "exp-a", {3: {"phase": "RolledBack", "reasonCode": "srm", "message": "m"}})
    result = cli("status", "exp-a", "--watch", *FAST)
    assert result.exit_code == 0, result.output
    assert "Phase:        RolledBack" in result.stdout
    assert result.stderr == "exp-a finished: RolledBack (m)\n"


def test_watch_with_wait_for(cli: Run, cluster: Cluster) -> None:
    cluster.create(experiment("exp-a"))
    on_read(cluster, "exp-a", {2: {"phase": "RolledBack"}})
    result = cli("status", "exp-a", "-w", "--wait-for", "Promoted", *FAST)
    assert result.exit_code == experiments.EXIT_OTHER_END


def test_wait_errors(cli: Run, cluster: Cluster) -> None:
    result = cli("status", "nope", "--wait-for", "Promoted")
    assert (result.exit_code, result.stderr) == (
        1,
        'error: experiments.canaryctl.dev "nope" not found\n',
    )
    cluster.create(experiment("exp-a"))
    bad = cli("status", "exp-a", "--wait-for", "Promoted", "--timeout", "soon")
    assert bad.exit_code == 2 and "'soon' is not a duration" in bad.stderr
    wrong = cli("status", "exp-a", "--wait-for", "Paused")
    assert wrong.exit_code == 2 and "Paused" in wrong.stderr


def test_wait_outcome_table() -> None:
    cases = [
        ("Progressing", "Promoted", None),
        ("AwaitingPromotion", "Promoted", None),
        ("Promoted", "Promoted", 0),
        ("RolledBack", "Promoted", 3),
        ("Failed", "RolledBack", 3),
        ("AwaitingPromotion", "AwaitingPromotion", 0),
        ("Promoted", None, 0),
        ("Paused", None, None),
    ]
    assert [experiments.wait_outcome(phase, target) for phase, target, _ in cases] == [
        code for *_, code in cases
    ]


def test_a_server_error_while_waiting_is_retried(cli: Run, cluster: Cluster) -> None:
    cluster.create(experiment("exp-a"))
    on_read(cluster, "exp-a", {3: {"phase": "Promoted"}})
    reads = 0

    def fail_second_read(request: emulator.LoggedRequest) -> None:
        nonlocal reads
        if request.method == "GET" and request.path.endswith("/exp-a"):
            reads += 1
            if reads == 2:
                raise RuntimeError("the API server is having a bad moment")

    cluster.emulator.hooks.append(fail_second_read)
    result = cli("status", "exp-a", "--wait-for", "Promoted", *FAST)
    assert result.exit_code == 0, result.output
    assert "warning: RuntimeError('the API server is having a bad moment'); retrying" in (
        result.stderr
    )


def test_deleted_while_waiting_is_an_error(cli: Run, cluster: Cluster) -> None:
    cluster.create(experiment("exp-a"))

    def delete_on_second_read(request: emulator.LoggedRequest) -> None:
        gets = [r for r in cluster.emulator.log if r.method == "GET" and r.path.endswith("/exp-a")]
        if request.method == "GET" and request.path.endswith("/exp-a") and len(gets) == 1:
            cluster.store.delete(cluster.kind, NAMESPACE, "exp-a")

    cluster.emulator.hooks.append(delete_on_second_read)
    result = cli("status", "exp-a", "--wait-for", "Promoted", *FAST)
    assert result.exit_code == 1
    assert result.stderr.endswith('error: experiments.canaryctl.dev "exp-a" not found\n')


def test_waiting_says_what_holds_the_experiment(cli: Run, cluster: Cluster) -> None:
    """A CI log of a wait shows a hold, not just a phase that never moves."""
    cluster.create(experiment("exp-a"))
    taken = {
        "type": "RouteAvailable",
        "status": "False",
        "reason": "OwnedByAnotherExperiment",
        "message": "holding; HTTPRoute ml/ranker is owned by ml/exp-b; waiting until it finishes",
        "lastTransitionTime": "2026-11-26T10:00:00Z",
    }
    cluster.set_status("exp-a", {"phase": "Pending", "conditions": [taken]})
    result = cli("status", "exp-a", "--wait-for", "Promoted", "--timeout", "50ms", *FAST)
    assert result.exit_code == experiments.EXIT_TIMEOUT
    assert result.stderr.splitlines()[0] == "exp-a: Pending, held: OwnedByAnotherExperiment"
