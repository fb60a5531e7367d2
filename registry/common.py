"""What the registry's writers and loaders share: the refusal of a change, epoch-ms columns,
the transaction's "now", and the per-supervisee write lock."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg


class ChangeRefused(Exception):
    """A registry change that cannot be made; ``rule`` names why (the API's 422 ``rule``)."""

    def __init__(self, rule: str, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.rule, self.message, self.path = rule, message, path


def ms_sql(column: str) -> str:
    """SQL for a timestamptz column as UTC epoch ms, NULL for ±infinity (psycopg cannot load
    infinite datetimes; an open end is None in Python)."""
    return (f"CASE WHEN isfinite({column}) THEN (extract(epoch FROM {column}) * 1000)::int8 "
            f"END AS {column.split('.')[-1]}_ms")


def db_now(conn: psycopg.Connection[Any]) -> datetime:
    """The transaction's start time (PostgreSQL ``now()``), for writers given no clock."""
    row = conn.execute("SELECT now()").fetchone()
    assert row is not None
    return row[0]


def lock_supervisee(conn: psycopg.Connection[Any], supervisee_id: str) -> bool:
    """Serialise registry writes of one supervisee until the transaction ends (version numbers
    are max + 1). ``FOR NO KEY UPDATE`` leaves ingest's foreign-key checks unblocked. False when
    there is no such supervisee."""
    return conn.execute("SELECT 1 FROM supervisees WHERE id = %s FOR NO KEY UPDATE",
                        (supervisee_id,)).fetchone() is not None


def not_before(at: datetime | None, now: datetime, what: str) -> datetime:
    """``at`` (default ``now``) for a change's effect; a time before ``now`` is refused: decisions
    already made under the previous version stand (history is never rewritten)."""
    if at is None:
        return now
    if at < now:
        raise ChangeRefused("effective_in_past",
                            f"{what} cannot take effect in the past ({at.isoformat()} is before "
                            f"{now.isoformat()}): decisions already made stand")
    return at


def ms_to_dt(ms: int) -> datetime:
    """UTC datetime of epoch milliseconds."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC)
