"""``canaryctl operator run`` as a real process against the emulator and Postgres."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import kubernetes.client
import sqlalchemy as sa
import yaml

from canaryctl_demo.kube import emulator, seed
from canaryctl_demo.world import GROUP, HTTPROUTE, PLURAL, VERSION, experiment_body
from controller.experiment import crd


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_operator_process_runs_an_experiment_and_serves_probes_and_metrics(
    truncating_engine: sa.Engine, database_url: str, tmp_path: Path
) -> None:
    with emulator.serve() as served:
        api = served.api_client()
        served.emulator.load_crd(crd.build_crd())
        cluster = seed.Cluster(api, "ml")
        cluster.create_namespace()
        for name in ("ranker-v1", "ranker-v2"):
            cluster.create_deployment(name, replicas=2)
        cluster.create(HTTPROUTE, seed.httproute("ranker", {"ranker-v1": 100, "ranker-v2": 0}))
        kubernetes.client.CoreV1Api(api).create_namespace(
            {"metadata": {"name": "canaryctl-system"}}
        )
        config = tmp_path / "kubeconfig"
        config.write_text(yaml.safe_dump(served.kubeconfig("ml")))
        health, scrape = _free_port(), _free_port()
        canaryctl = str(Path(sys.executable).with_name("canaryctl"))
        proc = subprocess.Popen(
            [
                canaryctl,
                "operator",
                "run",
                "--kubeconfig",
                str(config),
                "--watch-namespace",
                "ml",
                "--health-port",
                str(health),
                "--metrics-port",
                str(scrape),
                "--identity",
                "op-0",
            ],
            env={"CANARYCTL_DATABASE_URL": database_url, "PATH": "/usr/bin:/bin"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            kubernetes.client.CustomObjectsApi(api).create_namespaced_custom_object(
                GROUP, VERSION, "ml", PLURAL, experiment_body("proc")
            )
            deadline = time.monotonic() + 30
            phase = None
            while phase != "Progressing":
                assert time.monotonic() < deadline, (
                    "the operator process never started the experiment"
                )
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                time.sleep(0.2)
                body = kubernetes.client.CustomObjectsApi(api).get_namespaced_custom_object(
                    GROUP, VERSION, "ml", PLURAL, "proc"
                )
                phase = (body.get("status") or {}).get("phase")
            assert httpx.get(f"http://127.0.0.1:{health}/healthz").status_code == 200
            assert httpx.get(f"http://127.0.0.1:{health}/readyz").status_code == 200
            deadline = time.monotonic() + 30  # the gauges are refreshed at the start of each pass
            while 'canaryctl_experiments{phase="Progressing"} 1.0' not in (
                metrics := httpx.get(f"http://127.0.0.1:{scrape}/metrics").text
            ):
                assert time.monotonic() < deadline, metrics
                time.sleep(0.5)
            assert 'canaryctl_decisions_total{kind="start"} 1.0' in metrics
            assert "canaryctl_leader 1.0" in metrics
            lease = kubernetes.client.CoordinationV1Api(api).read_namespaced_lease(
                "canaryctl-operator", "canaryctl-system"
            )
            assert lease.spec.holder_identity == "op-0"
        finally:
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=60)
            api.close()
        assert proc.returncode == 0, out
        assert "watching ml" in out
        # unauthenticated endpoints listen on localhost unless told otherwise
        assert f"health on 127.0.0.1:{health}, metrics on 127.0.0.1:{scrape}" in out
