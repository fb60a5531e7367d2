"""Connecting to PostgreSQL and applying the versioned migrations in ``schema/migrations``.

A migration ``NNNN_name.sql`` runs once, in order, in its own transaction. When the
``timescaledb`` extension is available, its companion ``NNNN_name.timescale.sql`` (if any) runs
right after it: hypertables, compression and retention. Without the extension the plain file
alone gives a correct schema (BRIN-indexed tables).

A TimescaleDB release known to lose rows that giamsat writes is refused, with an error naming
the version and why, wherever the schema is migrated or the ingest store connects
(``check_timescale``): the service does not start on it.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import psycopg

log = logging.getLogger("giamsat.schema")

MIGRATIONS = Path(__file__).parent / "migrations"
_LOCK_KEY = 0x6769616D  # 'giam': one migrator at a time


def connect(url: str, **kwargs) -> psycopg.Connection:
    """A psycopg 3 connection with giamsat's session defaults (UTC)."""
    kwargs.setdefault("connect_timeout", 10)
    conn = psycopg.connect(url, **kwargs)
    conn.execute("SET TIME ZONE 'UTC'")
    conn.commit()
    return conn


# TimescaleDB releases that lose rows giamsat writes (issue 16): from 2.16.0 until 2.18.1, an
# `INSERT ... ON CONFLICT DO NOTHING` whose conflicting row lies in a compressed chunk silently
# drops every later row of the statement (timescale/timescaledb#7672, fixed by #7673 in 2.18.1).
# A QoS 1 redelivery of an old message is exactly that case, and ingest batches many rows per
# statement: the new messages beside it would be acknowledged and never stored.
ROW_LOSING_TIMESCALE: tuple[tuple[tuple[int, int, int], tuple[int, int, int], str], ...] = (
    ((2, 16, 0), (2, 18, 1),
     "INSERT ... ON CONFLICT DO NOTHING silently drops the rows after a conflict with a row in a "
     "compressed chunk (timescale/timescaledb#7672, fixed in 2.18.1)"),
)
MIN_SAFE_TIMESCALE = "2.18.1"


class UnsafeTimescale(RuntimeError):
    """The database's TimescaleDB release is known to lose rows: giamsat refuses to run on it."""


def _version_tuple(version: str) -> tuple[int, int, int] | None:
    m = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", version)
    return None if m is None else (int(m[1]), int(m[2]), int(m[3] or 0))


def timescale_defect(version: str) -> str | None:
    """Why this TimescaleDB version (e.g. '2.17.2') must not be used, or None."""
    v = _version_tuple(version)
    if v is None:
        return None
    for first, fixed, why in ROW_LOSING_TIMESCALE:
        if first <= v < fixed:
            return why
    return None


def check_timescale(conn: psycopg.Connection, to_install: bool = False) -> str | None:
    """Raise `UnsafeTimescale` when the TimescaleDB installed in this database (or, with
    `to_install`, the one `CREATE EXTENSION` would install) is known to lose rows; return the
    version found (None without the extension)."""
    row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
                       ).fetchone()
    installed = row is not None
    if not installed and to_install:
        row = conn.execute("SELECT default_version FROM pg_available_extensions "
                           "WHERE name = 'timescaledb'").fetchone()
    if row is None:
        return None
    version = str(row[0])
    why = timescale_defect(version)
    if why is not None:
        where = ("installed in this database" if installed
                 else "the server's default for CREATE EXTENSION")
        then = ", then run ALTER EXTENSION timescaledb UPDATE in this database" if installed else ""
        raise UnsafeTimescale(
            f"TimescaleDB {version} ({where}) is known to lose data: {why}. giamsat refuses to "
            f"run on it. Install TimescaleDB {MIN_SAFE_TIMESCALE} or later (deploy/compose.yaml "
            f"pins a fixed release){then}.")
    return version


def has_timescale(conn: psycopg.Connection) -> bool:
    """True when the timescaledb extension is installed in this database or can be."""
    row = conn.execute(
        "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"
    ).fetchone()
    return row is not None


def migration_files() -> list[tuple[str, Path, Path | None]]:
    """(version, plain file, timescale companion or None), in order."""
    out = []
    for path in sorted(MIGRATIONS.glob("[0-9][0-9][0-9][0-9]_*.sql")):
        if path.name.endswith(".timescale.sql"):
            continue
        companion = path.with_name(path.name[:-4] + ".timescale.sql")
        out.append((path.stem, path, companion if companion.exists() else None))
    return out


def migrate(conn: psycopg.Connection, timescale: bool | None = None) -> list[str]:
    """Apply every pending migration; return the versions applied now.

    ``timescale=None`` detects the extension; ``False`` forces the plain path.
    """
    conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
    try:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version text PRIMARY KEY, "
            "timescale boolean NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        conn.commit()
        if timescale is None:
            timescale = has_timescale(conn)
        check_timescale(conn, to_install=timescale)
        if timescale:
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            conn.commit()
            check_timescale(conn)
        done = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
        applied = []
        for version, plain, companion in migration_files():
            if version in done:
                continue
            _apply(conn, version, plain, companion if timescale else None, timescale)
            applied.append(version)
        return applied
    finally:
        conn.rollback()
        conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
        conn.commit()


def _apply(conn: psycopg.Connection, version: str, plain: Path, companion: Path | None,
           timescale: bool) -> None:
    try:
        conn.execute(plain.read_text())
        if companion is not None:
            conn.execute(companion.read_text())
        conn.execute("INSERT INTO schema_migrations (version, timescale) VALUES (%s, %s)",
                     (version, timescale))
        conn.commit()
    except Exception:
        conn.rollback()
        raise
    log.info("applied migration %s%s", version, " (timescale)" if companion else "")


def apply_retention(conn: psycopg.Connection) -> dict[str, int]:
    """Remove the telemetry past its time by receipt (``telemetry_retention``, migration 0060):
    per table, the rows (plain) or chunks (hypertable) removed. As the TimescaleDB job
    ``giamsat_apply_retention`` does daily; on plain PostgreSQL, ``giamsat retention`` runs it."""
    rows = conn.execute(
        "SELECT table_name, giamsat_drop_received_before(table_name, now() - keep) "
        "FROM telemetry_retention ORDER BY table_name").fetchall()
    conn.commit()
    return {name: int(n) for name, n in rows}
