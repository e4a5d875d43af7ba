"""Gateway API router: weights on one rule's ``backendRefs`` of an ``HTTPRoute``.

``spec.rules[index].backendRefs`` must already hold a ref to each side's Service (matched by
``name``, ``kind`` absent or ``Service``); the router only rewrites their ``weight``s, as integer
percentages summing to 100, and never adds or removes refs. Other refs in the rule are left alone
(give them weight 0). A missing ``weight`` counts as 1, the Gateway API default. Promotion leaves
both refs in place with the challenger at 100 and the champion at 0. Readiness: the challenger's
Deployment (``challenger.deployment``, default its name) has a ready replica and is Available.
"""

from __future__ import annotations

from typing import Any

from controller.routers import base, objects

Body = dict[str, Any]
Ref = objects.Ref


def _backend_index(rule: Body, service: str) -> int | None:
    for i, ref in enumerate(rule.get("backendRefs") or []):
        if ref.get("name") == service and ref.get("kind", "Service") == "Service":
            return i
    return None


def locate(route: Body, config: base.RouterConfig, where: str) -> tuple[Body, int, int]:
    """The rule and the champion's and challenger's indexes in its ``backendRefs``."""
    rules = (route.get("spec") or {}).get("rules") or []
    if config.index >= len(rules):
        raise base.BackendNotFoundError(f"{where} has no spec.rules[{config.index}]")
    rule = rules[config.index]
    found = []
    for backend in (config.champion, config.challenger):
        index = _backend_index(rule, backend.service_name)
        if index is None:
            raise base.BackendNotFoundError(
                f"{where} spec.rules[{config.index}] has no backendRef to Service "
                f"{backend.service_name!r}"
            )
        found.append(index)
    return rule, found[0], found[1]


def weights(route: Body, config: base.RouterConfig, where: str) -> tuple[int, int]:
    """(champion, challenger) in percent of their two weights."""
    rule, champion, challenger = locate(route, config, where)
    refs = rule["backendRefs"]
    w_champion, w_challenger = (refs[i].get("weight", 1) for i in (champion, challenger))
    challenger_pct = base.percent(w_challenger, w_champion + w_challenger)
    return 100 - challenger_pct, challenger_pct


def patch_for(route: Body, config: base.RouterConfig, target: base.Target, where: str) -> Body:
    """A merge patch reaching the target (``{}`` if already there); sends all of ``spec.rules``."""
    patch = objects.owner_patch(route, target)
    if target.challenger_weight is None:
        return patch
    rule, champion, challenger = locate(route, config, where)
    refs = rule["backendRefs"]
    wanted = {champion: 100 - target.challenger_weight, challenger: target.challenger_weight}
    if all(refs[i].get("weight", 1) == w for i, w in wanted.items()):
        return patch
    rules = [dict(r) for r in route["spec"]["rules"]]
    rules[config.index] = {
        **rule,
        "backendRefs": [
            {**ref, "weight": wanted[i]} if i in wanted else ref for i, ref in enumerate(refs)
        ],
    }
    return {**patch, "spec": {"rules": rules}}


class GatewayAPIRouter(objects.KubeRouter):
    """Traffic split on an ``HTTPRoute`` (gateway.networking.k8s.io/v1)."""

    @property
    def _route(self) -> Ref:
        c = self.config
        return Ref(
            "gateway.networking.k8s.io", "v1", "httproutes", "HTTPRoute", c.namespace, c.route
        )

    @property
    def _deployment(self) -> Ref:
        return objects.deployment_ref(self.config.namespace, self.config.challenger.deployment_name)

    def _refs(self) -> list[tuple[Ref, bool]]:
        return [(self._route, True), (self._deployment, False)]

    def _state(self, objs: dict[Ref, Body | None]) -> base.RouteState:
        route = objs[self._route]
        assert route is not None
        champion, challenger = weights(route, self.config, str(self._route))
        return base.RouteState(
            route=str(self._route),
            champion_weight=champion,
            challenger_weight=challenger,
            challenger_ready=objects.deployment_ready(objs[self._deployment]),
            owner=objects.owner_of(route),
            resource_version=route["metadata"]["resourceVersion"],
            challenger_share=challenger / 100,
        )

    def _patches(self, objs: dict[Ref, Body | None], target: base.Target) -> list[tuple[Ref, Body]]:
        route = objs[self._route]
        assert route is not None
        patch = patch_for(route, self.config, target, str(self._route))
        return [(self._route, patch)] if patch else []
