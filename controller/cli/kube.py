"""The cluster side of the CLI: kubectl-like options, the API client, Experiments and identity.

Every command that talks to Kubernetes takes ``--kubeconfig``, ``--context`` and
``-n/--namespace`` (the aliases below) and calls :func:`connect`; the Experiment calls go
through :class:`Experiments`, which turns API failures into one-line :class:`KubeError`
messages. Identity for manual requests comes from ``SelfSubjectReview`` when the cluster
answers it, else from the kubeconfig user, else from the local OS user. No decisions here:
what a command may do is decided in ``control`` and ``experiments``. The Kubernetes client
and YAML are imported inside the functions, so declaring the options costs nothing.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer

from controller.cli.common import fail

if TYPE_CHECKING:
    import kubernetes.client

Body = dict[str, Any]
MERGE_PATCH = "application/merge-patch+json"
_TIMEOUT = 15  # seconds per API request
_SA_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class KubeError(Exception):
    """An API call failed; ``str`` is one line for the user, ``code`` the HTTP status (0: none)."""

    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message)
        self.code = code


def _kubeconfig_path(given: str | None) -> str:
    return given or os.environ.get("KUBECONFIG") or str(Path("~/.kube/config").expanduser())


def _complete_contexts(ctx: typer.Context, incomplete: str) -> list[str]:
    """Context names from the kubeconfig, for shell completion."""
    from kubernetes import config

    try:
        contexts, _ = config.list_kube_config_contexts(  # type: ignore[no-untyped-call]
            config_file=_kubeconfig_path(ctx.params.get("kubeconfig"))
        )
    except Exception:  # completion must never fail loudly
        return []
    return [c["name"] for c in contexts if c["name"].startswith(incomplete)]


def complete_names(ctx: typer.Context, incomplete: str) -> list[str]:
    """Experiment names in the selected namespace, for shell completion.

    One GET through the standard library (``completion.names``) when the kubeconfig allows
    it, else through the Kubernetes client, whose import alone takes most of the budget.
    """
    from controller.cli import completion

    kubeconfig, context, namespace = (
        ctx.params.get("kubeconfig"),
        ctx.params.get("context"),
        ctx.params.get("namespace"),
    )
    names = completion.names(_kubeconfig_path(kubeconfig), context, namespace)
    if names is None:
        try:
            items = Experiments(connect(kubeconfig, context, namespace)).list()
        except Exception:  # completion must never fail loudly
            return []
        names = [i["metadata"]["name"] for i in items]
    return [n for n in names if n.startswith(incomplete)]


Kubeconfig = Annotated[
    str | None,
    typer.Option(
        "--kubeconfig",
        metavar="PATH",
        help="Path to the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config).",
        show_default=False,
        rich_help_panel="Cluster",
    ),
]
Context = Annotated[
    str | None,
    typer.Option(
        "--context",
        metavar="NAME",
        help="The kubeconfig context to use (default: its current context).",
        autocompletion=_complete_contexts,
        show_default=False,
        rich_help_panel="Cluster",
    ),
]
Namespace = Annotated[
    str | None,
    typer.Option(
        "-n",
        "--namespace",
        metavar="NAMESPACE",
        help="Namespace (default: the context's namespace, else 'default').",
        show_default=False,
        rich_help_panel="Cluster",
    ),
]


@dataclass(frozen=True)
class Cluster:
    """A connected API client, the namespace to use and the kubeconfig user name (if any)."""

    api: kubernetes.client.ApiClient
    namespace: str
    namespace_given: bool
    kubeconfig_user: str | None


def _check_kubeconfig_file(path: str) -> None:
    """Refuse, in one line, a kubeconfig file that is empty, not YAML or not a mapping.

    The Kubernetes client would raise the YAML parser's multi-line error, or a
    ``TypeError`` deep inside, for these.
    """
    import yaml

    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return  # a missing file in a $KUBECONFIG list is skipped, as kubectl does
    except (OSError, UnicodeDecodeError) as exc:
        raise KubeError(f"kubeconfig {path}: cannot read it: {exc}") from exc
    if not text.strip():
        raise KubeError(f"kubeconfig {path}: the file is empty")
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "cannot be parsed"
        raise KubeError(f"kubeconfig {path}: not valid YAML{at}: {problem}") from exc
    if not isinstance(loaded, dict):
        raise KubeError(f"kubeconfig {path}: not a kubeconfig (expected a YAML mapping)")


def _files(kubeconfig: str | None) -> tuple[str, list[str]] | None:
    """The kubeconfig path (``os.pathsep``-joined) and its files, checked; None: no file at all."""
    path = _kubeconfig_path(kubeconfig)
    paths = [p for p in path.split(os.pathsep) if p]
    if kubeconfig is None and not any(Path(p).exists() for p in paths):
        return None
    if kubeconfig is not None and not all(Path(p).exists() for p in paths):
        raise KubeError(f"--kubeconfig: {kubeconfig}: no such file")
    for p in paths:
        _check_kubeconfig_file(p)
    return path, paths


def _chosen_context(path: str, context: str | None) -> dict[str, Any]:
    """The ``context`` entry (name, context: cluster, user, namespace) the command uses."""
    from kubernetes import config

    try:
        contexts, active = config.list_kube_config_contexts(config_file=path)  # type: ignore[no-untyped-call]
    except (config.ConfigException, OSError, ValueError, TypeError, KeyError) as exc:
        raise KubeError(f"kubeconfig {path}: {exc}") from exc
    chosen = active
    if context is not None:
        chosen = next((c for c in contexts if c["name"] == context), None)
        if chosen is None:
            known = ", ".join(sorted(c["name"] for c in contexts)) or "none"
            raise KubeError(f"--context: no context named {context!r} (known: {known})")
    return cast(dict[str, Any], (chosen or {}).get("context") or {})


def _in_cluster_namespace() -> str:
    return _SA_NAMESPACE.read_text().strip() if _SA_NAMESPACE.exists() else "default"


def namespace_of(kubeconfig: str | None, context: str | None, namespace: str | None) -> str:
    """The namespace a command means, as kubectl picks it, without talking to the cluster.

    ``-n``; else the kubeconfig context's namespace; else, inside a pod without a
    kubeconfig, the service account's; else ``default``. A kubeconfig that cannot be
    read raises :class:`KubeError` (as :func:`connect` would).
    """
    if namespace:
        return namespace
    files = _files(kubeconfig)
    if files is None:
        return _in_cluster_namespace() if os.environ.get("KUBERNETES_SERVICE_HOST") else "default"
    return str(_chosen_context(files[0], context).get("namespace") or "default")


def connect(kubeconfig: str | None, context: str | None, namespace: str | None) -> Cluster:
    """Build the client as kubectl would: kubeconfig and context, else in-cluster config."""
    from kubernetes import client, config

    files = _files(kubeconfig)
    if files is None:
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            try:
                config.load_incluster_config()  # type: ignore[no-untyped-call]
            except config.ConfigException as exc:
                raise KubeError(f"in-cluster config: {exc}") from exc
            ns = namespace or _in_cluster_namespace()
            return Cluster(client.ApiClient(), ns, namespace is not None, None)
        raise KubeError(f"no kubeconfig found at {_kubeconfig_path(kubeconfig)}; pass --kubeconfig")
    path = files[0]
    found = _chosen_context(path, context)
    try:
        api = config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=path, context=context, persist_config=False
        )
    except (config.ConfigException, OSError, ValueError, TypeError, KeyError) as exc:
        raise KubeError(f"kubeconfig {path}: {exc}") from exc
    ns = namespace or found.get("namespace") or "default"
    return Cluster(api, ns, namespace is not None, found.get("user"))


def connect_or_fail(kubeconfig: str | None, context: str | None, namespace: str | None) -> Cluster:
    """:func:`connect`, exiting with one line when the kubeconfig cannot be used."""
    try:
        return connect(kubeconfig, context, namespace)
    except KubeError as exc:
        fail(str(exc))


def api_message(exc: Exception, host: str = "") -> tuple[str, int]:
    """The API server's own message of a failed call and its HTTP status (0: no answer)."""
    from kubernetes.client.exceptions import ApiException

    if isinstance(exc, ApiException):
        message = exc.reason or "error"
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            message = json.loads(exc.body or "{}").get("message") or message
        return str(message), int(exc.status or 0)
    text = str(getattr(exc, "reason", None) or exc) or type(exc).__name__
    text = text.splitlines()[0].split("Failed to establish a new connection: ")[-1]
    text = re.sub(r"^\[Errno -?\d+\] ", "", text).rstrip("')\"")
    at = f" at {host}" if host else ""
    return f"cannot reach the Kubernetes API{at}: {text}", 0


