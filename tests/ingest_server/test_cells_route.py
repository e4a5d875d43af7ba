"""Pre-aggregated cells over HTTP (``POST /v1/cells``, the settings routes) and the CLI
(``canaryctl ingest cells``): the raw path's answers and exit codes, counted in cells."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import pyarrow as pa
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from analysis import buckets
from controller.cli.main import app as cli
from controller.ingest import auth, cells, server
from controller.storage import db, experiments
from tests.ingest_server.conftest import CLOCK, count, running
from tests.storage.helpers import T0, outcomes

CREDENTIALS = """
tokens:
  - token: shop-token
    identity: shop-sender
    experiments: ["shop/*"]
"""


def _cells(n: int = 2_000, experiment: str = "shop/ranker", **how: object) -> pa.Table:
    return cells.from_rows(outcomes(n, seed=4, experiment=experiment, seconds=600), **how)  # type: ignore[arg-type]


def _parquet(table: pa.Table) -> bytes:
    import pyarrow.parquet as pq

    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def _headers(key: str, token: str = "shop-token") -> dict[str, str]:
    return {
        "Authorization": f"Bearer {token}",
        "Idempotency-Key": key,
        "Content-Type": "application/vnd.apache.parquet",
    }


@pytest.fixture
def url(truncating_engine: sa.Engine, registered: dict[str, int], tmp_path: Path) -> Iterator[str]:
    path = tmp_path / "credentials.yaml"
    path.write_text(CREDENTIALS)
    app = server.create_app(truncating_engine, authenticator=auth.TokenFile(path), clock=CLOCK)
    with running(app) as base:
        yield base


def test_cells_load_once_quarantine_bad_ones_and_refuse_a_reused_id(
    truncating_engine: sa.Engine, url: str
) -> None:
    table = _cells(top=50)
    body = _parquet(table)
    first = httpx.post(f"{url}/v1/cells", content=body, headers=_headers("c-1"))
    assert first.status_code == 200, first.text
    answer = first.json()
    assert answer["received"] == answer["loaded"] == table.num_rows
    assert not answer["duplicate"]
    again = httpx.post(f"{url}/v1/cells", content=body, headers=_headers("c-1"))
    assert again.json()["duplicate"] is True
    rows = count(truncating_engine, "SELECT sum(n) FROM rollups_minute")
    assert rows == 2_000
    other = _parquet(table.slice(1))
    conflict = httpx.post(f"{url}/v1/cells", content=other, headers=_headers("c-1"))
    assert conflict.status_code == 409
    assert "already used for a different body" in conflict.json()["error"]
    bad = table.set_column(
        table.column_names.index("errors"),
        "errors",
        pa.array([10**6, *table["errors"].to_pylist()[1:]]),
    )
    partial = httpx.post(f"{url}/v1/cells", content=_parquet(bad), headers=_headers("c-2"))
    assert partial.status_code == 200
    assert partial.json()["rejected"] == 1
    assert "errors (1000000) exceeds n" in partial.json()["rejects"][0]["reason"]
    assert count(truncating_engine, "SELECT count(*) FROM ingest_rejects") == 1


def test_cells_outside_the_scope_are_refused_whole(truncating_engine: sa.Engine, url: str) -> None:
    body = _parquet(pa.concat_tables([_cells(), _cells(experiment="ads/ranker")]))
    refused = httpx.post(f"{url}/v1/cells", content=body, headers=_headers("c-3"))
    assert refused.status_code == 403
    assert "may not write experiment ads/ranker" in refused.json()["error"]
    assert count(truncating_engine, "SELECT count(*) FROM rollups_minute") == 0


def test_settings_tell_a_sender_the_frozen_cap_and_the_edges(
    truncating_engine: sa.Engine, url: str
) -> None:
    auth_header = {"Authorization": "Bearer shop-token"}
    before = httpx.get(f"{url}/v1/experiments/shop/ranker", headers=auth_header).json()
    assert before["revenueCap"] is None and before["settingsFrozen"] is False
    with truncating_engine.begin() as conn:
        experiments.freeze_settings(
            conn, "shop/ranker", {}, now=T0, revenue_cap=2.5, allowed_lateness_seconds=300
        )
    after = httpx.get(f"{url}/v1/experiments/shop/ranker", headers=auth_header).json()
    assert (after["revenueCap"], after["allowedLatenessSeconds"]) == (2.5, 300)
    fmt = httpx.get(f"{url}/v1/cells/format", headers=auth_header).json()
    assert len(fmt["latencyEdgesMs"]) == buckets.N_LATENCY_BUCKETS - 1
    assert fmt["latencyEdgesId"] == cells.LATENCY_EDGES_ID
    assert httpx.get(f"{url}/v1/experiments/shop/nope", headers=auth_header).status_code == 404
    assert httpx.get(f"{url}/v1/experiments/ads/ranker", headers=auth_header).status_code == 403
    assert httpx.get(f"{url}/v1/cells/format").status_code == 401


def test_cli_loads_a_file_of_cells_once(
    truncating_engine: sa.Engine, registered: dict[str, int], database_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "cells.parquet"
    path.write_bytes(_parquet(_cells(experiment="default/ranker")))
    env = {db.ENV_DATABASE_URL: database_url}
    runner = CliRunner()
    first = runner.invoke(cli, ["ingest", "cells", str(path)], env=env)
    assert first.exit_code == 0, first.output
    assert "cells, loaded" in first.output
    second = runner.invoke(cli, ["ingest", "cells", str(path)], env=env)
    assert second.exit_code == 0 and "already ingested" in second.output
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"experiment": "default/ranker", "arm": "champion"}\n')
    refused = runner.invoke(cli, ["ingest", "cells", str(broken)], env=env)
    assert refused.exit_code == 3
    assert "missing column(s): minute, n" in refused.output
    assert count(truncating_engine, "SELECT sum(n) FROM rollups_minute") == 2_000
