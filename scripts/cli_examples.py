"""Print real output of each ``canaryctl`` command, for the README (run, then paste).

Starts the simulated world the demo uses (the Kubernetes API emulator with the CRD, the
operator, Postgres from CANARYCTL_DATABASE_URL), runs one canary to its first step and one
to a rollback, and runs every command against them through a kubeconfig, as a user would.
Usage: CANARYCTL_DATABASE_URL=postgresql://... .venv/bin/python scripts/cli_examples.py
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import yaml
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from analysis import Scenario
from canaryctl_demo.demo import START, demo_experiment
from canaryctl_demo.world import World
from controller.cli.main import app
from controller.storage import db

url = os.environ["CANARYCTL_DATABASE_URL"]
db.upgrade(url)
engine = db.make_engine(url)
tmp = Path(tempfile.mkdtemp())
runner = CliRunner()
traffic = Scenario(requests_per_minute=30_000)


def show(*args: str) -> None:
    result = runner.invoke(app, list(args), env={"CANARYCTL_DATABASE_URL": url, "COLUMNS": "110"})
    shown = " ".join(a if " " not in a else f'"{a}"' for a in args).replace(str(tmp) + "/", "")
    print(f"$ canaryctl {shown}")
    print(result.output.rstrip().replace(str(tmp) + "/", ""))
    print(f"[exit {result.exit_code}]\n")


with World.start(engine, start=START, namespace="ranking") as world:
    config = tmp / "kubeconfig"
    config.write_text(yaml.safe_dump(world.served.kubeconfig("ranking")))
    kube = ["--kubeconfig", str(config)]
    spec = tmp / "ranker-v42.yaml"
    spec.write_text(yaml.safe_dump(demo_experiment("ranker-v42")))
    show("start", "-f", str(spec), *kube)
    world.run("ranker-v42", traffic, until={"never"}, max_minutes=45)
    show("list", *kube)
    show("status", "ranker-v42", *kube)
    show("pause", "ranker-v42", "--reason", "holiday traffic", *kube)
    world.run("ranker-v42", traffic, until={"never"}, max_minutes=2)
    show("resume", "ranker-v42", *kube)
    show("rollback", "ranker-v42", "--reason", "bad recommendations in FR", *kube)
    world.run("ranker-v42", traffic, until={"RolledBack"}, max_minutes=3)
    show("status", "ranker-v42", *kube)
    show("promote", "ranker-v42", *kube)
    show("report", "ranking/ranker-v42", "--out", str(tmp / "ranker-v42.html"))
    show("report", "ranker-v42", "-o", "csv", "--out", str(tmp / "ranker-v42.csv"), *kube)
    show("report", "ranking/nope")
show("plan", "--rps", "500", "--weight", "25", "--mean", "0.13", "--sd", "0.7", "--effect", "-0.05")
show("db", "upgrade")
show("db", "check")
bad = tmp / "bad.csv"
bad.write_text(
    "experiment,arm,ts,revenue,latency_ms,error\nshop/ranker-v9,champion,2026-11-26T10:00:00Z,0.1,30,false\n"
)
show("ingest", "load", str(bad))
engine.dispose()
