"""Istio router: weights on ``spec.http[index].route[*]`` of a ``VirtualService``.

The HTTP route must already hold a destination for each side. With ``champion_subset`` and
``challenger_subset`` configured, destinations are matched by ``subset`` (and ``host`` when
given); otherwise by ``destination.host`` equal to the backend's Service name or an FQDN starting
with ``<service>.``. The router rewrites only the two ``weight``s (percentages summing to 100);
other destinations are left alone. A missing weight counts as 100 for a lone destination, else 0
(Istio's rule). Promotion keeps both destinations, challenger 100 / champion 0. Readiness: the
challenger's Deployment has a ready replica and is Available.
"""

from __future__ import annotations

from typing import Any

from controller.routers import base, objects

Body = dict[str, Any]
Ref = objects.Ref


def _matches(
    destination: Body, config: base.RouterConfig, backend: base.Backend, subset: str | None
) -> bool:
    host = str(destination.get("host", ""))
    if subset is not None:
        return bool(destination.get("subset") == subset and config.host in (None, host))
    service = backend.service_name
    return host == service or host.startswith(f"{service}.")


def locate(vs: Body, config: base.RouterConfig, where: str) -> tuple[list[Body], int, int]:
    """The route list and the champion's and challenger's indexes in it."""
    http = (vs.get("spec") or {}).get("http") or []
    if config.index >= len(http):
        raise base.BackendNotFoundError(f"{where} has no spec.http[{config.index}]")
    routes = http[config.index].get("route") or []
    found = []
    for backend, subset in (
        (config.champion, config.champion_subset),
        (config.challenger, config.challenger_subset),
    ):
        index = next(
            (
                i
                for i, r in enumerate(routes)
                if _matches(r.get("destination") or {}, config, backend, subset)
            ),
            None,
        )
        if index is None:
            what = f"subset {subset!r}" if subset is not None else f"host {backend.service_name!r}"
            raise base.BackendNotFoundError(
                f"{where} spec.http[{config.index}].route has no destination with {what}"
            )
        found.append(index)
    return routes, found[0], found[1]


def _weight(routes: list[Body], i: int) -> int:
    return int(routes[i].get("weight", 100 if len(routes) == 1 else 0))


def weights(vs: Body, config: base.RouterConfig, where: str) -> tuple[int, int]:
    routes, champion, challenger = locate(vs, config, where)
    w_champion, w_challenger = _weight(routes, champion), _weight(routes, challenger)
    challenger_pct = base.percent(w_challenger, w_champion + w_challenger)
    return 100 - challenger_pct, challenger_pct


def patch_for(vs: Body, config: base.RouterConfig, target: base.Target, where: str) -> Body:
    """A merge patch reaching the target (``{}`` if already there); sends all of ``spec.http``."""
    patch = objects.owner_patch(vs, target)
    if target.challenger_weight is None:
        return patch
    routes, champion, challenger = locate(vs, config, where)
    wanted = {champion: 100 - target.challenger_weight, challenger: target.challenger_weight}
    if all(routes[i].get("weight") == w for i, w in wanted.items()):
        return patch
    http = [dict(h) for h in vs["spec"]["http"]]
    http[config.index]["route"] = [
        {**r, "weight": wanted[i]} if i in wanted else r for i, r in enumerate(routes)
    ]
    return {**patch, "spec": {"http": http}}


class IstioRouter(objects.KubeRouter):
    """Traffic split on a ``VirtualService`` (networking.istio.io/v1)."""

    @property
    def _vs(self) -> Ref:
        c = self.config
        return Ref(
            "networking.istio.io", "v1", "virtualservices", "VirtualService", c.namespace, c.route
        )

    @property
    def _deployment(self) -> Ref:
        return objects.deployment_ref(self.config.namespace, self.config.challenger.deployment_name)

    def _refs(self) -> list[tuple[Ref, bool]]:
        return [(self._vs, True), (self._deployment, False)]

    def _state(self, objs: dict[Ref, Body | None]) -> base.RouteState:
        vs = objs[self._vs]
        assert vs is not None
        champion, challenger = weights(vs, self.config, str(self._vs))
        return base.RouteState(
            route=str(self._vs),
            champion_weight=champion,
            challenger_weight=challenger,
            challenger_ready=objects.deployment_ready(objs[self._deployment]),
            owner=objects.owner_of(vs),
            resource_version=vs["metadata"]["resourceVersion"],
            challenger_share=challenger / 100,
        )

    def _patches(self, objs: dict[Ref, Body | None], target: base.Target) -> list[tuple[Ref, Body]]:
        vs = objs[self._vs]
        assert vs is not None
        patch = patch_for(vs, self.config, target, str(self._vs))
        return [(self._vs, patch)] if patch else []
