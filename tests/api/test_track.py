"""Tracks with decisions, the case export and dead letters: bounded, audited, never leaking."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import psycopg
import pytest

from api import track
from api.wire import MAX_MS, MIN_MS
from tests.api.conftest import DEV_A, DEV_FREE, LAT0, NAME_A, SV_A, T0

pytestmark = pytest.mark.services

HOUR = 3_600_000
RANGE = {"from": T0 - HOUR, "to": T0 + 2 * HOUR}


def _audit(api, action: str) -> list[tuple]:
    with psycopg.connect(api.db_url) as conn:
        return conn.execute("SELECT actor, subject, params FROM audit_log WHERE action = %s "
                            "ORDER BY id", (action,)).fetchall()


def test_track_with_decisions(api):
    r = api.client.get(f"/api/v1/supervisees/{SV_A}/track", params=RANGE,
                       headers=api.auth("xa.a"))
    assert r.status_code == 200
    fc = r.json()
    assert fc["type"] == "FeatureCollection" and fc["count"] == 10 and not fc["truncated"]
    props = [f["properties"] for f in fc["features"]]
    assert [p["seq"] for p in props] == list(range(10))
    assert all({"ts", "seq", "acc"} <= set(p) for p in props)
    assert [p["decision"] for p in props] == ["compliant"] * 5 + ["violation"] * 4 + ["ignored"]
    residence = props[6]["zones"][0]
    assert residence["zone_id"] == "residence" and residence["class"] == "violation"
    assert residence["in_force"] is True
    assert fc["features"][0]["geometry"]["coordinates"][1] == LAT0
    assert {a["type"] for a in fc["alerts"]} >= {"zone_exit"}
    rows = _audit(api, "track.read")
    assert rows[-1][0] == "xa.a" and rows[-1][1] == SV_A
    assert rows[-1][2] == {"from": RANGE["from"], "to": RANGE["to"], "count": 10,
                           "truncated": False}


@pytest.mark.parametrize("params, status", [
    ({"from": T0, "to": T0}, 400),
    ({"from": T0, "to": T0 - 1}, 400),
    ({"from": T0}, 422),
    ({"from": -5, "to": T0}, 422),
    ({"from": "yesterday", "to": T0}, 422),
    ({"from": 0, "to": 10**17}, 422),
])
def test_invalid_ranges(api, params, status):
    r = api.client.get(f"/api/v1/supervisees/{SV_A}/track", params=params,
                       headers=api.auth("xa.a"))
    assert r.status_code == status, r.text


@pytest.mark.parametrize("path", ["track", "case-export"])
@pytest.mark.parametrize("end", [MAX_MS, MAX_MS + 1, 253_402_300_799_999])
def test_the_widest_range_is_an_answer_not_a_crash(api, path, end):
    """Every ``to`` the schema accepts gives 200 (the local time of the end of year 9999 once
    overflowed into year 10000: a 500), and one past the bound a 422."""
    r = api.client.get(f"/api/v1/supervisees/{SV_A}/{path}", params={"from": 0, "to": end},
                       headers=api.auth("xa.a"))
    assert r.status_code == (200 if end <= MAX_MS else 422), r.text[:300]


@pytest.mark.parametrize("path, params", [
    ("/api/v1/alerts", {"from": MIN_MS, "to": MAX_MS}),
    ("/api/v1/dead-letters", {"since": MAX_MS}),
])
def test_other_ms_parameters_take_the_same_bounds(api, path, params):
    r = api.client.get(path, params=params, headers=api.auth("admin"))
    assert r.status_code == 200, r.text[:300]
    too_far = {k: MAX_MS + 1 for k in params}
    assert api.client.get(path, params=too_far, headers=api.auth("admin")).status_code == 422


def test_track_follows_the_assignment_history(api):
    """A device's fixes belong to the track only while it was assigned to the supervisee."""
    with psycopg.connect(api.db_url) as conn:
        for k, ms in enumerate((T0 - 30 * 60_000, T0 + 30 * 60_000)):
            conn.execute("INSERT INTO fixes (device_id, ts, seq, lat, lon, acc, received_at) "
                         "VALUES (%s, %s, %s, 21.18, 105.97, 5, now())",
                         (DEV_FREE, datetime.fromtimestamp(ms / 1000, UTC), 100 + k))
        conn.execute("UPDATE devices SET supervisee_id = %s WHERE id = %s", (SV_A, DEV_FREE))
        # one device at a time: DEV_A comes off now (after all its fixes), DEV_FREE goes on
        conn.execute("UPDATE device_assignments SET unassigned_at = now() "
                     "WHERE device_id = %s AND unassigned_at IS NULL", (DEV_A,))
        conn.execute("INSERT INTO device_assignments (device_id, supervisee_id, assigned_at) "
                     "VALUES (%s, %s, %s)", (DEV_FREE, SV_A, datetime.fromtimestamp(T0 / 1000, UTC)))
    fc = api.client.get(f"/api/v1/supervisees/{SV_A}/track", params=RANGE,
                        headers=api.auth("xa.a")).json()
    mine = [f["properties"]["seq"] for f in fc["features"]
            if f["properties"]["device_id"] == DEV_FREE]
    assert mine == [101]


