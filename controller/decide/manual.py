"""Manual control requests carried by an annotation, safe under GitOps.

The CLI writes one annotation, ``canaryctl.dev/request``, whose value is a JSON object
``{"id", "action", "actor", "reason", "full"?, "requestedAt"?}``; the spec is never edited.
The operator reads it with ``parse_request``, hands it to ``reconcile`` inside
``Observed``, and reconcile acts on each id once (the ids it handled are kept in the
status). Pure parsing and formatting only; no I/O and no clock.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from controller.experiment import spec

REQUEST_ANNOTATION = "canaryctl.dev/request"
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_FIELDS = {"id", "action", "actor", "reason", "full", "requestedAt"}


class RequestAction(StrEnum):
    """What a person may ask for."""

    ROLLBACK = "rollback"
    PROMOTE = "promote"
    PAUSE = "pause"
    RESUME = "resume"


@dataclass(frozen=True)
class ManualRequest:
    """A well-formed request; ``full`` only matters for promote (skip the remaining steps)."""

    id: str
    action: RequestAction
    actor: str
    reason: str
    full: bool = False
    requested_at: datetime | None = None


@dataclass(frozen=True)
class MalformedRequest:
    """An annotation that could not be read; ``id`` is its own id or a hash of the text."""

    id: str
    error: str


def _fallback_id(text: str) -> str:
    return "malformed-" + hashlib.sha256(text.encode()).hexdigest()[:12]


def parse_request(annotations: Mapping[str, str] | None) -> ManualRequest | MalformedRequest | None:
    """Read the request annotation, if any; never raises on bad input."""
    if not annotations or REQUEST_ANNOTATION not in annotations:
        return None
    text = annotations[REQUEST_ANNOTATION]
    try:
        raw: Any = json.loads(text)
    except ValueError:
        return MalformedRequest(_fallback_id(text), "the request is not valid JSON")
    if not isinstance(raw, dict):
        return MalformedRequest(_fallback_id(text), "the request must be a JSON object")
    given = raw.get("id")
    rid = given if isinstance(given, str) and _ID.match(given) else _fallback_id(text)
    if rid != given:
        return MalformedRequest(rid, "id: must match [A-Za-z0-9][A-Za-z0-9._-]{0,62}")
    unknown = sorted(set(raw) - _FIELDS)
    if unknown:
        return MalformedRequest(rid, f"{unknown[0]}: is not a known field")
    try:
        action = RequestAction(str(raw.get("action")))
    except ValueError:
        actions = ", ".join(a.value for a in RequestAction)
        return MalformedRequest(rid, f"action: must be one of {actions}")
    actor, reason, full = raw.get("actor"), raw.get("reason", ""), raw.get("full", False)
    if not isinstance(actor, str) or not actor:
        return MalformedRequest(rid, "actor: the caller's identity is required")
    if not isinstance(reason, str):
        return MalformedRequest(rid, "reason: must be a string")
    if not isinstance(full, bool):
        return MalformedRequest(rid, "full: must be true or false")
    if full and action is not RequestAction.PROMOTE:
        return MalformedRequest(rid, "full: only applies to promote")
    requested_at = None
    if "requestedAt" in raw:
        try:
            requested_at = spec.parse_k8s_time(str(raw["requestedAt"]))
        except ValueError:
            return MalformedRequest(rid, "requestedAt: must be an RFC 3339 time")
    return ManualRequest(rid, action, actor, reason, full, requested_at)


def format_request(request: ManualRequest) -> dict[str, str]:
    """The annotations to merge-patch onto the Experiment for ``request`` (used by the CLI)."""
    raw: dict[str, Any] = {
        "id": request.id,
        "action": request.action.value,
        "actor": request.actor,
        "reason": request.reason,
    }
    if request.full:
        raw["full"] = True
    if request.requested_at is not None:
        raw["requestedAt"] = spec.k8s_time(request.requested_at)
    return {REQUEST_ANNOTATION: json.dumps(raw, sort_keys=True)}


_PROMOTABLE_WITH_FULL = (spec.Phase.PROGRESSING.value, spec.Phase.PAUSED.value)
_ONLY_FROM = {
    RequestAction.PAUSE: spec.Phase.PROGRESSING.value,
    RequestAction.RESUME: spec.Phase.PAUSED.value,
}


def refusal(
    action: RequestAction, *, full: bool, phase: str, holds: Sequence[str] = ()
) -> str | None:
    """Why the controller refuses ``action`` in ``phase`` with these holds, or None.

    The one statement of the rules, used by reconcile (which rejects with this reason) and
    by the CLI (which refuses before writing a request the controller would reject):
    rollback is always allowed until the experiment has finished; promote in
    AwaitingPromotion, or with ``full`` from Progressing or Paused, and never while holding
    (database unreachable, challenger not ready, no analysis); pause from Progressing;
    resume from Paused.
    """
    if phase in spec.TERMINAL_PHASES:
        return f"the experiment has finished ({phase})"
    if action is RequestAction.ROLLBACK:
        return None
    if action is RequestAction.PROMOTE:
        if not (
            phase == spec.Phase.AWAITING_PROMOTION or (full and phase in _PROMOTABLE_WITH_FULL)
        ):
            if phase in _PROMOTABLE_WITH_FULL:
                return f"it is still stepping ({phase}); promote --full skips the remaining steps"
            return (
                "promote is allowed in AwaitingPromotion, or with --full in Progressing or "
                f"Paused (phase is {phase})"
            )
        if holds:
            return f"cannot promote while holding ({', '.join(holds)})"
        return None
    allowed = _ONLY_FROM[action]
    if phase != allowed:
        return f"{action.value} is not allowed in phase {phase} (only from {allowed})"
    return None
