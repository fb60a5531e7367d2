"""Connecting to PostgreSQL and applying the versioned migrations in ``schema/migrations``.

A migration ``NNNN_name.sql`` runs once, in order, in its own transaction. When the
``timescaledb`` extension is available, its companion ``NNNN_name.timescale.sql`` (if any) runs
right after it: hypertables, compression and retention. Without the extension the plain file
alone gives a correct schema (BRIN-indexed tables).
"""

from __future__ import annotations

import logging
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
        if timescale:
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            conn.commit()
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