def test_track_is_bounded(api):
    with psycopg.connect(api.db_url) as conn:
        rows, truncated = track.fixes(conn, SV_A, datetime.fromtimestamp(0, UTC),
                                      datetime.fromtimestamp(T0 / 1000 + 7200, UTC), limit=3)
    assert len(rows) == 3 and truncated


def test_case_export_is_one_printable_page(api):
    r = api.client.get(f"/api/v1/supervisees/{SV_A}/case-export", params=RANGE,
                       headers=api.auth("tinh.t"))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in r.headers["content-security-policy"]
    page = r.text
    assert NAME_A in page and "residence" in page and "zone_exit" in page
    assert "opened" in page  # the alert history
    assert "<script" not in page.lower()
    assert not re.search(r"\b(src|href)\s*=", page)  # no external resource of any kind
    assert not re.search(r"url\(", page)
    assert "@media print" in page
    rows = _audit(api, "case_export.read")
    assert rows[-1][0] == "tinh.t" and rows[-1][1] == SV_A


def test_dead_letters(api):
    admin = api.client.get("/api/v1/dead-letters", headers=api.auth("admin")).json()
    assert {d["device_id"] for d in admin["dead_letters"]} == {DEV_A, "ghost-7"}
    mine = api.client.get("/api/v1/dead-letters", headers=api.auth("xa.a")).json()
    assert [d["device_id"] for d in mine["dead_letters"]] == [DEV_A]
    letter = mine["dead_letters"][0]
    assert letter["reason"] == "out_of_range" and letter["payload_text"].startswith('{"seq"')
    assert letter["payload_base64"]
    assert api.client.get("/api/v1/dead-letters", params={"device_id": "ghost-7"},
                          headers=api.auth("xa.a")).status_code == 404
    later = api.client.get("/api/v1/dead-letters", params={"since": T0 + 1},
                           headers=api.auth("admin")).json()
    assert later["count"] == 0
    rows = _audit(api, "dead_letters.read")
    assert [r[0] for r in rows[-3:]] == ["admin", "xa.a", "admin"]  # a refusal reads nothing


def test_logs_carry_ids_not_names_or_positions(api, caplog):
    caplog.set_level("DEBUG")
    api.client.post("/api/v1/auth/token", data={"username": "xa.a", "password": "wrong"})
    api.client.get(f"/api/v1/supervisees/{SV_A}/track", params=RANGE, headers=api.auth("xa.a"))
    api.client.get(f"/api/v1/supervisees/{SV_A}", headers=api.auth("xa.a"))
    text = caplog.text
    assert NAME_A not in text and str(LAT0) not in text and "21.2" not in text
