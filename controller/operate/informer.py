"""Watch-fed caches (informers) of the objects the operator reads every tick.

An :class:`Informer` keeps one kind in one namespace (or in all of them) in memory: it lists
once, then watches from the list's ``resourceVersion`` in a background thread; a watch that
ends (the server's ``timeoutSeconds``, a dropped connection) resumes from the last version
seen (bookmarks included), and one the server answers with 410 Gone (the version was
compacted away) lists again. A watch silent for ``idle_seconds`` is taken for dead (a
network that drops packets silently never ends it otherwise) and resumed the same way. Reads (``get``, ``items``) are served from memory; a write the
operator makes puts the object the API server answered into the cache (``put``), so the
next tick never acts on what it has just changed; after a 409 conflict ``refresh`` re-reads
that one object.

:class:`Informers` holds one informer per kind and watched namespace, started on first use,
and implements ``controller.routers.readwrite.ObjectCache`` for the routers. ``sync`` makes
the caches consistent with the API server as of now (its current ``resourceVersion`` from a
one-item list, then a wait until the watches have reached it, relisting if they do not in
time): the simulated-time demo calls it before each pass, since it writes and then ticks
at once. A running operator does not need it: an informer is moments behind the server and
guarded writes catch what it has not seen yet.

Cached objects are shared, never copied: callers must not mutate them. Resource versions
are compared as integers (etcd revisions) when both are; this module makes no decisions.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import kubernetes.client
import urllib3.exceptions
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

from controller.experiment import spec
from controller.routers import kubeapi, readwrite

logger = logging.getLogger(__name__)

Body = dict[str, Any]
Key = tuple[str, str]  # namespace ("" if cluster-scoped), name
Listener = Callable[[str, Body | None], None]

EXPERIMENTS = (spec.API_GROUP, spec.API_VERSION, spec.PLURAL)
WATCH_SECONDS = 300  # how long the server keeps one watch open; then it resumes
RETRY_SECONDS = 1.0
_NETWORK_ERRORS = (urllib3.exceptions.HTTPError, OSError, ValueError)


class Gone(Exception):
    """The watch's resourceVersion is too old (410): list again."""


#: The start of a watch event up to its object's resourceVersion (the first one: the
#: metadata's; one inside a string is escaped and does not match).
_EVENT_HEAD = re.compile(
    r'\{\s*"type"\s*:\s*"(MODIFIED|ADDED)"\s*,\s*"object"\s*:\s*\{.*?"resourceVersion"\s*:\s*"(\d+)"'
)
_WRITTEN_MAX = 4096


def newer(a: str, b: str) -> bool:
    """Whether resourceVersion ``a`` is strictly newer than ``b`` (unknown: no)."""
    return a.isdigit() and b.isdigit() and int(a) > int(b)


def _version(obj: Body) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion", ""))


def _key(obj: Body) -> Key:
    meta = obj["metadata"]
    return meta.get("namespace") or "", meta["name"]


def _gone(obj: Body) -> bool:
    """A write's answer for an object the server has deleted (its last finalizer removed)."""
    meta = obj.get("metadata") or {}
    return bool(meta.get("deletionTimestamp")) and not meta.get("finalizers")


