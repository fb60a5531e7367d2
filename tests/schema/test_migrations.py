"""The migrations apply cleanly, once, on plain PostgreSQL."""

import pytest

from schema import connect, migrate
from schema.db import migration_files

pytestmark = pytest.mark.services


def test_migrate_is_idempotent(db_url):
    with connect(db_url) as conn:
        # the template already applied everything: nothing is pending
        assert migrate(conn, timescale=False) == []
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY 1")]
    assert versions == [v for v, _, _ in migration_files()]


def test_fresh_database_gets_every_table(pg_server):
    import uuid

    import psycopg

    from tests.conftest import with_database

    name = f"giamsat_m_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        with connect(with_database(pg_server, name)) as conn:
            applied = migrate(conn, timescale=False)
            assert applied == [v for v, _, _ in migration_files()]
            tables = {r[0] for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
            views = {r[0] for r in conn.execute(
                "SELECT viewname FROM pg_views WHERE schemaname = 'public'")}
        for t in ("units", "supervisees", "zone_versions", "permit_versions", "devices",
                  "device_assignments", "fixes", "heartbeats", "device_events", "dead_letters",
                  "device_state"):
            assert t in tables
        assert {"zones", "permits"} <= views  # the versions in force now (migration 0050)
    finally:
        with psycopg.connect(pg_server, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
