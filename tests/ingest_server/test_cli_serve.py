"""``canaryctl ingest serve``: option errors are one line (exit 2), and the command serves."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from controller.cli.main import app
from controller.storage import db
from tests.ingest_server.conftest import count, headers, jsonl, rows


def _serve(database_url: str, *args: str, env: dict[str, str] | None = None) -> object:
    return CliRunner().invoke(
        app,
        ["ingest", "serve", *args],
        env={db.ENV_DATABASE_URL: database_url, "CANARYCTL_INGEST_TOKEN": "", **(env or {})},
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            [],
            "give --token-file (scoped credentials), --token-review with --token-file, or --token",
        ),
        (["--token", "t", "--token-file", "f.yaml"], "--token is one shared secret"),
        (["--token-review"], "give --token-file"),
        (["--token-file", "missing.yaml"], "missing.yaml: cannot read (No such file or directory)"),
        (["--token", "t", "--tls-cert", "c.pem"], "--tls-cert and --tls-key go together"),
        (["--token", "t", "--max-rows", "0"], "max_rows: must be positive, got 0"),
    ],
)
def test_option_errors_are_one_line(
    database_url: str,
    tmp_path: Path,
    args: list[str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    result = _serve(database_url, *args)
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {message}")


def test_a_bad_token_file_names_the_entry(database_url: str, tmp_path: Path) -> None:
    path = tmp_path / "creds.yaml"
    path.write_text("tokens:\n  - {token: a, identity: svc}\n")
    result = _serve(database_url, "--token-file", str(path))
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"error: {path}: tokens[0]: experiments must be a non-empty list of strings"
    )


def test_token_review_outside_a_cluster_needs_kube_api(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    path = tmp_path / "creds.yaml"
    path.write_text("serviceAccounts: []\n")
    result = _serve(database_url, "--token-file", str(path), "--token-review")
    assert result.exit_code == 2 and "pass --kube-api URL" in result.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_command_serves_scoped_credentials(
    truncating_engine: sa.Engine, registered: dict[str, int], database_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "creds.yaml"
    path.write_text("tokens:\n  - {token: shop-token, identity: shop, experiments: ['shop/*']}\n")
    port = _free_port()
    command = [str(Path(sys.executable).with_name("canaryctl")), "ingest", "serve"]
    log = tmp_path / "serve.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [*command, "--token-file", str(path), "--port", str(port), "--max-rows", "10"],
            env={**os.environ, db.ENV_DATABASE_URL: database_url},
            stdout=subprocess.DEVNULL,
            stderr=sink,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log.read_text()
            try:
                if httpx.get(f"{base}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "canaryctl ingest serve did not start"
                time.sleep(0.1)
        batch = jsonl(*rows(3, experiment="shop/ranker"))  # in the past: stored, flagged late
        with httpx.Client(base_url=base) as client:
            ok = client.post("/v1/batches", content=batch, headers=headers("shop-token"))
            big = client.post(
                "/v1/batches",
                content=jsonl(*rows(11, experiment="shop/ranker")),
                headers=headers("shop-token", key="b-2"),
            )
            outside = client.post(
                "/v1/batches",
                content=jsonl(*rows(1, experiment="ads/ranker")),
                headers=headers("shop-token", key="b-3"),
            )
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert ok.status_code == 200, ok.text
    assert big.status_code == 413 and "limit of 10 rows" in big.json()["error"]
    assert outside.status_code == 403
    assert count(truncating_engine) == 3
