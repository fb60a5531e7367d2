"""The TimescaleDB path's SQL: parsed by PostgreSQL's own parser, checked against the plain
schema it converts, and run for real when the extension is available."""

import re
import uuid

import pglast
import psycopg
import pytest

from schema import connect, has_timescale, migrate
from schema.db import migration_files
from tests.conftest import with_database

COMPANIONS = [c for _, _, c in migration_files() if c is not None]
HYPERTABLE = re.compile(r"create_hypertable\('(\w+)',\s*by_range\('(\w+)'")
CREATES_HYPERTABLES = [c for c in COMPANIONS if HYPERTABLE.search(c.read_text())]


def test_there_is_a_timescale_path():
    assert COMPANIONS, "no .timescale.sql companion migration found"


@pytest.mark.parametrize("path", COMPANIONS, ids=lambda p: p.name)
def test_companion_parses(path):
    statements = pglast.parse_sql(path.read_text())
    assert len(statements) >= 3


@pytest.mark.services
@pytest.mark.parametrize("path", CREATES_HYPERTABLES, ids=lambda p: p.name)
def test_hypertable_time_column_is_in_every_unique_index(db, path):
    """Timescale requires the partitioning column in every unique index of a hypertable."""
    pairs = HYPERTABLE.findall(path.read_text())
    assert pairs
    for table, column in pairs:
        cols = db.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0",
            (table,)).fetchall()
        assert (column,) in cols, f"{table} has no column {column}"
        uniques = db.execute(
            "SELECT indexdef FROM pg_indexes WHERE tablename = %s AND indexdef LIKE 'CREATE UNIQUE%%'",
            (table,)).fetchall()
        for (indexdef,) in uniques:
            assert re.search(rf"\b{column}\b", indexdef.split("(", 1)[1]), indexdef


@pytest.mark.services
def test_timescale_migration_runs_when_available(timescale_server):
    """On a server with the extension (tests/conftest.py: timescale_server; skips without)."""
    with psycopg.connect(timescale_server) as probe:
        assert has_timescale(probe)
    name = f"giamsat_ts_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(timescale_server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        with connect(with_database(timescale_server, name)) as conn:
            migrate(conn, timescale=True)
            hypertables = {r[0] for r in conn.execute(
                "SELECT hypertable_name FROM timescaledb_information.hypertables")}
        assert {"fixes", "heartbeats", "device_events"} <= hypertables
    finally:
        with psycopg.connect(timescale_server, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
