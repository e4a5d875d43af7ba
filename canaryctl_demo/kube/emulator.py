"""A Kubernetes API emulator over real HTTP: kmock's server and discovery with our object store.

kmock (by Kopf's author) serves HTTP, API discovery and ``Status`` errors; its own object tracking
lacks PUT, resourceVersion conflicts, the status subresource and list ``kind``, so this subclass
answers every request for a registered resource from :class:`canaryctl_demo.kube.store.Store` and
leaves the rest (discovery, unknown paths, kmock reactions) to kmock. It records a request log,
serves watches (``?watch=true``, replaying events after a ``resourceVersion``) and Namespace
objects (which kmock's URL parser cannot read). A watch that asks for bookmarks
(``allowWatchBookmarks``) gets one after each change it is not sent (another kind or
namespace), so its client knows how far it has got; one from a version the store's history
no longer holds gets a 410 ``ERROR`` event, as from the API server;
:meth:`Emulator.disconnect_watches` ends every open watch and ``refuse_watches`` answers
new ones 503 (an API server restarting). ``kubernetes.leaderelection`` runs on it, and one
test (``tests/kube/test_kube_kopf.py``) runs a Kopf operator on it; canaryctl's operator is not Kopf.

Used by the router and operator tests and by ``canaryctl demo``; :func:`serve` runs it on
127.0.0.1 in a background thread and :func:`api_client` builds the official client for it.
It must not grow admission logic or schema validation: that is the CRD's and the spec's job.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp.web
import attrs
import jsonpatch
import kmock
import kubernetes.client
from typing_extensions import override

from canaryctl_demo.kube import store as store_
from canaryctl_demo.kube import tokens as tokens_

Kind = store_.Kind

BUILTIN_KINDS = (
    Kind("", "v1", "namespaces", "Namespace", namespaced=False),
    Kind("", "v1", "services", "Service"),
    Kind("", "v1", "configmaps", "ConfigMap", status_subresource=False),
    Kind("", "v1", "serviceaccounts", "ServiceAccount", status_subresource=False),
    Kind("", "v1", "events", "Event", status_subresource=False),
    Kind("events.k8s.io", "v1", "events", "Event", status_subresource=False),
    Kind("apps", "v1", "deployments", "Deployment"),
    Kind("coordination.k8s.io", "v1", "leases", "Lease", status_subresource=False),
    Kind(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        namespaced=False,
    ),
    Kind("gateway.networking.k8s.io", "v1", "httproutes", "HTTPRoute", custom=True),
    Kind("networking.istio.io", "v1", "virtualservices", "VirtualService", custom=True),
    Kind("networking.istio.io", "v1beta1", "virtualservices", "VirtualService", custom=True),
    Kind("serving.kserve.io", "v1beta1", "inferenceservices", "InferenceService", custom=True),
)


_NAMESPACES = re.compile(r"/api/v1/namespaces(?:/([^/]+)(?:/(status|finalize))?)?/?")
_TOKEN_REQUEST = re.compile(r"/api/v1/namespaces/([^/]+)/serviceaccounts/([^/]+)/token")
_TOKEN_REVIEW = "/apis/authentication.k8s.io/v1/tokenreviews"


@dataclasses.dataclass(frozen=True)
class LoggedRequest:
    """One served request: method, path, query, parsed JSON body and the answered status code."""

    method: str
    path: str
    query: dict[str, str]
    body: Any
    status: int
    agent: str = ""  # the User-Agent header: which client sent it
    at: float = 0.0  # when it was received (time.monotonic of the emulator's process)

    @property
    def is_write(self) -> bool:
        return self.method in ("POST", "PUT", "PATCH", "DELETE")


Hook = Callable[[LoggedRequest], None]


@attrs.define(kw_only=True)
class Emulator(kmock.KubernetesScaffold):
    """kmock's Kubernetes scaffold whose registered resources are served from a :class:`Store`."""

    store: store_.Store = attrs.field(factory=store_.Store)
    log: list[LoggedRequest] = attrs.field(factory=list)
    # Called in the server's thread before a request is served (``status`` is 0 then), e.g. to
    # play a concurrent writer through ``store``.
    hooks: list[Hook] = attrs.field(factory=list)
    # ServiceAccount tokens issued by TokenRequest (or ``tokens.issue``) and checked by TokenReview.
    tokens: tokens_.Tokens = attrs.field(factory=tokens_.Tokens)
    _kinds: dict[tuple[str, str, str], Kind] = attrs.field(factory=dict, init=False)
    _watches: list[Callable[[], None]] = attrs.field(factory=list, init=False)
    # While set, watch requests are answered 503 (an API server on its way back up).
    refuse_watches: bool = False

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.fallback["get /apis/"] << self._serve_apis  # the official client asks with a slash
        self.fallback["get /api/"] << self._serve_api
        for kind in BUILTIN_KINDS:
            self.register(kind)

    def register(self, kind: Kind) -> Kind:
        """Serve a resource (and announce it in API discovery)."""
        self._kinds[kind.group, kind.version, kind.plural] = kind
        key = kmock.resource(group=kind.group, version=kind.version, plural=kind.plural)
        self.resources[key] = kmock.ResourceInfo(
            kind=kind.kind,
            namespaced=kind.namespaced,
            singular=kind.kind.lower(),
            subresources={"status"} if kind.status_subresource else set(),
            verbs={"get", "list", "watch", "create", "update", "patch", "delete"},
        )
        return kind

    def kind(self, group: str, version: str, plural: str) -> Kind:
        return self._kinds[group, version, plural]

    def load_crd(self, crd: dict[str, Any]) -> list[Kind]:
        """Store a CustomResourceDefinition and serve each of its versions."""
        crds = self.kind("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        with contextlib.suppress(store_.ApiError):  # already stored: only (re)register
            self.store.create(crds, None, crd)
        return self._register_crd(crd)

    def _register_crd(self, crd: dict[str, Any]) -> list[Kind]:
        spec = crd["spec"]
        return [
            self.register(
                Kind(
                    spec["group"],
                    version["name"],
                    spec["names"]["plural"],
                    spec["names"]["kind"],
                    namespaced=spec["scope"] == "Namespaced",
                    status_subresource="status" in version.get("subresources", {}),
                    custom=True,
                )
            )
            for version in spec["versions"]
        ]

    def disconnect_watches(self) -> None:
        """End every open watch, as an API server that restarts does (clients resume)."""
        for end in list(self._watches):
            end()

    def writes(self, path_part: str = "") -> list[LoggedRequest]:
        """Successful writes so far, optionally only those whose path contains ``path_part``."""
        return [r for r in self.log if r.is_write and r.status < 400 and path_part in r.path]

    @override
    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        if raw_request.method == "POST" and (
            raw_request.path == _TOKEN_REVIEW or _TOKEN_REQUEST.fullmatch(raw_request.path)
        ):
            return await self._serve_tokens(raw_request)
        # kmock's URL parser reads "/api/v1/namespaces[/name]" as a namespace and fails; route
        # Namespace objects to the store here, before it parses.
        match = _NAMESPACES.fullmatch(raw_request.path)
        if match is None:
            return await super().__call__(raw_request)
        body = await raw_request.read()
        request = kmock.Request(
            method=raw_request.method,
            url=raw_request.url,
            params=dict(raw_request.query),
            headers=dict(raw_request.headers),
            body=body,
            data=json.loads(body) if body else None,
            resource=kmock.resource(group="", version="v1", plural="namespaces"),
            name=match.group(1),
            subresource=match.group(2),
            raw_request=raw_request,
        )
        return await self._handle(request)

    async def _serve_tokens(self, raw: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        """TokenRequest (a ServiceAccount's ``token`` subresource) and TokenReview, as created."""
        body = await raw.read()
        data = json.loads(body) if body else None
        entry = LoggedRequest(
            raw.method, raw.path, dict(raw.query), data, 0, raw.headers.get("User-Agent", "")
        )
        for hook in list(self.hooks):
            hook(entry)
        accounts = self.kind("", "v1", "serviceaccounts")
        match = _TOKEN_REQUEST.fullmatch(raw.path)
        try:
            if match is not None:
                account = self.store.get(accounts, match.group(1), match.group(2))
                uid = account["metadata"]["uid"]
                code, answer = 201, self.tokens.token_request(*match.groups(), uid, data)
            else:
                code, answer = 201, self.tokens.review(data, self._account_exists)
        except store_.ApiError as exc:
            code, answer = exc.code, exc.status()
        self.log.append(dataclasses.replace(entry, status=code))
        return aiohttp.web.json_response(answer, status=code)

    def _account_exists(self, issued: tokens_.Issued) -> bool:
        accounts = self.kind("", "v1", "serviceaccounts")
        try:
            account = self.store.get(accounts, issued.namespace, issued.name)
        except store_.ApiError:
            return False
        return bool(account["metadata"].get("uid") == issued.uid)

    @override
    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        res = request.resource
        kind = (
            None
            if res is None
            else self._kinds.get((res.group or "", res.version or "", res.plural or ""))
        )
        entry = LoggedRequest(
            request.method.value,
            request.url.path,
            dict(request.params),
            request.data,
            0,
            request.headers.get("User-Agent", ""),
            time.monotonic(),
        )
        for hook in list(self.hooks):
            hook(entry)
        if kind is None:
            try:
                response = await super()._handle(request)
            except kmock.KubernetesError as exc:  # rendered as a Status by kmock
                self.log.append(dataclasses.replace(entry, status=exc.status))
                raise
        elif request.method == "GET" and request.params.get("watch") in ("true", "1"):
            if self.refuse_watches:
                refused = store_.ApiError(503, "ServiceUnavailable", "the server is starting", kind)
                self.log.append(dataclasses.replace(entry, status=503))
                return aiohttp.web.json_response(refused.status(), status=503)
            self.log.append(dataclasses.replace(entry, status=200))
            return await self._watch(request, kind)
        else:
            try:
                code, body = self._serve(request, kind)
            except store_.ApiError as exc:
                code, body = exc.code, exc.status()
            response = aiohttp.web.json_response(body, status=code)
        self.log.append(dataclasses.replace(entry, status=response.status))
        return response

    def _serve(self, request: kmock.Request, kind: Kind) -> tuple[int, dict[str, Any]]:
        ns, name, sub, data = request.namespace, request.name, request.subresource, request.data
        if sub == "scale" and kind.plural in _SCALABLE and name is not None:
            return self._scale(request, kind, ns, name)
        if sub not in (None, "status"):
            raise store_.ApiError(404, "NotFound", f"subresource {sub!r} is not served", kind)
        method = request.method.value
        if request.params.get("dryRun") and method != "GET":
            raise store_.ApiError(400, "BadRequest", "the emulator does not support dryRun", kind)
        if name is None:
            if method == "GET":
                return 200, self.store.list(kind, ns, request.params.get("labelSelector", ""))
            if method == "POST":
                created = self.store.create(kind, ns, data or {})
                if kind.plural == "customresourcedefinitions":
                    self._register_crd(created)
                return 201, created
        elif method == "GET":
            return 200, self.store.get(kind, ns, name)
        elif method == "PUT":
            return 200, self.store.replace(kind, ns, name, data or {}, sub)
        elif method == "PATCH":
            content_type = request.headers.get("Content-Type", store_.MERGE_PATCH)
            return 200, self.store.patch(kind, ns, name, data, content_type, sub)
        elif method == "DELETE":
            return 200, self.store.delete(kind, ns, name, data if isinstance(data, dict) else None)
        raise store_.ApiError(405, "MethodNotAllowed", f"{method} {request.url.path}", kind)

    def _scale(
        self, request: kmock.Request, kind: Kind, ns: str | None, name: str
    ) -> tuple[int, dict[str, Any]]:
        """The ``scale`` subresource (``autoscaling/v1`` ``Scale``): GET, PUT and PATCH.

        As on the API server, a write changes only ``spec.replicas`` of the object (labels,
        annotations and the pod template cannot be reached through it), and a
        ``metadata.resourceVersion`` in the body is a precondition (409 when stale).
        """
        method = request.method.value
        current = self.store.get(kind, ns, name)
        if method == "GET":
            return 200, _scale_of(current)
        if method == "PUT":
            wanted = request.data or {}
        elif method == "PATCH":
            content_type = request.headers.get("Content-Type", store_.MERGE_PATCH)
            if content_type.startswith(store_.JSON_PATCH):
                try:
                    wanted = jsonpatch.apply_patch(_scale_of(current), request.data or [])
                except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
                    raise store_.ApiError(422, "Invalid", f"json patch: {exc}", kind) from exc
            else:  # merge and strategic merge patches agree on a Scale's few scalar fields
                wanted = store_.merge_patch(_scale_of(current), request.data or {})
        else:
            raise store_.ApiError(405, "MethodNotAllowed", f"{method} {request.url.path}", kind)
        replicas = (wanted.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise store_.ApiError(422, "Invalid", "spec.replicas: must be an integer >= 0", kind)
        patch: dict[str, Any] = {"spec": {"replicas": replicas}}
        sent = (wanted.get("metadata") or {}).get("resourceVersion")
        if sent:
            patch["metadata"] = {"resourceVersion": sent}
        updated = self.store.patch(kind, ns, name, patch, store_.MERGE_PATCH, None)
        return 200, _scale_of(updated)

    async def _watch(self, request: kmock.Request, kind: Kind) -> aiohttp.web.StreamResponse:
        """Stream the backlog (see ``Store.subscribe``), then every change, until timeout/hangup."""
        raw = request._raw_request
        assert raw is not None
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, dict[str, Any]] | None] = asyncio.Queue()
        bookmarks = request.params.get("allowWatchBookmarks") in ("true", "1")

        def listen(event: str, changed: Kind, obj: dict[str, Any]) -> None:
            same = (changed.group, changed.plural) == (kind.group, kind.plural)
            if same and request.namespace in (None, obj["metadata"].get("namespace")):
                obj = {**obj, "apiVersion": kind.api_version}
                loop.call_soon_threadsafe(queue.put_nowait, (event, obj))
            elif bookmarks:
                mark = _bookmark(kind, obj["metadata"]["resourceVersion"])
                loop.call_soon_threadsafe(queue.put_nowait, ("BOOKMARK", mark))

        def end() -> None:
            loop.call_soon_threadsafe(queue.put_nowait, None)

        response = aiohttp.web.StreamResponse(status=200)
        response.content_type = "application/json"
        await response.prepare(raw)
        try:
            backlog = self.store.subscribe(
                listen, kind, request.namespace, request.params.get("resourceVersion")
            )
        except store_.ApiError as exc:  # 410: the version is older than the history
            line = json.dumps({"type": "ERROR", "object": exc.status()}) + "\n"
            with contextlib.suppress(ConnectionResetError):
                await response.write(line.encode())
                await response.write_eof()
            return response
        if bookmarks:
            backlog.append(("BOOKMARK", _bookmark(kind, self.store.resource_version)))
        for item in backlog:  # before any live event: those arrive via call_soon_threadsafe
            queue.put_nowait(item)
        self._watches.append(end)
        try:
            timeout = float(request.params.get("timeoutSeconds", 3600))
            async with asyncio.timeout(timeout):
                while True:
                    batch = [await queue.get()]
                    while not queue.empty():
                        batch.append(queue.get_nowait())
                    lines = _lines(batch)
                    if lines:
                        await response.write(lines.encode())
                    if None in batch:
                        break
        except (TimeoutError, ConnectionResetError):
            pass
        finally:
            self._watches.remove(end)
            self.store.unsubscribe(listen)
        with contextlib.suppress(ConnectionResetError):
            await response.write_eof()
        return response


def _bookmark(kind: Kind, version: str) -> dict[str, Any]:
    return {
        "apiVersion": kind.api_version,
        "kind": kind.kind,
        "metadata": {"resourceVersion": version},
    }


def _lines(batch: list[tuple[str, dict[str, Any]] | None]) -> str:
    """Watch events as JSON lines, up to an end (None); of consecutive bookmarks the last."""
    out = []
    for i, item in enumerate(batch):
        if item is None:
            break
        following = batch[i + 1] if i + 1 < len(batch) else None
        if item[0] == "BOOKMARK" and following is not None and following[0] == "BOOKMARK":
            continue
        out.append(json.dumps({"type": item[0], "object": item[1]}) + "\n")
    return "".join(out)


#: Resources whose ``scale`` subresource the emulator serves.
_SCALABLE = ("deployments",)


def _scale_of(obj: dict[str, Any]) -> dict[str, Any]:
    """An object's ``autoscaling/v1`` ``Scale``, as the API server derives it."""
    meta, spec, status = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
    labels = ((spec.get("selector") or {}).get("matchLabels")) or {}
    return {
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {
            k: meta[k]
            for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
            if k in meta
        },
        "spec": {"replicas": int(spec.get("replicas", 1))},
        "status": {
            "replicas": int(status.get("replicas") or 0),
            "selector": ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
        },
    }


class Served:
    """An emulator running on 127.0.0.1 in a background thread; see :func:`serve`."""

    def __init__(self, emulator: Emulator, port: int | None = None) -> None:
        self.emulator = emulator
        self.port = port
        self.url = ""
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="kube-emulator", daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to the starting thread
            self._failure = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with self.emulator, kmock.Server(self.emulator, port=self.port) as server:
            self.url = str(server.url).rstrip("/")
            self._ready.set()
            await self._stop.wait()

    def start(self) -> Served:
        self._thread.start()
        self._ready.wait(timeout=30)
        if self._failure is not None or not self.url:
            raise RuntimeError("the Kubernetes API emulator did not start") from self._failure
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=30)

    def api_client(self) -> kubernetes.client.ApiClient:
        return api_client(self.url)

    def kubeconfig(self, namespace: str = "default") -> dict[str, Any]:
        """A kubeconfig for this server, e.g. to point ``kubectl`` at the demo."""
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "emulator",
            "clusters": [{"name": "emulator", "cluster": {"server": self.url}}],
            "users": [{"name": "emulator", "user": {}}],
            "contexts": [
                {
                    "name": "emulator",
                    "context": {"cluster": "emulator", "user": "emulator", "namespace": namespace},
                }
            ],
        }


@contextlib.contextmanager
def serve(emulator: Emulator | None = None, port: int | None = None) -> Iterator[Served]:
    """Run an emulator (a new one by default) over HTTP on 127.0.0.1 (``port``: any free one)."""
    served = Served(emulator or Emulator(), port).start()
    try:
        yield served
    finally:
        served.stop()


def api_client(url: str) -> kubernetes.client.ApiClient:
    """The official client configured for an emulator URL (no auth, no TLS)."""
    configuration = kubernetes.client.Configuration(host=url)
    configuration.verify_ssl = False
    return kubernetes.client.ApiClient(configuration)
