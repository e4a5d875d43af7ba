"""``canaryctl promote|rollback|pause|resume``: refusals, the request annotation, identity."""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest import Cluster, Run, experiment

from canaryctl_demo.kube import emulator
from controller.cli import control, kube
from controller.decide import manual

A = manual.RequestAction


def request_of(cluster: Cluster, name: str = "exp-a") -> manual.ManualRequest:
    parsed = manual.parse_request(cluster.get(name)["metadata"].get("annotations"))
    assert isinstance(parsed, manual.ManualRequest)
    return parsed


def seeded(cluster: Cluster, phase: str, **status: Any) -> None:
    cluster.create(experiment("exp-a"))
    cluster.set_status("exp-a", {"phase": phase, **status})


def test_promote_writes_a_guarded_request_with_who_asked(cli: Run, cluster: Cluster) -> None:
    seeded(cluster, "AwaitingPromotion")
    before = cluster.get("exp-a")
    result = cli("promote", "exp-a", "--reason", "dashboards look fine")
    assert result.exit_code == 0, result.output
    req = request_of(cluster)
    assert (req.action, req.full, req.reason) == (A.PROMOTE, False, "dashboards look fine")
    assert req.actor == "emulator (kubeconfig user)"  # the emulator has no SelfSubjectReview
    assert req.requested_at is not None and req.id.startswith("promote-")
    assert result.stdout == f"promote requested for exp-a (request {req.id} by {req.actor})\n"
    (patch,) = cluster.writes()
    assert patch.method == "PATCH"
    assert patch.body["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    after = cluster.get("exp-a")
    assert after["spec"] == before["spec"] and after["metadata"]["generation"] == 1


def test_identity_from_self_subject_review(
    cli: Run, cluster: Cluster, served: emulator.Served
) -> None:
    served.emulator["post /apis/authentication.k8s.io/v1/selfsubjectreviews"] << {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "SelfSubjectReview",
        "status": {"userInfo": {"username": "alice@example.com"}},
    }
    seeded(cluster, "Progressing")
    assert cli("pause", "exp-a").exit_code == 0
    assert request_of(cluster).actor == "alice@example.com"


def test_identity_falls_back_to_the_local_user(
    monkeypatch: pytest.MonkeyPatch, served: emulator.Served
) -> None:
    monkeypatch.setattr("getpass.getuser", lambda: "bob")
    cluster = kube.Cluster(served.api_client(), "ml", False, None)
    try:
        assert kube.whoami(cluster) == kube.Identity("bob", "local")
    finally:
        cluster.api.close()
    assert kube.Identity("bob", "local").actor == "bob (local user)"


def test_promoting_a_rolled_back_experiment_is_refused(cli: Run, cluster: Cluster) -> None:
    seeded(cluster, "RolledBack", reasonCode="guardrail_failed:errors")
    result = cli("promote", "exp-a")
    assert result.exit_code == 1
    assert result.stderr == (
        "error: cannot promote exp-a: the experiment has finished (RolledBack)\n"
    )
    assert cluster.writes() == []


def test_promote_mid_rollout_needs_full(cli: Run, cluster: Cluster) -> None:
    seeded(cluster, "Progressing", stepIndex=0, challengerWeight=10)
    refused = cli("promote", "exp-a")
    assert refused.exit_code == 1
    # said once (it read "promote is allowed in AwaitingPromotion; promote with full skips the
    # remaining steps from Progressing or Paused (phase is Progressing); pass --full to skip
    # the remaining steps")
    assert refused.stderr == (
        "error: cannot promote exp-a: it is still stepping (Progressing); "
        "promote --full skips the remaining steps\n"
    )
    result = cli("promote", "exp-a", "--full")
    assert result.exit_code == 0, result.output
    assert request_of(cluster).full is True
    assert result.stdout.startswith("promote --full requested for exp-a")


def test_rollback_pause_resume(cli: Run, cluster: Cluster) -> None:
    seeded(cluster, "Progressing")
    assert cli("pause", "exp-a", "--reason", "holiday traffic").exit_code == 0
    first = request_of(cluster)
    assert (first.action, first.reason) == (A.PAUSE, "holiday traffic")
    cluster.set_status("exp-a", {"phase": "Paused", "handledRequests": [first.id]})
    assert cli("resume", "exp-a").exit_code == 0
    second = request_of(cluster)
    assert second.action is A.RESUME and second.id != first.id
    cluster.set_status("exp-a", {"phase": "Progressing", "handledRequests": [first.id, second.id]})
    assert cli("rollback", "exp-a", "--reason", "bad recommendations in FR").exit_code == 0
    assert request_of(cluster).action is A.ROLLBACK


def test_rollback_needs_a_reason(cli: Run, cluster: Cluster) -> None:
    seeded(cluster, "Progressing")
    missing = cli("rollback", "exp-a")
    assert missing.exit_code == 2 and "--reason" in missing.stderr
    empty = cli("rollback", "exp-a", "--reason", " ")
    assert (empty.exit_code, empty.stderr) == (2, "error: --reason: say why you roll back\n")
    assert cluster.writes() == []


def test_a_pending_request_blocks_all_but_rollback(cli: Run, cluster: Cluster) -> None:
    seeded(cluster, "Progressing")
    assert cli("pause", "exp-a").exit_code == 0
    pending = request_of(cluster)
    again = cli("pause", "exp-a")
    assert again.exit_code == 1
    assert "an earlier request is still waiting for the operator: pause by " in again.stderr
    assert f"(id {pending.id})" in again.stderr
    result = cli("rollback", "exp-a", "--reason", "abort")
    assert result.exit_code == 0
    assert result.stderr.startswith("replaced the pending request pause by")


def test_unknown_experiment(cli: Run) -> None:
    result = cli("pause", "nope")
    assert (result.exit_code, result.stderr) == (
        1,
        'error: experiments.canaryctl.dev "nope" not found\n',
    )


def test_a_concurrent_change_is_re_read_and_decided_again(cli: Run, cluster: Cluster) -> None:
    seeded(cluster, "Progressing")
    patches = 0

    def operator_moves_first(request: emulator.LoggedRequest) -> None:
        nonlocal patches
        if request.method == "PATCH":
            patches += 1
            if patches == 1:  # the operator pauses it between the CLI's read and its write
                cluster.set_status("exp-a", {"phase": "Paused"})

    cluster.emulator.hooks.append(operator_moves_first)
    result = cli("pause", "exp-a")
    assert result.exit_code == 1
    assert result.stderr == (
        "error: cannot pause exp-a: pause is not allowed in phase Paused (only from Progressing)\n"
    )
    assert [w.status for w in cluster.emulator.log if w.method == "PATCH"] == [409]
    assert "annotations" not in cluster.get("exp-a")["metadata"]


def status_of(phase: str, **extra: Any) -> dict[str, Any]:
    return {"metadata": {}, "status": {"phase": phase, **extra}}


HOLD = [{"type": "ChallengerReady", "status": "False"}]
PENDING = {"annotations": manual.format_request(manual.ManualRequest("r1", A.PAUSE, "bob", ""))}


@pytest.mark.parametrize(
    ("action", "full", "body", "refused"),
    [
        (A.ROLLBACK, False, status_of("Pending"), None),
        (A.ROLLBACK, False, status_of("AwaitingPromotion"), None),
        (A.ROLLBACK, False, status_of("RolledBack"), "the experiment has finished (RolledBack)"),
        (A.ROLLBACK, False, status_of("Failed"), "the experiment has finished (Failed)"),
        (A.PROMOTE, False, status_of("AwaitingPromotion"), None),
        (A.PROMOTE, False, status_of("Promoted"), "the experiment has finished (Promoted)"),
        (A.PROMOTE, False, status_of("Baseline"), "promote is allowed in AwaitingPromotion"),
        (A.PROMOTE, True, status_of("Paused"), None),
        (A.PROMOTE, True, status_of("Pending"), "promote is allowed in AwaitingPromotion"),
        (
            A.PROMOTE,
            False,
            status_of("AwaitingPromotion", conditions=HOLD),
            "cannot promote while holding (challenger_not_ready)",
        ),
        (
            A.PROMOTE,
            True,
            status_of("Progressing", verdict="fail"),
            "cannot promote while a guardrail is failing",
        ),
        (
            A.PROMOTE,
            False,
            status_of("AwaitingPromotion", guardrails=[{"name": "errors", "verdict": "fail"}]),
            "cannot promote while a guardrail is failing (errors)",
        ),
        (A.PAUSE, False, status_of("Progressing"), None),
        (A.PAUSE, False, status_of("Baseline"), "pause is not allowed in phase Baseline"),
        (A.RESUME, False, status_of("Paused"), None),
        (A.RESUME, False, status_of("Progressing"), "resume is not allowed in phase Progressing"),
        (
            A.RESUME,
            False,
            {"metadata": PENDING, "status": {"phase": "Paused"}},
            "an earlier request is still waiting for the operator: pause by bob (id r1)",
        ),
        (
            A.RESUME,
            False,
            {"metadata": PENDING, "status": {"phase": "Paused", "handledRequests": ["r1"]}},
            None,
        ),
        (A.ROLLBACK, False, {"metadata": PENDING, "status": {"phase": "Paused"}}, None),
    ],
)
def test_refusal_rules(
    action: manual.RequestAction, full: bool, body: dict[str, Any], refused: str | None
) -> None:
    why = control.refusal(action, full, body)
    if refused is None:
        assert why is None
    else:
        assert why is not None and why.startswith(refused), why


def test_request_annotation_is_what_the_operator_parses(cli: Run, cluster: Cluster) -> None:
    seeded(cluster, "AwaitingPromotion")
    assert cli("promote", "exp-a").exit_code == 0
    raw = json.loads(cluster.get("exp-a")["metadata"]["annotations"][manual.REQUEST_ANNOTATION])
    assert set(raw) == {"id", "action", "actor", "reason", "requestedAt"}


def test_a_conflict_on_an_unrelated_change_is_retried(cli: Run, cluster: Cluster) -> None:
    seeded(cluster, "Progressing")
    patches = 0

    def someone_labels_it(request: emulator.LoggedRequest) -> None:
        nonlocal patches
        if request.method == "PATCH":
            patches += 1
            if patches == 1:
                cluster.store.patch(
                    cluster.kind, "ml", "exp-a", {"metadata": {"labels": {"a": "b"}}}
                )

    cluster.emulator.hooks.append(someone_labels_it)
    result = cli("pause", "exp-a")
    assert result.exit_code == 0, result.output
    assert [w.status for w in cluster.emulator.log if w.method == "PATCH"] == [409, 200]
    assert request_of(cluster).action is A.PAUSE
    assert cluster.get("exp-a")["metadata"]["labels"] == {"a": "b"}


def test_one_command_per_request_action() -> None:
    assert sorted(r.action for r in control.REQUESTS) == sorted(manual.RequestAction)
