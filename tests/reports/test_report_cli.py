"""``canaryctl report`` with CliRunner against real Postgres: formats, --out, and wrong input."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from controller.cli.main import app
from tests.reports.conftest import PROMOTED, ROLLED_BACK


def run(*args: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, list(args), env=env)


@pytest.fixture
def db_env(report_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("CANARYCTL_DATABASE_URL", report_url)
    return report_url


def test_json_to_stdout(db_env: str) -> None:
    result = run("report", ROLLED_BACK, "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["phase"], data["failure"]["guardrail"]) == ("RolledBack", "revenue")


def test_csv_with_namespace_option(db_env: str) -> None:
    result = run("report", "revenue-drop", "-n", "ml", "-o", "csv")
    assert result.exit_code == 0, result.output
    table = list(csv.DictReader(io.StringIO(result.stdout)))
    assert {r["guardrail"] for r in table} == {"revenue", "latency-p99", "errors"}


def test_html_to_a_file_says_what_it_wrote(db_env: str, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    result = run("report", PROMOTED, "--out", str(out), "--database-url", db_env)
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert f"wrote the html report of {PROMOTED}, Promoted (promoted), to {out}" in result.stderr
    text = out.read_text()
    assert text.startswith("<!DOCTYPE html>")
    # one self-contained file: nothing is loaded from elsewhere, and the page's policy forbids it
    assert "default-src 'none'" in text and "unsafe-eval" not in text
    markup = re.sub(r"(<script\b[^>]*>).*?</script>", r"\1", text, flags=re.DOTALL)
    assert markup.count("<script") == text.count("</script>") >= 3
    assert not re.search(r"<(script|img|iframe)\b[^>]*\bsrc=|<link\b", markup, re.IGNORECASE)


def test_unknown_experiment_is_one_line_and_exit_1(db_env: str) -> None:
    result = run("report", "ml/no-such-thing")
    assert result.exit_code == 1
    assert result.stderr == (
        "error: no experiment ml/no-such-thing in the database "
        "(it was never started, or the name is wrong)\n"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["report", ROLLED_BACK, "--format", "pdf"], "'pdf' is not one of html, json, csv"),
        (["report", "a/b/c"], "error: experiment key 'a/b/c' is not of the form namespace/name"),
        (["report", ROLLED_BACK, "-n", "other"], "names namespace 'ml' but -n says 'other'"),
    ],
)
def test_bad_input_exits_2(db_env: str, args: list[str], message: str) -> None:
    result = run(*args)
    assert result.exit_code == 2
    assert message in result.stderr


def test_no_database_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CANARYCTL_DATABASE_URL", raising=False)
    result = run("report", ROLLED_BACK)
    assert result.exit_code == 1
    assert result.stderr.startswith("error: no database configured")


def test_unreachable_database_is_one_line() -> None:
    result = run("report", ROLLED_BACK, "--database-url", "postgresql://nobody@127.0.0.1:1/none")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: cannot reach the database:")
    assert result.stderr.count("\n") == 1
