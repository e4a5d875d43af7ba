"""In-memory object store with the Kubernetes API server's write semantics.

The HTTP layer (:mod:`canaryctl_demo.kube.emulator`) translates requests into calls here; tests may also
call the store directly to play another writer (e.g. KServe's controller or a competing client).
It knows nothing of HTTP and must not grow validation: it stores whatever JSON it is given.

Semantics kept from the real server: a global ``resourceVersion`` counter, 409 on a stale
``metadata.resourceVersion`` in a PUT or PATCH, ``metadata.generation`` bumped on changes outside
``metadata`` and ``status``, the ``status`` subresource (writes to it change only ``status``; writes
to the main resource ignore ``status``), finalizers with ``deletionTimestamp``, label selectors,
and a bounded event history (etcd's compaction): a watch from a version older than what it
still holds is refused with 410 Gone.
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import datetime
import itertools
import threading
import uuid
from collections.abc import Callable
from typing import Any

import jsonpatch

Body = dict[str, Any]

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"


@dataclasses.dataclass(frozen=True)
class Kind:
    """One served resource: its group, version, plural name, kind and scope."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    status_subresource: bool = True
    custom: bool = False  # defined by a CRD: no strategic merge patch, as on a real server

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


class ApiError(Exception):
    """A failure the server answers with a ``Status`` body."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        kind: Kind | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message
        self.kind, self.name = kind, name

    def status(self) -> Body:
        details: Body = {}
        if self.kind is not None:
            details = {"group": self.kind.group, "kind": self.kind.plural}
        if self.name:
            details["name"] = self.name
        return {
            "apiVersion": "v1",
            "kind": "Status",
            "metadata": {},
            "status": "Failure",
            "code": self.code,
            "reason": self.reason,
            "message": self.message,
            "details": details,
        }


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch; ``None`` values delete keys, lists are replaced whole."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """A merge patch whose lists of objects merge by ``name`` (or ``type``, for conditions).

    Covers what clients send to built-in kinds (containers, env, ports, conditions); other lists
    are replaced, and ``$patch`` directives are not interpreted.
    """
    if isinstance(patch, list) and isinstance(target, list):
        key = _merge_key(target + patch)
        if key is None:
            return copy.deepcopy(patch)
        merged = [copy.deepcopy(item) for item in target]
        for item in patch:
            index = next((i for i, old in enumerate(merged) if old[key] == item[key]), None)
            if index is None:
                merged.append(copy.deepcopy(item))
            else:
                merged[index] = strategic_merge_patch(merged[index], item)
        return merged
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = strategic_merge_patch(result.get(key), value)
    return result


def _merge_key(items: list[Any]) -> str | None:
    for key in ("name", "type"):
        if items and all(isinstance(item, dict) and key in item for item in items):
            return key
    return None


def matches_selector(labels: dict[str, str], selector: str) -> bool:
    """Equality-based label selectors: ``a=b``, ``a==b``, ``a!=b``, ``a``, ``!a``, comma-joined."""
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            key, value = (s.strip() for s in term.split("!=", 1))
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = (s.strip() for s in term.replace("==", "=").split("=", 1))
            if labels.get(key) != value:
                return False
        elif term.startswith("!"):
            if term[1:].strip() in labels:
                return False
        elif term not in labels:
            return False
    return True


def _wall_clock() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _content(obj: Body) -> Body:
    """What bumps ``metadata.generation``: everything but metadata and status."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


Key = tuple[str, str, str, str]  # group, plural, namespace ("" if cluster-scoped), name
Listener = Callable[[str, Kind, Body], None]


