"""The pure decision for an Experiment being deleted: traffic back to the champion, then let go.

Deleting an Experiment in flight is a rollback: the route is finalised first, a rollback
is logged when the challenger still had traffic from this Experiment, and the finalizer
is removed last so that Kubernetes deletes the resource only once the route is safe.
The status is not written (the resource is going away), so a decision that cannot reach
the database is not held either. No I/O, no clock (``now`` is an argument).
"""

from __future__ import annotations

from datetime import datetime

from controller.decide import actions as p
from controller.decide import observed as obs

REASON = "the Experiment was deleted in flight; all traffic returned to the champion"


def decide(seen: obs.Deleting, now: datetime) -> p.Plan:
    """The plan of a deletion tick (see the module docstring)."""
    actions: list[p.Action] = []
    if seen.router_found:
        actions.append(p.FinalizeRoute())
    moved = seen.route_owner == seen.key and seen.challenger_weight > 0
    if moved and seen.database_reachable:
        actions.append(
            p.RecordDecision(
                p.DecisionKind.ROLLBACK, "deleted", REASON, p.ACTOR, now, key="deleted"
            )
        )
    if seen.finalizer_present:
        actions.append(p.RemoveFinalizer())
    return p.Plan(tuple(actions), write_status=False)
