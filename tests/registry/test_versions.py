"""Versioned zones and permits in the registry, against a real PostgreSQL: a change is a new
version with its effective time and author, never an update in place; the loaders give what is
in force now or at each instant; one revocation rule; one change watcher."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

import registry
from geofence.zones import parse_zone, zone_columns
from registry import permits, zones
from registry.common import ChangeRefused

pytestmark = pytest.mark.services

DAY = timedelta(days=1)
T = datetime(2026, 3, 1, 1, 0, tzinfo=UTC)  # "now" of the writers in these tests


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def _square(lon: float, lat: float, d: float) -> dict:
    return {"type": "Polygon", "coordinates": [[[lon - d, lat - d], [lon + d, lat - d],
                                                [lon + d, lat + d], [lon - d, lat + d],
                                                [lon - d, lat - d]]]}


def _values(d: float = 0.01, **extra) -> dict:
    obj = {"id": "home", "kind": "inclusion", "purpose": "residence",
           "geometry": _square(106.0, 21.0, d), **extra}
    return zone_columns(obj, parse_zone(obj, "S1"))


@pytest.fixture
def conn(db: psycopg.Connection) -> psycopg.Connection:
    db.execute("INSERT INTO units (code, name) VALUES ('CAX-1', 'Công an xã 1')")
    db.execute("INSERT INTO supervisees (id, name, sentence_type, sentence_start, sentence_end, "
               "unit) VALUES ('S1', 'A', 'an_treo', '2025-01-01', '2027-12-31', 'CAX-1'), "
               "('S2', 'B', 'an_treo', '2025-01-01', '2027-12-31', 'CAX-1')")
    db.commit()
    return db


def test_a_zone_change_is_a_new_version_and_the_old_one_stays_in_force_before_it(conn):
    assert zones.put_zone(conn, "S1", "home", _values(), changed_by="xa.a", now=T)[0] == "created"
    outcome, row = zones.put_zone(conn, "S1", "home", _values(), changed_by="xa.a",
                                  now=T + DAY)
    assert outcome == "unchanged" and row["version"] == 1  # nothing written for nothing
    outcome, row = zones.put_zone(conn, "S1", "home", _values(0.05), changed_by="import",
                                  now=T + 2 * DAY, reason="moved")
    assert (outcome, row["version"], row["changed_by"]) == ("updated", 2, "import")
    conn.commit()

    spans = registry.zones_in_force(conn, "S1", _ms(T - DAY), _ms(T + 3 * DAY))
    assert [(v.version, v.effective_from_ms, v.effective_to_ms) for v in spans] == [
        (1, _ms(T), _ms(T + 2 * DAY)), (2, _ms(T + 2 * DAY), None)]
    assert [v.in_force_at(_ms(T + DAY)) for v in spans] == [True, False]
    small, large = (v.zone.geometry.area for v in spans)
    assert large > 20 * small
    # each instant has its version; "now" is the latest
    assert zones.load_zones(conn, ["S1"], at=T + DAY)[0].geometry.area == small
    assert zones.load_zones(conn, ["S1"])[0].geometry.area == large
    assert registry.zones_in_force(conn, "S1", _ms(T - 2 * DAY), _ms(T - DAY)) == []
    # the view under the old name shows the version in force now
    assert conn.execute("SELECT version, changed_by FROM zones WHERE supervisee_id = 'S1'"
                        ).fetchall() == [(2, "import")]


def test_ending_a_zone_is_a_version_and_history_keeps_every_one(conn):
    zones.put_zone(conn, "S1", "home", _values(), changed_by="xa.a", now=T)
    assert zones.end_zone(conn, "S1", "home", changed_by="xa.a", now=T + DAY, reason="đã chuyển")
    assert not zones.end_zone(conn, "S1", "home", changed_by="xa.a", now=T + 2 * DAY)
    conn.commit()
    assert registry.load_zones(conn, ["S1"]) == []
    assert [v.version for v in registry.zones_in_force(conn, "S1", _ms(T), _ms(T + 3 * DAY))] == [1]
    history = zones.zone_history(conn, "S1", "home")
    assert [(h["version"], h["ended"], h["change_reason"]) for h in history] == [
        (1, False, None), (2, True, "đã chuyển")]
    # created again later: a third version, in force from then
    assert zones.put_zone(conn, "S1", "home", _values(), changed_by="xa.a",
                          now=T + 3 * DAY)[0] == "created"
    assert zones.zone_history(conn, "S1", "home")[-1]["version"] == 3


def test_a_change_cannot_take_effect_in_the_past_and_versions_cannot_be_edited(conn):
    zones.put_zone(conn, "S1", "home", _values(), changed_by="xa.a", now=T)
    with pytest.raises(ChangeRefused) as info:
        zones.put_zone(conn, "S1", "home", _values(0.02), changed_by="xa.a", now=T + DAY,
                       effective_from=T)
    assert info.value.rule == "effective_in_past"
    conn.commit()
    with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
        conn.execute("UPDATE zone_versions SET radius_m = 5")
    conn.rollback()


def test_rows_written_into_the_views_as_before_become_versions(conn):
    conn.execute("INSERT INTO zones (supervisee_id, id, kind, purpose, center_lon, center_lat, "
                 "radius_m) VALUES ('S1', 'c', 'inclusion', 'residence', 106.0, 21.0, 500)")
    conn.execute("UPDATE zones SET radius_m = 800 WHERE supervisee_id = 'S1' AND id = 'c'")
    with pytest.raises(psycopg.errors.UniqueViolation):
        with conn.transaction():
            conn.execute("INSERT INTO zones (supervisee_id, id, kind, center_lon, center_lat, "
                         "radius_m) VALUES ('S1', 'c', 'exclusion', 106.0, 21.0, 5)")
    conn.execute("DELETE FROM zones WHERE supervisee_id = 'S1' AND id = 'c'")
    conn.commit()
    rows = conn.execute("SELECT version, ended, radius_m, changed_by, isfinite(effective_from) "
                        "FROM zone_versions ORDER BY version").fetchall()
    assert rows == [(1, False, 500.0, "sql", False),  # a first version so written: since always
                    (2, False, 800.0, "sql", True), (3, True, None, "sql", True)]
    assert conn.execute("SELECT count(*) FROM zones").fetchone() == (0,)


def _grant(conn, start: datetime, days: float, reason: str = "thăm người thân", sid: str = "S1"):
    """A permit granted three days before T."""
    row = permits.grant(conn, sid, valid_from=start, valid_to=start + days * DAY, reason=reason,
                        category="family", destination=None, granted_by="xa.a", now=T - 3 * DAY)
    assert row is not None
    return row["id"]


def test_the_one_revocation_rule(conn):
    started = _grant(conn, T - 2 * DAY, 10, "đã đi")
    later = _grant(conn, T + 5 * DAY, 3, "chưa đi")
    permits.revoke(conn, started, changed_by="xa.a", reason="vi phạm", now=T)
    permits.revoke(conn, later, changed_by="xa.a", reason="huỷ", now=T)
    conn.commit()
    loaded = registry.load_permits(conn, ["S1"])
    # revoked after it started: counted up to its revocation; before it started: never applied
    assert [(p.id, p.from_ms, p.to_ms) for p in loaded] == [(started, _ms(T - 2 * DAY), _ms(T))]
    in_force = registry.permits_in_force(conn, "S1", _ms(T - 3 * DAY), _ms(T + 9 * DAY))
    assert [(v.permit.id, v.version, v.permit.to_ms, v.effective_to_ms) for v in in_force] == [
        (started, 1, _ms(T + 8 * DAY), _ms(T)),  # as granted, until the revocation was made
        (started, 2, _ms(T), None),
        (later, 1, _ms(T + 8 * DAY), _ms(T))]  # version 2 of `later` never applies


def test_revoke_and_shorten_refusals(conn):
    pid = _grant(conn, T + DAY, 5)
    for call, rule in (
            (lambda: permits.shorten(conn, pid, valid_to=T + 7 * DAY, changed_by="x", reason="r",
                                     now=T), "not_shorter"),
            (lambda: permits.shorten(conn, pid, valid_to=T + DAY, changed_by="x", reason="r",
                                     now=T), "not_after_start"),
            (lambda: permits.revoke(conn, pid, at=T - DAY, changed_by="x", reason="r", now=T),
             "effective_in_past"),
            (lambda: permits.revoke(conn, 999_999, changed_by="x", reason="r", now=T),
             "no_permit")):
        with pytest.raises(ChangeRefused) as info:
            call()
        assert info.value.rule == rule
    shortened = permits.shorten(conn, pid, valid_to=T + 3 * DAY, changed_by="xa.a",
                                reason="về sớm", now=T + DAY / 2)
    assert (shortened["version"], shortened["valid_to"]) == (2, T + 3 * DAY)
    with pytest.raises(ChangeRefused) as info:  # it has ended by then
        permits.revoke(conn, pid, at=T + 4 * DAY, changed_by="x", reason="r", now=T + DAY)
    assert info.value.rule == "already_ended"
    permits.revoke(conn, pid, changed_by="xa.a", reason="vi phạm", now=T + 2 * DAY)
    with pytest.raises(ChangeRefused) as info:
        permits.revoke(conn, pid, changed_by="xa.a", reason="again", now=T + 2 * DAY)
    assert info.value.rule == "already_revoked"
    history = permits.permit_history(conn, pid)
    assert [(h["version"], h["changed_by"], h["change_reason"]) for h in history] == [
        (1, "xa.a", None), (2, "xa.a", "về sớm"), (3, "xa.a", "vi phạm")]
    assert permits.grant(conn, "S1", valid_from=T + DAY, valid_to=T + 6 * DAY,
                         reason="thăm người thân", category="family", destination=None,
                         granted_by="xa.a", now=T) is None  # the same permit again


def test_the_change_watcher_names_whose_registry_changed(conn):
    before_stamp, before = registry.stamp(conn), registry.fingerprints(conn)
    zones.put_zone(conn, "S1", "home", _values(), changed_by="xa.a", now=T)
    registry.bump(conn)
    conn.commit()
    after, changed = registry.changes(conn, before)
    assert changed == ["S1"] and registry.stamp(conn) == before_stamp + 1
    _grant(conn, T + DAY, 2, sid="S2")
    registry.bump(conn)
    conn.commit()
    assert registry.changes(conn, after)[1] == ["S2"]
    assert registry.changes(conn, registry.fingerprints(conn))[1] == []


def test_a_version_scheduled_ahead_moves_the_stamp_when_it_comes_into_force(conn):
    now = conn.execute("SELECT now()").fetchone()[0]
    zones.put_zone(conn, "S1", "home", _values(), changed_by="xa.a", now=now - 10 * DAY)
    registry.bump(conn)
    conn.commit()
    stamp, prints = registry.stamp(conn), registry.fingerprints(conn)
    # recorded a day ago, for a later time: not in force at first (nobody bumps when it is)
    zones.put_zone(conn, "S1", "home", _values(0.02), changed_by="xa.a", now=now - DAY,
                   effective_from=now + timedelta(hours=1))
    conn.commit()
    assert registry.stamp(conn) == stamp and registry.changes(conn, prints)[1] == []
    assert registry.load_zones(conn, ["S1"], at=now + 2 * timedelta(hours=1))[0].geometry.area > (
        registry.load_zones(conn, ["S1"])[0].geometry.area)
    # the same, scheduled for a moment already passed: the stamp counts it
    zones.put_zone(conn, "S1", "home", _values(0.03), changed_by="xa.a", now=now - DAY,
                   effective_from=now - timedelta(hours=1))
    conn.commit()
    assert registry.stamp(conn) == stamp + 1 and registry.changes(conn, prints)[1] == ["S1"]
