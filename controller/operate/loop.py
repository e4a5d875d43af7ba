"""The operator loop: observe every Experiment, analyse, reconcile, execute; leader only.

Each pass lists the Experiments of the watched namespaces and ticks the ones that are due
(every ``spec.analysis.interval``, or at once when their spec, annotations or deletion
state changed). A tick builds ``observed.Observed`` from the custom resource, the router
and Postgres; runs the analysis on the finalised minutes of each traffic step with the
sequential state persisted from the previous tick; calls the pure ``reconcile``; and hands
the plan to ``executor.apply``. Time comes from the injected clock only, so the demo can
run days of canary in seconds and the tests can stop the operator at any fault point.

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
from controller.decide import manual
from controller.decide import observed as obs
from controller.decide import status as st
from controller.experiment import frozen, validation
from controller.experiment import spec as sp
from controller.operate import evaluate, executor
from controller.operate.leader import LeaderElector
from controller.operate.metrics import Metrics
from controller.routers import base as routers
from controller.routers import router_for
from controller.storage import decisions as decision_log
from controller.storage import experiments, looks, rollups

logger = logging.getLogger(__name__)

FINALIZER = "canaryctl.dev/finalizer"
GROUP, VERSION, PLURAL = executor.GROUP, executor.VERSION, executor.PLURAL
_DB_ERRORS = (sa.exc.OperationalError, sa.exc.InterfaceError)
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
class _PendingAnalysis:
    """An analysis gathered for the batch: its input and what to persist afterwards."""

    item: analysis.BatchItem
    exp_id: int
    history: list[evaluate.StepRecord]
    windows: list[Any]


@dataclass
class _Work:
    """One experiment's tick between its phases (observe → batch evaluate → finish)."""

    body: dict[str, Any]
    now: datetime
    key: str
    raw_status: dict[str, Any]
    stored: obs.StoredStatus
    spec_or_error: sp.ExperimentSpec | validation.SpecError
    router: routers.TrafficRouter | None
    exp_id: int | None = None
    reachable: bool = False
    flushed: bool = False
    route: routers.RouteState | None = None
    samples: obs.ArmCounts = field(default_factory=obs.ArmCounts)
    last_data_at: datetime | None = None
    baseline: obs.BaselineResult | None = None
    pending: _PendingAnalysis | None = None
    windows: list[Any] = field(default_factory=list)
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
        watcher = threading.Thread(
            target=self._watch, args=(stop, wake), name="canaryctl-watch", daemon=True
        )
        watcher.start()
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

    def _watch(self, stop: threading.Event, wake: threading.Event) -> None:
        """Set ``wake`` on every Experiment event until ``stop``; reconnects on errors."""
        import kubernetes.watch

        def relay() -> None:
            stop.wait()
            wake.set()

        threading.Thread(target=relay, name="canaryctl-watch-stop", daemon=True).start()
        streams = (
            [
                (self._custom.list_namespaced_custom_object, (GROUP, VERSION, ns, PLURAL))
                for ns in self.config.namespaces
            ]
            if self.config.namespaces
            else [(self._custom.list_cluster_custom_object, (GROUP, VERSION, PLURAL))]
        )
        versions: dict[int, str | None] = {}
        while not stop.is_set():
            for i, (fn, args) in enumerate(streams):
                if stop.is_set():
                    return
                watch = kubernetes.watch.Watch()
                try:
                    kwargs: dict[str, Any] = {"timeout_seconds": 2}
                    if versions.get(i):
                        kwargs["resource_version"] = versions[i]
                    for _event in watch.stream(fn, *args, **kwargs):
                        wake.set()
                        if stop.is_set():
                            return
                    versions[i] = watch.resource_version
                except Exception as exc:  # the API server away or the version too old: start over
                    logger.debug("watch of experiments interrupted: %s", exc)
                    versions[i] = None
                    stop.wait(1.0)

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
        finished = phase in ("Promoted", "RolledBack", "Failed")
        pending = (body.get("status") or {}).get("pendingDecisions")
        if finished and not body["metadata"].get("deletionTimestamp") and not pending:
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

        def observe(body: dict[str, Any]) -> _Work | TickResult:
            return self._guard(body, now, lambda: self._observe(body, now))  # type: ignore[no-any-return]

        works = self._map(observe, bodies)
        ready = [
            w for w in works if isinstance(w, _Work) and w.pending is not None and w.result is None
        ]
        if ready:
            evaluations = analysis.evaluate_batch([w.pending.item for w in ready])  # type: ignore[union-attr]
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
        meta = body["metadata"]
        ns, name = meta["namespace"], meta["name"]
        key = f"{ns}/{name}"
        raw_status: dict[str, Any] = dict(body.get("status") or {})
        stored = st.read_status(raw_status)  # type: ignore[arg-type]
        spec_or_error = self._parse(body)
        router = self._router(ns, name, body, spec_or_error, stored)
        work = _Work(body, now, key, raw_status, stored, spec_or_error, router)
        if meta.get("deletionTimestamp"):
            work.result = self._delete(body, router, now)
            return work
        if FINALIZER not in (meta.get("finalizers") or []) and not stored.phase.terminal:
            work.body = body = self._add_finalizer(body)
            meta = body["metadata"]
        lateness = (
            spec_or_error.analysis.allowed_lateness
            if isinstance(spec_or_error, sp.ExperimentSpec)
            else None
        )
        exp_id, reachable = self._experiment_id(
            key, meta.get("uid"), body.get("spec", {}), lateness
        )
        if reachable and exp_id is not None and raw_status.get("pendingDecisions"):
            work.flushed = reachable = self._flush_held(key, exp_id, raw_status["pendingDecisions"])
        work.exp_id, work.reachable = exp_id, reachable
        work.route = router.observe() if router is not None else None
        if reachable and exp_id is not None and isinstance(spec_or_error, sp.ExperimentSpec):
            try:
                work.samples, work.last_data_at, work.baseline, work.pending, work.windows = (
                    self._analyse(
                        exp_id,
                        spec_or_error,
                        stored,
                        work.route,
                        now,
                        _time(raw_status.get("lastAnalysisAt")),
                    )
                )
            except _DB_ERRORS as exc:
                logger.warning("%s: database unreachable during analysis: %s", key, _describe(exc))
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
        body, now, key, stored = work.body, work.now, work.key, work.stored
        meta = body["metadata"]
        spec_or_error, evaluation = work.spec_or_error, work.evaluation
        if evaluation is not None and work.pending is not None:
            assert self.engine is not None
            try:
                until = max(w[2] for w in work.pending.windows)
                samples = evaluate.status_fields(None, work.samples, now)["samples"]
                with self.engine.begin() as conn:
                    looks.save_analysis_state(
                        conn,
                        work.pending.exp_id,
                        {
                            "analysis": evaluation.state.to_dict(),
                            "steps": [r.to_dict() for r in work.pending.history],
                            "evaluatedUntil": until.isoformat(),
                        },
                        look={
                            "evaluated_until": until,
                            "at": now,
                            "step_index": stored.step_index,
                            "challenger_weight": work.route.challenger_weight if work.route else 0,
                            "verdict": evaluation.verdict.value,
                            "payload": evaluate.evidence(evaluation, work.pending.windows)
                            | {"samples": samples},
                        },
                    )
            except _DB_ERRORS as exc:
                logger.warning("%s: could not save the analysis state: %s", key, _describe(exc))
                evaluation, work.reachable = None, False
        verdicts = None
        if evaluation is not None and isinstance(spec_or_error, sp.ExperimentSpec):
            frozen_analysis = (
                frozen.analysis_from_snapshot(stored.frozen.snapshot)
                if stored.frozen
                else spec_or_error.analysis
            )
            verdicts = evaluate.summarise(evaluation, srm_enabled=frozen_analysis.srm_enabled)
        route = work.route
        observed = obs.Observed(
            created_at=_time(meta.get("creationTimestamp")) or now,
            status=stored,
            router=obs.RouterState(
                challenger_weight=route.challenger_weight
                if route
                else int(work.raw_status.get("challengerWeight", 0)),
                challenger_ready=bool(route.challenger_ready) if route else False,
            ),
            samples=work.samples,
            database_reachable=work.reachable,
            last_data_at=work.last_data_at,
            baseline=work.baseline,
            request=manual.parse_request(meta.get("annotations")),
        )
        from controller.decide import reconcile

        plan = reconcile.reconcile(spec_or_error, observed, verdicts, now)
        target = executor.Target(
            meta["namespace"],
            meta["name"],
            meta.get("uid", ""),
            meta["resourceVersion"],
            int(meta.get("generation", 0)),
            work.raw_status,
            work.exp_id if work.reachable else None,
        )
        outcome = executor.apply(
            plan,
            target,
            router=work.router,
            engine=self.engine if work.reachable else None,
            api=self.api,
            extra_status={
                **evaluate.status_fields(evaluation, work.samples, now),
                **({"pendingDecisions": []} if work.flushed else {}),
            },
            evidence=evaluate.evidence(evaluation, work.windows) if evaluation else None,
            fault=self.fault,
            now=now,
        )
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
        self._schedule(body, now + (requeue.delay if requeue else interval))
        return TickResult(key, plan, outcome, evaluation)

    # ------------------------------------------------------------------ pieces of a tick

    def _router(
        self,
        ns: str,
        name: str,
        body: Mapping[str, Any],
        spec_or_error: sp.ExperimentSpec | validation.SpecError,
        stored: obs.StoredStatus,
    ) -> routers.TrafficRouter | None:
        raw: Mapping[str, Any] | None = None
        if isinstance(spec_or_error, sp.ExperimentSpec):
            raw = frozen.routing_to_raw(spec_or_error)
        elif stored.frozen is not None:
            raw = stored.frozen.snapshot.get("routing")
        if raw is None:
            return None
        return self.router_factory(routers.config_from_spec(ns, name, raw), self.api)

    def _add_finalizer(self, body: dict[str, Any]) -> dict[str, Any]:
        meta = body["metadata"]
        finalizers = [*(meta.get("finalizers") or []), FINALIZER]
        return dict(
            self._custom.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                meta["namespace"],
                PLURAL,
                meta["name"],
                {
                    "metadata": {
                        "finalizers": finalizers,
                        "resourceVersion": meta["resourceVersion"],
                    }
                },
            )
        )

    def _delete(
        self, body: dict[str, Any], router: routers.TrafficRouter | None, now: datetime
    ) -> TickResult:
        """An Experiment being deleted: all traffic back to the champion, then let it go."""
        meta = body["metadata"]
        key = f"{meta['namespace']}/{meta['name']}"
        moved = False
        if router is not None:
            before = router.observe()
            router.finalize()
            moved = before.owner == key and before.challenger_weight > 0
        if self.engine is not None and moved:
            try:
                exp_id, _ = self._experiment_id(key, meta.get("uid"), None)
                if exp_id is not None:
                    with self.engine.begin() as conn:
                        decision_log.append_decision(
                            conn,
                            exp_id,
                            at=now,
                            kind=p.DecisionKind.ROLLBACK.value,
                            actor="operator",
                            reason_code="deleted",
                            reason="the Experiment was deleted in flight; all traffic returned to the champion",
                            idempotency_key="deleted",
                        )
            except _DB_ERRORS as exc:
                logger.warning("%s: could not log the deletion: %s", key, _describe(exc))
        remaining = [f for f in (meta.get("finalizers") or []) if f != FINALIZER]
        if FINALIZER in (meta.get("finalizers") or []):
            self._custom.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                meta["namespace"],
                PLURAL,
                meta["name"],
                {"metadata": {"finalizers": remaining, "resourceVersion": meta["resourceVersion"]}},
            )
        with self._lock:
            self._seen.pop(meta.get("uid", meta["name"]), None)
            self._specs.pop(meta.get("uid", meta["name"]), None)
        return TickResult(key, None, None)

    def _flush_held(self, key: str, exp_id: int, pending: list[dict[str, Any]]) -> bool:
        """Write the decisions taken while the database was away (their keys make it once)."""
        assert self.engine is not None
        try:
            with self.engine.begin() as conn:
                for d in pending:
                    decision_log.append_decision(
                        conn, exp_id, **{**d, "at": datetime.fromisoformat(d["at"])}
                    )
        except _DB_ERRORS as exc:
            logger.warning("%s: database still unreachable: %s", key, _describe(exc))
            return False
        return True

    def _experiment_id(
        self,
        key: str,
        uid: str | None,
        spec: Mapping[str, Any] | None,
        lateness: timedelta | None = None,
    ) -> tuple[int | None, bool]:
        if self.engine is None:
            return None, False
        cache_key = f"{key}:{uid}"
        if cache_key in self._ids:
            return self._ids[cache_key], True
        try:
            with self.engine.begin() as conn:
                exp_id = experiments.register_experiment(
                    conn,
                    key,
                    uid=uid,
                    spec=spec,
                    allowed_lateness_seconds=None
                    if lateness is None
                    else int(lateness.total_seconds()),
                )
        except _DB_ERRORS as exc:
            logger.warning("%s: database unreachable: %s", key, _describe(exc))
            return None, False
        self._ids[cache_key] = exp_id
        return exp_id, True

    def _analyse(
        self,
        exp_id: int,
        s: sp.ExperimentSpec,
        stored: obs.StoredStatus,
        route: routers.RouteState | None,
        now: datetime,
        last_consistent: datetime | None = None,
    ) -> tuple[
        obs.ArmCounts,
        datetime | None,
        obs.BaselineResult | None,
        _PendingAnalysis | None,
        list[Any],
    ]:
        """Counts, freshness, baseline values and the analysis input of this tick (one connection)."""
        assert self.engine is not None
        frozen_analysis = (
            frozen.analysis_from_snapshot(stored.frozen.snapshot) if stored.frozen else s.analysis
        )
        lateness = frozen_analysis.allowed_lateness
        final_until = evaluate.watermark(now, lateness)
        with self.engine.connect() as conn:
            last_minute, persisted = looks.freshness_and_state(conn, exp_id)
            last_data_at = None if last_minute is None else last_minute + evaluate.MINUTE
            baseline = None
            if (
                stored.phase is obs.Phase.BASELINE
                and s.analysis.baseline is not None
                and stored.phase_started_at
            ):
                baseline = self._baseline(
                    conn, exp_id, s.analysis, stored.phase_started_at, final_until
                )
            if stored.phase not in (
                obs.Phase.PROGRESSING,
                obs.Phase.PAUSED,
                obs.Phase.AWAITING_PROMOTION,
            ):
                return obs.ArmCounts(), last_data_at, baseline, None, []
            if stored.frozen is None or stored.step_started_at is None:
                return obs.ArmCounts(), last_data_at, baseline, None, []
            history = [evaluate.StepRecord.from_dict(d) for d in persisted.get("steps", [])]
            weight = s.steps[stored.step_index].weight if stored.step_index < len(s.steps) else 0
            share = route.challenger_share if route is not None else weight / 100
            cut = None
            if route is not None and route.challenger_weight != weight:
                evaluated = persisted.get("evaluatedUntil")
                cut = (
                    datetime.fromisoformat(evaluated)
                    if evaluated
                    else last_consistent or stored.step_started_at
                )
            history = evaluate.update_history(
                history,
                step_index=stored.step_index,
                step_started_at=stored.step_started_at,
                weight=weight,
                share=share,
                now=now,
                cut=cut,
            )
            windows = evaluate.windows(history, final_until)
            if not windows:
                return obs.ArmCounts(), last_data_at, baseline, None, []
            steps = []
            current = obs.ArmCounts()
            for record, start, end, closed in windows:
                totals = rollups.window_totals(conn, exp_id, start, end)
                steps.append(
                    analysis.StepWindow(
                        weight_challenger=record.share,
                        champion=evaluate.arm_stats(totals["champion"]),
                        challenger=evaluate.arm_stats(totals["challenger"]),
                        design_weight_challenger=record.weight / 100,
                        closed=closed,
                    )
                )
                if record.index == stored.step_index:
                    current = obs.ArmCounts(totals["champion"].n, totals["challenger"].n)
        previous = persisted.get("analysis")
        derived = stored.frozen.snapshot.get("derived", {})
        pending = _PendingAnalysis(
            item=analysis.BatchItem(
                evaluate.settings_for(frozen_analysis),
                evaluate.guardrails_for(frozen_analysis, derived),
                steps,
                analysis.AnalysisState.from_dict(previous)
                if previous
                else analysis.AnalysisState(),
            ),
            exp_id=exp_id,
            history=history,
            windows=windows,
        )
        return current, last_data_at, baseline, pending, windows

    def _baseline(
        self,
        conn: sa.Connection,
        exp_id: int,
        a: sp.Analysis,
        started: datetime,
        final_until: datetime,
    ) -> obs.BaselineResult | None:
        """The champion's derived cap and thresholds once the baseline period is final."""
        assert a.baseline is not None
        start = evaluate.ceil_minute(started)
        end = start + a.baseline.duration
        if final_until < end:
            return None
        cap = None
        if a.revenue_cap is not None and a.revenue_cap.from_baseline is not None:
            q = rollups.revenue_quantile(
                conn, exp_id, "champion", start, end, a.revenue_cap.from_baseline.quantile
            )
            cap = q if q is not None and q > 0 else None
        thresholds: dict[str, float] = {}
        tails = [
            g for g in a.guardrails if isinstance(g, sp.TailGuardrail) and g.threshold_from_baseline
        ]
        if tails:
            hist = rollups.window_totals(conn, exp_id, start, end)["champion"].latency_hist
            if hist.sum() > 0:
                for g in tails:
                    fb = g.threshold_from_baseline
                    assert fb is not None
                    thresholds[g.name] = evaluate.derived_threshold(hist, fb.quantile, fb.margin)
        return obs.BaselineResult(revenue_cap=cap, thresholds_ms=thresholds)


def _time(text: str | None) -> datetime | None:
    return None if not text else datetime.fromisoformat(text.replace("Z", "+00:00"))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, kubernetes.client.ApiException):
        return f"Kubernetes API {exc.status} {exc.reason}"
    if isinstance(exc, sa.exc.DBAPIError):
        return f"database: {str(exc.orig).strip().splitlines()[0] if exc.orig else exc}"
    return str(exc)
