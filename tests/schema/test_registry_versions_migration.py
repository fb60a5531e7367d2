"""Migration 0050 keeps the registry as it was: each zone and permit becomes a version in force
since always, the zone keeping its version number, and the old names read the same rows."""

import uuid

import psycopg
import pytest

from schema import connect
from schema.db import migration_files
from tests.conftest import with_database

pytestmark = pytest.mark.services


def test_existing_zones_and_permits_become_their_first_versions(pg_server):
    name = f"giamsat_m50_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        with connect(with_database(pg_server, name)) as conn:
            files = migration_files()
            for version, plain, _ in files:
                if version >= "0050":
                    break
                conn.execute(plain.read_text())
            _old_registry(conn)
            for version, plain, _ in files:
                if "0050" <= version < "0051":
                    conn.execute(plain.read_text())
            conn.commit()
            zones = conn.execute("SELECT zone_id, version, changed_by, isfinite(effective_from), "
                                 "radius_m FROM zone_versions").fetchall()
            assert zones == [("home", 3, "migration", False, 300.0)]
            assert conn.execute("SELECT id, version, radius_m FROM zones").fetchall() == [
                ("home", 3, 300.0)]
            permits = conn.execute("SELECT id, version, reason, revoked_at IS NOT NULL, "
                                   "effective_from FROM permits ORDER BY id").fetchall()
            assert permits == [(7, 1, "trip", False, None), (8, 1, "cancelled", True, None)]
            # new permits continue the old numbering
            new = conn.execute("INSERT INTO permits (supervisee_id, valid_from, valid_to, reason, "
                               "anywhere) VALUES ('S1', '2026-07-01', '2026-07-02', 'new', true) "
                               "RETURNING id").fetchone()[0]
            assert new == 9
    finally:
        with psycopg.connect(pg_server, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _old_registry(conn: psycopg.Connection) -> None:
    """Rows as the registry held them before versioning (zones edited in place twice)."""
    conn.execute("INSERT INTO units (code, name) VALUES ('CAX-1', 'Công an xã 1')")
    conn.execute("INSERT INTO supervisees (id, name, sentence_type, sentence_start, sentence_end, "
                 "unit) VALUES ('S1', 'A', 'an_treo', '2025-01-01', '2027-12-31', 'CAX-1')")
    conn.execute("INSERT INTO zones (supervisee_id, id, kind, purpose, center_lon, center_lat, "
                 "radius_m, version) VALUES ('S1', 'home', 'inclusion', 'residence', 106, 21, "
                 "300, 3)")
    conn.execute("INSERT INTO permits (id, supervisee_id, valid_from, valid_to, reason, "
                 "anywhere, revoked_at) VALUES (7, 'S1', '2026-05-01', '2026-05-05', 'trip', "
                 "true, NULL), (8, 'S1', '2026-06-01', '2026-06-05', 'cancelled', true, "
                 "'2026-05-20')")
    conn.execute("SELECT setval('permits_id_seq', 8)")