class Informer:
    """One kind, in one namespace or all (``namespace=None``): list once, then watch."""

    def __init__(
        self,
        api: kubernetes.client.ApiClient,
        group: str,
        version: str,
        plural: str,
        namespace: str | None = None,
        *,
        watch_seconds: int = WATCH_SECONDS,
        idle_seconds: float | None = None,
    ) -> None:
        self.api = api
        self.group, self.version, self.plural, self.namespace = group, version, plural, namespace
        self.watch_seconds = watch_seconds
        # a watch that sends nothing for this long is taken for dead and opened again from
        # the last version (None: only past the server's own timeout)
        self.idle_seconds = idle_seconds
        self.listeners: list[Listener] = []
        self.lists = 0  # how many times it has listed (1 + the re-lists)
        self._objects: dict[Key, Body] = {}
        # resourceVersions of the objects our writes put in, until their watch event comes
        self._written: dict[str, Key] = {}
        self._rv = ""
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._response: Any = None

    def __repr__(self) -> str:
        where = self.namespace or "all namespaces"
        return f"Informer({self.group or 'core'}/{self.version} {self.plural} in {where})"

    @property
    def started(self) -> bool:
        return self._thread is not None

    @property
    def resource_version(self) -> str:
        """The version the cache has reached (of the last list, event or bookmark)."""
        return self._rv

    # ------------------------------------------------------------------ reads and writes

    def get(self, namespace: str | None, name: str) -> Body | None:
        """The cached object, or None when the server has none by that name."""
        self.start()
        return self._objects.get((namespace or "", name))

    def items(self) -> list[Body]:
        self.start()
        with self._cond:
            return list(self._objects.values())

    def put(self, obj: Body) -> None:
        """Cache the object a write returned, unless the cache already has a newer one."""
        key = _key(obj)
        with self._cond:
            current = self._objects.get(key)
            if current is not None and newer(_version(current), _version(obj)):
                return
            if _gone(obj):
                self._objects.pop(key, None)
            else:
                self._objects[key] = obj
                version = _version(obj)
                if version.isdigit():
                    if len(self._written) >= _WRITTEN_MAX:
                        self._written.clear()
                    self._written[version] = key
        self._notify("PUT", obj)

    def refresh(self, namespace: str | None, name: str) -> Body | None:
        """Read one object from the server (after a 409) into the cache; None if it is gone."""
        where = kubeapi.path(self.group, self.version, self.plural, namespace, name)
        try:
            obj: Body = kubeapi.request(self.api, "GET", where)
        except ApiException as exc:
            if exc.status != 404:
                raise
            with self._cond:
                self._objects.pop((namespace or "", name), None)
            return None
        self.put(obj)
        return obj

    # ------------------------------------------------------------------ consistency

    def current_version(self) -> str:
        """The API server's resourceVersion now (a consistent one-item list)."""
        listed = kubeapi.request(self.api, "GET", self._path(), query={"limit": "1"})
        return _version(listed)

    def wait_for(self, version: str, timeout: float) -> bool:
        """Wait until the cache has reached ``version``; whether it did in time."""
        with self._cond:
            return self._cond.wait_for(
                lambda: self._stop.is_set() or not newer(version, self._rv), timeout
            )

    def sync(self, timeout: float = 5.0) -> None:
        """Catch up with the server as of now; list again if the watch does not in time."""
        self.start()
        if not self.wait_for(self.current_version(), timeout):
            logger.warning("%s: the watch did not catch up in %.0f s; listing again", self, timeout)
            self._relist()

    # ------------------------------------------------------------------ the watch

    def start(self) -> Informer:
        """List and open the watch (in the caller's thread), then follow it in a thread."""
        if self._thread is not None:
            return self
        with self._start_lock:
            if self._thread is None:
                self._relist()
                try:
                    response = self._open_watch()
                except (ApiException, *_NETWORK_ERRORS) as exc:
                    logger.debug("%s: watch not opened yet: %s", self, exc)
                    response = None
                thread = threading.Thread(
                    target=self._run, args=(response,), name=f"canaryctl-{self.plural}", daemon=True
                )
                thread.start()
                self._thread = thread
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        response = self._response
        if response is not None:
            try:
                response.response.shutdown()
            except Exception:  # already closed
                logger.debug("%s: watch already closed", self)
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _path(self) -> str:
        return kubeapi.path(self.group, self.version, self.plural, self.namespace)

    def _relist(self) -> None:
        listed = kubeapi.request(self.api, "GET", self._path())
        version = _version(listed)
        fresh = {_key(obj): obj for obj in listed.get("items") or []}
        with self._cond:
            for key, obj in self._objects.items():  # written by us after the list was taken
                if newer(_version(obj), version) and (
                    key not in fresh or newer(_version(obj), _version(fresh[key]))
                ):
                    fresh[key] = obj
            self._objects = fresh
            if not newer(self._rv, version):
                self._rv = version
            self.lists += 1
            self._cond.notify_all()
        self._notify("LIST", None)

    def _open_watch(self) -> Any:
        query = {
            "watch": "true",
            "resourceVersion": self._rv,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(self.watch_seconds),
        }
        response = kubeapi.open_request(
            self.api, "GET", self._path(), query=query, timeout=(10.0, self._read_timeout())
        )
        if response.status == 410:
            response.read()
            raise Gone(self._rv)
        if not 200 <= response.status <= 299:
            response.read()
            raise ApiException(http_resp=response)
        self._response = response
        return response

    def _read_timeout(self) -> float:
        """Seconds of silence after which the watch's connection is given up."""
        if self.idle_seconds is None:
            return self.watch_seconds + 30.0
        return min(self.idle_seconds, self.watch_seconds + 30.0)

    def _run(self, response: Any) -> None:
        relist = False
        while not self._stop.is_set():
            try:
                if relist:
                    self._relist()
                    relist = False
                if response is None:
                    response = self._open_watch()
                self._follow(self._events(response))
            except Gone:
                logger.info("%s: resourceVersion %s expired; listing again", self, self._rv)
                relist = True
            except (ApiException, *_NETWORK_ERRORS) as exc:
                if self._stop.is_set():
                    break
                logger.debug("%s: watch interrupted: %s", self, exc)
                self._stop.wait(RETRY_SECONDS)
            finally:
                if response is not None:
                    try:
                        response.response.release_conn()
                    except Exception:  # a connection shut down by stop()
                        logger.debug("%s: watch connection not released", self)
                self._response = response = None

    def _events(self, response: Any) -> Iterator[Body]:
        for line in iter_resp_lines(response.response):  # type: ignore[no-untyped-call]
            if line:
                yield self._own_event(line) or json.loads(line)

    def _own_event(self, line: str) -> Body | None:
        """The event of an object this cache already holds at that very resourceVersion (the
        answer to one of our writes, put in): that object, without parsing the line again."""
        if not self._written:
            return None
        head = _EVENT_HEAD.match(line)
        if head is None:
            return None
        with self._cond:
            key = self._written.pop(head.group(2), None)
            obj = None if key is None else self._objects.get(key)
        if obj is None or _version(obj) != head.group(2):
            return None
        return {"type": head.group(1), "object": obj}

    def _follow(self, events: Iterator[Body]) -> None:
        for event in events:
            if self._stop.is_set():
                return
            kind, obj = event.get("type"), event.get("object") or {}
            if kind == "ERROR":
                if obj.get("code") == 410:
                    raise Gone(obj.get("message", ""))
                raise ApiException(status=obj.get("code"), reason=obj.get("message"))
            version = _version(obj)
            with self._cond:
                if kind in ("ADDED", "MODIFIED", "DELETED"):
                    key = _key(obj)
                    current = self._objects.get(key)
                    if current is None or not newer(_version(current), version):
                        if kind == "DELETED":
                            self._objects.pop(key, None)
                        else:
                            self._objects[key] = obj
                if newer(version, self._rv) or not self._rv:
                    self._rv = version
                self._cond.notify_all()
            if kind != "BOOKMARK":
                self._notify(str(kind), obj)

    def _notify(self, kind: str, obj: Body | None) -> None:
        for listener in list(self.listeners):
            listener(kind, obj)


