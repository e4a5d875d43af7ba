"""The operator loop: list, schedule and tick Experiments, leader only; metrics.

Each pass lists the Experiments of the watched namespaces and ticks the ones that are due
(every ``spec.analysis.interval``, or at once when their spec, annotations or deletion
state changed; the Experiment informer's events wake the loop on such a change). The
Experiments and the routing objects are read from watch-fed caches (``informer``), not
from the API server at every tick; ``OperatorConfig.cache=False`` restores a LIST per
pass and a GET per object per tick (the benchmark's baseline). The due experiments are
observed in parallel (``assemble.Assembler.gather``); with the caches, their store reads
are one query per pass for all of them (``Assembler.read_stores``); their analyses run as
one batch (``analysis.evaluate_batch``) and are saved in one transaction
(``Assembler.save_all``); and each is finished: reconciled and executed
(``Assembler.finish``). Time comes from the injected clock only, so the demo can run
days of canary in seconds and the tests can stop the operator at any fault point.

The loop is a small explicit one rather than Kopf's: Kopf's timers run on wall-clock time,
and canaryctl needs an injectable clock for the simulated-time demo and deterministic
crash tests. Several replicas may run: with one shard a Lease elects the one that acts;
with ``shards > 1`` every replica acts on the experiments of the shards it holds
(``controller.operate.shards``).
"""

from __future__ import annotations

import functools
import gc
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import kubernetes.client
import sqlalchemy as sa

import analysis
from controller.clock import SYSTEM_CLOCK, Clock
from controller.decide import actions as p
from controller.decide import observed as obs
from controller.experiment import spec as sp
from controller.operate import assemble, executor, informer
from controller.operate.leader import LeaderElector
from controller.operate.metrics import Metrics
from controller.operate.shards import Fenced, Shards
from controller.routers import base as routers
from controller.routers import router_for

logger = logging.getLogger(__name__)

FINALIZER = executor.FINALIZER
GROUP, VERSION, PLURAL = sp.API_GROUP, sp.API_VERSION, sp.PLURAL
RouterFactory = assemble.RouterFactory
TickResult = assemble.TickResult


@dataclass
class OperatorConfig:
    """How the operator runs; see ``canaryctl operator run --help``."""

    namespaces: tuple[str, ...] = ()  # empty: all namespaces
    identity: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    lease_namespace: str = "canaryctl-system"
    lease_name: str = "canaryctl-operator"
    resync_seconds: float = 5.0
    workers: int = 8
    error_backoff: timedelta = timedelta(seconds=10)
    # Experiments observed, evaluated and finished together: the analysis is vectorised over
    # a batch, and a pass holds one batch's inputs in memory at a time.
    batch: int = 256
    shards: int = 1  # 1: one leader acts; more: replicas share the shards
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    # Read Experiments and routing objects from watch-fed caches (False: a GET per tick).
    cache: bool = True
    # Bring the caches up to the API server's present before each pass (the simulated-time
    # demo, which writes and ticks at once; see informer.Informers.sync).
    consistent_reads: bool = False
    # Decision forecasts (at a step start, a fraction of a second of CPU each) run in one
    # pass at most; the others wait for the next pass (None: no limit). Experiments that
    # start a step together would otherwise stall the pass for minutes.
    forecasts_per_pass: int | None = 4
    # A watch silent this long is taken for dead and opened again (a network partition that
    # drops packets silently leaves the connection open on this side; nothing else ends it).
    # Quiet watches are re-opened as often, from the last version: one cheap request each.
    watch_idle_seconds: float | None = 60.0


@dataclass
class _Seen:
    fingerprint: tuple[Any, ...]
    due: datetime


