"""Experiment names for shell completion with one HTTP GET, without the Kubernetes client.

Each TAB starts a new process; importing the Kubernetes client alone takes about as long as
the whole completion may (bench/cli_startup.py). For the kubeconfigs most people have (one
file; a server with its CA or ``insecure-skip-tls-verify``; a bearer token, a client
certificate or no credentials) :func:`names` lists the Experiments with the standard library
and returns them. For anything else (several kubeconfig files, ``exec`` or ``auth-provider``
users, proxies, in-cluster config) and on any failure to reach the server it returns None,
and ``kube.complete_names`` asks the Kubernetes client instead. Reads only; no decisions.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import ssl
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_TIMEOUT = 5  # seconds: a completion that waits longer is worse than none
_USER_KEYS = {
    "token",
    "tokenFile",
    "client-certificate",
    "client-certificate-data",
    "client-key",
    "client-key-data",
}
_CLUSTER_KEYS = {
    "server",
    "certificate-authority",
    "certificate-authority-data",
    "insecure-skip-tls-verify",
}


def names(path: str, context: str | None, namespace: str | None) -> list[str] | None:
    """Experiment names in the namespace, or None when the Kubernetes client must answer.

    ``path`` is the kubeconfig (as ``kube.connect`` resolves it), ``context`` and
    ``namespace`` the options given (None: the kubeconfig's).
    """
    try:
        request = _request(path, context, namespace)
        if request is None:
            return None
        url, headers, tls = request
        with _opened(url, headers, tls) as body:
            items = json.loads(body).get("items") or []
    except urllib.error.HTTPError:
        return []  # the server answered (forbidden, no CRD, ...): the client would get the same
    except Exception:  # unreachable, a TLS setting this path does not know: let the client try
        return None
    return [str(i["metadata"]["name"]) for i in items]


_Tls = dict[str, Any]


def _request(
    path: str, context: str | None, namespace: str | None
) -> tuple[str, dict[str, str], _Tls] | None:
    """The URL, headers and TLS settings of the list request (None: not a simple kubeconfig)."""
    import yaml

    from controller.experiment import spec

    if os.pathsep in path or not Path(path).is_file():
        return None
    config = yaml.safe_load(Path(path).read_text())
    if not isinstance(config, dict):
        return None
    base = Path(path).resolve().parent
    chosen = _named(config, "contexts", context or config.get("current-context"))
    if chosen is None:
        return None
    cluster = _named(config, "clusters", chosen.get("cluster")) or {}
    user = _named(config, "users", chosen.get("user")) or {}
    if not cluster.get("server") or set(cluster) - _CLUSTER_KEYS or set(user) - _USER_KEYS:
        return None
    ns = namespace or chosen.get("namespace") or "default"
    url = (
        f"{str(cluster['server']).rstrip('/')}/apis/{spec.API_GROUP}/{spec.API_VERSION}"
        f"/namespaces/{ns}/{spec.PLURAL}"
    )
    headers = {"Accept": "application/json"}
    token = user.get("token")
    if token is None and user.get("tokenFile"):
        token = _file(base, user["tokenFile"]).read_text().strip()
    if token:
        headers["Authorization"] = f"Bearer {token}"
    tls: _Tls = {
        "insecure": bool(cluster.get("insecure-skip-tls-verify")),
        "ca_file": _optional_file(base, cluster.get("certificate-authority")),
        "ca_data": _decoded(cluster.get("certificate-authority-data")),
        "cert_file": _optional_file(base, user.get("client-certificate")),
        "cert_data": _decoded(user.get("client-certificate-data")),
        "key_file": _optional_file(base, user.get("client-key")),
        "key_data": _decoded(user.get("client-key-data")),
    }
    return url, headers, tls


def _named(config: dict[str, Any], section: str, name: Any) -> dict[str, Any] | None:
    """The body of the entry ``name`` in a kubeconfig list (``contexts``, ``clusters``, ...)."""
    kind = section.removesuffix("s")
    for entry in config.get(section) or []:
        if isinstance(entry, dict) and entry.get("name") == name:
            body = entry.get(kind)
            return body if isinstance(body, dict) else {}
    return None


def _file(base: Path, name: str) -> Path:
    """A path from the kubeconfig: relative ones are relative to the kubeconfig's folder."""
    return base / Path(name).expanduser()


def _optional_file(base: Path, name: Any) -> str | None:
    return str(_file(base, str(name))) if name else None


def _decoded(data: Any) -> str | None:
    return base64.b64decode(str(data)).decode() if data else None


@contextlib.contextmanager
def _opened(url: str, headers: dict[str, str], tls: _Tls) -> Iterator[bytes]:
    """GET ``url`` (no proxies, as the Kubernetes client) and yield the body."""
    handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
    with tempfile.TemporaryDirectory(prefix="canaryctl-") as tmp:
        if url.startswith("https:"):
            handlers.append(urllib.request.HTTPSHandler(context=_context(tls, Path(tmp))))
        opener = urllib.request.build_opener(*handlers)
        request = urllib.request.Request(url, headers=headers)
        with opener.open(request, timeout=_TIMEOUT) as response:
            yield response.read()


def _context(tls: _Tls, tmp: Path) -> ssl.SSLContext:
    """The TLS context of the kubeconfig; inline client keys go to files in ``tmp`` (0600)."""
    context = ssl.create_default_context(cafile=tls["ca_file"], cadata=tls["ca_data"])
    if tls["insecure"]:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    cert, key = tls["cert_file"], tls["key_file"]
    for name, data in (("cert", tls["cert_data"]), ("key", tls["key_data"])):
        if data is not None:
            target = tmp / f"{name}.pem"
            target.touch(mode=0o600)
            target.write_text(data)
            cert, key = (str(target), key) if name == "cert" else (cert, str(target))
    if cert:
        context.load_cert_chain(cert, key)
    return context
