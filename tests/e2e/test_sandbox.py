"""``canaryctl sandbox``: up → start → status → down with real processes, nothing left behind."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

CANARYCTL = str(Path(sys.executable).with_name("canaryctl"))


def _run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CANARYCTL, *args], env=env, capture_output=True, text=True, timeout=240)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_sandbox_up_start_status_down_leaves_nothing_behind(
    tmp_path: Path, empty_database: str
) -> None:
    home = tmp_path / "sandbox"
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "COLUMNS": "120"}
    up = _run(
        "sandbox",
        "up",
        "--dir",
        str(home),
        "--database-url",
        empty_database,
        "--speed",
        "600",
        env=env,
    )
    assert up.returncode == 0, up.stderr
    exports = dict(line.removeprefix("export ").split("=", 1) for line in up.stdout.splitlines())
    assert set(exports) == {"KUBECONFIG", "CANARYCTL_DATABASE_URL"}  # the two lines, nothing else
    user = env | {k: shlex.split(v)[0] for k, v in exports.items()}
    state = json.loads((home / "sandbox.json").read_text())
    try:
        assert _run("sandbox", "status", "--dir", str(home), env=env).returncode == 0
        started = _run("start", "-f", state["example"], env=user)
        assert started.returncode == 0, started.stderr
        assert started.stdout == "experiment.canaryctl.dev/ranker-v2 created in namespace ranking\n"
        deadline = time.monotonic() + 120
        phase = "Pending"
        while phase == "Pending":  # the operator and the traffic are running
            assert time.monotonic() < deadline, f"still {phase}"
            time.sleep(1)
            shown = _run("status", "ranker-v2", "-o", "json", env=user)
            assert shown.returncode == 0, shown.stderr
            phase = (json.loads(shown.stdout).get("status") or {}).get("phase", "Pending")
        listed = _run("list", env=user)
        assert listed.stdout.splitlines()[1].split()[0] == "ranker-v2"
    finally:
        down = _run("sandbox", "down", "--dir", str(home), env=env)
    assert down.returncode == 0, down.stderr
    assert not home.exists()
    assert not _alive(state["pid"])
    gone = _run("sandbox", "status", "--dir", str(home), env=env)
    assert gone.returncode == 3 and "no sandbox running" in gone.stderr
