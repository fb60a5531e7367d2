"""giamsat import: all or nothing, errors naming the JSON path, idempotent."""

import copy
import os
import subprocess
import sys

import orjson
import pytest

from registry.document import ImportError_, import_document
from simulators.demo import build_demo_document

pytestmark = pytest.mark.services


@pytest.fixture(scope="module")
def demo_doc():
    return build_demo_document(seed=3, per_commune=2, communes=4)


def _counts(db):
    return {t: db.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("units", "supervisees", "zones", "devices", "permits", "device_assignments")}


def _paths(exc: ImportError_) -> list[str]:
    return [p for p, _ in exc.errors]


def test_demo_document_imports_and_twice_changes_nothing(db, demo_doc):
    first = import_document(db, demo_doc)
    assert first.changed
    counts = _counts(db)
    assert counts["units"] == 5 and counts["supervisees"] == 8 and counts["devices"] == 8
    stamps = db.execute("SELECT max(updated_at) FROM zones").fetchone()[0]
    version = db.execute("SELECT version FROM registry_version").fetchone()[0]
    second = import_document(db, demo_doc)
    assert not second.changed, str(second)
    assert _counts(db) == counts
    assert db.execute("SELECT max(updated_at) FROM zones").fetchone()[0] == stamps
    assert db.execute("SELECT version FROM registry_version").fetchone()[0] == version


def test_a_changed_zone_is_updated_and_a_dropped_one_removed(db, demo_doc):
    import_document(db, demo_doc)
    doc = copy.deepcopy(demo_doc)
    sup = next(s for s in doc["supervisees"] if len(s["zones"]) >= 2)
    dropped = sup["zones"].pop()
    sup["zones"][0]["margin_m"] = 25
    summary = import_document(db, doc)
    assert summary.counts["zones"]["updated"] == 2
    ids = {r[0] for r in db.execute("SELECT id FROM zones WHERE supervisee_id = %s", (sup["id"],))}
    assert dropped["id"] not in ids
    margin = db.execute("SELECT margin_m FROM zones WHERE supervisee_id = %s AND id = %s",
                        (sup["id"], sup["zones"][0]["id"])).fetchone()[0]
    assert margin == 25


def test_reassigning_a_device_keeps_its_history(db, demo_doc):
    import_document(db, demo_doc)
    doc = copy.deepcopy(demo_doc)
    doc["devices"][0]["supervisee"] = doc["devices"][1]["supervisee"]
    doc["devices"][1]["supervisee"] = None
    import_document(db, doc)
    rows = db.execute("SELECT supervisee_id, unassigned_at IS NULL FROM device_assignments "
                      "WHERE device_id = %s ORDER BY id", (doc["devices"][0]["id"],)).fetchall()
    assert rows == [(demo_doc["devices"][0]["supervisee"], False),
                    (demo_doc["devices"][1]["supervisee"], True)]


@pytest.mark.parametrize("mutate, path, words", [
    (lambda d: d["units"][1].update(parent="NOPE"), "$.units[1].parent", "names no unit"),
    (lambda d: d["supervisees"][0].update(sentence_type="tu_chung_than"),
     "$.supervisees[0].sentence_type", "must be one of"),
    (lambda d: d["supervisees"][0].update(sentence_end="2001-01-01"),
     "$.supervisees[0].sentence_end", "before"),
    (lambda d: d["supervisees"][1]["zones"][0].update(
        geometry={"type": "Polygon", "coordinates": [[[106.0, 21.0], [106.1, 21.1],
                                                      [106.1, 21.0], [106.0, 21.1],
                                                      [106.0, 21.0]]]}),
     "$.supervisees[1].zones[0].geometry", "self"),
    (lambda d: d["supervisees"][1]["zones"][0].update(
        geometry={"type": "Polygon", "coordinates": [[[21.0, 106.0], [21.1, 106.0],
                                                      [21.1, 106.1], [21.0, 106.0]]]}),
     "$.supervisees[1].zones[0].geometry", ""),
    (lambda d: d["devices"][0].update(id="bad id!"), "$.devices[0].id", "must match"),
    (lambda d: d["devices"][0].update(supervisee="ghost"), "$.devices[0].supervisee",
     "names no supervisee"),
    (lambda d: d["permits"].append({"supervisee": d["supervisees"][0]["id"],
                                    "valid_from": "2026-12-01T08:00:00", "valid_to":
                                    "2026-12-02T08:00:00+07:00", "reason": "x",
                                    "destination": "anywhere"}),
     "$.permits[{n}].valid_from", "offset"),
])
def test_errors_name_the_json_path_and_nothing_is_written(db, demo_doc, mutate, path, words):
    doc = copy.deepcopy(demo_doc)
    mutate(doc)
    path = path.format(n=len(doc["permits"]) - 1)
    with pytest.raises(ImportError_) as info:
        import_document(db, doc)
    assert any(p.startswith(path) for p in _paths(info.value)), info.value.errors
    assert any(words in m for p, m in info.value.errors if p.startswith(path)), info.value.errors
    assert _counts(db)["units"] == 0


