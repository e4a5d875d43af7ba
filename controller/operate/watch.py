"""The watch on Experiments: it only wakes the loop.

The loop lists and ticks on its own schedule; the watch makes a created, edited,
annotated or deleted Experiment acted on at once instead of at the next resync. It sets
``wake`` on every event and never reads the objects it is told about, so a lost or
repeated event costs at most one early pass. Each stream resumes from the
resourceVersion it last saw, and starts over (after a second) when the API server is
away or the version has expired.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

import kubernetes.client
import kubernetes.watch

from controller.experiment import spec

logger = logging.getLogger(__name__)

_Stream = tuple[Callable[..., Any], tuple[str, ...]]


def _streams(
    custom: kubernetes.client.CustomObjectsApi, namespaces: Sequence[str]
) -> list[_Stream]:
    group, version, plural = spec.API_GROUP, spec.API_VERSION, spec.PLURAL
    if not namespaces:
        return [(custom.list_cluster_custom_object, (group, version, plural))]
    return [
        (custom.list_namespaced_custom_object, (group, version, ns, plural)) for ns in namespaces
    ]


def run(
    custom: kubernetes.client.CustomObjectsApi,
    namespaces: Sequence[str],
    stop: threading.Event,
    wake: threading.Event,
) -> None:
    """Set ``wake`` on every Experiment event until ``stop`` is set; reconnects on errors."""

    def relay() -> None:
        stop.wait()
        wake.set()

    threading.Thread(target=relay, name="canaryctl-watch-stop", daemon=True).start()
    streams = _streams(custom, namespaces)
    versions: dict[int, str | None] = {}
    while not stop.is_set():
        for i, (fn, args) in enumerate(streams):
            if stop.is_set():
                return
            watch = kubernetes.watch.Watch()  # type: ignore[no-untyped-call]
            try:
                kwargs: dict[str, Any] = {"timeout_seconds": 2}
                if versions.get(i):
                    kwargs["resource_version"] = versions[i]
                for _event in watch.stream(fn, *args, **kwargs):  # type: ignore[no-untyped-call]
                    wake.set()
                    if stop.is_set():
                        return
                versions[i] = watch.resource_version
            except Exception as exc:  # the API server away or the version too old: start over
                logger.debug("watch of experiments interrupted: %s", exc)
                versions[i] = None
                stop.wait(1.0)


def start(
    custom: kubernetes.client.CustomObjectsApi,
    namespaces: Sequence[str],
    stop: threading.Event,
    wake: threading.Event,
) -> threading.Thread:
    """``run`` in a daemon thread, started."""
    thread = threading.Thread(
        target=run, args=(custom, namespaces, stop, wake), name="canaryctl-watch", daemon=True
    )
    thread.start()
    return thread
