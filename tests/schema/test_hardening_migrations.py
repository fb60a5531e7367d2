"""Migrations 0070 and 0071 mend data that breaks their new rules instead of failing on it."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.services

MIGRATIONS = Path(__file__).parents[2] / "schema" / "migrations"




def test_0071_keeps_the_newest_open_assignment_and_audits_the_others(db):
    db.execute("DROP INDEX device_assignments_one_open_per_supervisee")
    db.execute("INSERT INTO units (code, name) VALUES ('U1', 'u')")
    db.execute("INSERT INTO supervisees (id, name, sentence_type, sentence_start, sentence_end, "
               "unit) VALUES ('S1', 's', 'an_treo', '2025-01-01', '2027-01-01', 'U1')")
    for dev, at in (("d-old", "2026-01-01"), ("d-new", "2026-02-01")):
        db.execute("INSERT INTO devices (id, supervisee_id) VALUES (%s, 'S1')", (dev,))
        db.execute("INSERT INTO device_assignments (device_id, supervisee_id, assigned_at) "
                   "VALUES (%s, 'S1', %s)", (dev, at))
    db.execute((MIGRATIONS / "0071_one_device_per_supervisee.sql").read_text())
    open_ = db.execute("SELECT device_id FROM device_assignments WHERE unassigned_at IS NULL"
                       ).fetchall()
    assert open_ == [("d-new",)]
    assert db.execute("SELECT id, supervisee_id FROM devices ORDER BY id").fetchall() == [
        ("d-new", "S1"), ("d-old", None)]
    assert db.execute("SELECT actor, subject FROM audit_log").fetchall() == [
        ("migration 0071", "d-old")]


def test_0070_takes_the_unit_off_an_admin(db):
    db.execute("ALTER TABLE officers DROP CONSTRAINT officers_admin_has_no_unit")
    db.execute("INSERT INTO units (code, name) VALUES ('U1', 'u')")
    db.execute("INSERT INTO officers (username, password_hash, role, unit) "
               "VALUES ('boss', 'x', 'admin', 'U1'), ('xa.a', 'x', 'commune', 'U1')")
    db.execute((MIGRATIONS / "0070_officer_unit_rules.sql").read_text())
    assert db.execute("SELECT username, unit FROM officers ORDER BY 1").fetchall() == [
        ("boss", None), ("xa.a", "U1")]