class Informers:
    """The operator's informers: one per kind and watched namespace, started on first use.

    Serves the routers (``controller.routers.readwrite.ObjectCache``) and the loop.
    """

    def __init__(
        self,
        api: kubernetes.client.ApiClient,
        namespaces: Sequence[str] = (),
        *,
        watch_seconds: int = WATCH_SECONDS,
        idle_seconds: float | None = None,
    ) -> None:
        self.api = api
        self.namespaces = tuple(namespaces)
        self.watch_seconds = watch_seconds
        self.idle_seconds = idle_seconds
        self.listeners: list[Listener] = []  # given to every Experiment informer
        self._informers: dict[tuple[str, str, str, str | None], Informer] = {}
        self._lock = threading.Lock()

    def informer(self, group: str, version: str, plural: str, namespace: str | None) -> Informer:
        """The informer that holds ``namespace``'s objects of this kind (created, not started)."""
        where = namespace if self.namespaces else None
        key = (group, version, plural, where)
        with self._lock:
            found = self._informers.get(key)
            if found is None:
                found = Informer(
                    self.api,
                    group,
                    version,
                    plural,
                    where,
                    watch_seconds=self.watch_seconds,
                    idle_seconds=self.idle_seconds,
                )
                if (group, version, plural) == EXPERIMENTS:
                    found.listeners.append(self._relay)
                self._informers[key] = found
            return found

    def experiments(self) -> list[Informer]:
        """The Experiment informers: one per watched namespace, or one for all."""
        return [self.informer(*EXPERIMENTS, ns) for ns in self.namespaces or (None,)]

    def all(self) -> list[Informer]:
        with self._lock:
            return list(self._informers.values())

    def sync(self, timeout: float = 5.0) -> None:
        """``Informer.sync`` for each started informer and the Experiment ones."""
        for one in {*self.experiments(), *(i for i in self.all() if i.started)}:
            one.sync(timeout)

    def stop(self) -> None:
        for one in self.all():
            one.stop()

    def _relay(self, kind: str, obj: Body | None) -> None:
        for listener in list(self.listeners):
            listener(kind, obj)

    # ------------------------------------------------------------------ ObjectCache

    def _for(self, ref: readwrite.Ref) -> Informer:
        return self.informer(ref.group, ref.version, ref.plural, ref.namespace)

    def get(self, ref: readwrite.Ref) -> Body | None:
        return self._for(ref).get(ref.namespace, ref.name)

    def put(self, ref: readwrite.Ref, obj: Body) -> None:
        self._for(ref).put(obj)

    def refresh(self, ref: readwrite.Ref) -> Body | None:
        return self._for(ref).refresh(ref.namespace, ref.name)