def test_a_permit_that_breaks_the_policy_is_refused_naming_the_rule(db, demo_doc):
    doc = copy.deepcopy(demo_doc)
    sup = next(s for s in doc["supervisees"] if s["sentence_type"] == "quan_che")
    # quản chế: at most 10 days per trip
    doc["permits"] = [{"supervisee": sup["id"], "valid_from": f"{sup['sentence_start']}T08:00:00+07:00",
                       "valid_to": None, "reason": "thăm người thân", "destination": "anywhere",
                       "category": "family"}]
    from datetime import date, timedelta
    start = date.fromisoformat(sup["sentence_start"]) + timedelta(days=1)
    doc["permits"][0]["valid_from"] = f"{start}T08:00:00+07:00"
    doc["permits"][0]["valid_to"] = f"{start + timedelta(days=20)}T08:00:00+07:00"
    with pytest.raises(ImportError_) as info:
        import_document(db, doc)
    assert info.value.errors[0][0] == "$.permits[0]"
    assert "max_trip_days" in info.value.errors[0][1]


def test_cli_reports_errors_and_exit_status(db_url, demo_doc, tmp_path):
    good = tmp_path / "good.json"
    good.write_bytes(orjson.dumps(demo_doc))
    bad = tmp_path / "bad.json"
    bad.write_bytes(b'{"units": [{"code": "X"}]}')
    env = {**os.environ, "GIAMSAT_DATABASE_URL": db_url}
    run = [sys.executable, "-m", "giamsat", "import"]
    ok = subprocess.run([*run, str(good)], env=env, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "imported" in ok.stdout
    again = subprocess.run([*run, str(good)], env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "nothing to change" in again.stdout
    fail = subprocess.run([*run, str(bad)], env=env, capture_output=True, text=True, timeout=120)
    assert fail.returncode == 1
    assert "$.units[0].name: is required" in fail.stderr


def _zone_versions(db, sid: str, zone_id: str) -> list[tuple]:
    return db.execute("SELECT version, ended, changed_by, margin_m FROM zone_versions "
                      "WHERE supervisee_id = %s AND zone_id = %s ORDER BY version",
                      (sid, zone_id)).fetchall()


def test_a_reimport_keeps_versions_and_what_was_in_force_before(db, demo_doc):
    import registry

    import_document(db, demo_doc)
    before = db.execute("SELECT now()").fetchone()[0]
    db.commit()
    doc = copy.deepcopy(demo_doc)
    sup = next(s for s in doc["supervisees"] if len(s["zones"]) >= 2)
    dropped = sup["zones"].pop()
    changed = sup["zones"][0]
    old_margin = changed.get("margin_m")
    changed["margin_m"] = 25
    import_document(db, doc)
    versions = _zone_versions(db, sup["id"], changed["id"])
    assert [(v, e, by) for v, e, by, _ in versions] == [(1, False, "import"), (2, False, "import")]
    assert versions[1][3] == 25
    assert _zone_versions(db, sup["id"], dropped["id"])[-1][:3] == (2, True, "import")
    # as it was before this import: both zones, the old margin
    then = {z.id: z for z in registry.load_zones(db, [sup["id"]], at=before)}
    assert dropped["id"] in then and then[changed["id"]].margin_m == old_margin
    rows = db.execute("SELECT count(*) FROM zone_versions").fetchone()[0]
    assert not import_document(db, doc).changed  # the same document again: no new version
    assert db.execute("SELECT count(*) FROM zone_versions").fetchone()[0] == rows


def test_a_changed_permit_is_a_new_version_and_a_revocation_stays(db, demo_doc):
    from registry import permits

    import_document(db, demo_doc)
    doc = copy.deepcopy(demo_doc)
    doc["permits"][0]["category"] = "work"
    summary = import_document(db, doc)
    assert summary.counts["permits"]["updated"] == 1
    pid = db.execute("SELECT id FROM permits WHERE reason = %s",
                     (doc["permits"][0]["reason"],)).fetchone()[0]
    history = permits.permit_history(db, pid)
    assert [(h["version"], h["category"], h["changed_by"]) for h in history] == [
        (1, "family", "import"), (2, "work", "import")]
    permits.revoke(db, pid, changed_by="xa.a", reason="vi phạm")
    db.commit()
    assert not import_document(db, doc).changed  # an import never undoes a revocation
    assert permits.permit_row(db, pid)["revoked_at"] is not None


def test_a_supervisee_wears_one_device_at_a_time(db, demo_doc):
    """Two devices on one supervisee, in the document or with one already worn: an error
    naming the record, nothing written; moving a device on from its wearer is fine."""
    import_document(db, demo_doc)
    counts = _counts(db)
    sid = demo_doc["devices"][0]["supervisee"]
    worn = demo_doc["devices"][0]["id"]
    doc = {"devices": [{"id": "dev-extra", "supervisee": sid}]}
    with pytest.raises(ImportError_) as info:
        import_document(db, doc)
    assert _paths(info.value) == ["$.devices[0].supervisee"]
    assert worn in str(info.value) and "two devices" in str(info.value)
    both = {"devices": [{"id": "dev-x1", "supervisee": None}, {"id": "dev-x2", "supervisee": None}]}
    import_document(db, both)
    both["devices"][0]["supervisee"] = both["devices"][1]["supervisee"] = \
        demo_doc["devices"][1]["supervisee"]
    demo_doc_moves = {"devices": [{"id": demo_doc["devices"][1]["id"], "supervisee": None},
                                  *both["devices"]]}
    with pytest.raises(ImportError_) as info:
        import_document(db, demo_doc_moves)
    assert _paths(info.value) == ["$.devices[2].supervisee"]
    assert _counts(db)["device_assignments"] == counts["device_assignments"]
