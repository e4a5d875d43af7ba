"""``canaryctl list`` and ``canaryctl status``: tables, -o json|yaml, the status view, errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import yaml
from conftest import Cluster, Run, experiment

from controller.cli import output

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def iso(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


PROGRESSING = {
    "phase": "Progressing",
    "reasonCode": "step_complete",
    "message": "step 1/2 complete",
    "phaseStartedAt": iso(NOW - timedelta(hours=3)),
    "startedAt": iso(NOW - timedelta(hours=3)),
    "stepIndex": 1,
    "step": "2/2",
    "stepStartedAt": iso(NOW - timedelta(minutes=30)),
    "challengerWeight": 50,
    "verdict": "continue",
    "samples": {"champion": 30000, "challenger": 25000},
    "guardrails": [
        {
            "name": "revenue",
            "kind": "mean",
            "estimate": -0.004,
            "lower": -0.012,
            "upper": 0.0041,
            "verdict": "continue",
            "reasonCode": "inconclusive",
            "scale": "relative",
        },
        {
            "name": "errors",
            "kind": "rate",
            "estimate": 0.9,
            "lower": 0.7,
            "upper": 1.1,
            "verdict": "pass",
            "reasonCode": "passed",
            "scale": "ratio",
        },
    ],
    "conditions": [
        {
            "type": "SpecValid",
            "status": "True",
            "reason": "Valid",
            "message": "the spec is valid",
            "lastTransitionTime": iso(NOW),
        },
    ],
}
TAKEN = {
    "type": "RouteAvailable",
    "status": "False",
    "reason": "OwnedByAnotherExperiment",
    "message": "holding; HTTPRoute ml/ranker is owned by ml/ranker-bad; waiting until it finishes",
    "lastTransitionTime": iso(NOW - timedelta(minutes=12)),
}
BLOCKED = {
    "phase": "Baseline",
    "phaseStartedAt": iso(NOW - timedelta(hours=1)),
    "challengerWeight": 0,
    "conditions": [TAKEN],
}


def test_status_view_renders_progress_guardrails_and_samples() -> None:
    body = {**experiment("exp-a"), "status": PROGRESSING}
    body["metadata"] = {"name": "exp-a", "namespace": "ml"}
    view = output.status_view(body, NOW)
    assert view.splitlines()[:7] == [
        "Name:         exp-a   (namespace ml)",
        "Arms:         champion ranker-v1, challenger ranker-v2",
        "Phase:        Progressing for 3h",
        "Weight:       50 % on the challenger (set); 45.5 % of this step's requests, step 2/2",
        "Steps:        10 % ✓ → 50 % (now) → promotion",
        "Verdict:      continue (last look)",
        "Reason:       step 1/2 complete",
    ]
    assert "Next:         promotion after 2h and 50,000 samples per arm at 50 %" in view
    assert "  time        30m of 2h (25 %)" in view
    assert "  samples     25,000 of 50,000 in the smaller arm (50 %)" in view
    assert "Samples:      champion 30,000, challenger 25,000 (this step)" in view
    # a relative mean reads as a percentage change, a count test as a ratio
    rows = {line.split()[0]: line for line in view.splitlines() if line.startswith("  ")}
    assert "−0.4 % [−1.2 %, +0.4 %]" in rows["revenue"] and "continue" in rows["revenue"]
    assert "×0.90 [×0.70, ×1.10]" in rows["errors"] and "pass" in rows["errors"]
    # the reason code and the statistics are -o wide's
    assert "step_complete" not in view and "P(HARM)" not in view
    wide = output.status_view(body, NOW, wide=True)
    assert "Reason:       step_complete: step 1/2 complete" in wide and "P(HARM)" in wide
    assert "Held" not in view


def test_status_view_of_a_held_experiment_says_so_instead_of_a_progress_bar() -> None:
    """The review's finding: a canary queued on a taken route read 'Baseline 15m of 15m (100%)'."""
    spec = experiment("exp-b")["spec"]
    spec["analysis"] = {**spec["analysis"], "baseline": {"duration": "15m"}}
    body = {"spec": spec, "status": BLOCKED, "metadata": {"name": "exp-b", "namespace": "ml"}}
    view = output.status_view(body, NOW)
    assert (
        "Held:         OwnedByAnotherExperiment: holding; HTTPRoute ml/ranker is owned by "
        "ml/ranker-bad; waiting until it finishes (since 12m)"
    ) in view.splitlines()
    assert "Baseline:" not in view and "Next:" not in view
    finished = {**body, "status": {**BLOCKED, "phase": "RolledBack"}}
    assert "Held" not in output.status_view(finished, NOW)


def test_status_view_of_a_new_experiment_has_no_numbers_to_show() -> None:
    body = {**experiment("exp-a")}
    body["metadata"] = {"name": "exp-a", "namespace": "ml", "creationTimestamp": iso(NOW)}
    view = output.status_view(body, NOW + timedelta(seconds=5))
    assert "Phase:        Pending for 5s" in view
    assert "Weight:       0 % on the challenger (not started)" in view
    assert "Guardrails" not in view and "Samples" not in view and "Verdict" not in view


