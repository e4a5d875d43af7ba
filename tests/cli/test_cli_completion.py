"""Completion of Experiment names: one GET through the standard library, else the client."""

from __future__ import annotations

import http.server
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from conftest import Cluster, experiment

from canaryctl_demo.kube import emulator
from controller.cli import completion, kube


def write(path: Path, config: dict[str, Any]) -> str:
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_names_from_the_emulator(served: emulator.Served, cluster: Cluster, tmp_path: Path) -> None:
    cluster.create(experiment("ranker-v42"))
    cluster.create(experiment("in-staging"), namespace="staging")
    config = write(tmp_path / "config", served.kubeconfig("ml"))
    assert completion.names(config, None, None) == ["ranker-v42"]
    assert completion.names(config, None, "staging") == ["in-staging"]
    assert completion.names(config, "emulator", "empty") == []


def test_kubeconfigs_it_does_not_handle_go_to_the_client(
    served: emulator.Served, tmp_path: Path
) -> None:
    config = served.kubeconfig("ml")
    exec_user = {**config, "users": [{"name": "emulator", "user": {"exec": {"command": "x"}}}]}
    assert completion.names(write(tmp_path / "exec", exec_user), None, None) is None
    proxied = {
        **config,
        "clusters": [{"name": "emulator", "cluster": {"server": served.url, "proxy-url": "x"}}],
    }
    assert completion.names(write(tmp_path / "proxy", proxied), None, None) is None
    single = write(tmp_path / "config", config)
    assert completion.names(f"{single}{os.pathsep}{single}", None, None) is None
    assert completion.names(str(tmp_path / "missing"), None, None) is None
    assert completion.names(single, "no-such-context", None) is None
    unreachable = {
        **config,
        "clusters": [{"name": "emulator", "cluster": {"server": "http://127.0.0.1:9"}}],
    }
    assert completion.names(write(tmp_path / "down", unreachable), None, None) is None


def test_an_answer_that_is_an_error_completes_nothing(tmp_path: Path) -> None:
    with emulator.serve() as served:  # no CRD: the list is a 404
        config = write(tmp_path / "config", served.kubeconfig("ml"))
        assert completion.names(config, None, None) == []


def test_names_through_the_client_when_the_kubeconfig_needs_it(
    served: emulator.Served, cluster: Cluster, tmp_path: Path
) -> None:
    cluster.create(experiment("ranker-v42"))
    single = write(tmp_path / "config", served.kubeconfig("ml"))
    ctx: Any = SimpleNamespace(
        params={"kubeconfig": f"{single}{os.pathsep}{single}", "context": None, "namespace": None}
    )
    assert kube.complete_names(ctx, "ran") == ["ranker-v42"]


@pytest.fixture()
def recorder() -> Iterator[tuple[str, list[dict[str, str]]]]:
    """An HTTP server that records the headers of each request and lists one Experiment."""
    seen: list[dict[str, str]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append({"path": self.path, **dict(self.headers)})
            body = json.dumps({"items": [{"metadata": {"name": "ranker-v42"}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", seen
    finally:
        server.shutdown()
        server.server_close()


def test_the_token_is_sent_and_a_token_file_is_relative_to_the_kubeconfig(
    recorder: tuple[str, list[dict[str, str]]], tmp_path: Path
) -> None:
    url, seen = recorder
    (tmp_path / "token").write_text("s3cret\n")
    config = {
        "current-context": "c",
        "clusters": [{"name": "k", "cluster": {"server": url}}],
        "users": [{"name": "u", "user": {"tokenFile": "token"}}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u", "namespace": "ml"}}],
    }
    assert completion.names(write(tmp_path / "config", config), None, None) == ["ranker-v42"]
    assert seen[0]["path"] == "/apis/canaryctl.dev/v1alpha1/namespaces/ml/experiments"
    assert seen[0]["Authorization"] == "Bearer s3cret"
