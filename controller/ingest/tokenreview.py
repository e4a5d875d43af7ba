"""Kubernetes ServiceAccount tokens, checked by a TokenReview, as ingest credentials.

A client pod sends its (ideally projected, audience-bound) ServiceAccount token as the bearer
token; ``TokenReviewer`` creates an ``authentication.k8s.io/v1`` TokenReview and, when the API
server says ``status.authenticated``, looks ``status.user.username``
(``system:serviceaccount:<ns>:<name>``) up in the credentials file's ``serviceAccounts``: an
account that is not listed there is authenticated but may write nothing (403).

Why httpx and not the ``kubernetes`` client: a TokenReview is one POST of a small JSON body, the
in-cluster credentials are three files (token, CA, host and port in the environment), httpx is
already a runtime dependency (the ingest client's sender), and an import-linter contract keeps
the ``kubernetes`` package to the operator, the routers and the CLI's cluster module; importing
it here would need an exception to that contract and add its import time to the server. The
same requests are tested against the API emulator over HTTP.

Answers are cached per token (by digest) for ``ttl`` seconds, positive or negative, so a client
sending many batches costs one review a minute; an API server that cannot be reached is an
error (the server answers 503: retry), never an authentication.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from controller.ingest import auth

IN_CLUSTER_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
REVIEW_PATH = "/apis/authentication.k8s.io/v1/tokenreviews"


class ReviewUnavailable(RuntimeError):
    """The API server did not answer the TokenReview (network error or an HTTP error)."""


@dataclass(frozen=True)
class KubeApi:
    """Where and how to reach the API server: its URL, our own bearer token file, its CA."""

    url: str
    token_file: Path | None = None
    ca_file: Path | None = None

    @classmethod
    def in_cluster(cls, directory: Path = IN_CLUSTER_DIR) -> KubeApi:
        """The pod's own credentials (the ServiceAccount volume and ``KUBERNETES_SERVICE_*``)."""
        host = os.environ.get("KUBERNETES_SERVICE_HOST")
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        if not host:
            raise auth.CredentialsError(
                "--token-review: not in a cluster (KUBERNETES_SERVICE_HOST is unset); "
                "pass --kube-api URL"
            )
        host = f"[{host}]" if ":" in host else host
        return cls(f"https://{host}:{port}", directory / "token", directory / "ca.crt")


class TokenReviewer:
    """An ``Authenticator`` for ServiceAccount tokens (TokenReview), scoped by ``accounts``."""

    def __init__(
        self,
        api: KubeApi,
        accounts: auth.TokenFile | None,
        *,
        audiences: tuple[str, ...] = (),
        ttl: float = 60.0,
        timeout: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api, self.accounts, self.audiences, self.ttl = api, accounts, audiences, ttl
        self._monotonic = monotonic
        self._cache: dict[str, tuple[float, str | None]] = {}
        self._lock = threading.Lock()
        verify: Any = str(api.ca_file) if api.ca_file is not None else True
        self._http = httpx.Client(base_url=api.url, timeout=timeout, verify=verify)

    def close(self) -> None:
        self._http.close()

    def username(self, token: str) -> str | None:
        """The authenticated user name of ``token``, or None (cached for ``ttl`` seconds)."""
        key = auth.digest(token)
        now = self._monotonic()
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        name = self._review(token)
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
            self._cache[key] = (now + self.ttl, name)
        return name

    def _review(self, token: str) -> str | None:
        spec: dict[str, Any] = {"token": token}
        if self.audiences:
            spec["audiences"] = list(self.audiences)
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": spec}
        headers = {}
        if self.api.token_file is not None:
            own = self.api.token_file.read_text().strip()  # re-read: kubelet rotates it
            headers["Authorization"] = f"Bearer {own}"
        try:
            answer = self._http.post(REVIEW_PATH, json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise ReviewUnavailable(f"TokenReview failed: {exc}") from exc
        if answer.status_code not in (200, 201):
            raise ReviewUnavailable(
                f"TokenReview answered {answer.status_code}: {answer.text[:200]}"
            )
        status = answer.json().get("status") or {}
        if not status.get("authenticated"):
            return None
        name = (status.get("user") or {}).get("username")
        return name if isinstance(name, str) and name else None

    def authenticate(self, token: str) -> auth.Identity | None:
        name = self.username(token)
        if name is None:
            return None
        scoped = self.accounts.service_account(name) if self.accounts is not None else None
        return scoped or auth.Identity(name, experiments=())