class Operator:
    """Ticks Experiments; see the module docstring."""

    def __init__(
        self,
        api: kubernetes.client.ApiClient,
        engine: sa.Engine | None,
        *,
        clock: Clock = SYSTEM_CLOCK,
        config: OperatorConfig | None = None,
        router_factory: RouterFactory = router_for,
        fault: executor.FaultHook | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.api = api
        self.engine = engine
        self.clock = clock
        self.config = config or OperatorConfig()
        self.router_factory = router_factory
        self.fault = fault
        self.metrics = metrics or Metrics()
        self._custom = kubernetes.client.CustomObjectsApi(api)
        self.informers = informer.Informers(
            api, self.config.namespaces, idle_seconds=self.config.watch_idle_seconds
        )
        cache = self.informers if self.config.cache else None
        if cache is not None and router_factory is router_for:
            router_factory = functools.partial(router_for, cache=cache)
        self._assembler = assemble.Assembler(
            api,
            engine,
            router_factory=router_factory,
            fault=fault,
            cache=cache,
            batched=cache is not None,
        )
        self._seen: dict[str, _Seen] = {}
        self._lock = threading.Lock()
        self.passes = 0
        self.leading = False
        self.shards: Shards | None = None
        self.on_tick: Callable[[TickResult], None] | None = None

    # ------------------------------------------------------------------ the loop

    def list_experiments(self) -> list[dict[str, Any]]:
        """The Experiments of the watched namespaces (from the cache, unless it is off)."""
        if self.config.cache:
            return [body for one in self.informers.experiments() for body in one.items()]
        if not self.config.namespaces:
            found: Any = self._custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)
            return list(found.get("items", []))
        items: list[dict[str, Any]] = []
        for ns in self.config.namespaces:
            listed: Any = self._custom.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)
            items += listed.get("items", [])
        return items

    def run_once(self, *, force: bool = False) -> list[TickResult]:
        """One pass: tick every due experiment (all of them with ``force``)."""
        started = time.perf_counter()
        now = self.clock.now()
        if self.config.cache and self.config.consistent_reads:
            self.informers.sync()
        items = self.list_experiments()
        if self.shards is not None:  # only the experiments of the shards held now
            mine = self.shards.mine([_uid(b) for b in items])
            items = [b for b in items if _uid(b) in mine]
        phases: dict[str, int] = {}
        due = []
        for body in items:
            phase = (body.get("status") or {}).get("phase", "Pending")
            phases[phase] = phases.get(phase, 0) + 1
            if force or self._is_due(body, now):
                due.append(body)
        for phase in obs.Phase:
            self.metrics.experiments.labels(phase.value).set(phases.get(phase.value, 0))
        results: list[TickResult] = []
        self._assembler.start_pass(self.config.forecasts_per_pass)  # the budget is the pass's
        for start in range(0, len(due), self.config.batch):  # memory bounded by the batch
            results += self._tick_many(due[start : start + self.config.batch])
        self.passes += 1
        self.metrics.pass_seconds.observe(time.perf_counter() - started)
        return results

    def forecast_totals(self) -> tuple[int, float]:
        """Decision forecasts run so far, and the CPU seconds they took."""
        return self._assembler.forecasts, self._assembler.forecast_cpu

    def close(self) -> None:
        """Stop the informers' watches."""
        self.informers.stop()

    def ready(self) -> bool:
        """Ready: a leader that has finished a pass over the experiments, or a follower."""
        return self.passes > 0 or not self.leading

    def seconds_until_due(self) -> float:
        now = self.clock.now()
        with self._lock:
            dues = [s.due for s in self._seen.values()]
        if not dues:
            return self.config.resync_seconds
        return max(0.0, min((min(dues) - now).total_seconds(), self.config.resync_seconds))

    def run(self, stop: threading.Event, *, leader_election: bool = True) -> None:
        """Run until ``stop`` is set; with leader election only the Lease holder acts.

        The Experiment informer's watch wakes the loop when one is created, edited,
        annotated or deleted, so a change is acted on at once; between events the loop
        sleeps until the next experiment is due (at most ``resync_seconds``).
        """
        wake = threading.Event()

        def relay(kind: str, _obj: Any) -> None:
            if kind != "PUT":  # the operator's own writes wake nothing
                wake.set()

        def relay_stop() -> None:
            stop.wait()
            wake.set()

        self.informers.listeners.append(relay)
        threading.Thread(target=relay_stop, name="canaryctl-stop", daemon=True).start()
        elector = None
        if leader_election and self.config.shards > 1:
            self.shards = Shards(
                self.api,
                identity=self.config.identity,
                namespace=self.config.lease_namespace,
                name=self.config.lease_name,
                shards=self.config.shards,
                lease_duration=self.config.lease_duration,
                renew_deadline=self.config.renew_deadline,
                retry_period=self.config.retry_period,
                on_change=wake.set,
            ).start()
            self._assembler.fence = self.shards.writing
            # told to stop: give the shards back at once, not after the pass under way
            threading.Thread(
                target=lambda s=self.shards: (stop.wait(), s.stop()),
                name="canaryctl-shards-leave",
                daemon=True,
            ).start()
        elif leader_election:
            elector = LeaderElector(
                self.api,
                identity=self.config.identity,
                namespace=self.config.lease_namespace,
                name=self.config.lease_name,
                lease_duration=round(self.config.lease_duration),
                renew_deadline=round(self.config.renew_deadline),
                retry_period=round(self.config.retry_period),
            ).start()
        try:
            while not stop.is_set():
                if self.shards is not None:
                    leading = bool(self.shards.held())
                else:
                    leading = elector is None or elector.leading.is_set()
                self.leading = leading
                self.metrics.leader.set(1 if leading else 0)
                wake.clear()
                if leading:
                    try:
                        for one in self.informers.experiments():  # their events wake the loop
                            one.start()
                        self.run_once()
                    except kubernetes.client.ApiException as exc:
                        logger.warning("listing experiments failed: %s %s", exc.status, exc.reason)
                    except Exception:
                        logger.exception("operator pass failed")
                    wake.wait(max(0.05, self.seconds_until_due()))
                else:
                    wake.wait(0.5)
        finally:
            wake.set()
            if elector is not None:
                elector.stop()
            if self.shards is not None:
                self.shards.stop()
            self.informers.listeners.remove(relay)
            self.close()

    def _fingerprint(self, body: Mapping[str, Any]) -> tuple[Any, ...]:
        meta = body.get("metadata", {})
        return (
            meta.get("generation"),
            repr(sorted((meta.get("annotations") or {}).items())),
            meta.get("deletionTimestamp"),
        )

    def _is_due(self, body: Mapping[str, Any], now: datetime) -> bool:
        uid = body["metadata"].get("uid", body["metadata"]["name"])
        phase = (body.get("status") or {}).get("phase")
        with self._lock:
            seen = self._seen.get(uid)
        if seen is None or seen.fingerprint != self._fingerprint(body):
            return True
        pending = (body.get("status") or {}).get("pendingDecisions")
        if (
            phase in sp.TERMINAL_PHASES
            and not body["metadata"].get("deletionTimestamp")
            and not pending
        ):
            return False
        return now >= seen.due

    def _schedule(self, body: Mapping[str, Any], due: datetime) -> None:
        uid = body["metadata"].get("uid", body["metadata"]["name"])
        with self._lock:
            self._seen[uid] = _Seen(self._fingerprint(body), due)

    # ------------------------------------------------------------------ one tick

    def tick(self, body: dict[str, Any]) -> TickResult:
        """Reconcile one Experiment now (errors are caught, logged and retried later)."""
        self._assembler.start_pass(self.config.forecasts_per_pass)
        return self._tick_many([body])[0]

    def _guard(self, body: dict[str, Any], now: datetime, step: Callable[[], Any]) -> Any:
        """Run one phase of a tick; an API, router or database error ends the tick."""
        try:
            return step()
        except (
            kubernetes.client.ApiException,
            routers.RouterError,
            Fenced,
            *assemble.DB_ERRORS,
        ) as exc:
            meta = body["metadata"]
            key = f"{meta['namespace']}/{meta['name']}"
            message = assemble.describe(exc)
            logger.warning("%s: tick failed: %s", key, message)
            conflict = isinstance(exc, kubernetes.client.ApiException) and exc.status == 409
            # a conflict re-read the Experiment: tick it again at the next pass
            self._schedule(body, now if conflict else now + self.config.error_backoff)
            return TickResult(key, None, None, error=message)

    def _tick_many(self, bodies: list[dict[str, Any]]) -> list[TickResult]:
        """Observe every experiment, evaluate all analyses in one batch, then finish each."""
        now = self.clock.now()
        started = {id(b): time.perf_counter() for b in bodies}

        def observe_one(body: dict[str, Any]) -> assemble.Work | TickResult:
            return self._guard(body, now, lambda: self._observe(body, now))  # type: ignore[no-any-return]

        works = self._map(observe_one, bodies)
        self._assembler.read_stores([w for w in works if isinstance(w, assemble.Work)])
        ready = [
            w
            for w in works
            if isinstance(w, assemble.Work) and w.found.pending is not None and w.result is None
        ]
        if ready:
            evaluations = analysis.evaluate_batch([w.found.pending.item for w in ready])  # type: ignore[union-attr]
            for w, ev in zip(ready, evaluations, strict=True):
                w.evaluation = ev
            self._assembler.save_all(ready)
        if len(works) > 1:
            self._assembler.forecast_all([w for w in works if isinstance(w, assemble.Work)])

        def finish(w: assemble.Work | TickResult) -> TickResult:
            if isinstance(w, TickResult):
                return w
            return self._guard(w.body, now, lambda: self._finish(w))  # type: ignore[no-any-return]

        results: list[TickResult] = self._map(finish, works)
        for body, result in zip(bodies, results, strict=True):
            self.metrics.ticks.labels("error" if result.error else "ok").inc()
            self.metrics.tick_seconds.observe(time.perf_counter() - started[id(body)])
            if self.on_tick:
                self.on_tick(result)
        return results

    def _observe(self, body: dict[str, Any], now: datetime) -> assemble.Work:
        work = self._assembler.gather(body, now)
        if work.res.deleting:
            with self._lock:
                self._seen.pop(work.res.uid or work.res.name, None)
        return work

    def _finish(self, work: assemble.Work) -> TickResult:
        result = self._assembler.finish(work)
        if work.due is not None:
            self._schedule(work.body, work.due)
        plan, evaluation = result.plan, result.evaluation
        if plan is not None:
            for decision in plan.of_type(p.RecordDecision):
                self.metrics.decisions.labels(decision.kind.value).inc()
        failed = evaluation is not None and any(
            g.verdict is analysis.Verdict.FAIL for g in evaluation.guardrails
        )
        if failed and plan is not None and plan.first(p.FinalizeRoute) is not None:
            self.metrics.rollback_seconds.observe(
                max(0.0, (self.clock.now() - work.now).total_seconds())
            )
        return result

    def _map(self, fn: Callable[[Any], Any], items: list[Any]) -> list[Any]:
        if len(items) > 1 and self.config.workers > 1:
            with ThreadPoolExecutor(
                self.config.workers, thread_name_prefix="canaryctl-tick"
            ) as pool:
                return list(pool.map(fn, items))
        return [fn(item) for item in items]


#: Allocations between young collections (the interpreter's default is 700), and how many of
#: each generation's collections before the next one's.
GC_THRESHOLDS = (10_000, 20, 20)


def tune_gc() -> None:
    """Set up the garbage collector for a long-running operator (once, after start-up).

    What start-up made (modules, the clients) is moved where the collector never walks again
    (``gc.freeze``), and collections come after 10,000 allocations rather than 700: with the
    default, a pass's short-lived objects triggered several full collections a pass, each
    walking the whole heap (the informer caches included): a fifth of the operator's CPU per
    tick at 500 experiments (``bench/operator.py``). The operator's objects are freed by their
    reference counts; the collector only finds cycles, which it still does.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def _uid(body: Mapping[str, Any]) -> str:
    meta = body["metadata"]
    return str(meta.get("uid") or f"{meta.get('namespace')}/{meta['name']}")
