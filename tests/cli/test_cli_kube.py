"""Cluster options: --kubeconfig, --context, -n; their errors; shell completion."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import yaml
from conftest import Cluster, Run, experiment
from typer.testing import CliRunner

from canaryctl_demo.kube import emulator
from controller.cli import kube
from controller.cli.main import app


def two_contexts(served: emulator.Served, path: Path) -> Path:
    config = served.kubeconfig("ml")
    config["contexts"].append(
        {
            "name": "staging",
            "context": {"cluster": "emulator", "user": "emulator", "namespace": "staging"},
        }
    )
    path.write_text(yaml.safe_dump(config))
    return path


def test_context_and_namespace_selection(
    served: emulator.Served, cluster: Cluster, tmp_path: Path
) -> None:
    cluster.create(experiment("in-ml"))
    cluster.create(experiment("in-staging"), namespace="staging")
    config = str(two_contexts(served, tmp_path / "config"))

    def names(*args: str) -> list[str]:
        result = CliRunner().invoke(app, ["list", "-o", "json", "--kubeconfig", config, *args])
        assert result.exit_code == 0, result.output
        return [i["metadata"]["name"] for i in yaml.safe_load(result.stdout)["items"]]

    assert names() == ["in-ml"]
    assert names("--context", "staging") == ["in-staging"]
    assert names("--context", "staging", "-n", "ml") == ["in-ml"]
    assert names("--namespace", "nowhere") == []


def test_kubeconfig_from_the_environment(
    served: emulator.Served, cluster: Cluster, tmp_path: Path
) -> None:
    cluster.create(experiment("exp-a"))
    config = two_contexts(served, tmp_path / "config")
    result = CliRunner().invoke(app, ["status", "exp-a"], env={"KUBECONFIG": str(config)})
    assert result.exit_code == 0, result.output


def test_kubeconfig_errors(cli: Run, tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    result = CliRunner().invoke(app, ["list", "--kubeconfig", str(missing)])
    assert (result.exit_code, result.stderr) == (
        1,
        f"error: --kubeconfig: {missing}: no such file\n",
    )
    result = cli("list", "--context", "prod")
    assert result.exit_code == 1
    assert result.stderr == "error: --context: no context named 'prod' (known: emulator)\n"
    garbage = tmp_path / "garbage"
    garbage.write_text("just text\n")
    result = CliRunner().invoke(app, ["list", "--kubeconfig", str(garbage)])
    assert (result.exit_code, result.stderr) == (
        1,
        f"error: kubeconfig {garbage}: not a kubeconfig (expected a YAML mapping)\n",
    )


def test_unreachable_cluster_is_one_line(tmp_path: Path) -> None:
    with emulator.serve() as served:
        config = served.kubeconfig("ml")
    config["clusters"][0]["cluster"]["server"] = "http://127.0.0.1:9"  # nothing listens
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(app, ["status", "exp-a", "--kubeconfig", str(path)])
    assert result.exit_code == 1
    assert (
        result.stderr
        == "error: cannot reach the Kubernetes API at http://127.0.0.1:9: Connection refused\n"
    )
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output


def test_completion_of_contexts_and_names(
    served: emulator.Served, cluster: Cluster, tmp_path: Path
) -> None:
    cluster.create(experiment("ranker-v42"))
    cluster.create(experiment("other"))
    config = str(two_contexts(served, tmp_path / "config"))
    ctx: Any = SimpleNamespace(params={"kubeconfig": config, "context": None, "namespace": None})
    assert kube._complete_contexts(ctx, "st") == ["staging"]
    assert kube.complete_names(ctx, "ran") == ["ranker-v42"]
    ctx.params["kubeconfig"] = str(tmp_path / "missing")
    assert kube.complete_names(ctx, "") == []


def test_shell_completion_stays_enabled() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert "--install-completion" in result.stdout and "--show-completion" in result.stdout
    for command in (
        "start",
        "list",
        "status",
        "promote",
        "rollback",
        "pause",
        "resume",
        "db",
        "ingest",
        "version",
    ):
        assert command in result.stdout


def test_completion_through_the_shell_protocol(
    served: emulator.Served, cluster: Cluster, tmp_path: Path
) -> None:
    cluster.create(experiment("ranker-v42"))
    config = str(two_contexts(served, tmp_path / "config"))
    words = f"canaryctl status --kubeconfig {config} ran"
    env = {"_CANARYCTL_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": "4"}
    result = CliRunner().invoke(app, [], env=env, prog_name="canaryctl")
    assert result.stdout.split() == ["ranker-v42"]


def test_a_cluster_without_the_crd_says_so(tmp_path: Path) -> None:
    with emulator.serve() as served:  # no CRD loaded
        path = tmp_path / "config"
        path.write_text(yaml.safe_dump(served.kubeconfig("ml")))
        result = CliRunner().invoke(app, ["list", "--kubeconfig", str(path)])
    assert result.exit_code == 1
    assert result.stderr == (
        f"error: experiments.canaryctl.dev/v1alpha1 is not served by {served.url}; is the CRD "
        "installed? (kubectl apply -f manifests/crd.yaml)\n"
    )
