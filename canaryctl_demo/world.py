"""A whole canary world in one process: the emulated cluster, the store, the operator, traffic.

The end-to-end tests and ``canaryctl demo`` run through this: it serves the Kubernetes API
emulator with the Experiment CRD, the champion and challenger Deployments and a routing
object; runs the real operator against it and Postgres; and drives simulated time minute
by minute, feeding each minute's requests (at the split the router reports right now)
through the real ingestion path before the operator's next tick.
"""

from __future__ import annotations

import contextlib
import dataclasses
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import kubernetes.client
import numpy as np
import sqlalchemy as sa

from analysis import Scenario
from canaryctl_demo import traffic
from canaryctl_demo.kube import emulator, seed
from controller.clock import SimulatedClock
from controller.experiment import crd, spec, validation
from controller.ingest import load
from controller.operate.loop import Operator, OperatorConfig, TickResult
from controller.routers import base as routers
from controller.routers import router_for

GROUP, VERSION, PLURAL = spec.API_GROUP, spec.API_VERSION, spec.PLURAL
HTTPROUTE = ("gateway.networking.k8s.io", "v1", "httproutes")
MINUTE = timedelta(minutes=1)

#: Steps the parser refuses (the weight goes down at ``spec.steps[1].weight``).
DECREASING_STEPS: list[dict[str, Any]] = [
    {"weight": 50, "minDuration": "10m", "minSamples": 10},
    {"weight": 20, "minDuration": "10m", "minSamples": 10},
]


def guardrails(
    *, revenue_margin: float = 0.05, latency_kappa: float = 1.3, errors_kappa: float = 1.5
) -> list[dict[str, Any]]:
    """Revenue per request (higher is better), the share slower than 70 ms, and errors."""
    return [
        {
            "name": "revenue",
            "kind": "mean",
            "direction": "higherIsBetter",
            "margin": {"relative": revenue_margin},
        },
        {"name": "latency-p99", "kind": "tail", "thresholdMs": 70.0, "kappa": latency_kappa},
        {"name": "errors", "kind": "rate", "kappa": errors_kappa},
    ]


def experiment_body(
    name: str,
    *,
    namespace: str = "ml",
    champion: str = "ranker-v1",
    challenger: str = "ranker-v2",
    route: str = "ranker",
    steps: list[dict[str, Any]] | None = None,
    analysis: Mapping[str, Any] | None = None,
    promotion: str = "automatic",
    max_duration: str = "24h",
    router: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """An Experiment (on a Gateway API HTTPRoute unless ``router`` says otherwise) with revenue,
    latency and error guardrails."""
    default_analysis: dict[str, Any] = {
        "interval": "1m",
        "alpha": 0.05,
        "revenueCap": {"value": 20.0},
        "burnIn": {"minRequests": 1000, "minNonZeroRevenue": 80},
        "allowedLateness": "0s",
        "guardrails": guardrails(),
    }
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": spec.KIND,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "champion": {"name": champion},
            "challenger": {"name": challenger},
            "router": dict(router or {"gatewayAPI": {"httpRoute": route}}),
            "steps": steps
            or [
                {"weight": 10, "minDuration": "30m", "minSamples": 1000},
                {"weight": 50, "minDuration": "30m", "minSamples": 5000},
            ],
            "analysis": {**default_analysis, **(analysis or {})},
            "promotion": {"mode": promotion},
            "maxDuration": max_duration,
        },
    }


