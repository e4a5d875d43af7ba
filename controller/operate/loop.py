"""The operator loop: observe every Experiment, analyse, reconcile, execute; leader only.

Each pass lists the Experiments of the watched namespaces and ticks the ones that are due
(every ``spec.analysis.interval``, or at once when their spec, annotations or deletion
state changed; ``watch`` wakes the loop on such a change). A tick reads the custom
resource, the router and Postgres (``observe``); gathers the analysis input of every due
experiment and runs it as one batch (``evaluate``); calls the pure ``reconcile`` (or
``deletion.decide`` for an Experiment being deleted); and hands the plan to
``executor.apply``. Time comes from the injected clock only, so the demo can run days of
canary in seconds and the tests can stop the operator at any fault point.

The loop is a small explicit one rather than Kopf's: Kopf's timers run on wall-clock time,
and canaryctl needs an injectable clock for the simulated-time demo and deterministic
crash tests. Several replicas may run; a Lease elects the one that acts.
"""

from __future__ import annotations

import json
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
from controller.decide import deletion, reconcile
from controller.decide import observed as obs
from controller.experiment import frozen, validation
from controller.experiment import spec as sp
from controller.operate import evaluate, executor, observe, watch
from controller.operate.leader import LeaderElector
from controller.operate.metrics import Metrics
from controller.routers import base as routers
from controller.routers import router_for
from controller.storage import repository

logger = logging.getLogger(__name__)

FINALIZER = executor.FINALIZER
GROUP, VERSION, PLURAL = sp.API_GROUP, sp.API_VERSION, sp.PLURAL
_DB_ERRORS = (sa.exc.OperationalError, sa.exc.InterfaceError)
_FINISHED = tuple(phase.value for phase in obs.Phase if phase.terminal)
RouterFactory = Callable[[routers.RouterConfig, kubernetes.client.ApiClient], routers.TrafficRouter]


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


@dataclass(frozen=True)
class TickResult:
    """What one tick of one experiment did (for tests, the demo and metrics)."""

    key: str
    plan: p.Plan | None
    outcome: executor.Outcome | None
    evaluation: analysis.Evaluation | None = None
    error: str | None = None


