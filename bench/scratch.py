"""Scratch services for the benchmarks: the given servers, or embedded PostgreSQL and Mosquitto
on free ports, and a migrated database of the run's own; all removed when the stack closes."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from contextlib import ExitStack
from pathlib import Path

import psycopg

from embedded.services import EmbeddedMosquitto, EmbeddedPostgres, free_port
from schema import connect, migrate


def scratch_services(stack: ExitStack, db_server: str | None, mqtt_url: str | None,
                     prefix: str = "giamsat_bench") -> tuple[str, str]:
    """(URL of a fresh migrated database, broker URL)."""
    base = Path(tempfile.mkdtemp(prefix=prefix.replace("_", "-") + "-"))
    base.chmod(0o755)  # PostgreSQL runs as another user when we are root
    stack.callback(shutil.rmtree, base, True)
    if db_server is None:
        pg = EmbeddedPostgres(base / "pg", free_port())
        db_server = pg.start()
        stack.callback(pg.stop)
    if mqtt_url is None:
        mq = EmbeddedMosquitto(base / "mqtt", free_port())
        mqtt_url = mq.start()
        stack.callback(mq.stop)
    return scratch_database(db_server, stack, prefix), mqtt_url


def scratch_database(server_url: str, stack: ExitStack, prefix: str = "giamsat_bench") -> str:
    """A migrated database on ``server_url``, dropped when the stack closes; its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    stack.callback(drop)
    url = server_url.rsplit("/", 1)[0] + "/" + name
    with connect(url) as conn:
        migrate(conn)
    return url
