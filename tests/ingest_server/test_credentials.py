"""Scoped credentials: the token file (parsed, re-read, enforced) and ServiceAccount tokens checked
by TokenReview against the Kubernetes API emulator over HTTP. A write outside the scope is a 403
naming the experiment, and the whole batch is refused; the batch records who sent it."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import kubernetes.client
import pytest
import sqlalchemy as sa

from canaryctl_demo.kube import emulator
from controller.ingest import auth, server, tokenreview
from tests.ingest_server.conftest import CLOCK, count, headers, jsonl, rows, running

FILE = """
tokens:
  - token: shop-token
    identity: shop-ranker-service
    experiments: ["shop/*"]
  - sha256: {digest}
    identity: ads-challenger-only
    experiments: [ads/ranker]
    arms: [challenger]
serviceAccounts:
  - name: shop/ranker
    experiments: [shop/ranker]
"""


def _write(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)  # as a Secret volume or an editor's save: a new inode


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "credentials.yaml"
    _write(path, FILE.format(digest=auth.digest("ads-token")))
    return path


@pytest.fixture
def url(
    truncating_engine: sa.Engine, registered: dict[str, int], token_file: Path
) -> Iterator[str]:
    app = server.create_app(
        truncating_engine, authenticator=auth.TokenFile(token_file), clock=CLOCK
    )
    with running(app) as base:
        yield base


def _sources(engine: sa.Engine) -> list[str]:
    with engine.connect() as conn:
        return list(
            conn.execute(sa.text("SELECT source FROM ingest_batches ORDER BY id")).scalars()
        )


def test_in_scope_batches_load_and_record_their_sender(
    truncating_engine: sa.Engine, url: str
) -> None:
    shop = rows(3, experiment="shop/ranker") + rows(2, experiment="shop/search")
    ads = rows(2, experiment="ads/ranker", arm="challenger")
    with httpx.Client(base_url=url) as client:
        first = client.post("/v1/batches", content=jsonl(*shop), headers=headers("shop-token"))
        second = client.post(
            "/v1/batches", content=jsonl(*ads), headers=headers("ads-token", key="b-2")
        )
    assert (first.status_code, second.status_code) == (200, 200)
    assert count(truncating_engine) == 7
    assert _sources(truncating_engine) == ["http:shop-ranker-service", "http:ads-challenger-only"]


@pytest.mark.parametrize(
    ("token", "batch", "message"),
    [
        (
            "shop-token",
            rows(3, experiment="shop/ranker") + rows(1, experiment="ads/ranker"),
            "shop-ranker-service may not write experiment ads/ranker",
        ),
        (
            "ads-token",
            rows(1, experiment="ads/ranker", arm="challenger")
            + rows(1, experiment="ads/ranker", arm="champion"),
            "ads-challenger-only may not write arm champion of experiment ads/ranker",
        ),
        (
            "ads-token",
            rows(1, experiment="shop/ranker", arm="challenger"),
            "ads-challenger-only may not write experiment shop/ranker",
        ),
    ],
)
def test_out_of_scope_is_403_naming_the_experiment_and_stores_nothing(
    truncating_engine: sa.Engine, url: str, token: str, batch: list[dict[str, str]], message: str
) -> None:
    with httpx.Client(base_url=url) as client:
        answer = client.post("/v1/batches", content=jsonl(*batch), headers=headers(token))
    assert answer.status_code == 403
    assert answer.json() == {"error": f"batch b-1 refused whole, nothing stored: {message}"}
    assert count(truncating_engine) == 0
    assert count(truncating_engine, "SELECT count(*) FROM ingest_batches") == 0


def test_unknown_tokens_are_401(url: str) -> None:
    with httpx.Client(base_url=url) as client:
        for given in ("Bearer nope", "Bearer", "Basic shop-token", ""):
            answer = client.post(
                "/v1/batches",
                content=jsonl(*rows(1)),
                headers={**headers(), "Authorization": given},
            )
            assert answer.status_code == 401, given
            assert answer.json() == {"error": "missing or wrong bearer token"}
            assert answer.headers["connection"] == "close"  # its body was never read


def test_the_file_is_re_read_when_it_changes_and_a_bad_version_is_ignored(
    token_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tokens = auth.TokenFile(token_file)
    assert tokens.authenticate("shop-token") is not None
    _write(token_file, "tokens:\n  - {token: new-token, identity: n, experiments: ['*']}\n")
    assert tokens.authenticate("shop-token") is None
    assert tokens.authenticate("new-token") == auth.Identity("n", ("*",))
    with caplog.at_level(logging.ERROR, logger="controller.ingest.auth"):
        _write(token_file, "tokens: [{token: x}]\n")
        assert tokens.authenticate("new-token") == auth.Identity("n", ("*",))
    assert "tokens[0]: identity must be a non-empty string; keeping the previous" in caplog.text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tokens: [1]", "tokens must be a list of mappings"),
        ("tokens: [{token: a, sha256: b, identity: i, experiments: [x]}]", "exactly one of"),
        ("tokens: [{sha256: abc, identity: i, experiments: [x]}]", "64 hex digits"),
        ("tokens: [{token: a, identity: i}]", "tokens[0]: experiments must be a non-empty list"),
        ("tokens: [{token: a, identity: i, experiments: [x], arms: []}]", "arms must be"),
        ("tokens: [{token: a, identity: i, experiments: [x], role: admin}]", "unknown key 'role'"),
        (
            "tokens: [{token: a, identity: i, experiments: [x]}, "
            "{token: a, identity: j, experiments: [y]}]",
            "tokens[1]: the same token is listed twice",
        ),
        ("serviceAccounts: [{name: ranker, experiments: [x]}]", "is not namespace/name"),
        ("users: []", "unknown key 'users'"),
        ("[1, 2]", "expected a mapping"),
        ("tokens: [", "not valid YAML"),
    ],
)
def test_a_malformed_file_is_one_line_naming_the_entry(text: str, message: str) -> None:
    with pytest.raises(auth.CredentialsError) as caught:
        auth.parse_credentials(text, "creds.yaml")
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_service_account_names_in_either_spelling() -> None:
    creds = auth.parse_credentials(
        "serviceAccounts:\n"
        "  - {name: shop/ranker, experiments: [shop/ranker]}\n"
        "  - {name: 'system:serviceaccount:ads:bidder', experiments: ['ads/*'], arms: [challenger]}\n"
    )
    assert set(creds.service_accounts) == {
        "system:serviceaccount:shop:ranker",
        "system:serviceaccount:ads:bidder",
    }


# -- ServiceAccount tokens, TokenReview against the emulator ----------------------------------


@pytest.fixture
def kube(served: emulator.Served) -> Iterator[kubernetes.client.CoreV1Api]:
    client = served.api_client()
    core = kubernetes.client.CoreV1Api(client)
    for name in ("ranker", "intruder"):
        core.create_namespaced_service_account("shop", {"metadata": {"name": name}})
    yield core
    client.close()


def _sa_token(
    core: kubernetes.client.CoreV1Api, name: str, audience: str = "canaryctl-ingest"
) -> str:
    answer = core.create_namespaced_service_account_token(
        name, "shop", {"spec": {"audiences": [audience]}}
    )
    return str(answer.status.token)


@pytest.fixture
def review_url(
    truncating_engine: sa.Engine,
    registered: dict[str, int],
    token_file: Path,
    served: emulator.Served,
) -> Iterator[str]:
    scoped = auth.TokenFile(token_file)
    reviewer = tokenreview.TokenReviewer(
        tokenreview.KubeApi(served.url), scoped, audiences=("canaryctl-ingest",)
    )
    app = server.create_app(
        truncating_engine, authenticator=auth.AnyOf(scoped, reviewer), clock=CLOCK
    )
    with running(app) as base:
        yield base
    reviewer.close()


def test_a_service_account_token_writes_its_scope_and_is_recorded(
    truncating_engine: sa.Engine,
    review_url: str,
    kube: kubernetes.client.CoreV1Api,
    served: emulator.Served,
) -> None:
    token = _sa_token(kube, "ranker")
    with httpx.Client(base_url=review_url) as client:
        ok = client.post(
            "/v1/batches", content=jsonl(*rows(3, experiment="shop/ranker")), headers=headers(token)
        )
        again = client.post(
            "/v1/batches",
            content=jsonl(*rows(1, experiment="shop/ranker")),
            headers=headers(token, key="b-2"),
        )
        outside = client.post(
            "/v1/batches",
            content=jsonl(*rows(1, experiment="shop/search")),
            headers=headers(token, key="b-3"),
        )
        file_token = client.post(
            "/v1/batches",
            content=jsonl(*rows(1, experiment="shop/search")),
            headers=headers("shop-token", key="b-4"),
        )
    assert (ok.status_code, again.status_code, file_token.status_code) == (200, 200, 200)
    assert outside.status_code == 403
    assert (
        "system:serviceaccount:shop:ranker may not write experiment shop/search"
        in (outside.json()["error"])
    )
    assert _sources(truncating_engine) == [
        "http:system:serviceaccount:shop:ranker",
        "http:system:serviceaccount:shop:ranker",
        "http:shop-ranker-service",
    ]
    reviews = [r for r in served.emulator.log if r.path.endswith("/tokenreviews")]
    assert len(reviews) == 1  # the ranker's token once, then cached; file tokens never
    assert reviews[0].body["spec"]["audiences"] == ["canaryctl-ingest"]


def test_unlisted_accounts_may_write_nothing_and_wrong_audiences_do_not_authenticate(
    truncating_engine: sa.Engine, review_url: str, kube: kubernetes.client.CoreV1Api
) -> None:
    body = jsonl(*rows(1, experiment="shop/ranker"))
    with httpx.Client(base_url=review_url) as client:
        intruder = client.post(
            "/v1/batches", content=body, headers=headers(_sa_token(kube, "intruder"))
        )
        wrong_audience = client.post(
            "/v1/batches", content=body, headers=headers(_sa_token(kube, "ranker", "other"))
        )
    assert intruder.status_code == 403
    assert (
        "system:serviceaccount:shop:intruder may not write experiment shop/ranker"
        in (intruder.json()["error"])
    )
    assert wrong_audience.status_code == 401
    assert count(truncating_engine) == 0


def test_an_unreachable_api_server_is_503_not_401(
    truncating_engine: sa.Engine, registered: dict[str, int], token_file: Path
) -> None:
    scoped = auth.TokenFile(token_file)
    reviewer = tokenreview.TokenReviewer(tokenreview.KubeApi("http://127.0.0.1:9"), scoped)
    app = server.create_app(truncating_engine, authenticator=auth.AnyOf(scoped, reviewer))
    with running(app) as base, httpx.Client(base_url=base) as client:
        answer = client.post("/v1/batches", content=jsonl(*rows(1)), headers=headers("sa-token"))
        file_token = client.post(
            "/v1/batches",
            content=jsonl(*rows(1, experiment="shop/ranker")),
            headers=headers("shop-token", key="b-2"),
        )
    reviewer.close()
    assert answer.status_code == 503 and "cannot check the token now" in answer.json()["error"]
    assert file_token.status_code == 200


def test_in_cluster_settings_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(auth.CredentialsError, match="not in a cluster"):
        tokenreview.KubeApi.in_cluster(tmp_path)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "6443")
    assert tokenreview.KubeApi.in_cluster(tmp_path) == tokenreview.KubeApi(
        "https://10.0.0.1:6443", tmp_path / "token", tmp_path / "ca.crt"
    )


def test_the_scope_is_checked_against_the_key_a_row_is_stored_under(
    truncating_engine: sa.Engine, registered: dict[str, int], tmp_path: Path
) -> None:
    """A bare name is in the default namespace and whitespace is trimmed, as validation does."""
    path = tmp_path / "creds.yaml"
    path.write_text(
        "tokens:\n"
        "  - {token: default-token, identity: d, experiments: ['default/*']}\n"
        "  - {token: star-ranker, identity: s, experiments: ['ranker*'], arms: [challenger]}\n"
    )
    app = server.create_app(truncating_engine, authenticator=auth.TokenFile(path), clock=CLOCK)
    bare = rows(2, experiment=" ranker ", arm="challenger")
    with running(app) as base, httpx.Client(base_url=base) as client:
        ok = client.post("/v1/batches", content=jsonl(*bare), headers=headers("default-token"))
        sneaky = client.post(
            "/v1/batches", content=jsonl(*bare), headers=headers("star-ranker", key="b-2")
        )
        odd_arm = client.post(
            "/v1/batches",
            content=jsonl(*rows(1, experiment="default/ranker", arm="blue")),
            headers=headers("default-token", key="b-3"),
        )
    assert ok.status_code == 200 and ok.json()["loaded"] == 2
    assert sneaky.status_code == 403
    assert "s may not write experiment default/ranker" in sneaky.json()["error"]
    assert odd_arm.status_code == 200 and odd_arm.json()["rejected"] == 1  # quarantined, not 403
