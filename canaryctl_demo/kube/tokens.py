"""ServiceAccount tokens as the API server issues and reviews them: TokenRequest and TokenReview.

The emulator (:mod:`canaryctl_demo.kube.emulator`) answers
``POST /api/v1/namespaces/<ns>/serviceaccounts/<name>/token`` (TokenRequest) and
``POST /apis/authentication.k8s.io/v1/tokenreviews`` (TokenReview) from here. Kept from the real
server: a token names its service account as ``system:serviceaccount:<ns>:<name>`` with the
groups ``system:serviceaccounts`` and ``system:serviceaccounts:<ns>``; it carries audiences
(default: the API server's) and a review asking for audiences it lacks is unauthenticated; a
token stops authenticating when its ServiceAccount is deleted or it expires; an unknown token is
``authenticated: false`` with an ``error``, never an HTTP error. Tokens are opaque random strings
here, not JWTs: nothing outside the server may read them.
"""

from __future__ import annotations

import dataclasses
import datetime
import secrets
import threading
from collections.abc import Callable
from typing import Any

API_AUDIENCE = "https://kubernetes.default.svc.cluster.local"
Body = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Issued:
    """One issued token: whose it is, for which audiences, until when."""

    namespace: str
    name: str
    uid: str
    audiences: tuple[str, ...]
    expires: datetime.datetime

    @property
    def username(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.name}"


class Tokens:
    """The tokens an emulated API server has issued (thread-safe)."""

    def __init__(self, now: Callable[[], datetime.datetime] | None = None) -> None:
        self._now = now or (lambda: datetime.datetime.now(datetime.UTC))
        self._issued: dict[str, Issued] = {}
        self._lock = threading.Lock()

    def issue(
        self,
        namespace: str,
        name: str,
        uid: str,
        audiences: tuple[str, ...] = (),
        seconds: int = 3600,
    ) -> tuple[str, Issued]:
        """A new token for the service account ``namespace/name``."""
        token = secrets.token_urlsafe(32)
        issued = Issued(
            namespace,
            name,
            uid,
            audiences or (API_AUDIENCE,),
            self._now() + datetime.timedelta(seconds=seconds),
        )
        with self._lock:
            self._issued[token] = issued
        return token, issued

    def token_request(self, namespace: str, name: str, uid: str, body: Body | None) -> Body:
        """The TokenRequest answer for a created token (``spec.audiences``, ``expirationSeconds``)."""
        spec = (body or {}).get("spec") or {}
        token, issued = self.issue(
            namespace,
            name,
            uid,
            tuple(spec.get("audiences") or ()),
            int(spec.get("expirationSeconds") or 3600),
        )
        return {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "audiences": list(issued.audiences),
                "expirationSeconds": spec.get("expirationSeconds", 3600),
            },
            "status": {
                "token": token,
                "expirationTimestamp": issued.expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
            },
        }

    def review(self, body: Body | None, account_exists: Callable[[Issued], bool]) -> Body:
        """The TokenReview answer: the request echoed with its ``status`` filled in."""
        spec = (body or {}).get("spec") or {}
        token = spec.get("token") or ""
        wanted = tuple(spec.get("audiences") or ())
        with self._lock:
            issued = self._issued.get(token)
        status: Body
        if issued is None or issued.expires <= self._now():
            status = {
                "authenticated": False,
                "error": "[invalid bearer token, token lookup failed]",
            }
        elif not account_exists(issued):
            status = {
                "authenticated": False,
                "error": f"service account {issued.namespace}/{issued.name} has been deleted",
            }
        elif wanted and not set(wanted) & set(issued.audiences):
            status = {
                "authenticated": False,
                "error": "[invalid bearer token, token audiences are invalid]",
            }
        else:
            status = {
                "authenticated": True,
                "user": {
                    "username": issued.username,
                    "uid": issued.uid,
                    "groups": [
                        "system:serviceaccounts",
                        f"system:serviceaccounts:{issued.namespace}",
                        "system:authenticated",
                    ],
                },
                "audiences": [a for a in issued.audiences if not wanted or a in wanted],
            }
        return {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "metadata": {"creationTimestamp": None},
            "spec": spec,
            "status": status,
        }