@contextlib.contextmanager
def _api_errors(host: str = "") -> Iterator[None]:
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    from controller.experiment import spec

    try:
        yield
    except (ApiException, HTTPError, OSError) as exc:
        message, code = api_message(exc, host)
        if code == 404 and '" not found' not in message:  # not the object: its kind
            message = (
                f"{spec.PLURAL}.{spec.API_GROUP}/{spec.API_VERSION} is not served"
                f"{f' by {host}' if host else ''}; is the CRD installed? "
                "(kubectl apply -f manifests/crd.yaml)"
            )
        raise KubeError(message, code) from exc


class Experiments:
    """Experiment objects in one namespace (``experiments.canaryctl.dev/v1alpha1``)."""

    def __init__(self, cluster: Cluster) -> None:
        from kubernetes import client

        from controller.experiment import spec

        self.cluster = cluster
        self.namespace = cluster.namespace
        self._api = client.CustomObjectsApi(cluster.api)
        self._where = (spec.API_GROUP, spec.API_VERSION)
        self._plural = spec.PLURAL
        self._host = str(cluster.api.configuration.host)

    def get(self, name: str) -> Body:
        with _api_errors(self._host):
            body = self._api.get_namespaced_custom_object(
                *self._where, self.namespace, self._plural, name, _request_timeout=_TIMEOUT
            )
        return cast(Body, body)

    def list(self, all_namespaces: bool = False) -> list[Body]:
        with _api_errors(self._host):
            if all_namespaces:
                out = self._api.list_cluster_custom_object(
                    *self._where, self._plural, _request_timeout=_TIMEOUT
                )
            else:
                out = self._api.list_namespaced_custom_object(
                    *self._where, self.namespace, self._plural, _request_timeout=_TIMEOUT
                )
        return cast(list[Body], cast(Body, out).get("items", []))

    def create(self, body: Body) -> Body:
        with _api_errors(self._host):
            created = self._api.create_namespaced_custom_object(
                *self._where, self.namespace, self._plural, body, _request_timeout=_TIMEOUT
            )
        return cast(Body, created)

    def annotate(self, name: str, annotations: dict[str, str], resource_version: str) -> Body:
        """Merge-patch annotations, guarded by ``resource_version`` (409 when it moved on)."""
        patch = {"metadata": {"annotations": annotations, "resourceVersion": resource_version}}
        with _api_errors(self._host):
            body = self._api.patch_namespaced_custom_object(
                *self._where,
                self.namespace,
                self._plural,
                name,
                patch,
                _content_type=MERGE_PATCH,
                _request_timeout=_TIMEOUT,
            )
        return cast(Body, body)


@dataclass(frozen=True)
class Identity:
    """Who asked, and where that name came from (``kubernetes``, ``kubeconfig`` or ``local``)."""

    name: str
    source: str

    @property
    def actor(self) -> str:
        """The ``actor`` of a request: a verified name as is, others marked as unverified."""
        if self.source == "kubernetes":
            return self.name
        return f"{self.name} ({self.source} user)"


def whoami(cluster: Cluster) -> Identity:
    """SelfSubjectReview's username, else the kubeconfig user name, else the OS user."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    try:
        review = client.AuthenticationV1Api(cluster.api).create_self_subject_review(
            client.V1SelfSubjectReview(), _request_timeout=_TIMEOUT
        )
        info = review.status.user_info if review.status else None
        username = info.username if info else None
        if username:
            return Identity(username, "kubernetes")
    except (ApiException, HTTPError, OSError, ValueError, AttributeError):
        pass  # not served (old or emulated API server) or not allowed: fall back
    if cluster.kubeconfig_user:
        return Identity(cluster.kubeconfig_user, "kubeconfig")
    try:
        return Identity(getpass.getuser(), "local")
    except (OSError, KeyError):
        return Identity("unknown", "local")
