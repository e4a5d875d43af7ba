"""What one tick sees: the custom resource, the router and the store, as plain values.

The loop calls these readers, then builds ``observed.Observed`` (or ``observed.Deleting``
for an Experiment being deleted) for the pure decision code. Reads only: no writes, no
decisions, no clock (``now`` is an argument where a value needs one).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from controller.decide import manual
from controller.decide import observed as obs
from controller.decide import status as st
from controller.decide import windows as win
from controller.experiment import spec
from controller.routers import base as routers
from controller.storage import looks


@dataclass(frozen=True)
class Resource:
    """The Experiment as listed: its identity, metadata and stored status."""

    namespace: str
    name: str
    uid: str | None
    resource_version: str
    generation: int
    finalizers: tuple[str, ...]
    deleting: bool
    created_at: datetime | None
    annotations: Mapping[str, str] | None
    raw_status: dict[str, Any] = field(default_factory=dict)
    stored: obs.StoredStatus = field(default_factory=obs.StoredStatus)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def last_analysis_at(self) -> datetime | None:
        """When the status last took an analysis (the route agreed with it then)."""
        text = self.raw_status.get("lastAnalysisAt")
        return spec.parse_k8s_time(text) if text else None


def resource(body: Mapping[str, Any]) -> Resource:
    """The resource's identity, metadata and stored status."""
    meta = body["metadata"]
    raw_status: dict[str, Any] = dict(body.get("status") or {})
    created = meta.get("creationTimestamp")
    return Resource(
        namespace=meta["namespace"],
        name=meta["name"],
        uid=meta.get("uid"),
        resource_version=meta["resourceVersion"],
        generation=int(meta.get("generation", 0)),
        finalizers=tuple(meta.get("finalizers") or ()),
        deleting=bool(meta.get("deletionTimestamp")),
        created_at=spec.parse_k8s_time(created) if created else None,
        annotations=meta.get("annotations"),
        raw_status=raw_status,
        stored=st.read_status(raw_status),  # type: ignore[arg-type]
    )


def route(router: routers.TrafficRouter | None) -> routers.RouteState | None:
    """The route as the router reports it (None without a router)."""
    return router.observe() if router is not None else None


def route_or_missing(
    router: routers.TrafficRouter | None,
) -> tuple[routers.RouteState | None, tuple[str, str] | None]:
    """The route, or what of it is missing: ``(reason, message)`` (the object, a
    Deployment, a backend in it).

    A missing route is something to report in a condition and wait for, not a failed tick;
    other errors (the API server away, a refusal) still end the tick.
    """
    try:
        return route(router), None
    except routers.RouteNotFoundError as exc:
        return None, ("RouteNotFound", str(exc))
    except routers.BackendNotFoundError as exc:
        return None, ("BackendNotFound", str(exc))


def store(conn: sa.Connection, exp_id: int) -> tuple[datetime | None, Mapping[str, Any]]:
    """When the newest data ends, and the analysis state the previous tick saved."""
    last_minute, persisted = looks.freshness_and_state(conn, exp_id)
    return (None if last_minute is None else last_minute + win.MINUTE), persisted


def observed(
    res: Resource,
    route_state: routers.RouteState | None,
    *,
    now: datetime,
    samples: obs.ArmCounts,
    database_reachable: bool,
    last_data_at: datetime | None,
    baseline: obs.BaselineResult | None,
    held_flushed: bool,
    route_missing: tuple[str, str] | None = None,
    forecast: obs.ForecastNote | None = None,
) -> obs.Observed:
    """Everything reconcile reads about the world at this tick."""
    if route_state is not None:
        owner = route_state.owner
        router = obs.RouterState(
            route_state.challenger_weight,
            bool(route_state.challenger_ready),
            route=route_state.route,
            other_owner=owner if owner not in (None, res.key) else None,
        )
    else:  # no route to ask: the weight the status last recorded, not ready
        router = obs.RouterState(
            int(res.raw_status.get("challengerWeight", 0)), False, missing=route_missing
        )
    return obs.Observed(
        created_at=res.created_at or now,
        status=res.stored,
        router=router,
        samples=samples,
        database_reachable=database_reachable,
        last_data_at=last_data_at,
        baseline=baseline,
        request=manual.parse_request(res.annotations),
        held_flushed=held_flushed,
        forecast=forecast,
    )


def deleting(
    res: Resource,
    route_state: routers.RouteState | None,
    *,
    finalizer: str,
    database_reachable: bool,
) -> obs.Deleting:
    """What ``deletion.decide`` reads about an Experiment being deleted."""
    return obs.Deleting(
        key=res.key,
        router_found=route_state is not None,
        route_owner=None if route_state is None else route_state.owner,
        challenger_weight=0 if route_state is None else route_state.challenger_weight,
        finalizer_present=finalizer in res.finalizers,
        database_reachable=database_reachable,
    )
