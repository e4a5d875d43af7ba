"""The hardened ingest server over real HTTP: limits, timeouts, error bodies, probes, metrics, TLS."""

from __future__ import annotations

import contextlib
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from controller.ingest import readers, server
from controller.storage import db
from tests.ingest_server.conftest import CLOCK, count, headers, jsonl, rows, running


@pytest.fixture
def url(truncating_engine: sa.Engine, registered: dict[str, int]) -> Iterator[str]:
    app = server.create_app(
        truncating_engine,
        token="s3cret",
        limits=server.Limits(max_bytes=64_000, max_rows=50, body_timeout=1.0),
        clock=CLOCK,
    )
    with running(app, header_timeout=1.0, idle_timeout=30) as base:
        yield base


def _raw(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=15)
    return sock


def _read_all(sock: socket.socket) -> bytes:
    out = b""
    while chunk := sock.recv(65536):
        out += chunk
    return out


def _trickle(sock: socket.socket, pieces: list[bytes], pause: float) -> bytes:
    """Send ``pieces`` one by one, ``pause`` seconds apart, until the server answers; the answer."""
    answer = b""
    for piece in pieces:
        try:
            sock.sendall(piece)
        except OSError:
            break  # the server answered and closed
        time.sleep(pause)
        sock.setblocking(False)
        try:
            answer += sock.recv(65536)
        except (BlockingIOError, ConnectionResetError):
            pass
        finally:
            sock.setblocking(True)
        if answer:
            break
    sock.settimeout(15)
    with contextlib.suppress(ConnectionResetError):
        answer += _read_all(sock)
    sock.close()
    return answer


def test_every_error_is_json_including_404_405_and_500(
    truncating_engine: sa.Engine, registered: dict[str, int], url: str
) -> None:
    with httpx.Client(base_url=url) as client:
        missing = client.get("/nowhere")
        wrong_method = client.get("/v1/batches")
    assert (missing.status_code, missing.json()) == (404, {"error": "no such path: /nowhere"})
    assert wrong_method.status_code == 405 and "POST" in wrong_method.headers["allow"]
    assert wrong_method.json()["error"] == "Method Not Allowed: GET /v1/batches"

    class Broken:
        def now(self) -> datetime:
            raise RuntimeError("clock stopped")

    app = server.create_app(truncating_engine, token="s3cret", clock=Broken())
    with running(app) as broken, httpx.Client(base_url=broken) as client:
        answer = client.post("/v1/batches", content=jsonl(*rows(2)), headers=headers())
    assert answer.status_code == 500
    assert answer.json() == {"error": "internal error (RuntimeError); retry with the same batch id"}
    assert count(truncating_engine) == 0


def test_row_limit_is_413_naming_the_limit_and_stores_nothing(
    truncating_engine: sa.Engine, url: str
) -> None:
    with httpx.Client(base_url=url) as client:
        over = client.post("/v1/batches", content=jsonl(*rows(51)), headers=headers())
        at = client.post("/v1/batches", content=jsonl(*rows(50)), headers=headers(key="b-2"))
    assert over.status_code == 413
    assert over.json()["error"] == "batch of 51 rows exceeds the limit of 50 rows; split it"
    assert at.status_code == 200 and at.json()["loaded"] == 50
    assert count(truncating_engine) == 50


def test_a_known_batch_id_with_another_body_is_409_naming_the_id(
    truncating_engine: sa.Engine, url: str
) -> None:
    with httpx.Client(base_url=url) as client:
        first = client.post("/v1/batches", content=jsonl(*rows(5)), headers=headers(key="b-9"))
        again = client.post("/v1/batches", content=jsonl(*rows(5)), headers=headers(key="b-9"))
        other = client.post("/v1/batches", content=jsonl(*rows(6)), headers=headers(key="b-9"))
    assert first.status_code == 200 and first.json()["loaded"] == 5
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert other.status_code == 409 and "b-9" in other.json()["error"]
    assert count(truncating_engine) == 5


