"""Leader election (``--shards 1``) through a network that is cut, then healed.

A leader whose API server goes silent must stop leading before its Lease can be taken
(each attempt's calls end in time), and its election must go on: once the network is back
it leads again. Before, a refused connection or a timeout escaped the library's loops and
ended the election thread, leaving ``leading`` as it was.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import kubernetes.client

from canaryctl_demo.kube import emulator
from controller.operate.leader import LeaderElector
from tests.network import Partition

LEASE, RENEW, RETRY = 6, 4, 1


def _until(check: Callable[[], bool], what: str, timeout: float) -> float:
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout, f"never: {what}"
        time.sleep(0.05)
    return time.monotonic() - started


def test_a_cut_off_leader_steps_down_before_its_lease_lapses_and_leads_again_after(
    served: emulator.Served, api: kubernetes.client.ApiClient
) -> None:
    kubernetes.client.CoreV1Api(api).create_namespace({"metadata": {"name": "canaryctl-system"}})
    network = Partition(served.url)
    elector = LeaderElector(
        emulator.api_client(network.url),
        identity="a",
        namespace="canaryctl-system",
        lease_duration=LEASE,
        renew_deadline=RENEW,
        retry_period=RETRY,
    ).start()
    try:
        _until(elector.leading.is_set, "a leads", 15)
        renewals = len(served.emulator.writes("/leases/"))
        network.cut()
        stepped_down = _until(lambda: not elector.leading.is_set(), "a steps down", 30)
        # its last renewal was at most a retry period before the cut; the others may take
        # the Lease a lease duration after it
        assert stepped_down < LEASE, f"stepped down {stepped_down:.1f} s after the cut"
        assert len(served.emulator.writes("/leases/")) <= renewals + 1  # one on its way
        network.heal()
        _until(elector.leading.is_set, "a leads again", 30)
        assert elector._thread is not None and elector._thread.is_alive()
    finally:
        elector.stop()
        network.close()