@dataclass
class _Work:
    """One experiment's tick between its phases (observe → batch evaluate → finish)."""

    body: dict[str, Any]
    now: datetime
    res: observe.Resource
    spec_or_error: sp.ExperimentSpec | validation.SpecError
    router: routers.TrafficRouter | None
    exp_id: int | None = None
    reachable: bool = False
    flushed: bool = False
    route: routers.RouteState | None = None
    last_data_at: datetime | None = None
    found: evaluate.Input = field(default_factory=lambda: evaluate.Input(obs.ArmCounts()))
    evaluation: analysis.Evaluation | None = None
    result: TickResult | None = None


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
        self._seen: dict[str, _Seen] = {}
        self._ids: dict[str, int] = {}
        self._specs: dict[str, tuple[str, sp.ExperimentSpec | validation.SpecError]] = {}
        self._lock = threading.Lock()
        self.passes = 0
        self.leading = False
        self.on_tick: Callable[[TickResult], None] | None = None

    # ------------------------------------------------------------------ the loop

    def list_experiments(self) -> list[dict[str, Any]]:
        if not self.config.namespaces:
            found = self._custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)
            return list(found.get("items", []))
        items: list[dict[str, Any]] = []
        for ns in self.config.namespaces:
            items += self._custom.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL).get(
                "items", []
            )
        return items

    def run_once(self, *, force: bool = False) -> list[TickResult]:
        """One pass: tick every due experiment (all of them with ``force``)."""
        started = time.perf_counter()
        now = self.clock.now()
        items = self.list_experiments()
        phases: dict[str, int] = {}
        due = []
        for body in items:
            phase = (body.get("status") or {}).get("phase", "Pending")
            phases[phase] = phases.get(phase, 0) + 1
            if force or self._is_due(body, now):
                due.append(body)
        for phase in obs.Phase:
            self.metrics.experiments.labels(phase.value).set(phases.get(phase.value, 0))
        results = self._tick_many(due) if due else []
        self.passes += 1
        self.metrics.pass_seconds.observe(time.perf_counter() - started)
        return results

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

        A watch on Experiments wakes the loop when one is created, edited, annotated or
        deleted, so a change is acted on at once; between events the loop sleeps until the
        next experiment is due (at most ``resync_seconds``).
        """
        wake = threading.Event()
        elector = None
        if leader_election:
            elector = LeaderElector(
                self.api,
                identity=self.config.identity,
                namespace=self.config.lease_namespace,
                name=self.config.lease_name,
            ).start()
        watcher = watch.start(self._custom, self.config.namespaces, stop, wake)
        try:
            while not stop.is_set():
                leading = elector is None or elector.leading.is_set()
                self.leading = leading
                self.metrics.leader.set(1 if leading else 0)
                wake.clear()
                if leading:
                    try:
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
            watcher.join(timeout=10)

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
        if phase in _FINISHED and not body["metadata"].get("deletionTimestamp") and not pending:
            return False
        return now >= seen.due

    def _schedule(self, body: Mapping[str, Any], due: datetime) -> None:
        uid = body["metadata"].get("uid", body["metadata"]["name"])
        with self._lock:
            self._seen[uid] = _Seen(self._fingerprint(body), due)

    # ------------------------------------------------------------------ one tick

    def tick(self, body: dict[str, Any]) -> TickResult:
        """Reconcile one Experiment now (errors are caught, logged and retried later)."""
        return self._tick_many([body])[0]

    def _guard(self, body: dict[str, Any], now: datetime, step: Callable[[], Any]) -> Any:
        """Run one phase of a tick; an API, router or database error ends the tick."""
        try:
            return step()
        except (kubernetes.client.ApiException, routers.RouterError, *_DB_ERRORS) as exc:
            meta = body["metadata"]
            key = f"{meta['namespace']}/{meta['name']}"
            message = _describe(exc)
            logger.warning("%s: tick failed: %s", key, message)
            self._schedule(body, now + self.config.error_backoff)
            return TickResult(key, None, None, error=message)

    def _tick_many(self, bodies: list[dict[str, Any]]) -> list[TickResult]:
        """Observe every experiment, evaluate all analyses in one batch, then finish each."""
        now = self.clock.now()
        started = {id(b): time.perf_counter() for b in bodies}

        def observe_one(body: dict[str, Any]) -> _Work | TickResult:
            return self._guard(body, now, lambda: self._observe(body, now))  # type: ignore[no-any-return]

        works = self._map(observe_one, bodies)
        ready = [
            w
            for w in works
            if isinstance(w, _Work) and w.found.pending is not None and w.result is None
        ]
        if ready:
            evaluations = analysis.evaluate_batch([w.found.pending.item for w in ready])  # type: ignore[union-attr]
            for w, ev in zip(ready, evaluations, strict=True):
                w.evaluation = ev

        def finish(w: _Work | TickResult) -> TickResult:
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

    def _map(self, fn: Callable[[Any], Any], items: list[Any]) -> list[Any]:
        if len(items) > 1 and self.config.workers > 1:
            with ThreadPoolExecutor(
                self.config.workers, thread_name_prefix="canaryctl-tick"
            ) as pool:
                return list(pool.map(fn, items))
        return [fn(item) for item in items]

    def _observe(self, body: dict[str, Any], now: datetime) -> _Work:
        """Everything before the analysis: the resource, the router, the store."""
        res = observe.resource(body)
        spec_or_error = self._parse(body)
        router = self._router(res, spec_or_error)
        work = _Work(body, now, res, spec_or_error, router)
        if res.deleting:
            work.result = self._delete(work)
            return work
        if FINALIZER not in res.finalizers and not res.stored.phase.terminal:
            work.body = body = executor.add_finalizer(self.api, body)
            work.res = res = observe.resource(body)
        lateness = (
            spec_or_error.analysis.allowed_lateness
            if isinstance(spec_or_error, sp.ExperimentSpec)
            else None
        )
        exp_id, reachable = self._experiment_id(res, body.get("spec", {}), lateness)
        held = res.raw_status.get("pendingDecisions")
        if reachable and exp_id is not None and held:
            assert self.engine is not None
            try:
                executor.flush_held(self.engine, exp_id, held)
                work.flushed = True
            except _DB_ERRORS as exc:
                logger.warning("%s: database still unreachable: %s", res.key, _describe(exc))
                reachable = False
        work.exp_id, work.reachable = exp_id, reachable
        work.route = observe.route(router)
        if reachable and exp_id is not None and isinstance(spec_or_error, sp.ExperimentSpec):
            assert self.engine is not None
            try:
                with self.engine.connect() as conn:
                    work.last_data_at, persisted = observe.store(conn, exp_id)
                    work.found = evaluate.read_input(
                        conn,
                        exp_id,
                        spec_or_error,
                        res.stored,
                        work.route,
                        persisted,
                        now,
                        res.last_analysis_at,
                    )
            except _DB_ERRORS as exc:
                logger.warning(
                    "%s: database unreachable during analysis: %s", res.key, _describe(exc)
                )
                work.reachable = False
        return work

    def _parse(self, body: Mapping[str, Any]) -> sp.ExperimentSpec | validation.SpecError:
        """``validation.parse_experiment``, remembered while the spec is unchanged."""
        fingerprint = json.dumps(body.get("spec"), sort_keys=True)
        uid = body["metadata"].get("uid", body["metadata"]["name"])
        cached = self._specs.get(uid)
        if cached is not None and cached[0] == fingerprint:
            return cached[1]
        try:
            parsed: sp.ExperimentSpec | validation.SpecError = validation.parse_experiment(body)
        except validation.SpecError as exc:
            parsed = exc
        with self._lock:
            self._specs[uid] = (fingerprint, parsed)
        return parsed

    def _finish(self, work: _Work) -> TickResult:
        """Everything after the analysis: persist its state, reconcile, execute."""
        if work.result is not None:
            return work.result
        now, res, found = work.now, work.res, work.found
        spec_or_error, evaluation = work.spec_or_error, work.evaluation
        if evaluation is not None and found.pending is not None:
            assert self.engine is not None
            try:
                evaluate.save(
                    self.engine,
                    found.pending,
                    evaluation,
                    now=now,
                    step_index=res.stored.step_index,
                    challenger_weight=work.route.challenger_weight if work.route else 0,
                    samples=found.samples,
                )
            except _DB_ERRORS as exc:
                logger.warning("%s: could not save the analysis state: %s", res.key, _describe(exc))
                evaluation, work.reachable = None, False
        verdicts = None
        if evaluation is not None and found.pending is not None:
            assert isinstance(spec_or_error, sp.ExperimentSpec)
            verdicts = evaluate.summarise(
                evaluation,
                srm_enabled=evaluate.in_force(spec_or_error, res.stored).srm_enabled,
                windows=found.pending.windows,
            )
        observed = observe.observed(
            res,
            work.route,
            now=now,
            samples=found.samples,
            database_reachable=work.reachable,
            last_data_at=work.last_data_at,
            baseline=found.baseline,
            held_flushed=work.flushed,
        )
        plan = reconcile.reconcile(spec_or_error, observed, verdicts, now)
        outcome = self._apply(work, plan)
        for decision in plan.of_type(p.RecordDecision):
            self.metrics.decisions.labels(decision.kind.value).inc()
        if plan.first(p.FinalizeRoute) and verdicts is not None and verdicts.failed:
            self.metrics.rollback_seconds.observe(
                max(0.0, (self.clock.now() - now).total_seconds())
            )
        requeue = plan.first(p.RequeueAfter)
        interval = (
            spec_or_error.analysis.interval
            if isinstance(spec_or_error, sp.ExperimentSpec)
            else timedelta(minutes=1)
        )
        self._schedule(work.body, now + (requeue.delay if requeue else interval))
        return TickResult(res.key, plan, outcome, evaluation)

    def _apply(self, work: _Work, plan: p.Plan) -> executor.Outcome:
        res = work.res
        target = executor.Target(
            res.namespace,
            res.name,
            res.uid or "",
            res.resource_version,
            res.generation,
            res.raw_status,
            work.exp_id if work.reachable else None,
            res.finalizers,
        )
        return executor.apply(
            plan,
            target,
            router=work.router,
            engine=self.engine if work.reachable else None,
            api=self.api,
            fault=self.fault,
            now=work.now,
        )

    # ------------------------------------------------------------------ pieces of a tick

    def _router(
        self, res: observe.Resource, spec_or_error: sp.ExperimentSpec | validation.SpecError
    ) -> routers.TrafficRouter | None:
        raw: Mapping[str, Any] | None = None
        if isinstance(spec_or_error, sp.ExperimentSpec):
            raw = frozen.routing_to_raw(spec_or_error)
        elif res.stored.frozen is not None:
            raw = res.stored.frozen.snapshot.get("routing")
        if raw is None:
            return None
        return self.router_factory(routers.config_from_spec(res.namespace, res.name, raw), self.api)

    def _delete(self, work: _Work) -> TickResult:
        """An Experiment being deleted: decide (``deletion.decide``) and apply."""
        res = work.res
        work.route = route = observe.route(work.router)
        if route is not None and route.owner == res.key and route.challenger_weight > 0:
            work.exp_id, work.reachable = self._experiment_id(res, None)
        seen = observe.deleting(res, route, finalizer=FINALIZER, database_reachable=work.reachable)
        plan = deletion.decide(seen, work.now)
        outcome = self._apply(work, plan)
        with self._lock:
            self._seen.pop(res.uid or res.name, None)
            self._specs.pop(res.uid or res.name, None)
        return TickResult(res.key, plan, outcome)

    def _experiment_id(
        self,
        res: observe.Resource,
        spec: Mapping[str, Any] | None,
        lateness: timedelta | None = None,
    ) -> tuple[int | None, bool]:
        """The experiment's row id (registered once per process), and whether the database answered."""
        if self.engine is None:
            return None, False
        cache_key = f"{res.key}:{res.uid}"
        if cache_key in self._ids:
            return self._ids[cache_key], True
        try:
            exp_id = repository.register_experiment(
                self.engine,
                res.key,
                uid=res.uid,
                spec=spec,
                allowed_lateness_seconds=None
                if lateness is None
                else int(lateness.total_seconds()),
            )
        except _DB_ERRORS as exc:
            logger.warning("%s: database unreachable: %s", res.key, _describe(exc))
            return None, False
        self._ids[cache_key] = exp_id
        return exp_id, True


def _describe(exc: BaseException) -> str:
    if isinstance(exc, kubernetes.client.ApiException):
        return f"Kubernetes API {exc.status} {exc.reason}"
    if isinstance(exc, sa.exc.DBAPIError):
        return f"database: {str(exc.orig).strip().splitlines()[0] if exc.orig else exc}"
    return str(exc)