def test_list_table_json_yaml(cli: Run, cluster: Cluster) -> None:
    cluster.create(experiment("exp-a"))
    cluster.create(experiment("exp-b"))
    cluster.set_status("exp-b", PROGRESSING)
    cluster.create(experiment("exp-c"))
    cluster.set_status("exp-c", BLOCKED)
    cluster.create(experiment("elsewhere"), namespace="other")
    table = cli("list")
    assert table.exit_code == 0, table.output
    lines = table.stdout.splitlines()
    assert lines[0].split() == [
        *("NAME", "PHASE", "HELD", "WEIGHT", "STEP", "VERDICT", "CHAMPION", "CHALLENGER", "AGE")
    ]
    assert lines[1].split()[:8] == [
        "exp-a",
        "Pending",
        "-",
        "0%",
        "-",
        "-",
        "ranker-v1",
        "ranker-v2",
    ]
    assert lines[2].split()[:6] == ["exp-b", "Progressing", "-", "50%", "2/2", "continue"]
    assert lines[3].split()[:4] == ["exp-c", "Baseline", "OwnedByAnotherExperiment", "0%"]
    assert len(lines) == 4
    listed = json.loads(cli("list", "-o", "json").stdout)
    assert listed["kind"] == "List"
    assert [i["metadata"]["name"] for i in listed["items"]] == ["exp-a", "exp-b", "exp-c"]
    as_yaml = yaml.safe_load(cli("list", "-o", "yaml").stdout)
    assert as_yaml["items"][1]["status"]["phase"] == "Progressing"
    everywhere = cli("list", "-A").stdout.splitlines()
    assert everywhere[0].startswith("NAMESPACE") and len(everywhere) == 5


def test_list_nothing(cli: Run) -> None:
    result = cli("list", "-n", "empty")
    assert (result.exit_code, result.stdout) == (0, "")
    assert result.stderr == "no experiments in namespace empty\n"


def test_status_table_json_yaml(cli: Run, cluster: Cluster) -> None:
    cluster.create(experiment("exp-a"))
    cluster.set_status("exp-a", PROGRESSING)
    result = cli("status", "exp-a")
    assert result.exit_code == 0, result.output
    assert "Phase:        Progressing" in result.stdout and "revenue" in result.stdout
    body = json.loads(cli("status", "exp-a", "-o", "json").stdout)
    assert body["status"]["challengerWeight"] == 50
    assert (
        yaml.safe_load(cli("status", "exp-a", "-o", "yaml").stdout)["metadata"]["name"] == "exp-a"
    )


def test_unknown_experiment(cli: Run) -> None:
    result = cli("status", "nope")
    assert result.exit_code == 1
    assert result.stderr == 'error: experiments.canaryctl.dev "nope" not found\n'


def test_bad_output_format_is_a_usage_error(cli: Run) -> None:
    result = cli("list", "-o", "tabular")
    assert result.exit_code == 2 and "'tabular' is not one of" in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_status_view_awaiting_promotion_says_what_to_do() -> None:
    body = {**experiment("exp-a"), "status": {"phase": "AwaitingPromotion", "challengerWeight": 50}}
    body["metadata"] = {"name": "exp-a", "namespace": "ml"}
    view = output.status_view(body, NOW)
    assert "Next:         every guardrail passed; `canaryctl promote exp-a`" in view


def test_status_formats_each_figure_on_its_recorded_scale_not_the_live_spec() -> None:
    """An edit of the live spec after the freeze does not change how the figures read."""
    body = {**experiment("rec"), "status": PROGRESSING}
    body["metadata"] = {"name": "rec", "namespace": "ml"}
    for g in body["spec"]["analysis"]["guardrails"]:
        if g.get("kind") == "mean":
            g["margin"] = {"absolute": 0.01}  # edited after the freeze; refused by reconcile
    view = output.status_view(body, NOW)
    assert "−0.4 %" in view
    status = dict(PROGRESSING, guardrails=[dict(PROGRESSING["guardrails"][0], scale="absolute")])
    assert "−0.004 " in output.status_view({**body, "status": status}, NOW)


def test_status_view_says_what_a_waiting_guardrail_waits_for() -> None:
    waiting = {"have": 140, "need": 200, "unit": "revenue events"}
    revenue = dict(PROGRESSING["guardrails"][0], reasonCode="burn_in", waiting=waiting)  # type: ignore[index]
    status = dict(
        PROGRESSING,
        guardrails=[revenue, PROGRESSING["guardrails"][1]],  # type: ignore[index]
        srm={"enabled": True, "waiting": {"have": 40, "need": 100, "unit": "requests"}},
    )
    view = output.status_view({**experiment("exp-a"), "status": status}, NOW)
    (line,) = [x for x in view.splitlines() if x.startswith("  revenue ")]
    assert line.rstrip().endswith("continue   waiting for data: 140 of 200 revenue events")
    assert "SRM check:    waiting for data: 40 of 100 requests" in view
    assert "waiting" not in output.status_view({**experiment("exp-a"), "status": PROGRESSING}, NOW)
