"""History is never rewritten (issue 11 §3), through the API: zone edits and permit revocations
are versions; the track and the case export of a period decide each fix against the versions in
force at its time; the total-trips check counts a revoked permit the same way through the API
and through ``giamsat import``."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import psycopg
import pytest

from registry.document import ImportError_, import_document
from schema import connect
from tests.api.conftest import COMMUNE_A, DEV_A, LAT0, LON0, SV_A, T0, square

pytestmark = pytest.mark.services

HOUR, DAY = 3_600_000, 86_400_000
ZONES = f"/api/v1/supervisees/{SV_A}/zones"
LON_A = LON0 - 0.1  # SV_A's residence square (0.01 degree) is centred here


def _version(api) -> int:
    with psycopg.connect(api.db_url) as conn:
        return conn.execute("SELECT version FROM registry_version").fetchone()[0]


def _track(api, start: int, end: int) -> list[dict]:
    r = api.client.get(f"/api/v1/supervisees/{SV_A}/track", params={"from": start, "to": end},
                       headers=api.auth("xa.a"))
    assert r.status_code == 200, r.text
    return [f["properties"] for f in r.json()["features"]]


def _case(api, start: int, end: int) -> str:
    r = api.client.get(f"/api/v1/supervisees/{SV_A}/case-export",
                       params={"from": start, "to": end}, headers=api.auth("tinh.t"))
    assert r.status_code == 200, r.text
    return r.text


def _residence_versions(props: list[dict]) -> set[int]:
    return {z["version"] for p in props for z in p["zones"] if z["zone_id"] == "residence"}


def _violating(page: str) -> int:
    return int(re.search(r"violating</dt><dd>(\d+)</dd>", page).group(1))


def test_a_zone_edited_after_an_alert_keeps_the_old_decisions(api):
    edit_ms = api.clock.ms  # T0 + 1 h: after the exit (fixes at T0 + 5..8 min) and its alert
    before = _track(api, T0 - HOUR, T0 + 30 * 60_000)
    assert [p["decision"] for p in before] == ["compliant"] * 5 + ["violation"] * 4 + ["ignored"]
    wider = {"type": "Feature", "geometry": square(LAT0, LON_A, 0.05),
             "properties": {"kind": "inclusion", "purpose": "residence"}}
    r = api.client.put(f"{ZONES}/residence", json=wider, headers=api.auth("xa.a"),
                       params={"reason": "mở rộng địa bàn"})
    assert r.status_code == 200, r.text
    props = r.json()["properties"]
    assert (props["version"], props["effective_from"], props["changed_by"]) == (2, edit_ms, "xa.a")
    # later fixes at the same place, outside the old square, inside the new one
    with psycopg.connect(api.db_url) as conn:
        for k in range(3):
            ts = datetime.fromtimestamp((edit_ms + HOUR + k * 60_000) / 1000, UTC)
            conn.execute("INSERT INTO fixes (device_id, ts, seq, lat, lon, acc, received_at, "
                         "supervisee_id) VALUES (%s, %s, %s, %s, %s, 8, %s, %s)",
                         (DEV_A, ts, 100 + k, LAT0 + 0.02, LON_A, ts, SV_A))

    # the earlier period: as decided then, against version 1
    again = _track(api, T0 - HOUR, T0 + 30 * 60_000)
    assert [p["decision"] for p in again] == [p["decision"] for p in before]
    assert _residence_versions(again) == {1}
    # the later period: the new version
    later = _track(api, edit_ms, edit_ms + 3 * HOUR)
    assert [p["decision"] for p in later] == ["compliant"] * 3
    assert _residence_versions(later) == {2}
    # one request across the edit: each fix with its own version
    both = _track(api, T0 - HOUR, edit_ms + 3 * HOUR)
    assert [p["decision"] for p in both] == [p["decision"] for p in before] + ["compliant"] * 3

    old_page, new_page = _case(api, T0 - HOUR, T0 + 30 * 60_000), _case(api, edit_ms,
                                                                         edit_ms + 3 * HOUR)
    assert _violating(old_page) == 4 and _violating(new_page) == 0
    assert "<td>residence</td><td>1:" in old_page and "<td>residence</td><td>2:" not in old_page
    assert "<td>residence</td><td>2:" in new_page and "zone_exit" in old_page

    # the zones in force then and now, and the history
    h = api.auth("xa.a")
    then = api.client.get(ZONES, params={"at": T0}, headers=h).json()
    now = api.client.get(ZONES, headers=h).json()
    res = {f["properties"]["version"] for c in (then, now) for f in c["features"]
           if f["id"] == "residence"}
    assert res == {1, 2} and then["at"] == T0
    history = api.client.get(f"{ZONES}/residence/versions", headers=h).json()["features"]
    assert [(f["properties"]["version"], f["properties"]["effective_to"],
             f["properties"]["change_reason"]) for f in history] == [
        (1, edit_ms, None), (2, None, "mở rộng địa bàn")]
    assert history[0]["geometry"] == square(LAT0, LON_A, 0.01)
    assert api.client.get(f"{ZONES}/residence/versions",
                          headers=api.auth("xa.b")).status_code == 404
    assert api.client.get(f"{ZONES}/nowhere/versions", headers=h).status_code == 404


def test_zone_changes_cannot_be_backdated_and_removal_is_a_version(api):
    h = api.auth("xa.a")
    v0 = _version(api)
    circle = {"kind": "exclusion", "purpose": "ban", "center": [LON_A, LAT0 - 0.05],
              "radius_m": 200}
    past = api.client.put(f"{ZONES}/market", json=circle, headers=h,
                          params={"effective_from": api.clock.ms - 1})
    assert past.status_code == 422 and past.json()["rule"] == "effective_in_past"
    assert _version(api) == v0
    ahead = api.clock.ms + DAY
    created = api.client.put(f"{ZONES}/market", json=circle, headers=h,
                             params={"effective_from": ahead})
    assert created.status_code == 201 and created.json()["properties"]["effective_from"] == ahead
    assert api.client.put(f"{ZONES}/market", json=circle, headers=h).status_code == 200
    assert _version(api) == v0 + 1  # the same zone again: nothing new
    gone = api.client.delete(f"{ZONES}/market", headers=h,
                             params={"effective_from": ahead + DAY, "reason": "hết hạn cấm"})
    assert gone.status_code == 204
    versions = api.client.get(f"{ZONES}/market/versions", headers=h).json()["features"]
    assert [(f["properties"]["version"], f["properties"].get("ended", False), f["geometry"] is None)
            for f in versions] == [(1, False, False), (2, True, True)]
    during = api.client.get(ZONES, params={"at": ahead + HOUR}, headers=h).json()
    assert "market" in {f["id"] for f in during["features"]}
    after = api.client.get(ZONES, params={"at": ahead + 2 * DAY}, headers=h).json()
    assert "market" not in {f["id"] for f in after["features"]}


def _permit(api, sid: str, start_ms: int, end_ms: int, reason: str, who: str = "xa.a"):
    return api.client.post(f"/api/v1/supervisees/{sid}/permits", headers=api.auth(who), json={
        "valid_from": start_ms, "valid_to": end_ms, "reason": reason, "category": "family",
        "destination": "anywhere"})


def test_revoke_and_shorten_are_versions_in_the_officers_scope(api):
    now = api.clock.ms
    r = _permit(api, SV_A, now + DAY, now + 5 * DAY, "thăm mẹ ốm")
    assert r.status_code == 201, r.text
    pid = r.json()["id"]
    url = f"/api/v1/permits/{pid}"
    for outsider in ("xa.b", "xa.x", "tinh.x"):  # another unit's officers: no hint it exists
        for action, body in (("shorten", {"valid_to": now + 2 * DAY, "reason": "x"}),
                             ("revoke", {"reason": "x"})):
            denied = api.client.post(f"{url}/{action}", json=body, headers=api.auth(outsider))
            assert denied.status_code == 404 and "thăm" not in denied.text
        assert api.client.get(f"{url}/versions", headers=api.auth(outsider)).status_code == 404
    v0 = _version(api)
    h = api.auth("xa.a")
    short = api.client.post(f"{url}/shorten", headers=h,
                            json={"valid_to": now + 3 * DAY, "reason": "về sớm"})
    assert short.status_code == 200, short.text
    assert (short.json()["version"], short.json()["valid_to"], short.json()["ends_at"]) == (
        2, now + 3 * DAY, now + 3 * DAY)
    for body, rule in (({"valid_to": now + 4 * DAY, "reason": "dài hơn"}, "not_shorter"),
                       ({"valid_to": now + DAY, "reason": "x"}, "not_after_start")):
        refused = api.client.post(f"{url}/shorten", headers=h, json=body)
        assert refused.status_code == 422 and refused.json()["rule"] == rule, refused.text
    assert api.client.post(f"{url}/shorten", headers=h,
                           json={"valid_to": now + 2 * DAY}).status_code == 422  # no reason
    past = api.client.post(f"{url}/revoke", headers=h, json={"reason": "x", "at": now - 1})
    assert past.status_code == 422 and past.json()["rule"] == "effective_in_past"
    revoked = api.client.post(f"{url}/revoke", headers=api.auth("tinh.t"),
                              json={"reason": "vi phạm nghĩa vụ"})
    assert revoked.status_code == 200, revoked.text
    # revoked before it started: it never applies
    assert (revoked.json()["revoked_at"], revoked.json()["ends_at"]) == (now, None)
    again = api.client.post(f"{url}/revoke", headers=h, json={"reason": "x"})
    assert again.status_code == 422 and again.json()["rule"] == "already_revoked"
    assert _version(api) == v0 + 2
    versions = api.client.get(f"{url}/versions", headers=h).json()
    assert [(v["version"], v["changed_by"], v["change_reason"]) for v in versions] == [
        (1, "xa.a", None), (2, "xa.a", "về sớm"), (3, "tinh.t", "vi phạm nghĩa vụ")]
    listed = next(p for p in api.client.get(f"/api/v1/supervisees/{SV_A}/permits",
                                            headers=h).json() if p["id"] == pid)
    assert listed["version"] == 3 and listed["revoked_at"] == now
    assert api.client.post("/api/v1/permits/999999/revoke", headers=h,
                           json={"reason": "x"}).status_code == 404


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def _import(api, sid: str, start: int, end: int, reason: str) -> list[tuple[str, str]]:
    """Import one permit in a transaction rolled back afterwards; the errors (none: accepted)."""
    doc = {"permits": [{"supervisee": sid, "valid_from": _iso(start), "valid_to": _iso(end),
                        "reason": reason, "category": "family", "destination": "anywhere"}]}
    with connect(api.db_url) as conn, conn.transaction(force_rollback=True):
        try:
            summary = import_document(conn, doc)
        except ImportError_ as exc:
            return exc.errors
        assert summary.counts["permits"]["created"] == 1
        return []


def test_the_total_of_trips_counts_a_revoked_permit_alike_through_the_api_and_the_import(api):
    """án treo: all trips <= 1/3 of the probation (here ~30 days of a 90-day term). A permit
    revoked after it started counts up to its revocation (12 days); one revoked before it
    started, never."""
    sid, now = "SV-TRIPS", api.clock.ms  # now: 2026-01-01T01:00Z
    with psycopg.connect(api.db_url) as conn:
        conn.execute("INSERT INTO supervisees (id, name, sentence_type, sentence_start, "
                     "sentence_end, unit) VALUES (%s, 'Đối tượng thử chuyến đi', 'an_treo', "
                     "'2025-12-01', '2026-02-28', %s)", (sid, COMMUNE_A))
    h = api.auth("xa.a")
    started = _permit(api, sid, now - 12 * DAY, now + 14 * DAY, "đi làm xa").json()["id"]
    assert api.client.post(f"/api/v1/permits/{started}/revoke", headers=h,
                           json={"reason": "về sớm"}).status_code == 200
    unused = _permit(api, sid, now + 4 * DAY, now + 19 * DAY, "thăm họ hàng")
    assert unused.status_code == 201, unused.text  # 12 + 15 days: within the total
    assert api.client.post(f"/api/v1/permits/{unused.json()['id']}/revoke", headers=h,
                           json={"reason": "huỷ chuyến"}).status_code == 200

    # 12 (revoked after it started) + 20 > 30: refused both ways, naming the rule
    start, too_long = now + 19 * DAY, now + 39 * DAY
    errors = _import(api, sid, start, too_long, "chuyến dài")
    assert [p for p, _ in errors] == ["$.permits[0]"] and "total_trips_fraction" in errors[0][1]
    refused = _permit(api, sid, start, too_long, "chuyến dài")
    assert refused.status_code == 422 and refused.json()["rule"] == "total_trips_fraction"
    # 12 + 10 <= 30 (the permit revoked before it started counts nothing): accepted both ways
    fits = now + 29 * DAY
    assert _import(api, sid, start, fits, "chuyến ngắn") == []
    assert _permit(api, sid, start, fits, "chuyến ngắn").status_code == 201
