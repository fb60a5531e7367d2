"""The service's database: the configured one (``GIAMSAT_DATABASE_URL``), or the embedded
PostgreSQL cluster in the data directory, found running or started for the duration.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import psycopg

from config import Settings
from embedded.services import (
    EmbeddedPostgres,
    choose_port,
    explicit_setting,
    pg_data_dir,
    port_is_free,
)
from schema import connect, migrate

DB_NAME = "giamsat"


def pg_dir(settings: Settings) -> Path:
    """The embedded cluster's data directory."""
    return pg_data_dir(settings.data_dir, explicit="data_dir" in settings.model_fields_set)


def pg_port(settings: Settings) -> int:
    """The embedded cluster's port (the configured one, or a free one when it is taken)."""
    return choose_port(settings.embedded_pg_port, "GIAMSAT_EMBEDDED_PG_PORT",
                       explicit_setting(settings, "embedded_pg_port"), "the embedded PostgreSQL")


def ensure_database(server_url: str) -> str:
    """Create the ``giamsat`` database in an embedded cluster; return its URL."""
    with psycopg.connect(server_url, autocommit=True) as admin:
        if admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB_NAME,)).fetchone() \
                is None:
            admin.execute(f'CREATE DATABASE "{DB_NAME}"')
    return server_url.rsplit("/", 1)[0] + "/" + DB_NAME


def _embedded_pg_running(pg_dir: Path) -> int | None:
    """The port of our own embedded PostgreSQL when one (from a running ``giamsat up``) serves
    ``pg_dir``: its ``postmaster.pid`` names the port (line 4), which must be in use."""
    try:
        lines = (pg_dir / "postmaster.pid").read_text().splitlines()
    except OSError:
        return None
    if len(lines) <= 3 or not lines[3].strip().isdigit():
        return None
    port = int(lines[3])
    return None if port_is_free(port) else port


@contextlib.contextmanager
def database_url(settings: Settings) -> Iterator[str]:
    """The configured database, or the embedded one (started for the duration if needed)."""
    if settings.database_url:
        yield settings.database_url
        return
    data = pg_dir(settings)
    running = _embedded_pg_running(data)
    if running is not None:
        yield ensure_database(EmbeddedPostgres(data, running).url)
        return
    pg = EmbeddedPostgres(data, pg_port(settings), bindir=settings.pg_bindir)
    pg.start()
    try:
        yield ensure_database(pg.url)
    finally:
        pg.stop()


@contextlib.contextmanager
def open_database(settings: Settings) -> Iterator[psycopg.Connection]:
    """A migrated connection to the service's database (for one-shot commands)."""
    with database_url(settings) as url, connect(url) as conn:
        migrate(conn)
        yield conn
