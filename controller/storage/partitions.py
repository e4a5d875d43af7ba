"""Daily range partitions of ``observations``: created on demand, dropped by retention.

Ingestion calls ``ensure_partitions`` before it loads a batch; ``drop_partitions_before``
is the retention command. Both run in the caller's transaction (DDL is transactional in
Postgres, so a rolled-back caller leaves no partition behind). Creating a partition locks
``observations`` until that transaction ends: the engine-taking ingest entry points
therefore create partitions in a short transaction of their own before the load.
Partition names carry their day: ``observations_p20261126``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import sqlalchemy as sa

from controller.storage.models import PARTITION_PREFIX

_LOCK_ID = 0x70617274  # "part"
_NAME = re.compile(rf"^{PARTITION_PREFIX}(\d{{8}})$")


def partition_name(day: date) -> str:
    return f"{PARTITION_PREFIX}{day:%Y%m%d}"


def _bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return start, start + timedelta(days=1)


def existing_partitions(conn: sa.Connection) -> dict[str, date]:
    """Partitions of observations that exist now, by name."""
    rows = conn.execute(
        sa.text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'observations'::regclass"
        )
    ).scalars()
    out: dict[str, date] = {}
    for name in rows:
        match = _NAME.match(name)
        if match:
            out[name] = datetime.strptime(match.group(1), "%Y%m%d").date()
    return out


def ensure_partitions(conn: sa.Connection, days: Iterable[date]) -> list[str]:
    """Create the partitions for ``days`` that do not exist yet; return the names created.

    Concurrent callers serialise on an advisory lock held to the end of the transaction;
    waiting for the table lock gives up after 10 s (the caller's own timeout comes back after).
    """
    wanted = sorted(set(days))
    if not wanted:
        return []
    have = existing_partitions(conn)
    missing = [d for d in wanted if partition_name(d) not in have]
    if not missing:
        return []
    created: list[str] = []
    previous = conn.execute(sa.text("SELECT current_setting('lock_timeout')")).scalar()
    conn.execute(sa.text("SELECT set_config('lock_timeout', '10s', true)"))
    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": _LOCK_ID})
    have = existing_partitions(conn)
    for day in missing:
        name = partition_name(day)
        if name in have:
            continue
        start, end = _bounds(day)
        conn.execute(
            sa.text(
                f'CREATE TABLE "{name}" PARTITION OF observations '
                f"FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"
            )
        )
        created.append(name)
    conn.execute(sa.text("SELECT set_config('lock_timeout', :v, true)"), {"v": previous})
    return created


@dataclass(frozen=True)
class RetentionResult:
    dropped: list[str]
    kept: list[str]


def drop_partitions_before(
    conn: sa.Connection, cutoff: datetime, *, dry_run: bool = False
) -> RetentionResult:
    """Drop every partition whose whole day lies before ``cutoff``; rollups are kept."""
    if cutoff.tzinfo is None:
        raise ValueError("cutoff: needs a timezone-aware datetime")
    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": _LOCK_ID})
    have = existing_partitions(conn)
    dropped, kept = [], []
    for name, day in sorted(have.items(), key=lambda item: item[1]):
        if _bounds(day)[1] <= cutoff:
            dropped.append(name)
            if not dry_run:
                conn.execute(sa.text(f'DROP TABLE "{name}"'))
        else:
            kept.append(name)
    return RetentionResult(dropped=dropped, kept=kept)