def test_a_trickled_body_is_408_and_stores_nothing(truncating_engine: sa.Engine, url: str) -> None:
    body = jsonl(*rows(3))
    sock = _raw(url)
    head = "".join(f"{k}: {v}\r\n" for k, v in headers().items())
    sock.sendall(
        f"POST /v1/batches HTTP/1.1\r\nHost: x\r\n{head}Content-Length: {len(body)}\r\n\r\n".encode()
    )
    answer = _trickle(sock, [bytes([b]) for b in body], 0.2)  # 1 byte / 200 ms, 1 s timeout
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b'"error":"the body was not received within 1 s' in answer
    assert b"connection: close" in answer.lower()
    assert count(truncating_engine) == 0


def test_trickled_headers_are_408_and_closed(url: str) -> None:
    sock = _raw(url)
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200
    answer = _trickle(sock, [bytes([b]) for b in request], 0.05)
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b"the request headers did not arrive within 1 s" in answer


def test_a_silent_connection_is_closed(url: str) -> None:
    sock = _raw(url)
    answer = _read_all(sock)  # sends nothing: the header timeout answers and closes
    sock.close()
    assert answer.startswith(b"HTTP/1.1 408 ")


def test_an_idle_kept_alive_connection_is_closed(
    truncating_engine: sa.Engine, registered: dict[str, int]
) -> None:
    app = server.create_app(truncating_engine, token="s3cret", clock=CLOCK)
    with running(app, header_timeout=60, idle_timeout=0.5) as base:
        sock = _raw(base)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = _read_all(sock)  # returns once the server closes the idle connection
        sock.close()
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b'{"ok":true}')


def test_oversized_headers_are_refused(url: str) -> None:
    sock = _raw(url)
    pieces = [b"GET /healthz HTTP/1.1\r\nHost: x\r\n"]
    pieces += [b"X-Big: " + b"a" * 4096 + b"\r\n"] * 20  # one head past the 16 KiB limit
    answer = _trickle(sock, pieces, 0.01)
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]


