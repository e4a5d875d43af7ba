"""Assembling one experiment's tick: observe, (batch analysis,) decide, apply.

``Assembler.gather`` reads the resource, the router and the store (``observe``), writes
what must come first (the finalizer, the registration, held decisions) and gathers the
analysis input (``evaluate``); the loop runs every gathered analysis as one batch;
``Assembler.finish`` persists the analysis, calls the pure ``reconcile`` and hands the
plan to ``executor.apply``. An Experiment being deleted goes to ``deletion.decide``
instead. The scheduling, the batch and the metrics are the loop's (``loop``); this module
reads no clock.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import kubernetes.client
import sqlalchemy as sa

import analysis
from controller.decide import actions as p
from controller.decide import deletion, reconcile
from controller.decide import observed as obs
from controller.decide import windows as win
from controller.experiment import frozen, validation
from controller.experiment import spec as sp
from controller.operate import evaluate, executor, forecasting, informer, observe
from controller.routers import base as routers
from controller.storage import experiments, looks, rollups

logger = logging.getLogger(__name__)

FINALIZER = executor.FINALIZER
DB_ERRORS = (sa.exc.OperationalError, sa.exc.InterfaceError)
RouterFactory = Callable[[routers.RouterConfig, kubernetes.client.ApiClient], routers.TrafficRouter]


@dataclass(frozen=True)
class TickResult:
    """What one tick of one experiment did (for tests, the demo and metrics)."""

    key: str
    plan: p.Plan | None
    outcome: executor.Outcome | None
    evaluation: analysis.Evaluation | None = None
    error: str | None = None


@dataclass
class Work:
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
    route_missing: tuple[str, str] | None = None
    last_data_at: datetime | None = None
    found: evaluate.Input = field(default_factory=lambda: evaluate.Input(obs.ArmCounts()))
    #: The champion's day hour by hour from the run's start, read when a forecast is due.
    day: list[tuple[dict[str, rollups.ArmTotals], float]] | None = None
    evaluation: analysis.Evaluation | None = None
    result: TickResult | None = None
    due: datetime | None = None
    store_due: bool = False  # the store is read for the whole pass (``Assembler.read_stores``)
    verdicts: obs.Verdicts | None = None
    saved: bool = False  # summarised and saved for the whole pass (``Assembler.save_all``)
    forecast: obs.ForecastNote | None = None
    forecast_done: bool = False  # computed before the pass's finish (``Assembler.forecast_all``)


class Assembler:
    """Observes and finishes ticks; remembers parsed specs and experiment ids between them."""

    def __init__(
        self,
        api: kubernetes.client.ApiClient,
        engine: sa.Engine | None,
        *,
        router_factory: RouterFactory,
        fault: executor.FaultHook | None = None,
        fence: Callable[[str], contextlib.AbstractContextManager[None]] | None = None,
        cache: informer.Informers | None = None,
        batched: bool = False,
    ) -> None:
        self.api = api
        self.engine = engine
        self.router_factory = router_factory
        self.fault = fault
        self.fence = fence  # entered with an experiment's uid around each write for it
        self.cache = cache
        # read the store and save the analyses once per pass for all due experiments
        # (``read_stores``, ``save_all``) rather than once per experiment
        self.batched = batched
        self.forecast_budget: int | None = None  # forecasts left in this pass (None: any)
        # the champions' days read in this pass, by champion and start
        self._days: dict[tuple[str, datetime], rollups.ChampionDay | None] = {}
        self.forecasts = 0  # forecasts run, and the CPU seconds they took (their threads')
        self.forecast_cpu = 0.0
        self._ids: dict[str, int] = {}
        self._specs: dict[str, tuple[str, sp.ExperimentSpec | validation.SpecError]] = {}
        self._resources: dict[str, tuple[tuple[str | None, str], observe.Resource]] = {}
        self._lock = threading.Lock()

    def gather(self, body: dict[str, Any], now: datetime) -> Work:
        """Everything before the analysis: the resource, the router, the store.

        Writes only what must precede a decision: the finalizer (before anything routes),
        the experiment's registration and the flush of held decisions. An Experiment being
        deleted is decided and applied here (``Work.result``).
        """
        res = self._resource(body)
        spec_or_error = self._parse(body)
        router = self._router(res, spec_or_error)
        work = Work(body, now, res, spec_or_error, router)
        if res.deleting:
            work.result = self._delete(work)
            return work
        if FINALIZER not in res.finalizers and not res.stored.phase.terminal:
            cache = None if self.cache is None else self._experiments(res)
            with self._fence(res)():
                work.body = body = executor.add_finalizer(self.api, body, cache)
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
                with self._fence(res)():
                    executor.flush_held(self.engine, exp_id, held)
                work.flushed = True
            except DB_ERRORS as exc:
                logger.warning("%s: database still unreachable: %s", res.key, describe(exc))
                reachable = False
        work.exp_id, work.reachable = exp_id, reachable
        work.route, work.route_missing = observe.route_or_missing(router)
        if reachable and exp_id is not None and isinstance(spec_or_error, sp.ExperimentSpec):
            assert self.engine is not None
            if self.batched:
                work.store_due = True
                return work
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
                    work.day = self._champion_day(conn, work)
            except DB_ERRORS as exc:
                logger.warning(
                    "%s: database unreachable during analysis: %s", res.key, describe(exc)
                )
                work.reachable = False
        return work

    def read_stores(self, works: Sequence[Work]) -> None:
        """What ``gather`` reads from the store, for every work it left that to, at once:
        one query for the freshness and saved states, one for every window's totals."""
        due = [w for w in works if w.store_due]
        if not due:
            return
        assert self.engine is not None
        try:
            with self.engine.connect() as conn:
                stores = looks.freshness_and_states(conn, [w.exp_id for w in due])  # type: ignore[misc]
                planned: list[tuple[Work, evaluate.Planned]] = []
                for w in due:
                    assert w.exp_id is not None and isinstance(w.spec_or_error, sp.ExperimentSpec)
                    last_minute, persisted = stores.get(w.exp_id, (None, {}))
                    w.last_data_at = None if last_minute is None else last_minute + win.MINUTE
                    found = evaluate.plan_input(
                        conn,
                        w.exp_id,
                        w.spec_or_error,
                        w.res.stored,
                        w.route,
                        persisted,
                        w.now,
                        w.res.last_analysis_at,
                    )
                    if isinstance(found, evaluate.Input):
                        w.found = found
                    else:
                        planned.append((w, found))
                windows = [
                    (one.exp_id, start, end)
                    for _, one in planned
                    for _, start, end, _ in one.windows
                ]
                totals = iter(rollups.windows_totals(conn, windows))
                for w, one in planned:
                    w.found = evaluate.complete_input(one, [next(totals) for _ in one.windows])
                for w in due:  # the champion's day, for the few whose forecast is due
                    w.day = self._champion_day(conn, w)
        except DB_ERRORS as exc:
            logger.warning("database unreachable during analysis: %s", describe(exc))
            for w in due:
                w.reachable = False
                w.found = evaluate.Input(obs.ArmCounts())
                w.last_data_at = None

    def save_all(self, works: Sequence[Work]) -> None:
        """``finish``'s summary and save of every evaluated work, the saves in one transaction."""
        ready = [w for w in works if w.evaluation is not None and w.found.pending is not None]
        if not ready:
            return
        assert self.engine is not None
        saves = []
        for w in ready:
            pending = w.found.pending
            assert pending is not None and w.evaluation is not None
            w.verdicts = evaluate.summarise(
                w.evaluation,
                settings=pending.settings,
                windows=pending.windows,
                steps=pending.item.steps,
            )
            saves.append(
                evaluate.to_save(
                    pending,
                    w.evaluation,
                    now=w.now,
                    step_index=w.res.stored.step_index,
                    challenger_weight=w.route.challenger_weight if w.route else 0,
                    samples=w.found.samples,
                    summary=w.verdicts,
                )
            )
            w.saved = True
        try:
            evaluate.save_many(self.engine, saves)
        except DB_ERRORS as exc:
            which = ready[0].res.key if len(ready) == 1 else f"{len(ready)} experiments"
            logger.warning("%s: could not save the analysis state: %s", which, describe(exc))
            for w in ready:
                w.evaluation, w.verdicts, w.reachable = None, None, False

    def forecast_all(self, works: Sequence[Work]) -> None:
        """Every work's decision forecast (``_forecast``), one after the other in the calling
        thread: a forecast is a fraction of a second of CPU, which the pass's other ticks
        would otherwise wait behind, thread by thread."""
        for w in works:
            if w.result is None:
                w.forecast, w.forecast_done = self._forecast(w), True

    def _resource(self, body: Mapping[str, Any]) -> observe.Resource:
        """``observe.resource``, remembered for the object's resourceVersion (cached
        objects come back unchanged tick after tick)."""
        meta = body["metadata"]
        key = (meta.get("uid"), meta["resourceVersion"])
        cached = self._resources.get(meta.get("uid") or meta["name"])
        if cached is not None and cached[0] == key:
            return cached[1]
        res = observe.resource(body)
        with self._lock:
            self._resources[meta.get("uid") or meta["name"]] = (key, res)
        return res

    def _parse(self, body: Mapping[str, Any]) -> sp.ExperimentSpec | validation.SpecError:
        """``validation.parse_experiment``, remembered while the spec is unchanged (its
        ``metadata.generation``, which the API server bumps on every spec change)."""
        generation = body["metadata"].get("generation")
        fingerprint = (
            f"generation {generation}"
            if generation is not None
            else json.dumps(body.get("spec"), sort_keys=True)
        )
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

    def finish(self, work: Work) -> TickResult:
        """Everything after the analysis: persist its state, reconcile, execute.

        Sets ``work.due``: when the experiment should be ticked again.
        """
        if work.result is not None:
            return work.result
        now, res, found = work.now, work.res, work.found
        spec_or_error, evaluation = work.spec_or_error, work.evaluation
        if evaluation is not None and found.pending is not None and not work.saved:
            self.save_all([work])  # a tick on its own (the pass saves its batch at once)
            evaluation = work.evaluation
        verdicts = work.verdicts
        observed = observe.observed(
            res,
            work.route,
            now=now,
            samples=found.samples,
            database_reachable=work.reachable,
            last_data_at=work.last_data_at,
            baseline=found.baseline,
            held_flushed=work.flushed,
            route_missing=work.route_missing,
            forecast=work.forecast if work.forecast_done else self._forecast(work),
        )
        plan = reconcile.reconcile(spec_or_error, observed, verdicts, now)
        outcome = self._apply(work, plan)
        requeue = plan.first(p.RequeueAfter)
        interval = (
            spec_or_error.analysis.interval
            if isinstance(spec_or_error, sp.ExperimentSpec)
            else timedelta(minutes=1)
        )
        work.due = now + (requeue.delay if requeue else interval)
        return TickResult(res.key, plan, outcome, evaluation)

    @staticmethod
    def _forecast_due(work: Work) -> bool:
        """A Progressing experiment whose current step has no forecast yet."""
        res = work.res
        return (
            work.found.pending is not None
            and isinstance(work.spec_or_error, sp.ExperimentSpec)
            and res.stored.phase is obs.Phase.PROGRESSING
            and forecasting.stored_step(res.raw_status) != res.stored.step_index
        )

    def _forecast(self, work: Work) -> obs.ForecastNote | None:
        """The decision forecast, once per step of a Progressing experiment (see forecasting)."""
        res, pending, s = work.res, work.found.pending, work.spec_or_error
        if pending is None or not isinstance(s, sp.ExperimentSpec) or not self._forecast_due(work):
            return None
        granted: list[bool] = []

        def allowed() -> bool:
            granted.append(self._may_forecast())
            return granted[-1]

        started = time.thread_time()
        try:
            return forecasting.for_tick(
                pending, s, res.stored.step_index, work.day, allowed=allowed
            )
        except ValueError as exc:  # inputs the forecast refuses: no forecast, never a failed tick
            logger.warning("%s: no decision forecast: %s", res.key, exc)
            return None
        finally:
            if any(granted):
                with self._lock:
                    self.forecasts += 1
                    self.forecast_cpu += time.thread_time() - started

    def start_pass(self, forecast_budget: int | None) -> None:
        """A new pass: its forecast budget, and no champion's day read yet."""
        with self._lock:
            self.forecast_budget = forecast_budget
            self._days.clear()

    def _champion_day(self, conn: sa.Connection, work: Work) -> rollups.ChampionDay | None:
        """The champion's day for a forecast-due experiment (``rollups.champion_day_totals``).

        Read once per champion and start in a pass, and for no more experiments than the
        pass may still forecast: at a step start shared by thousands of experiments, a read
        each (a search among the champion's experiments) made the pass grow with the fleet.
        """
        pending = work.found.pending
        if pending is None or not self._forecast_due(work):
            return None
        assert isinstance(work.spec_or_error, sp.ExperimentSpec)
        key = (work.spec_or_error.champion.name, pending.history[0].start)
        with self._lock:
            if key in self._days:
                return self._days[key]
            if self.forecast_budget is not None and len(self._days) >= self.forecast_budget:
                return None
            self._days[key] = None  # being read: a tick of the same key meanwhile goes without
        day = rollups.champion_day_totals(conn, *key)
        with self._lock:
            self._days[key] = day
        return day

    def _may_forecast(self) -> bool:
        """Whether this pass may run one more forecast (its budget, if any, is not spent)."""
        with self._lock:
            if self.forecast_budget is None:
                return True
            if self.forecast_budget <= 0:
                return False
            self.forecast_budget -= 1
            return True

    def _apply(self, work: Work, plan: p.Plan) -> executor.Outcome:
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
            fence=self._fence(res),
            now=work.now,
            cache=None if self.cache is None else self._experiments(res),
        )

    def _fence(self, res: observe.Resource) -> executor.Fence:
        """What to enter around a write for ``res`` (nothing without sharding)."""
        fence, uid = self.fence, res.uid or res.key
        if fence is None:
            return contextlib.nullcontext
        return lambda: fence(uid)

    def _experiments(self, res: observe.Resource) -> informer.Informer:
        assert self.cache is not None
        return self.cache.informer(*informer.EXPERIMENTS, res.namespace)

    def _router(
        self, res: observe.Resource, spec_or_error: sp.ExperimentSpec | validation.SpecError
    ) -> routers.TrafficRouter | None:
        routing: frozen.Routing | None = None
        if isinstance(spec_or_error, sp.ExperimentSpec):
            routing = frozen.routing_of(spec_or_error)
        elif res.stored.frozen is not None:
            routing = res.stored.frozen.routing
        if routing is None:
            return None
        config = routers.config_for(
            res.namespace, res.name, routing.champion, routing.challenger, routing.router
        )
        return self.router_factory(config, self.api)

    def _delete(self, work: Work) -> TickResult:
        """An Experiment being deleted: decide (``deletion.decide``) and apply."""
        res = work.res
        work.route = route = observe.route(work.router)
        if route is not None and route.owner == res.key and route.challenger_weight > 0:
            work.exp_id, work.reachable = self._experiment_id(res, None)
        seen = observe.deleting(res, route, finalizer=FINALIZER, database_reachable=work.reachable)
        plan = deletion.decide(seen, work.now)
        outcome = self._apply(work, plan)
        with self._lock:
            self._specs.pop(res.uid or res.name, None)
            self._resources.pop(res.uid or res.name, None)
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
            with self.engine.begin() as conn:
                exp_id = experiments.register_experiment(
                    conn,
                    res.key,
                    uid=res.uid,
                    spec=spec,
                    allowed_lateness_seconds=None
                    if lateness is None
                    else int(lateness.total_seconds()),
                )
        except DB_ERRORS as exc:
            logger.warning("%s: database unreachable: %s", res.key, describe(exc))
            return None, False
        self._ids[cache_key] = exp_id
        return exp_id, True


def describe(exc: BaseException) -> str:
    if isinstance(exc, kubernetes.client.ApiException):
        return f"Kubernetes API {exc.status} {exc.reason}"
    if isinstance(exc, sa.exc.DBAPIError):
        return f"database: {str(exc.orig).strip().splitlines()[0] if exc.orig else exc}"
    return str(exc)
