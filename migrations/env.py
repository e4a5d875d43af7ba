"""Alembic environment: online migrations only, safe to run from several replicas at once.

Takes a session-level advisory lock so two controller replicas starting together apply
each revision once, and sets lock and statement timeouts so a migration never waits
forever behind a long query. Observation partitions (created at run time) are invisible
to autogenerate, so ``alembic check`` compares only what the models declare.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import context

from controller.storage import models

ADVISORY_LOCK_ID = 0x63616E617279  # "canary"
LOCK_TIMEOUT = "10s"
STATEMENT_TIMEOUT = "300s"

config = context.config
target_metadata = models.Base.metadata


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """Leave run-time partitions of observations out of the comparison."""
    if type_ == "table" and name and name.startswith(models.PARTITION_PREFIX):
        return False
    return not (
        type_ == "index"
        and reflected
        and getattr(getattr(obj, "table", None), "name", "").startswith(models.PARTITION_PREFIX)
    )


def run_migrations_online() -> None:
    url = config.get_main_option("sqlalchemy.url")
    assert url is not None
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as connection:
        connection.execute(sa.text(f"SET lock_timeout = '{LOCK_TIMEOUT}'"))
        connection.execute(sa.text(f"SET statement_timeout = '{STATEMENT_TIMEOUT}'"))
        connection.execute(sa.text("SELECT pg_advisory_lock(:id)"), {"id": ADVISORY_LOCK_ID})
        connection.commit()
        try:
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                include_object=include_object,
                compare_type=True,
                transaction_per_migration=True,
            )
            with context.begin_transaction():
                context.run_migrations()
            connection.commit()
        finally:
            connection.execute(sa.text("SELECT pg_advisory_unlock(:id)"), {"id": ADVISORY_LOCK_ID})
            connection.commit()
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("canaryctl migrations run online only: use `canaryctl db upgrade`")
run_migrations_online()
