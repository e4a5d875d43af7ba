"""Leader election on a coordination.k8s.io Lease, with a way to stop.

Wraps ``kubernetes.leaderelection`` (its Lease lock renews with PUT, so a stale renewal
gets a 409 and loses): the library's loops never return, so ``acquire`` and
``renew_loop`` are re-stated here to watch a stop event. Of several operator replicas
exactly one holds the Lease; only while ``leading`` is set may it act.
"""

from __future__ import annotations

import logging
import threading
import time

import kubernetes.client
import urllib3
from kubernetes.leaderelection import electionconfig, leaderelection
from kubernetes.leaderelection.resourcelock.leaselock import LeaseLock

from controller.routers import kubeapi

logger = logging.getLogger(__name__)


class _StoppableElection(leaderelection.LeaderElection):
    def __init__(self, config: electionconfig.Config, stop: threading.Event) -> None:
        super().__init__(config)
        self._stop = stop

    def try_acquire_or_renew(self) -> bool:
        """One attempt; an unreachable or silent API server is a failed attempt.

        The library catches only ``ApiException``: a refused connection or a timeout
        escaped its loops and ended the election thread for good, the ``leading`` flag
        left as it was (a leader cut off kept acting; a follower never took over).
        """
        try:
            return bool(super().try_acquire_or_renew())
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            logger.warning("%s: Lease not reached: %s", self.election_config.lock.identity, exc)
            return False

    def acquire(self) -> bool:
        while not self._stop.is_set():
            if self.try_acquire_or_renew():
                return True
            self._stop.wait(self.election_config.retry_period)
        return False

    def renew_loop(self, leading_failed: threading.Event | None = None) -> None:
        retry = self.election_config.retry_period
        deadline = self.election_config.renew_deadline
        while not self._stop.is_set():
            if leading_failed is not None and leading_failed.is_set():
                return
            until = time.monotonic() + deadline
            renewed = False
            while time.monotonic() < until and not self._stop.is_set():
                if self.try_acquire_or_renew():
                    renewed = True
                    break
                self._stop.wait(retry)
            if not renewed:
                return
            self._stop.wait(retry)


class LeaderElector:
    """Runs the election in a background thread; ``leading`` is set while this replica leads."""

    def __init__(
        self,
        api: kubernetes.client.ApiClient,
        *,
        identity: str,
        namespace: str,
        name: str = "canaryctl-operator",
        lease_duration: int = 15,
        renew_deadline: int = 10,
        retry_period: int = 2,
    ) -> None:
        self.identity = identity
        self.leading = threading.Event()
        self._stop = threading.Event()
        lock = LeaseLock(name, namespace, identity)
        # A client of its own whose calls end in half the slack between the renew deadline
        # and the lease duration: an attempt (a read and a write) that hangs on a silent
        # network ends before the others may take the Lease, and the leader stops first.
        client = kubernetes.client.ApiClient(api.configuration)
        client.user_agent = api.user_agent
        call = max(0.5, (lease_duration - renew_deadline) / 4)
        kubeapi.set_default_timeout(client, connect=call, read=call)
        lock.api_instance = kubernetes.client.CoordinationV1Api(client)
        self._client = client
        self._config = electionconfig.Config(
            lock, lease_duration, renew_deadline, retry_period, self._started, self._stopped
        )
        self._thread: threading.Thread | None = None

    def _started(self) -> None:
        logger.info("%s started leading", self.identity)
        self.leading.set()

    def _stopped(self) -> None:
        logger.info("%s stopped leading", self.identity)
        self.leading.clear()

    def start(self) -> LeaderElector:
        def run() -> None:
            while not self._stop.is_set():
                try:
                    _StoppableElection(self._config, self._stop).run()
                except Exception:  # never end the election: a replica must lead again later
                    logger.exception("%s: leader election failed; trying again", self.identity)
                    self._stop.wait(self._config.retry_period)
                self.leading.clear()

        self._thread = threading.Thread(target=run, name=f"leader-{self.identity}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.leading.clear()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._client.close()
