"""Serve the Kubernetes API emulator in its own process (so its CPU is not the operator's)."""

from __future__ import annotations

import sys

from canaryctl_demo.kube import emulator

if __name__ == "__main__":
    with emulator.serve() as served:
        print(served.url, flush=True)
        sys.stdin.read()  # until the parent closes our stdin