def test_parsing_runs_off_the_event_loop(
    truncating_engine: sa.Engine, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a batch is being parsed, /healthz still answers."""
    parsing, healthy = threading.Event(), threading.Event()
    seen: dict[str, Any] = {}
    real = readers.read_bytes

    def slow_read(data: bytes, fmt: str) -> Any:
        parsing.set()
        seen["healthz answered while parsing"] = healthy.wait(timeout=20)
        return real(data, fmt)

    monkeypatch.setattr(readers, "read_bytes", slow_read)
    answers: list[httpx.Response] = []

    def post() -> None:
        with httpx.Client(base_url=url, timeout=60) as client:
            answers.append(client.post("/v1/batches", content=jsonl(*rows(5)), headers=headers()))

    poster = threading.Thread(target=post)
    poster.start()
    assert parsing.wait(timeout=20)
    with httpx.Client(base_url=url, timeout=60) as client:
        health = client.get("/healthz")
    healthy.set()
    poster.join(timeout=60)
    assert health.status_code == 200
    assert seen == {"healthz answered while parsing": True}
    assert answers[0].status_code == 200 and count(truncating_engine) == 5


def test_readyz_follows_the_database(truncating_engine: sa.Engine, url: str) -> None:
    with httpx.Client(base_url=url) as client:
        assert client.get("/readyz").json() == {"ok": True}
        assert client.get("/healthz").json() == {"ok": True}
    away = db.make_engine("postgresql://postgres@127.0.0.1:9/none", poolclass=sa.pool.NullPool)
    app = server.create_app(away, token="s3cret")
    with running(app) as base, httpx.Client(base_url=base) as client:
        ready, health = client.get("/readyz"), client.get("/healthz")
        batch = client.post("/v1/batches", content=jsonl(*rows(1)), headers=headers())
    assert ready.status_code == 503 and "the database does not answer" in ready.json()["error"]
    assert health.status_code == 200
    assert batch.status_code == 503 and "retry with the same batch id" in batch.json()["error"]


def test_batch_ids_are_bounded(url: str) -> None:
    with httpx.Client(base_url=url) as client:
        answer = client.post("/v1/batches", content=b"{}", headers=headers(key="k" * 201))
    assert answer.status_code == 400 and "at most 200" in answer.json()["error"]


def _sample(text: str, name: str, experiment: str) -> float:
    for line in text.splitlines():
        if line.startswith(f'{name}{{experiment="{experiment}"}} '):
            return float(line.split()[-1])
    raise AssertionError(f"{name} for {experiment} not in /metrics")


def test_metrics_count_rows_by_experiment(truncating_engine: sa.Engine, url: str) -> None:
    good = rows(3)
    other = rows(2, experiment="shop/ranker")
    bad = {**good[0], "latency_ms": "-1"}
    body = jsonl(*good, *other, bad)
    with httpx.Client(base_url=url) as client:
        assert client.post("/v1/batches", content=body, headers=headers()).status_code == 200
        assert client.post("/v1/batches", content=body, headers=headers()).json()["duplicate"]
        client.post("/v1/batches", content=b"x", headers=headers(key="b-bad"))
        text = client.get("/metrics").text
    prefix = "canaryctl_ingest_rows"
    assert _sample(text, f"{prefix}_received_total", "default/ranker") == 4
    assert _sample(text, f"{prefix}_loaded_total", "default/ranker") == 3
    assert _sample(text, f"{prefix}_rejected_total", "default/ranker") == 1
    assert _sample(text, f"{prefix}_loaded_total", "shop/ranker") == 2
    assert _sample(text, f"{prefix}_duplicate_total", "default/ranker") == 4
    assert _sample(text, f"{prefix}_duplicate_total", "shop/ranker") == 2
    assert 'canaryctl_ingest_answers_total{code="422"} 1.0' in text
    assert 'canaryctl_ingest_answers_total{code="200"} 2.0' in text


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def test_tls(truncating_engine: sa.Engine, registered: dict[str, int], tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    app = server.create_app(truncating_engine, token="s3cret", clock=CLOCK)
    with running(app, tls_cert=cert, tls_key=key) as base:
        assert base.startswith("https://")
        trusted = ssl.create_default_context(cafile=str(cert))
        with httpx.Client(base_url=base, verify=trusted) as client:
            answer = client.post("/v1/batches", content=jsonl(*rows(4)), headers=headers())
        with pytest.raises(httpx.ConnectError), httpx.Client(base_url=base) as untrusting:
            untrusting.get("/healthz")  # the system CAs do not know this certificate
        plain = base.replace("https://", "http://")
        with pytest.raises(httpx.HTTPError), httpx.Client(base_url=plain) as client:
            client.get("/healthz")
    assert answer.status_code == 200 and answer.json()["loaded"] == 4
    assert count(truncating_engine) == 4


def test_listen_options_are_checked(tmp_path: Path) -> None:
    from controller.ingest import listen

    with pytest.raises(ValueError, match="--tls-cert and --tls-key go together"):
        listen.Listen(tls_cert=tmp_path / "c.pem")
    with pytest.raises(ValueError, match="no such file"):
        listen.Listen(tls_cert=tmp_path / "c.pem", tls_key=tmp_path / "k.pem")
    with pytest.raises(ValueError, match="header_timeout: must be positive"):
        listen.Listen(header_timeout=0)
    with pytest.raises(ValueError, match="max_rows: must be positive"):
        server.Limits(max_rows=0)


def test_batches_beyond_max_inflight_wait_their_turn(
    truncating_engine: sa.Engine, registered: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With max_inflight=1 a second batch is not read or parsed while the first one is."""
    release = threading.Event()
    active, most = [0], [0]
    lock = threading.Lock()
    real = readers.read_bytes

    def watched_read(data: bytes, fmt: str) -> Any:
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
        release.wait(timeout=20)
        try:
            return real(data, fmt)
        finally:
            with lock:
                active[0] -= 1

    monkeypatch.setattr(readers, "read_bytes", watched_read)
    app = server.create_app(
        truncating_engine, token="s3cret", limits=server.Limits(max_inflight=1), clock=CLOCK
    )
    answers: list[int] = []

    def post(key: str) -> None:
        with httpx.Client(base_url=base, timeout=60) as client:
            body = jsonl(*rows(3))
            answers.append(
                client.post("/v1/batches", content=body, headers=headers(key=key)).status_code
            )

    with running(app) as base:
        posters = [threading.Thread(target=post, args=(f"b-{i}",)) for i in range(3)]
        for poster in posters:
            poster.start()
        time.sleep(1.0)  # room for a second parse to start, were the limit not kept
        release.set()
        for poster in posters:
            poster.join(timeout=60)
    assert answers == [200, 200, 200]
    assert most == [1]
    assert count(truncating_engine) == 9
