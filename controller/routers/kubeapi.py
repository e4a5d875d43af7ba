"""Raw JSON requests to the Kubernetes API through the official client's connection pool.

The generated client validates every argument with pydantic, sanitises every body and
deserialises every answer; on the operator's hot path (the informers' lists and watches,
the status patch) that machinery cost more CPU than the tick's own work. These helpers
send the same HTTP requests through the same ``ApiClient`` (its pool, TLS settings,
default headers and bearer-token auth, refreshed as the client refreshes it) with the
body as JSON and the answer read with ``json.loads``. Errors are the client's
``ApiException``. No decisions, no retries.
"""

from __future__ import annotations

import functools
import json
import socket
from typing import Any
from urllib.parse import quote, urlencode

import kubernetes.client
import kubernetes.client.rest
import urllib3
from kubernetes.client.exceptions import ApiException
from urllib3.connection import HTTPConnection

MERGE_PATCH = "application/merge-patch+json"

#: TCP keep-alive probes on the API server's connections, as Go's dialer sends them (client-go):
#: a peer gone silent is found in about 30 s even on a connection nothing is sent on (a watch).
_KEEPALIVE = [(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)] + [
    (socket.IPPROTO_TCP, getattr(socket, name), value)
    for name, value in (("TCP_KEEPIDLE", 15), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 3))
    if hasattr(socket, name)  # Linux; macOS has only TCP_KEEPINTVL and TCP_KEEPCNT
]

Timeout = float | tuple[float, float]  # total seconds, or (connect, read) seconds


class _TimedRESTClient(kubernetes.client.rest.RESTClientObject):
    """The client's REST layer with a timeout for every request that names none."""

    def __init__(self, configuration: Any, timeout: tuple[float, float]) -> None:
        super().__init__(configuration)
        self.default_timeout = timeout
        # the pools of ``open_request`` (which passes the pool's default) get it too
        self.pool_manager.connection_pool_kw["timeout"] = urllib3.Timeout(
            connect=timeout[0], read=timeout[1]
        )
        # no second try once a request may have been sent: urllib3 would otherwise send a
        # timed-out GET or PUT three times more, and a timeout would mean four of them
        self.pool_manager.connection_pool_kw["retries"] = urllib3.Retry(
            total=1, connect=1, read=0, status=0, redirect=False
        )
        options = self.pool_manager.connection_pool_kw.get("socket_options")
        self.pool_manager.connection_pool_kw["socket_options"] = [
            *(HTTPConnection.default_socket_options if options is None else options),
            *_KEEPALIVE,
        ]

    def request(
        self,
        method: str,
        url: str,
        headers: Any = None,
        body: Any = None,
        post_params: Any = None,
        _request_timeout: Timeout | None = None,
    ) -> Any:
        send: Any = super().request  # the generated client is untyped
        return send(
            method,
            url,
            headers=headers,
            body=body,
            post_params=post_params,
            _request_timeout=_request_timeout or self.default_timeout,
        )


def set_default_timeout(
    api: kubernetes.client.ApiClient, *, connect: float = 10.0, read: float = 30.0
) -> None:
    """Give every request ``api`` sends without a timeout of its own this one, its
    connections TCP keep-alive probes, and no second try of a request once it may have
    reached the server.

    The generated client waits for an answer for ever unless each call names a timeout,
    and Python's sockets send no keep-alive probe by default: after a network partition
    that silently drops packets (a lost NAT or conntrack entry), a request on a kept-alive
    connection would never return, and a long-running process would stall for good even
    once the network is back. (client-go's dialer sets keep-alive, and HTTP/2 pings end
    such connections.)
    """
    old = api.rest_client
    api.rest_client = _TimedRESTClient(api.configuration, (connect, read))
    old.close()


def path(
    group: str,
    version: str,
    plural: str,
    namespace: str | None = None,
    name: str | None = None,
    subresource: str | None = None,
) -> str:
    """The URL path of a collection (``name=None``) or an object, optionally a subresource."""
    out = f"/apis/{group}/{version}" if group else f"/api/{version}"
    if namespace:
        out += f"/namespaces/{quote(namespace, safe='')}"
    out += f"/{plural}"
    if name:
        out += f"/{quote(name, safe='')}"
        if subresource:
            out += f"/{subresource}"
    return out


def open_request(
    api: kubernetes.client.ApiClient,
    method: str,
    where: str,
    *,
    query: dict[str, str] | None = None,
    body: Any = None,
    content_type: str = MERGE_PATCH,
    timeout: Timeout | None = None,
) -> Any:
    """Send one request; the client's ``RESTResponse`` (its body not read yet).

    Straight to the client's connection pool for the API server's host (its keep-alive
    connections, TLS settings and retries), without the generated client's per-request
    argument handling; through a proxy, through the client's own ``request``."""
    headers = {**api.default_headers, "Accept": "application/json"}
    if body is not None:
        headers["Content-Type"] = content_type
    queries = list((query or {}).items())
    api.update_params_for_auth(headers, queries, ["BearerToken"], where, method, body)
    query_string = "?" + urlencode(queries) if queries else ""
    url = api.configuration.host + where + query_string
    manager = api.rest_client.pool_manager
    if isinstance(manager, urllib3.ProxyManager) or type(manager) is not urllib3.PoolManager:
        send: Any = api.rest_client.request
        return send(method, url, headers=headers, body=body, _request_timeout=timeout)
    if isinstance(timeout, tuple):
        limit: Any = urllib3.Timeout(connect=timeout[0], read=timeout[1])
    else:
        limit = urllib3.Timeout(total=timeout) if timeout else urllib3.util.Timeout.DEFAULT_TIMEOUT
    scheme, host, port, prefix = _server(api.configuration.host)
    pool = manager.connection_from_host(host, port, scheme)
    raw = pool.urlopen(
        method,
        prefix + where + query_string,
        body=None if body is None else json.dumps(body),
        headers=headers,
        timeout=limit,
        preload_content=False,
        redirect=False,
        assert_same_host=False,
    )
    return kubernetes.client.rest.RESTResponse(raw)


@functools.lru_cache(maxsize=64)
def _server(host: str) -> tuple[str, str | None, int | None, str]:
    """The API server's scheme, host, port and path prefix, from the configured URL."""
    url = urllib3.util.parse_url(host)
    return url.scheme or "http", url.host, url.port, (url.path or "").rstrip("/")


def request(
    api: kubernetes.client.ApiClient,
    method: str,
    where: str,
    *,
    query: dict[str, str] | None = None,
    body: Any = None,
    content_type: str = MERGE_PATCH,
    timeout: Timeout | None = None,
) -> Any:
    """Send one request and return its JSON answer; a status outside 2xx raises ``ApiException``."""
    response = open_request(
        api, method, where, query=query, body=body, content_type=content_type, timeout=timeout
    )
    data = response.read()
    if not 200 <= response.status <= 299:
        raise ApiException(http_resp=response)
    return json.loads(data) if data else None
