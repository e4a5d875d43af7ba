"""``canaryctl report`` with kubectl manners: the context's namespace, ``-o`` (not ``-f``),
yaml and jsonpath over the JSON report (issue 12, point 3)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from controller.cli.main import app
from tests.reports.conftest import ROLLED_BACK


def run(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, list(args))


@pytest.fixture
def db_env(report_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("CANARYCTL_DATABASE_URL", report_url)
    return report_url


def _kubeconfig(path: Path, namespace: str) -> Path:
    """A kubeconfig whose context names ``namespace`` (its server is never contacted)."""
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [
                    {"name": "main", "context": {"cluster": "c", "user": "u"}},
                    {
                        "name": "ml",
                        "context": {"cluster": "c", "user": "u", "namespace": namespace},
                    },
                ],
                "current-context": "ml",
            }
        )
    )
    return path


def test_a_bare_name_is_in_the_contexts_namespace_as_for_status(
    db_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bare = ROLLED_BACK.split("/")[1]
    kubeconfig = _kubeconfig(tmp_path / "config", ROLLED_BACK.split("/")[0])
    found = run("report", bare, "--kubeconfig", str(kubeconfig), "-o", "json")
    assert found.exit_code == 0, found.output
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    assert run("report", bare, "-o", "json").exit_code == 0  # $KUBECONFIG, as kubectl
    other = run("report", bare, "--context", "main")  # a context without a namespace
    assert other.exit_code == 1
    assert f"no experiment default/{bare} in the database" in other.stderr


def test_a_broken_kubeconfig_is_named_in_one_line(db_env: str, tmp_path: Path) -> None:
    broken = tmp_path / "config"
    broken.write_text("clusters: [\n  - x: {\n")
    result = run("report", "some-name", "--kubeconfig", str(broken))
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: kubeconfig {broken}: not valid YAML at line 2")
    assert len(result.stderr.splitlines()) == 1


def test_yaml_and_jsonpath_over_the_json_report(db_env: str) -> None:
    as_yaml = run("report", ROLLED_BACK, "-o", "yaml")
    assert as_yaml.exit_code == 0, as_yaml.output
    assert yaml.safe_load(as_yaml.stdout)["failure"]["guardrail"] == "revenue"
    picked = run("report", ROLLED_BACK, "-o", "jsonpath={.failure.guardrail}")
    assert (picked.exit_code, picked.stdout) == (0, "revenue")


def test_f_is_not_the_format_any_more(db_env: str) -> None:
    result = run("report", ROLLED_BACK, "-f", "json")
    assert result.exit_code == 2
    assert result.stderr == ("error: No such option: -f (see 'canaryctl report --help')\n")
