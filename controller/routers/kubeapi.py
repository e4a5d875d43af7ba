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
from typing import Any
from urllib.parse import quote, urlencode

import kubernetes.client
import kubernetes.client.rest
import urllib3
from kubernetes.client.exceptions import ApiException

MERGE_PATCH = "application/merge-patch+json"


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
    timeout: float | tuple[float, float] | None = None,
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
    timeout: float | tuple[float, float] | None = None,
) -> Any:
    """Send one request and return its JSON answer; a status outside 2xx raises ``ApiException``."""
    response = open_request(
        api, method, where, query=query, body=body, content_type=content_type, timeout=timeout
    )
    data = response.read()
    if not 200 <= response.status <= 299:
        raise ApiException(http_resp=response)
    return json.loads(data) if data else None