@dataclass
class World:
    """The emulated cluster, the operator and the simulated clock (see the module docstring)."""

    served: emulator.Served
    api: kubernetes.client.ApiClient
    engine: sa.Engine
    clock: SimulatedClock
    operator: Operator
    namespace: str
    rng: np.random.Generator
    minute: int = 0
    ticks: list[TickResult] = field(default_factory=list)
    router_kind: str = "gatewayAPI"
    cluster: seed.Cluster | None = None
    #: Distinguishes this world's batches from an earlier run's in the same database.
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    @classmethod
    @contextlib.contextmanager
    def start(
        cls,
        engine: sa.Engine,
        *,
        start: datetime,
        namespace: str = "ml",
        seed_value: int = 0,
        champion: str = "ranker-v1",
        challenger: str = "ranker-v2",
        route: str = "ranker",
        operator_config: OperatorConfig | None = None,
        fault: Any = None,
        router_kind: str = "gatewayAPI",
    ) -> Iterator[World]:
        with emulator.serve() as served:
            api = served.api_client()
            world: World | None = None
            try:
                served.emulator.load_crd(crd.build_crd())
                cluster = seed.Cluster(api, namespace)
                cluster.create_namespace()
                _seed_routing(cluster, router_kind, champion, challenger, route)
                clock = SimulatedClock(start)
                # the world writes and then ticks at once: the operator's caches must have
                # caught up with those writes before each pass
                config = dataclasses.replace(
                    operator_config or OperatorConfig(workers=1), consistent_reads=True
                )
                operator = Operator(api, engine, clock=clock, config=config, fault=fault)
                world = cls(
                    served,
                    api,
                    engine,
                    clock,
                    operator,
                    namespace,
                    np.random.default_rng(seed_value),
                    router_kind=router_kind,
                    cluster=cluster,
                )
                operator.on_tick = world.ticks.append
                yield world
            finally:
                if world is not None:
                    world.operator.close()
                api.close()

    def restart_operator(self, *, fault: Any = None, engine: sa.Engine | None = None) -> Operator:
        """A new operator process: nothing kept in memory, same cluster, store and clock."""
        old = self.operator
        old.close()
        self.operator = Operator(
            self.api, engine or self.engine, clock=self.clock, config=old.config, fault=fault
        )
        self.operator.on_tick = self.ticks.append
        return self.operator

    # ------------------------------------------------------------------ the cluster

    @property
    def custom(self) -> kubernetes.client.CustomObjectsApi:
        return kubernetes.client.CustomObjectsApi(self.api)

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        return dict(
            self.custom.create_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, body
            )
        )

    def get(self, name: str) -> dict[str, Any]:
        return dict(
            self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)
        )

    def status(self, name: str) -> dict[str, Any]:
        return dict(self.get(name).get("status") or {})

    def router(self, name: str) -> routers.TrafficRouter:
        s = validation.validate_spec(self.get(name)["spec"])
        config = routers.config_for(self.namespace, name, s.champion, s.challenger, s.router)
        return router_for(config, self.api)

    def route_weights(self, route: str = "ranker") -> dict[str, int]:
        obj = self.custom.get_namespaced_custom_object(
            *HTTPROUTE[:2], self.namespace, HTTPROUTE[2], route
        )
        refs = obj["spec"]["rules"][0]["backendRefs"]
        return {r["name"]: int(r.get("weight", 1)) for r in refs}

    # ------------------------------------------------------------------ time and traffic

    def play_controllers(self, route: str = "ranker") -> None:
        """Do what the cluster's own controllers would: KServe moves traffic to what
        ``canaryTrafficPercent`` asks; Deployments become ready at their replica count."""
        assert self.cluster is not None
        if self.router_kind == "kserve":
            predictor = self.cluster.get(seed.KSERVE, route)["spec"]["predictor"]
            percent = predictor.get("canaryTrafficPercent", 100)
            self.cluster.set_kserve_status(
                route,
                created=f"{route}-predictor-00002",
                ready=f"{route}-predictor-00002",
                traffic={
                    f"{route}-predictor-00002": (percent, True),
                    f"{route}-predictor-00001": (100 - percent, False),
                },
            )
        elif self.router_kind == "replicas":
            apps = kubernetes.client.AppsV1Api(self.api)
            for d in apps.list_namespaced_deployment(self.namespace).items:
                if (d.status.ready_replicas or 0) != d.spec.replicas:
                    self.cluster.set_ready(d.metadata.name, d.spec.replicas)

    def send_minute(self, name: str, scenario: Scenario) -> int:
        """Log one minute of requests at the split the router reports now; returns how many."""
        self.play_controllers()
        share = self.router(name).observe().challenger_share
        start = self.clock.now()
        rows = traffic.minute_of_requests(
            scenario,
            experiment=f"{self.namespace}/{name}",
            minute=self.minute,
            start=start,
            share=share,
            rng=self.rng,
        )
        if rows.num_rows:
            load.load_table(
                self.engine,
                rows,
                batch_key=f"sim:{self.run_id}:{self.namespace}/{name}:{start.isoformat()}",
                source="simulator",
                clock=self.clock,
            )
        return rows.num_rows

    def advance(self, delta: timedelta = MINUTE) -> list[TickResult]:
        """Move simulated time on and let the operator tick what is due."""
        self.clock.advance(delta)
        self.minute += int(delta / MINUTE)
        return self.operator.run_once()

    def run(
        self, name: str, scenario: Scenario, *, until: set[str], max_minutes: int
    ) -> dict[str, Any]:
        """Traffic and ticks minute by minute until the phase is in ``until``; returns the status."""
        self.advance(timedelta(0))
        for _ in range(max_minutes):
            status = self.status(name)
            if status.get("phase") in until:
                return status
            self.send_minute(name, scenario)
            self.advance()
        return self.status(name)


def _seed_routing(
    cluster: seed.Cluster, kind: str, champion: str, challenger: str, route: str
) -> None:
    """The Deployments and the routing object an Experiment of router ``kind`` needs."""
    if kind == "replicas":
        cluster.create_deployment(champion, replicas=10)
        cluster.create_deployment(challenger, replicas=0)
        return
    for name in (champion, challenger):
        cluster.create_deployment(name, replicas=3)
    if kind == "gatewayAPI":
        cluster.create(HTTPROUTE, seed.httproute(route, {champion: 100, challenger: 0}))
    elif kind == "istio":
        cluster.create(
            seed.ISTIO,
            seed.virtualservice(
                route,
                [
                    {"destination": {"host": champion}, "weight": 100},
                    {"destination": {"host": challenger}, "weight": 0},
                ],
            ),
        )
    elif kind == "kserve":
        cluster.create(seed.KSERVE, seed.inferenceservice(route, "gs://models/ranker/v2"))
        cluster.set_kserve_status(
            route,
            created=f"{route}-predictor-00002",
            ready=f"{route}-predictor-00002",
            traffic={f"{route}-predictor-00001": (100, False)},
        )
    else:
        raise ValueError(f"router_kind: unknown {kind!r}")


ROUTERS: dict[str, dict[str, Any]] = {
    "gatewayAPI": {"gatewayAPI": {"httpRoute": "ranker"}},
    "istio": {"istio": {"virtualService": "ranker"}},
    "kserve": {"kserve": {"inferenceService": "ranker"}},
    "replicas": {"replicas": {"totalReplicas": 10}},
}
