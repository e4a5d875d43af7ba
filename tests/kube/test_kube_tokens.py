"""ServiceAccount tokens on the emulator: TokenRequest and TokenReview through the official client."""

from __future__ import annotations

import kubernetes.client
import pytest
from kubernetes.client import ApiException

from canaryctl_demo.kube import emulator


def _account(api: kubernetes.client.ApiClient, namespace: str, name: str) -> None:
    core = kubernetes.client.CoreV1Api(api)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": name}})


def _token(
    api: kubernetes.client.ApiClient, namespace: str, name: str, audiences: list[str] | None = None
) -> str:
    core = kubernetes.client.CoreV1Api(api)
    answer = core.create_namespaced_service_account_token(
        name, namespace, {"spec": {"audiences": audiences or [], "expirationSeconds": 600}}
    )
    return str(answer.status.token)


def _review(
    api: kubernetes.client.ApiClient, token: str, audiences: list[str] | None = None
) -> kubernetes.client.V1TokenReviewStatus:
    auth = kubernetes.client.AuthenticationV1Api(api)
    body = kubernetes.client.V1TokenReview(
        spec=kubernetes.client.V1TokenReviewSpec(token=token, audiences=audiences)
    )
    return auth.create_token_review(body).status


def test_a_service_account_token_authenticates_as_the_account(
    api: kubernetes.client.ApiClient,
) -> None:
    _account(api, "shop", "ranker")
    status = _review(api, _token(api, "shop", "ranker"))
    assert status.authenticated is True
    assert status.user.username == "system:serviceaccount:shop:ranker"
    assert "system:serviceaccounts:shop" in status.user.groups


def test_unknown_token_is_unauthenticated_not_an_http_error(
    api: kubernetes.client.ApiClient,
) -> None:
    status = _review(api, "not-a-token")
    assert not status.authenticated and "invalid bearer token" in status.error


def test_audiences_must_match(api: kubernetes.client.ApiClient) -> None:
    _account(api, "shop", "ranker")
    token = _token(api, "shop", "ranker", ["canaryctl-ingest"])
    assert _review(api, token, ["canaryctl-ingest"]).authenticated is True
    assert not _review(api, token, ["another"]).authenticated
    assert not _review(api, _token(api, "shop", "ranker"), ["canaryctl-ingest"]).authenticated


def test_deleting_the_account_revokes_its_tokens(
    served: emulator.Served, api: kubernetes.client.ApiClient
) -> None:
    _account(api, "shop", "ranker")
    token = _token(api, "shop", "ranker")
    kubernetes.client.CoreV1Api(api).delete_namespaced_service_account("ranker", "shop")
    assert not _review(api, token).authenticated
    _account(api, "shop", "ranker")  # same name, new uid: the old token stays revoked
    assert not _review(api, token).authenticated
    assert [r.status for r in served.emulator.log if "tokenreviews" in r.path] == [201, 201]


def test_a_token_for_a_missing_account_is_404(api: kubernetes.client.ApiClient) -> None:
    with pytest.raises(ApiException) as caught:
        _token(api, "shop", "nobody")
    assert caught.value.status == 404
