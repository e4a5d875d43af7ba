"""Shared fixtures: a real Postgres for every storage test, migrated once per run.

``CANARYCTL_TEST_DATABASE_URL`` names a server to use (CI points it at the local one);
without it an embedded Postgres is started in a temporary directory. Either way the run
gets a database of its own, migrated with the real revisions (upgrade to head, then the
drift check), dropped at the end.

Two ways for a test to see an empty store:

- ``conn`` (the default, as in warehouse's ``tests/conftest.py``): one connection inside
  one transaction, rolled back after the test. The storage and ingest functions take a
  connection and never commit, so everything the test writes, partitions included (DDL is
  transactional in Postgres), vanishes with the rollback. A test that expects a statement
  to fail runs it in ``conn.begin_nested()`` so that the transaction stays usable.
- ``truncating_engine``: for tests whose code under test opens connections of its own, in
  other threads or processes (the operator, the ingest server and writer, the CLI, the
  demo world), which one uncommitted transaction cannot serve. Their writes are committed,
  so after the test every table is truncated and the run-time partitions are dropped.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from controller.storage import db, models, partitions

TEST_URL_ENV = "CANARYCTL_TEST_DATABASE_URL"


def _with_database(url: str, name: str) -> str:
    base = sa.engine.make_url(db.sqlalchemy_url(url))
    return (
        base.set(database=name)
        .render_as_string(hide_password=False)
        .replace("postgresql+psycopg://", "postgresql://", 1)
    )


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """A libpq URL of a Postgres server whose user may create databases."""
    explicit = os.environ.get(TEST_URL_ENV)
    if explicit:
        yield db.libpq_url(explicit)
        return
    embedded = db.EmbeddedPostgres(Path(tempfile.mkdtemp(prefix="canaryctl-pg-")))
    try:
        yield embedded.start()
    finally:
        embedded.stop()


@pytest.fixture(scope="session")
def database_url(server_url: str) -> Iterator[str]:
    """A fresh database for this test run, migrated to head and drift-checked."""
    name = f"canaryctl_test_{uuid.uuid4().hex[:10]}"
    admin = db.make_engine(server_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = _with_database(server_url, name)
    try:
        db.upgrade(url)
        db.check(url)
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def empty_database(server_url: str) -> Iterator[str]:
    """A database of its own with no schema, dropped after the test."""
    name = f"canaryctl_empty_{uuid.uuid4().hex[:8]}"
    admin = db.make_engine(server_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield _with_database(server_url, name)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def _session_engine(database_url: str) -> Iterator[sa.Engine]:
    engine = db.make_engine(database_url)
    yield engine
    engine.dispose()


TABLES = [t.name for t in models.Base.metadata.sorted_tables if t.name != "observations"]


@pytest.fixture
def conn(_session_engine: sa.Engine) -> Iterator[sa.Connection]:
    """A connection in a transaction that is rolled back after the test (see the docstring)."""
    with _session_engine.connect() as connection:
        outer = connection.begin()
        try:
            yield connection
        finally:
            outer.rollback()


@pytest.fixture
def truncating_engine(_session_engine: sa.Engine) -> Iterator[sa.Engine]:
    """The run's engine for committing code; every table is emptied after the test."""
    yield _session_engine
    with _session_engine.begin() as conn:
        for name in partitions.existing_partitions(conn):
            conn.execute(sa.text(f'DROP TABLE "{name}"'))
        conn.execute(sa.text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
