"""Loading the demo at every ``giamsat up --demo`` start leaves what users did alone."""

from __future__ import annotations

import pytest

from api.officers import authenticate, get_officer, update_officer
from config import Settings
from giamsat.app import _load_demo

pytestmark = pytest.mark.services

NEW_PASSWORD = "doi-mat-khau-roi"


def _zones(db, sid: str) -> set[str]:
    return {r[0] for r in db.execute("SELECT id FROM zones WHERE supervisee_id = %s", (sid,))}


def test_loading_the_demo_again_changes_nothing_users_did(db, tmp_path, capsys):
    settings = Settings(data_dir=tmp_path)
    _load_demo(db, settings)
    first = capsys.readouterr().out
    officers = [o for o in (get_officer(db, u) for u in ("cax-2701", "cax-2702")) if o]
    assert len(officers) == 2 and all(o.password_version == 1 for o in officers)
    sid = db.execute("SELECT id FROM supervisees ORDER BY id LIMIT 1").fetchone()[0]
    demo_zones = _zones(db, sid)
    # users at work: a zone added, a name corrected, a password set, an account disabled
    db.execute("INSERT INTO zones (supervisee_id, id, kind, purpose, center_lon, center_lat, "
               "radius_m) VALUES (%s, 'added-by-officer', 'exclusion', 'protection', 106.0, "
               "21.0, 200)", (sid,))
    db.execute("UPDATE supervisees SET name = 'Tên đã sửa' WHERE id = %s", (sid,))
    db.commit()
    update_officer(db, "cax-2701", password=NEW_PASSWORD)
    update_officer(db, "cax-2702", active=False)
    db.execute("DELETE FROM zones WHERE supervisee_id = %s AND id = %s",
               (sid, sorted(demo_zones)[0]))
    db.commit()
    before = db.execute("SELECT username, password_hash, password_version, active "
                        "FROM officers ORDER BY 1").fetchall()

    _load_demo(db, settings)  # the next start
    again = capsys.readouterr().out

    after = db.execute("SELECT username, password_hash, password_version, active "
                       "FROM officers ORDER BY 1").fetchall()
    assert after == before
    assert _zones(db, sid) == (demo_zones - {sorted(demo_zones)[0]}) | {"added-by-officer"}
    assert db.execute("SELECT name FROM supervisees WHERE id = %s", (sid,)).fetchone()[0] \
        == "Tên đã sửa"
    assert authenticate(db, "cax-2701", NEW_PASSWORD) is not None
    assert "cax-2701       (changed since)" in again
    # an officer nobody touched is shown with the same password as at the first start
    line = next(ln for ln in first.splitlines() if "cax-2703" in ln)
    assert line in again.splitlines()


def test_a_missing_demo_record_is_created_again(db, tmp_path):
    settings = Settings(data_dir=tmp_path)
    _load_demo(db, settings)
    n = db.execute("SELECT count(*) FROM supervisees").fetchone()[0]
    sid = db.execute("SELECT id FROM supervisees ORDER BY id DESC LIMIT 1").fetchone()[0]
    for table, col in (("permits", "supervisee_id"), ("zones", "supervisee_id"),
                       ("device_assignments", "supervisee_id")):
        db.execute(f"DELETE FROM {table} WHERE {col} = %s", (sid,))
    db.execute("UPDATE devices SET supervisee_id = NULL WHERE supervisee_id = %s", (sid,))
    db.execute("DELETE FROM supervisees WHERE id = %s", (sid,))
    db.commit()
    _load_demo(db, settings)
    assert db.execute("SELECT count(*) FROM supervisees").fetchone()[0] == n
    assert _zones(db, sid)
