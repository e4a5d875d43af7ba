"""``canaryctl start``: from a manifest or flags, validated first, dry run, and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from conftest import EXAMPLE, NAMESPACE, Cluster, Run, experiment

from controller.experiment import validation


def write(tmp_path: Path, body: object, name: str = "experiment.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(body))
    return path


def test_start_from_the_documented_example(cli: Run, cluster: Cluster) -> None:
    result = cli("start", "-f", str(EXAMPLE))
    assert result.exit_code == 0, result.output
    assert result.stdout == "experiment.canaryctl.dev/ranker-v42 created in namespace ranking\n"
    stored = cluster.get("ranker-v42", namespace="ranking")
    assert stored["spec"] == yaml.safe_load(EXAMPLE.read_text())["spec"]


def test_start_uses_the_context_namespace_or_n(cli: Run, cluster: Cluster, tmp_path: Path) -> None:
    path = write(tmp_path, experiment("exp-a"))
    assert cli("start", "-f", str(path)).exit_code == 0
    assert cluster.get("exp-a", namespace=NAMESPACE)["metadata"]["name"] == "exp-a"
    assert cli("start", "-f", str(path), "-n", "other").exit_code == 0
    assert cluster.get("exp-a", namespace="other")["spec"]["steps"][0]["weight"] == 10


def test_start_reads_stdin(cli: Run, cluster: Cluster) -> None:
    result = cli("start", "-f", "-", input=yaml.safe_dump(experiment("from-stdin")))
    assert result.exit_code == 0, result.output
    assert cluster.get("from-stdin")["spec"]["challenger"] == {"name": "ranker-v2"}


def test_missing_file_is_one_line_and_exit_2(cli: Run, cluster: Cluster) -> None:
    result = cli("start", "-f", "missing.yaml")
    assert (result.exit_code, result.stderr) == (2, "error: missing.yaml: no such file\n")
    assert cluster.writes() == []


def test_invalid_spec_names_the_field(cli: Run, cluster: Cluster, tmp_path: Path) -> None:
    bad = experiment(
        steps=[{"weight": 50, "minDuration": "1h"}, {"weight": 25, "minDuration": "1h"}]
    )
    result = cli("start", "-f", str(write(tmp_path, bad)))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {tmp_path / 'experiment.yaml'}: invalid spec: ")
    assert "spec.steps[1].weight: must be greater than the previous step's weight (50)" in (
        result.stderr
    )
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output
    assert cluster.writes() == []


def test_unknown_field_and_bad_duration_are_named(cli: Run, tmp_path: Path) -> None:
    body = experiment(maxDuration="1 day", color="blue")
    result = cli("start", "-f", str(write(tmp_path, body)))
    assert result.exit_code == 2
    assert "spec.color: is not a known field" in result.stderr
    assert "spec.maxDuration: '1 day' is not a duration" in result.stderr


def test_not_yaml_and_not_one_object(cli: Run, tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("spec: [unclosed\n")
    result = cli("start", "-f", str(path))
    assert result.exit_code == 2 and "not valid YAML at line" in result.stderr
    path.write_text("a: 1\n---\nb: 2\n")
    result = cli("start", "-f", str(path))
    assert result.exit_code == 2
    assert result.stderr.endswith("expected one Experiment object, found 2 document(s)\n")


def test_dry_run_prints_and_creates_nothing(cli: Run, cluster: Cluster, tmp_path: Path) -> None:
    result = cli("start", "-f", str(write(tmp_path, experiment("exp-a"))), "--dry-run")
    assert result.exit_code == 0, result.output
    printed = yaml.safe_load(result.stdout)
    assert printed["metadata"] == {"name": "exp-a", "namespace": NAMESPACE}
    assert "would be created in namespace ml (nothing was sent)" in result.stderr
    assert cluster.writes() == []


def test_dry_run_works_without_a_cluster(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from controller.cli.main import app

    path = write(tmp_path, experiment("exp-a"))
    missing = tmp_path / "no-kubeconfig"
    args = ["start", "-f", str(path), "--dry-run", "-o", "json", "--kubeconfig", str(missing)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["metadata"]["namespace"] == "default"


def test_flags_for_the_common_case(cli: Run, cluster: Cluster) -> None:
    args = [
        "start",
        "--champion",
        "ranker-v41",
        "--challenger",
        "ranker-v42",
        "--http-route",
        "ranker",
        "--steps",
        "5:1h,25:2h:20000",
        "--latency-ms",
        "250",
        "--revenue-margin",
        "0.02",
        "--baseline",
        "30m",
        "--manual-promotion",
    ]
    result = cli(*args, "--dry-run", "-o", "json")
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    s = validation.parse_experiment(body)
    assert [st.weight for st in s.steps] == [5, 25]
    assert s.steps[1].min_samples == 20000
    assert [g.name for g in s.analysis.guardrails] == ["revenue", "latency", "errors"]
    assert s.analysis.baseline is not None and s.promotion.value == "manual"
    assert cli(*args).exit_code == 0
    assert cluster.get("ranker-v42")["spec"]["router"] == {"gatewayAPI": {"httpRoute": "ranker"}}


def test_flag_errors(cli: Run) -> None:
    base = ["start", "--champion", "a", "--challenger", "b"]
    result = cli(*base)
    assert result.exit_code == 2 and "give exactly one router" in result.stderr
    result = cli(*base, "--replicas", "4", "--revenue-margin", "0.02")
    assert result.exit_code == 2
    assert "spec.analysis.revenueCap" in result.stderr
    result = cli(*base, "--replicas", "4", "--steps", "5h")
    assert result.exit_code == 2 and "weight:minDuration" in result.stderr
    result = cli("start", "-f", str(EXAMPLE), "--champion", "x")
    assert result.exit_code == 2 and "not both" in result.stderr


def test_existing_experiment_and_namespace_mismatch(cli: Run, cluster: Cluster) -> None:
    assert cli("start", "-f", str(EXAMPLE)).exit_code == 0
    again = cli("start", "-f", str(EXAMPLE))
    assert again.exit_code == 1
    assert again.stderr == ('error: experiments.canaryctl.dev "ranker-v42" already exists\n')
    result = cli("start", "-f", str(EXAMPLE), "-n", "ml")
    assert result.exit_code == 2
    assert "namespace of the object (ranking) does not match --namespace (ml)" in result.stderr


def test_a_bad_name_is_refused_before_sending(cli: Run, cluster: Cluster, tmp_path: Path) -> None:
    result = cli("start", "-f", str(write(tmp_path, experiment("Ranker_V2"))))
    assert result.exit_code == 2
    assert "metadata.name: 'Ranker_V2' must be a lowercase DNS name" in result.stderr
    nameless = experiment()
    del nameless["metadata"]
    result = cli("start", "-f", str(write(tmp_path, nameless)))
    assert result.exit_code == 2 and result.stderr.endswith("metadata.name: is required\n")
    assert cluster.writes() == []


def test_start_refuses_a_route_another_live_experiment_uses(
    cli: Run, cluster: Cluster, tmp_path: Path
) -> None:
    """The review's finding: a second Experiment on a taken route was accepted silently."""
    cluster.create(experiment("ranker-bad"))
    cluster.set_status("ranker-bad", {"phase": "Progressing", "challengerWeight": 10})
    second = write(tmp_path, experiment("ranker-third"))
    result = cli("start", "-f", str(second))
    assert result.exit_code == 5
    assert result.stderr == (
        f"error: {NAMESPACE}/ranker-bad (Progressing) on HTTPRoute {NAMESPACE}/ranker already "
        "uses the same route; wait until it finishes, or pass --force to queue behind it\n"
    )
    assert [w for w in cluster.writes() if w.method == "POST"] == []
    forced = cli("start", "-f", str(second), "--force")
    assert forced.exit_code == 0, forced.output
    assert forced.stderr.startswith(f"warning: {NAMESPACE}/ranker-bad (Progressing) on HTTPRoute")
    assert cluster.get("ranker-third")["metadata"]["name"] == "ranker-third"


def test_start_takes_a_route_whose_experiment_has_finished_or_another_route(
    cli: Run, cluster: Cluster, tmp_path: Path
) -> None:
    cluster.create(experiment("old"))
    cluster.set_status("old", {"phase": "RolledBack", "challengerWeight": 0})
    cluster.create(experiment("other-route", router={"gatewayAPI": {"httpRoute": "search"}}))
    result = cli("start", "-f", str(write(tmp_path, experiment("new"))), "--no-forecast")
    assert (result.exit_code, result.stderr) == (
        0,
        "follow it: canaryctl status new -n ml --watch\n",
    )
