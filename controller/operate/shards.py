"""Experiments shared by operator replicas: hashed onto shards, one Lease per shard.

A deployment fixes a number of shards S (``canaryctl operator run --shards``). An Experiment
belongs to shard ``sha256(uid) mod S`` for its whole life; shards, not experiments, move
between replicas, so moving work costs one Lease write per shard. Every replica keeps:

* a **member Lease** (``<name>-member-<identity>``), renewed as long as it runs and deleted
  when it stops (or by the others, two lease durations after it died), so that the others
  know it is there before it holds anything;
* the **shard Leases** (``<name>-shard-<i>``) it holds.

Each round (every ``retry_period``) a replica lists the Leases carrying its label, computes
from the live members the wanted owner of every shard (rendezvous hashing with a cap of
⌈S / members⌉ shards a member, so shards spread evenly and few move when a member comes or
goes), then renews the shards it should keep, **gives back** those another live member
should own (first it stops writing for them and waits for the writes under way, then it
clears the holder; a tick cut short this way is re-decided by the new holder, as after a
crash), and takes those it should own once they are free: released,
or expired. A shard left free for a lease duration is taken by anyone (its wanted owner
may be slow or gone).

**Expiry and fencing.** As in client-go's leader election, a Lease counts as expired when
its record has not changed for ``leaseDurationSeconds`` *on the observer's own clock*, so
no two clocks need agree. A holder may act on a shard only until its last successful
renewal's *send* time plus ``renew_deadline`` (shorter than the lease duration) on its own
monotonic clock: a replica cut off from the API server stops writing at least
``lease_duration - renew_deadline`` before anyone else may take its shards.
The executor enters ``Shards.writing(uid)`` around each write, which raises ``Fenced`` once
that time has passed or while the shard is being given back (and a shard is given back only
when no write is inside); status writes carry the resourceVersion read, and decision rows their
idempotency keys, so a write that was already on its way cannot be applied twice.

Writes to Leases are PUTs guarded by resourceVersion (a 409 loses the race), as
``kubernetes.leaderelection`` does. With ``shards = 1`` the operator keeps the single leader
Lease of ``controller.operate.leader`` instead.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import kubernetes.client

logger = logging.getLogger(__name__)

LABEL = "canaryctl.dev/operator-lease"
ROLE = "canaryctl.dev/lease-role"


class Fenced(Exception):
    """This replica no longer holds the shard of an experiment it was about to write."""


def shard_of(uid: str, shards: int) -> int:
    """The shard of an experiment: ``sha256(uid) mod shards`` (stable across processes)."""
    digest = hashlib.sha256(uid.encode()).digest()
    return int.from_bytes(digest[:8], "big") % shards


def _score(shard: int, member: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{shard}/{member}".encode()).digest()[:8], "big")


def assignment(shards: int, members: Sequence[str]) -> dict[int, str]:
    """The wanted owner of every shard among ``members`` (rendezvous hashing, capped).

    Each shard goes to the highest-scoring member with room left under ⌈shards / members⌉;
    the same members always give the same answer on every replica.
    """
    if not members:
        return {}
    cap = math.ceil(shards / len(members))
    load = dict.fromkeys(members, 0)
    out: dict[int, str] = {}
    for shard in range(shards):
        for member in sorted(members, key=lambda m: (_score(shard, m), m), reverse=True):
            if load[member] < cap:
                out[shard] = member
                load[member] += 1
                break
    return out


@dataclass
class _Observed:
    """A Lease as last listed, and when (our monotonic clock) its record last changed."""

    record: tuple[Any, ...]
    changed_at: float
    body: Any


def _micro_time(now: datetime) -> datetime:
    return now.astimezone(UTC)


class Shards:
    """Takes, renews and gives back shard Leases for one replica; see the module docstring."""

    def __init__(
        self,
        api: kubernetes.client.ApiClient,
        *,
        identity: str,
        namespace: str,
        name: str = "canaryctl-operator",
        shards: int = 16,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        monotonic: Callable[[], float] = time.monotonic,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        if shards < 1:
            raise ValueError("shards must be at least 1")
        if not 0 < renew_deadline < lease_duration:
            raise ValueError("renew_deadline must be positive and shorter than lease_duration")
        self.identity = identity
        self.namespace = namespace
        self.name = name
        self.shards = shards
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self._leases = kubernetes.client.CoordinationV1Api(api)
        # each Lease call ends within the renew deadline: a round stuck on a silent network
        # would otherwise keep this replica from ever renewing again once it is back
        self.call_timeout = renew_deadline
        self._now = monotonic
        self._lock = threading.Condition()
        self._valid_until: dict[int, float] = {}  # held shards: act until (monotonic)
        self._releasing: set[int] = set()  # held, wanted elsewhere: no new ticks
        self._busy: dict[int, int] = {}  # ticks running per shard
        self._observed: dict[str, _Observed] = {}
        self._member_valid_until = 0.0
        self._stop = threading.Event()
        self._stopping = threading.Lock()
        self._thread: threading.Thread | None = None
        self.members: tuple[str, ...] = ()
        self._on_change = on_change  # called whenever the set of held shards changes

    # ------------------------------------------------------------------ what the loop asks

    def shard_lease(self, shard: int) -> str:
        return f"{self.name}-shard-{shard}"

    def member_lease(self, identity: str | None = None) -> str:
        return f"{self.name}-member-{identity or self.identity}"

    def held(self) -> frozenset[int]:
        """Shards this replica may start ticks on now."""
        now = self._now()
        with self._lock:
            return frozenset(
                s
                for s, until in self._valid_until.items()
                if until > now and s not in self._releasing
            )

    def owns(self, uid: str) -> bool:
        return shard_of(uid, self.shards) in self.held()

    def check(self, uid: str) -> None:
        """Raise ``Fenced`` unless this replica's hold on ``uid``'s shard is still valid."""
        shard = shard_of(uid, self.shards)
        with self._lock:
            until = self._valid_until.get(shard, 0.0)
        if until <= self._now():
            raise Fenced(f"shard {shard} of experiment {uid} is no longer held by {self.identity}")

    def mine(self, uids: Sequence[str]) -> set[str]:
        """The experiments among ``uids`` whose shards this replica may tick now."""
        held = self.held()
        return {u for u in uids if shard_of(u, self.shards) in held}

    @contextlib.contextmanager
    def writing(self, uid: str) -> Iterator[None]:
        """Enter around one write for ``uid``: raises ``Fenced`` unless its shard is held
        (and not being given back); a shard is given back only when no write is inside."""
        shard = shard_of(uid, self.shards)
        with self._lock:
            if self._valid_until.get(shard, 0.0) <= self._now() or shard in self._releasing:
                raise Fenced(
                    f"shard {shard} of experiment {uid} is not held by {self.identity} now"
                )
            self._busy[shard] = self._busy.get(shard, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                self._busy[shard] -= 1
                if not self._busy[shard]:
                    del self._busy[shard]
                self._lock.notify_all()

    # ------------------------------------------------------------------ the background round

    def start(self) -> Shards:
        self._thread = threading.Thread(
            target=self._run, name=f"shards-{self.identity}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self, *, release: bool = True) -> None:
        """Stop renewing; with ``release`` give every shard back and delete the member Lease.

        Called as soon as the replica is told to stop (writes still under way finish first;
        later ones are fenced), so that the others take over at once. Idempotent; a second
        caller waits until the first has finished. Giving back is best effort: a Lease
        that cannot be written now (the API server away) expires on its own.
        """
        with self._stopping:
            if self._stop.is_set():
                return
            self._stop.set()
            if self._thread is not None:
                self._thread.join(timeout=30)
            if release:
                with self._lock:
                    held = list(self._valid_until)
                    self._releasing.update(held)
                try:
                    for shard in held:
                        self._wait_idle(shard, self.renew_deadline)
                        self._release(shard)
                    self._leases.delete_namespaced_lease(
                        self.member_lease(), self.namespace, _request_timeout=self.call_timeout
                    )
                except Exception as exc:  # leaving must not fail: the leases expire anyway
                    logger.info("%s: leaving without giving back: %s", self.identity, exc)
            with self._lock:
                self._valid_until.clear()
            self._on_change()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.round()
            except Exception as exc:  # the API server away: holds lapse on their own
                logger.warning("%s: shard round failed: %s", self.identity, exc)
            self._stop.wait(self.retry_period)

    def round(self) -> None:
        """One round: list, renew the member Lease, then renew, give back and take shards."""
        listed: Any = self._leases.list_namespaced_lease(
            self.namespace,
            label_selector=f"{LABEL}={self.name}",
            _request_timeout=self.call_timeout,
        )
        now = self._now()
        seen: dict[str, Any] = {}
        for lease in listed.items:
            key = lease.metadata.name
            seen[key] = lease
            self._observe(lease, now)
        for key in list(self._observed):
            if key not in seen:
                del self._observed[key]
        self._renew_member(seen.get(self.member_lease()))
        live = {self.identity}
        for key, member in list(self._observed.items()):
            role = (member.body.metadata.labels or {}).get(ROLE)
            if role != "member" or key == self.member_lease():
                continue
            if not self._expired(member, now):
                live.add(member.body.spec.holder_identity)
            elif now - member.changed_at >= 2 * self._duration(member):
                self._forget_member(key, member)
        members = sorted(m for m in live if m)
        self.members = tuple(members)
        wanted = assignment(self.shards, members)
        for shard in range(self.shards):
            key = self.shard_lease(shard)
            obs = self._observed.get(key)
            mine = shard in self._valid_until
            if mine:
                if wanted[shard] != self.identity:
                    with self._lock:  # no new ticks on it; give it back once idle
                        self._releasing.add(shard)
                    if self._wait_idle(shard, self.retry_period):
                        self._release(shard)
                        continue
                else:
                    with self._lock:
                        self._releasing.discard(shard)
                self._put(shard, obs, renew=True)  # renew (also while its ticks finish)
                continue
            if obs is None:
                if wanted[shard] == self.identity:
                    self._create(shard)
                continue
            holder = obs.body.spec.holder_identity
            free = not holder or self._expired(obs, now)
            if holder == self.identity and not self._expired(obs, now):
                # ours on the server but not in memory (a restart under the same name):
                # take it back only through a fresh PUT, never by assumption
                free = True
            # free since: released at once; expired a lease duration after its last change
            free_since = obs.changed_at + (self._duration(obs) if holder else 0.0)
            orphan = free and now - free_since >= self.lease_duration
            if free and (wanted[shard] == self.identity or orphan):
                self._put(shard, obs, renew=False)

    # ------------------------------------------------------------------ lease writes

    def _observe(self, lease: Any, now: float) -> None:
        """Remember ``lease`` as listed or as a write returned it."""
        key = lease.metadata.name
        record = (
            lease.spec.holder_identity,
            lease.spec.renew_time,
            lease.metadata.resource_version,
        )
        old = self._observed.get(key)
        if old is None or old.record != record:
            self._observed[key] = _Observed(record, now, lease)
        else:
            old.body = lease

    def _duration(self, obs: _Observed) -> float:
        return float(obs.body.spec.lease_duration_seconds or self.lease_duration)

    def _expired(self, obs: _Observed, now: float) -> bool:
        return now - obs.changed_at >= self._duration(obs)

    def _labels(self, role: str) -> dict[str, str]:
        return {LABEL: self.name, ROLE: role}

    def _renew_member(self, lease: Any) -> None:
        stamp = _micro_time(datetime.now(UTC))
        spec = kubernetes.client.V1LeaseSpec(
            holder_identity=self.identity,
            lease_duration_seconds=math.ceil(self.lease_duration),
            renew_time=stamp,
            acquire_time=stamp if lease is None else lease.spec.acquire_time,
        )
        try:
            if lease is None:
                self._leases.create_namespaced_lease(
                    self.namespace,
                    kubernetes.client.V1Lease(
                        metadata=kubernetes.client.V1ObjectMeta(
                            name=self.member_lease(), labels=self._labels("member")
                        ),
                        spec=spec,
                    ),
                    _request_timeout=self.call_timeout,
                )
            else:
                lease.spec = spec
                self._leases.replace_namespaced_lease(
                    self.member_lease(), self.namespace, lease, _request_timeout=self.call_timeout
                )
        except kubernetes.client.ApiException as exc:
            if exc.status != 409:
                raise

    def _forget_member(self, key: str, obs: _Observed) -> None:
        """Delete a member Lease dead for two lease durations (a replica killed without
        leaving), so that replicas started later do not wait a lease duration to see it
        dead; the resourceVersion precondition spares one renewed meanwhile."""
        options = kubernetes.client.V1DeleteOptions(
            preconditions=kubernetes.client.V1Preconditions(
                resource_version=obs.body.metadata.resource_version
            )
        )
        try:
            self._leases.delete_namespaced_lease(
                key, self.namespace, body=options, _request_timeout=self.call_timeout
            )
            logger.info("%s: removed the member Lease of %s", self.identity, key)
        except kubernetes.client.ApiException as exc:
            if exc.status not in (404, 409):
                raise
        self._observed.pop(key, None)

    def _create(self, shard: int) -> None:
        sent = self._now()
        stamp = _micro_time(datetime.now(UTC))
        body = kubernetes.client.V1Lease(
            metadata=kubernetes.client.V1ObjectMeta(
                name=self.shard_lease(shard), labels=self._labels("shard")
            ),
            spec=kubernetes.client.V1LeaseSpec(
                holder_identity=self.identity,
                lease_duration_seconds=math.ceil(self.lease_duration),
                acquire_time=stamp,
                renew_time=stamp,
                lease_transitions=0,
            ),
        )
        try:
            created = self._leases.create_namespaced_lease(
                self.namespace, body, _request_timeout=self.call_timeout
            )
            self._observe(created, sent)
        except kubernetes.client.ApiException as exc:
            if exc.status == 409:  # another replica created it first
                return
            raise
        self._hold(shard, sent)

    def _put(self, shard: int, obs: _Observed | None, *, renew: bool) -> None:
        if obs is None:
            # held in memory, gone on the server (deleted by hand): stop acting, recreate later
            self._drop(shard)
            return
        lease = obs.body
        if renew and lease.spec.holder_identity != self.identity:
            self._drop(shard)  # someone else holds it now: we lost it
            return
        sent = self._now()
        stamp = _micro_time(datetime.now(UTC))
        if not renew:
            lease.spec.acquire_time = stamp
            lease.spec.lease_transitions = (lease.spec.lease_transitions or 0) + 1
        lease.spec.holder_identity = self.identity
        lease.spec.renew_time = stamp
        lease.spec.lease_duration_seconds = math.ceil(self.lease_duration)
        try:
            written = self._leases.replace_namespaced_lease(
                self.shard_lease(shard), self.namespace, lease, _request_timeout=self.call_timeout
            )
            self._observe(written, sent)
        except kubernetes.client.ApiException as exc:
            if exc.status == 409:  # lost the race; a held one lapses at its deadline
                return
            raise
        self._hold(shard, sent)

    def _hold(self, shard: int, sent: float) -> None:
        with self._lock:
            new = shard not in self._valid_until
            self._valid_until[shard] = sent + self.renew_deadline
        if new:
            logger.info("%s: took shard %d", self.identity, shard)
            self._on_change()

    def _drop(self, shard: int) -> None:
        with self._lock:
            self._valid_until.pop(shard, None)
            self._releasing.discard(shard)
        self._on_change()

    def _wait_idle(self, shard: int, timeout: float) -> bool:
        """Wait (real time) until no write for ``shard`` is under way; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._busy.get(shard):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(left)
        return True

    def _release(self, shard: int) -> None:
        obs = self._observed.get(self.shard_lease(shard))
        self._drop(shard)
        if obs is None or obs.body.spec.holder_identity != self.identity:
            return
        lease = obs.body
        lease.spec.holder_identity = None
        lease.spec.renew_time = _micro_time(datetime.now(UTC))
        try:
            written = self._leases.replace_namespaced_lease(
                self.shard_lease(shard), self.namespace, lease, _request_timeout=self.call_timeout
            )
            self._observe(written, self._now())
            logger.info("%s: gave back shard %d", self.identity, shard)
        except kubernetes.client.ApiException as exc:
            logger.info("%s: giving back shard %d failed: %s", self.identity, shard, exc.reason)