class Store:
    """Objects by (group, plural, namespace, name); thread-safe; every method returns copies."""

    def __init__(self, history: int = 10_000) -> None:
        self._lock = threading.RLock()
        self._objects: dict[Key, Body] = {}
        self._counter = itertools.count(1)
        self._rv = 0
        self.listeners: list[Listener] = []  # called with (event type, kind, object) on changes
        # What creationTimestamp and deletionTimestamp are taken from (a simulated world may
        # set its clock here, so that they agree with the times its operator writes).
        self.clock: Callable[[], datetime.datetime] = _wall_clock
        self._history: collections.deque[tuple[int, str, Kind, Body]] = collections.deque(
            maxlen=history
        )  # recent events, replayed to watches that start at a resourceVersion
        self._compacted = 0  # events up to this version are no longer in the history

    @property
    def resource_version(self) -> str:
        return str(self._rv)

    def _now(self) -> str:
        return self.clock().strftime("%Y-%m-%dT%H:%M:%SZ")

    def _bump(self) -> str:
        self._rv = next(self._counter)
        return str(self._rv)

    def _key(self, kind: Kind, namespace: str | None, name: str) -> Key:
        return (kind.group, kind.plural, (namespace or "") if kind.namespaced else "", name)

    def compact(self) -> None:
        """Forget the event history (as etcd's compaction does): older watches get 410."""
        with self._lock:
            self._history.clear()
            self._compacted = self._rv

    def _emit(self, event: str, kind: Kind, obj: Body) -> None:
        if len(self._history) == self._history.maxlen:
            self._compacted = self._history[0][0]
        self._history.append((self._rv, event, kind, copy.deepcopy(obj)))
        for listener in list(self.listeners):
            listener(event, kind, copy.deepcopy(obj))

    def subscribe(
        self, listener: Listener, kind: Kind, namespace: str | None, since: str | None
    ) -> list[tuple[str, Body]]:
        """Add a listener and return, atomically, what a watch must send first.

        Without ``since`` that is an ``ADDED`` per current object; with a resourceVersion it is
        the recorded events after it; one older than the history holds raises 410 Gone
        (and adds no listener).
        """
        with self._lock:
            if since and since != "0" and (not since.isdigit() or int(since) < self._compacted):
                raise ApiError(
                    410, "Expired", f"too old resource version: {since} ({self._compacted})", kind
                )
            self.listeners.append(listener)
            if not since or since == "0":
                return [("ADDED", obj) for obj in self.list(kind, namespace)["items"]]
            return [
                (event, {**copy.deepcopy(obj), "apiVersion": kind.api_version})
                for rv, event, changed, obj in self._history
                if rv > int(since)
                and (changed.group, changed.plural) == (kind.group, kind.plural)
                and namespace in (None, obj["metadata"].get("namespace"))
            ]

    def unsubscribe(self, listener: Listener) -> None:
        with self._lock:
            self.listeners.remove(listener)

    def _render(self, kind: Kind, obj: Body) -> Body:
        return {"apiVersion": kind.api_version, "kind": kind.kind, **copy.deepcopy(obj)}

    def _existing(self, kind: Kind, namespace: str | None, name: str) -> Body:
        obj = self._objects.get(self._key(kind, namespace, name))
        if obj is None:
            raise ApiError(
                404, "NotFound", f'{kind.plural}.{kind.group} "{name}" not found', kind, name
            )
        return obj

    def get(self, kind: Kind, namespace: str | None, name: str) -> Body:
        with self._lock:
            return self._render(kind, self._existing(kind, namespace, name))

    def list(self, kind: Kind, namespace: str | None = None, label_selector: str = "") -> Body:
        """A ``<Kind>List`` with ``metadata.resourceVersion``; ``namespace=None`` lists all."""
        with self._lock:
            items = [
                self._render(kind, obj)
                for (group, plural, ns, _), obj in sorted(self._objects.items())
                if (group, plural) == (kind.group, kind.plural)
                and (namespace is None or not kind.namespaced or ns == namespace)
                and matches_selector(obj["metadata"].get("labels") or {}, label_selector)
            ]
            return {
                "apiVersion": kind.api_version,
                "kind": f"{kind.kind}List",
                "metadata": {"resourceVersion": self.resource_version},
                "items": items,
            }

    def create(self, kind: Kind, namespace: str | None, body: Body) -> Body:
        with self._lock:
            obj = copy.deepcopy(body)
            obj.pop("apiVersion", None)
            obj.pop("kind", None)
            meta = obj.setdefault("metadata", {})
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = f"{meta['generateName']}{uuid.uuid4().hex[:5]}"
            name = meta.get("name")
            if not name:
                raise ApiError(422, "Invalid", "metadata.name: Required value", kind)
            key = self._key(kind, namespace or meta.get("namespace"), name)
            if key in self._objects:
                raise ApiError(
                    409,
                    "AlreadyExists",
                    f'{kind.plural}.{kind.group} "{name}" already exists',
                    kind,
                    name,
                )
            if kind.namespaced:
                meta["namespace"] = key[2]
            else:
                meta.pop("namespace", None)
            if kind.status_subresource:
                obj.pop("status", None)
            for field in ("deletionTimestamp", "deletionGracePeriodSeconds"):
                meta.pop(field, None)
            meta.update(
                uid=str(uuid.uuid4()),
                creationTimestamp=self._now(),
                generation=1,
                resourceVersion=self._bump(),
            )
            self._objects[key] = obj
            self._emit("ADDED", kind, self._render(kind, obj))
            return self._render(kind, obj)

    def replace(
        self,
        kind: Kind,
        namespace: str | None,
        name: str,
        body: Body,
        subresource: str | None = None,
    ) -> Body:
        """PUT: the body replaces the object (or only its status on the ``status`` subresource)."""
        with self._lock:
            current = self._existing(kind, namespace, name)
            self._check_version(kind, name, current, body)
            return self._commit(kind, current, copy.deepcopy(body), subresource)

    def patch(
        self,
        kind: Kind,
        namespace: str | None,
        name: str,
        patch: Any,
        content_type: str = MERGE_PATCH,
        subresource: str | None = None,
    ) -> Body:
        """PATCH: JSON merge patch, strategic merge patch (applied as a merge patch), JSON patch."""
        with self._lock:
            current = self._existing(kind, namespace, name)
            if content_type.startswith(JSON_PATCH):
                try:
                    updated = jsonpatch.apply_patch(current, patch)
                except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
                    raise ApiError(422, "Invalid", f"json patch: {exc}", kind, name) from exc
            elif content_type.startswith((MERGE_PATCH, STRATEGIC_MERGE_PATCH)):
                strategic = content_type.startswith(STRATEGIC_MERGE_PATCH)
                if strategic and kind.custom:
                    raise ApiError(
                        415,
                        "UnsupportedMediaType",
                        "strategic merge patch is not "
                        "supported for custom resources; use a merge patch",
                        kind,
                        name,
                    )
                if not isinstance(patch, dict):
                    raise ApiError(400, "BadRequest", "a merge patch must be an object", kind, name)
                self._check_version(kind, name, current, patch)
                updated = (strategic_merge_patch if strategic else merge_patch)(current, patch)
            else:
                raise ApiError(
                    415,
                    "UnsupportedMediaType",
                    f"unsupported patch type {content_type!r}",
                    kind,
                    name,
                )
            if updated.get("metadata", {}).get("resourceVersion") != current["metadata"].get(
                "resourceVersion"
            ):
                self._check_version(kind, name, current, updated)  # a JSON patch "replace" of it
            return self._commit(kind, current, updated, subresource)

    def delete(
        self, kind: Kind, namespace: str | None, name: str, options: Body | None = None
    ) -> Body:
        """Delete now, or only set ``deletionTimestamp`` while finalizers remain.

        ``options`` is the request's DeleteOptions: its ``preconditions`` (``uid``,
        ``resourceVersion``) must match the stored object, or the answer is 409 Conflict.
        """
        with self._lock:
            current = self._existing(kind, namespace, name)
            meta = current["metadata"]
            pre = (options or {}).get("preconditions") or {}
            for field in ("uid", "resourceVersion"):
                if pre.get(field) is not None and pre[field] != meta.get(field):
                    raise ApiError(
                        409,
                        "Conflict",
                        f"Precondition failed: {field} in precondition: {pre[field]}, "
                        f"{field} in object meta: {meta.get(field)}",
                        kind,
                        name,
                    )
            if meta.get("finalizers"):
                if not meta.get("deletionTimestamp"):
                    meta.update(
                        deletionTimestamp=self._now(),
                        deletionGracePeriodSeconds=0,
                        resourceVersion=self._bump(),
                    )
                    self._emit("MODIFIED", kind, self._render(kind, current))
                return self._render(kind, current)
            del self._objects[self._key(kind, meta.get("namespace"), name)]
            meta["resourceVersion"] = self._bump()
            self._emit("DELETED", kind, self._render(kind, current))
            return self._render(kind, current)

    def _check_version(self, kind: Kind, name: str, current: Body, body: Body) -> None:
        sent = (body.get("metadata") or {}).get("resourceVersion")
        if sent and sent != current["metadata"]["resourceVersion"]:
            raise ApiError(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {kind.plural}.{kind.group} "{name}": '
                "the object has been modified; please apply your changes to the latest "
                "version and try again",
                kind,
                name,
            )

    def _commit(self, kind: Kind, current: Body, updated: Body, subresource: str | None) -> Body:
        if subresource not in (None, "status"):
            raise ApiError(404, "NotFound", f"subresource {subresource!r} is not served", kind)
        old_meta = current["metadata"]
        updated.pop("apiVersion", None)
        updated.pop("kind", None)
        if subresource == "status":
            new = {**copy.deepcopy(current), "status": updated.get("status")}
            if new["status"] is None:
                del new["status"]
        else:
            new = updated
            if kind.status_subresource:
                new.pop("status", None)
                if "status" in current:
                    new["status"] = copy.deepcopy(current["status"])
            meta = new.setdefault("metadata", {})
            for field in (
                "name",
                "namespace",
                "uid",
                "creationTimestamp",
                "generation",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
            ):
                if field in old_meta:
                    meta[field] = old_meta[field]
                else:
                    meta.pop(field, None)
            for field in ("labels", "annotations", "finalizers"):  # omitempty, as served
                if field in meta and not meta[field]:
                    del meta[field]
            if _content(new) != _content(current):
                meta["generation"] = old_meta.get("generation", 1) + 1
        new["metadata"]["resourceVersion"] = old_meta["resourceVersion"]
        if new == current:
            return self._render(kind, current)  # a no-op write keeps the resourceVersion
        new["metadata"]["resourceVersion"] = self._bump()
        key = self._key(kind, old_meta.get("namespace"), old_meta["name"])
        if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers"):
            del self._objects[key]
            self._emit("DELETED", kind, self._render(kind, new))
        else:
            self._objects[key] = new
            self._emit("MODIFIED", kind, self._render(kind, new))
        return self._render(kind, new)
