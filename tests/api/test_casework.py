"""Casework (issue 13) on a real database and the API: roll-call with the checkin_missed sweep,
the monthly assessment, case deadlines across a holiday, judgments and reconciliation with a
court list, cited rules, violation rates, and scope on every new endpoint."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

import pytest
from psycopg.types.json import Jsonb

from alerts.decide.jobs import run_sweeps
from alerts.sources import Thresholds
from alerts.telemetry import apply_device_messages
from api.officers import create_officer
from ingest.records import Event
from schema import connect
from tests.api.conftest import (
    COMMUNE_A,
    COMMUNE_B,
    DEV_B,
    DEV_X,
    LAT0,
    LON0,
    OFFICERS,
    PASSWORD,
    PROVINCE,
    SV_A,
    SV_A2,
    SV_B,
    SV_X,
    _alert,
)

pytestmark = pytest.mark.services

CHIEF = "truong.a"  # the chief of COMMUNE_A
STATION_B = {"center": [LON0 + 0.1, LAT0], "radius_m": 150}


def ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso).astimezone(UTC).timestamp() * 1000)


@pytest.fixture(scope="module")
def cw(api):
    """The seeded world plus a chief of COMMUNE_A and a station for COMMUNE_B."""
    OFFICERS.setdefault(CHIEF, ("commune", COMMUNE_A))
    with connect(api.db_url) as conn:
        create_officer(conn, CHIEF, PASSWORD, "commune", COMMUNE_A, chief=True)
        conn.execute("UPDATE units SET station = %s WHERE code = %s",
                     (Jsonb(STATION_B), COMMUNE_B))
        # registered long before the roll-call windows these tests sweep
        conn.execute("UPDATE supervisees SET created_at = '2025-01-01T00:00:00Z'")
        conn.commit()
    yield api
    OFFICERS.pop(CHIEF, None)


def _sweep(api, at_ms: int) -> list:
    """The roll-call changes (opened, or folded into an open alert) of one run of the
    sweeps at ``at_ms`` (escalations of earlier ones left out)."""
    with connect(api.db_url, autocommit=True) as conn:
        changes = run_sweeps(conn, at_ms, Thresholds(), offline=False)
    return [c for c in changes if c.action in ("opened", "updated")]


def _missed(api, sid: str) -> list[dict]:
    r = api.client.get("/api/v1/alerts", params={"type": "checkin_missed",
                                                "supervisee_id": sid},
                       headers=api.auth("admin"))
    assert r.status_code == 200
    return r.json()["alerts"]


def _device_checkin(api, dev: str, seq: int, at_ms: int, lat: float, lon: float,
                    now_ms: int) -> list:
    ev = Event(dev, seq, at_ms, "checkin", {"lat": lat, "lon": lon})
    with connect(api.db_url) as conn, conn.transaction():
        return apply_device_messages(conn, [], [ev], now_ms, Thresholds())


def test_checkin_recorded_and_one_missed_through_the_sweep(cw):
    api = cw
    # the roll-call starts with the decree of 2026-07-01: July's window went unanswered by all
    july = [c for c in _sweep(api, ms("2026-08-01T08:00:00+07:00")) if c.type == "checkin_missed"]
    assert sorted(c.payload["supervisee_id"] for c in july) == [SV_A, SV_A2, SV_B, SV_X]
    assert {c.payload["explanation"]["window_first_day"] for c in july} == {"2026-07-01"}
    api.clock.ms = ms("2026-08-03T10:00:00+07:00")
    r = api.client.post(f"/api/v1/supervisees/{SV_A}/checkins", json={"note": "có mặt"},
                        headers=api.auth("xa.a"))
    assert r.status_code == 201, r.text
    assert r.json()["method"] == "in_person" and r.json()["recorded_by"] == "xa.a"
    # SV_B's phone checks in from 2 km away: stored, but not at the station
    _device_checkin(api, DEV_B, 900, ms("2026-08-04T09:00:00+07:00"), LAT0 + 0.02,
                    LON0 + 0.1, api.clock.ms)
    closes = ms("2026-08-06T00:00:00+07:00")
    assert [c for c in _sweep(api, closes - 1000) if c.type == "checkin_missed"] == []
    opened = [c for c in _sweep(api, closes + 1000) if c.type == "checkin_missed"]
    assert sorted(c.payload["supervisee_id"] for c in opened) == [SV_A2, SV_B, SV_X]
    assert [a["occurrences"] for a in _missed(api, SV_A)] == [1]  # July only
    [alert] = _missed(api, SV_B)  # August folded into July's unresolved alert
    assert alert["active"] and alert["occurrences"] == 2 and "điểm danh" in alert["message_vi"]
    assert alert["explanation"]["window_first_day"] == "2026-08-01"
    assert alert["explanation"]["window_last_day"] == "2026-08-05"
    assert [c for c in _sweep(api, closes + 60_000) if c.type == "checkin_missed"] == []  # once
    api.clock.ms = closes + 120_000
    a = api.client.get(f"/api/v1/supervisees/{SV_A}/rollcall", params={"month": "2026-08"},
                       headers=api.auth("xa.a")).json()
    assert [w["state"] for w in a["windows"]] == ["done"]
    b = api.client.get(f"/api/v1/supervisees/{SV_B}/rollcall", params={"month": "2026-08"},
                       headers=api.auth("xa.b")).json()
    assert [(w["state"], w["alerted"]) for w in b["windows"]] == [("missed", True)]
    assert [c["at_station"] for c in b["checkins"]] == [False]
    assert b["citation"]["verified"] is False


def test_a_buffered_device_checkin_at_the_station_ends_the_missed_condition(cw):
    api = cw
    with connect(api.db_url) as conn:  # SV_X's unit gets a station; the phone was inside it
        conn.execute("UPDATE units SET station = %s WHERE code = "
                     "(SELECT unit FROM supervisees WHERE id = %s)",
                     (Jsonb({"center": [LON0 + 1, LAT0], "radius_m": 100}), SV_X))
        conn.commit()
    changes = _device_checkin(api, DEV_X, 901, ms("2026-08-05T16:00:00+07:00"), LAT0 + 0.0003,
                              LON0 + 1, ms("2026-08-06T02:00:00+07:00"))
    assert [(c.type, c.payload["active"]) for c in changes] == [("checkin_missed", False)]
    again = _device_checkin(api, DEV_X, 901, ms("2026-08-05T16:00:00+07:00"), LAT0 + 0.0003,
                            LON0 + 1, ms("2026-08-06T02:00:00+07:00"))
    assert again == []  # the same event read twice is one check-in


def test_ad_hoc_roll_call_missed(cw):
    api = cw
    api.clock.ms = ms("2026-08-10T08:00:00+07:00")
    r = api.client.post(f"/api/v1/supervisees/{SV_A}/rollcall",
                        json={"opens_at": api.clock.ms, "closes_at": api.clock.ms + 3_600_000,
                              "reason": "kiểm tra đột xuất"}, headers=api.auth("xa.a"))
    assert r.status_code == 201, r.text
    bad = api.client.post(f"/api/v1/supervisees/{SV_A}/rollcall",
                          json={"opens_at": api.clock.ms, "closes_at": api.clock.ms},
                          headers=api.auth("xa.a"))
    assert bad.status_code == 422
    opened = [c for c in _sweep(api, api.clock.ms + 3_600_001) if c.type == "checkin_missed"]
    assert [c.payload["supervisee_id"] for c in opened] == [SV_A]
    assert opened[0].payload["explanation"]["kind"] == "ad_hoc"


def test_monthly_assessment_proposed_changed_signed_exported(cw):
    api = cw
    api.clock.ms = ms("2026-09-02T09:00:00+07:00")
    listing = api.client.get("/api/v1/casework/assessments",
                             params={"month": "2026-08", "unit": COMMUNE_A},
                             headers=api.auth("xa.a")).json()
    people = {p["supervisee_id"]: p for p in listing["people"]}
    assert sorted(people) == [SV_A, SV_A2]
    a = people[SV_A]
    assert a["classification"] is None
    # an ad-hoc roll-call was missed in August: Trung bình is proposed
    assert a["basis"]["missed_checkins"] == 1 and a["proposed"] == "trung_binh"
    url = f"/api/v1/supervisees/{SV_A}/assessments/2026-08"
    no_reason = api.client.put(url, json={"classification": "kha"}, headers=api.auth("xa.a"))
    assert no_reason.status_code == 422
    ok = api.client.put(url, json={"classification": "kha",
                                   "reason": "đã trình diện ngay hôm sau, có lý do"},
                        headers=api.auth("xa.a"))
    assert ok.status_code == 200, ok.text
    assert (ok.json()["proposed"], ok.json()["classification"]) == ("trung_binh", "kha")
    sign = {"unit": COMMUNE_A, "month": "2026-08"}
    assert api.client.post("/api/v1/casework/assessments/sign", json=sign,
                           headers=api.auth("xa.a")).status_code == 403  # not the chief
    unconfirmed = api.client.post("/api/v1/casework/assessments/sign", json=sign,
                                  headers=api.auth(CHIEF))
    assert unconfirmed.status_code == 409 and SV_A2 in unconfirmed.text  # everyone first
    other = api.client.put(f"/api/v1/supervisees/{SV_A2}/assessments/2026-08",
                           json={"classification": people[SV_A2]["proposed"]},
                           headers=api.auth("xa.a"))
    assert other.status_code == 200, other.text  # the proposal confirmed: no reason needed
    signed = api.client.post("/api/v1/casework/assessments/sign", json=sign,
                             headers=api.auth(CHIEF))
    assert signed.status_code == 200, signed.text
    assert signed.json()["signed"]["signed_by"] == CHIEF
    assert api.client.put(url, json={"classification": "tot", "reason": "x"},
                          headers=api.auth("xa.a")).status_code == 409
    assert api.client.post("/api/v1/casework/assessments/sign", json=sign,
                           headers=api.auth(CHIEF)).status_code == 409
    exported = api.client.get("/api/v1/casework/assessments/export",
                              params={"month": "2026-08", "unit": COMMUNE_A},
                              headers=api.auth("tinh.t"))
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    rows = {r["supervisee_id"]: r for r in
            csv.DictReader(io.StringIO(exported.text.lstrip("\ufeff")))}
    assert sorted(rows) == [SV_A, SV_A2]
    assert (rows[SV_A]["classification_vi"], rows[SV_A]["signed_by"]) == ("Khá", CHIEF)
    page = api.client.get("/api/v1/casework/assessments/export",
                          params={"month": "2026-08", "unit": COMMUNE_A, "format": "html"},
                          headers=api.auth("tinh.t"))
    assert "Bảng đánh giá, xếp loại" in page.text and CHIEF in page.text
    # COMMUNE_B has not signed August: overdue after 5 September, shown to the province
    api.clock.ms = ms("2026-09-07T09:00:00+07:00")
    queue = api.client.get("/api/v1/casework/deadlines",
                           params={"unit": PROVINCE, "overdue_only": True},
                           headers=api.auth("tinh.t")).json()
    late = {(i["unit"], i["month"]) for i in queue["items"] if i["step"] == "assessment"}
    assert (COMMUNE_B, "2026-08") in late and (COMMUNE_A, "2026-08") not in late
    province = api.client.get("/api/v1/casework/assessments",
                              params={"month": "2026-08", "unit": PROVINCE},
                              headers=api.auth("tinh.t")).json()
    lists = {u["unit"]: (bool(u["signed"]), u["overdue"]) for u in province["units"]}
    assert lists == {COMMUNE_A: (True, False), COMMUNE_B: (False, True)}
    page = api.client.get("/api/v1/casework/assessments/export",
                          params={"month": "2026-08", "unit": PROVINCE, "format": "html"},
                          headers=api.auth("tinh.t")).text
    assert f"{COMMUNE_A}: Trưởng Công an xã đã ký {CHIEF}" in page
    assert f"{COMMUNE_B}: CHƯA KÝ" in page


def test_case_deadlines_across_a_holiday(cw):
    api = cw
    url = f"/api/v1/supervisees/{SV_B}/case-file"
    # received Friday 28 August 2026; 1 and 2 September are National Day holidays
    r = api.client.put(url, json={"received_on": "2026-08-28"}, headers=api.auth("xa.b"))
    assert r.status_code == 200, r.text
    due = {i["step"]: i["due_on"] for i in r.json()["deadlines"]}
    assert due == {"officer_assigned": "2026-09-04", "plan_issued": "2026-09-08"}

    def queue(on: str) -> dict:
        items = api.client.get("/api/v1/casework/deadlines",
                               params={"unit": COMMUNE_B, "on": on},
                               headers=api.auth("xa.b")).json()["items"]
        return {i["step"]: i for i in items if i["supervisee_id"] == SV_B}

    assert not queue("2026-09-04")["officer_assigned"]["overdue"]
    late = queue("2026-09-07")["officer_assigned"]
    assert late["overdue"] and late["working_days_late"] == 1
    assert late["citation"]["verified"] is False
    done = api.client.put(url, json={"received_on": "2026-08-28",
                                     "officer_assigned_on": "2026-09-03"},
                          headers=api.auth("xa.b"))
    assert not queue("2026-09-07")["officer_assigned"]["overdue"]
    assert done.status_code == 200


def test_review_meeting_deadline_after_a_violation_record(cw):
    api = cw
    api.clock.ms = ms("2026-09-10T09:00:00+07:00")
    with connect(api.db_url) as conn:
        alert_id = _alert(conn, SV_B, DEV_B, "curfew", api.clock.ms - 60_000, "home")
        conn.commit()
    r = api.client.post(f"/api/v1/alerts/{alert_id}/resolve",
                        json={"outcome": "violation", "note": "biên bản"},
                        headers=api.auth("xa.b"))
    assert r.status_code == 200, r.text
    items = api.client.get("/api/v1/casework/deadlines",
                           params={"unit": COMMUNE_B, "on": "2026-09-18"},
                           headers=api.auth("xa.b")).json()["items"]
    [review] = [i for i in items if i["step"] == "review_meeting"]
    assert review["due_on"] == "2026-09-17" and review["overdue"]
    put = api.client.put(f"/api/v1/casework/violations/{review['violation_record_id']}"
                         "/review-meeting", json={"held_on": "2026-09-15"},
                         headers=api.auth("xa.b"))
    assert put.status_code == 200
    assert api.client.put(f"/api/v1/casework/violations/{review['violation_record_id']}"
                          "/review-meeting", json={"held_on": "2026-09-15"},
                          headers=api.auth("xa.x")).status_code == 404


def test_reconciliation_against_a_court_list(cw):
    api = cw
    for sid, user, number in ((SV_A, "xa.a", "12/2025/HS-ST"), (SV_B, "xa.b", "40/2025/HS-ST")):
        r = api.client.put(f"/api/v1/supervisees/{sid}/judgment", json={
            "number": number, "issued_on": "2024-12-20", "court": "TAND tỉnh Thử",
            "sentence_type": "an_treo", "term_months": 36, "start_on": "2025-01-01",
            "end_on": "2027-12-31"}, headers=api.auth(user))
        assert r.status_code == 200, r.text
    court = ("so_ban_an,ho_ten,court\n12/2025/HS-ST,Nguyễn Văn Thử A,TAND tỉnh Thử\n"
             "99/2026/HS-ST,Phạm Văn Thiếu,TAND tỉnh Thử\n")
    r = api.client.post("/api/v1/casework/reconciliation",
                        params={"unit": PROVINCE, "month": "2026-09"},
                        json={"source": "court", "csv": court}, headers=api.auth("tinh.t"))
    assert r.status_code == 200, r.text
    diff = r.json()["differences"]
    assert [m["number"] for m in diff["missing"]] == ["99/2026/HS-ST"]
    assert [e["supervisee_id"] for e in diff["extra"]] == [SV_A2, SV_B]  # no judgment recorded
    exported = api.client.post("/api/v1/casework/reconciliation",
                               params={"unit": PROVINCE, "month": "2026-09", "format": "csv"},
                               json={"source": "court", "csv": court},
                               headers=api.auth("tinh.t"))
    sections = [row["section"] for row in
                csv.DictReader(io.StringIO(exported.text.lstrip("\ufeff")))]
    assert sections.count("missing") == 1 and sections.count("extra") == 2
    bad = api.client.post("/api/v1/casework/reconciliation",
                          params={"unit": PROVINCE, "month": "2026-09"},
                          json={"csv": "ten\nA\n"}, headers=api.auth("tinh.t"))
    assert bad.status_code == 422


def test_judgment_change_moves_the_end_and_shows_who_left(cw):
    api = cw
    r = api.client.post(f"/api/v1/supervisees/{SV_B}/judgment/changes",
                        json={"kind": "end_reduced", "effective_on": "2026-10-01",
                              "new_end_on": "2026-10-20", "note": "giảm thời hạn"},
                        headers=api.auth("xa.b"))
    assert r.status_code == 201, r.text
    assert r.json()["changes"][0]["kind"] == "end_reduced"
    report = api.client.get("/api/v1/casework/reconciliation",
                            params={"unit": COMMUNE_B, "month": "2026-10"},
                            headers=api.auth("xa.b")).json()
    assert [(x["supervisee_id"], x["reason"]) for x in report["left"]] == [
        (SV_B, "end_reduced")]
    page = api.client.get("/api/v1/casework/reconciliation",
                          params={"unit": COMMUNE_B, "month": "2026-10", "format": "html"},
                          headers=api.auth("xa.b"))
    assert "Rà soát, đối chiếu" in page.text and "end_reduced" in page.text


def test_cited_rule_in_an_alert_and_a_refused_permit(cw):
    api = cw
    exit_id = api.world.alerts["a_exit"]
    alert = api.client.get(f"/api/v1/alerts/{exit_id}", headers=api.auth("xa.a")).json()
    assert alert["citation"]["rule"] == "zones"
    assert "41/2019/QH14" in alert["citation"]["law"]
    assert set(alert["citation"]) >= {"article", "clause", "effective_from", "verified"}
    battery = api.client.get(f"/api/v1/alerts/{api.world.alerts['a_battery']}",
                             headers=api.auth("xa.a")).json()
    assert battery["citation"] is None  # a device alert enforces no rule of law
    [missed] = _missed(api, SV_B)
    hist = api.client.get(f"/api/v1/alerts/{missed['id']}/history",
                          headers=api.auth("xa.b")).json()
    assert hist["alert"]["citation"]["rule"] == "roll_call"
    assert hist["alert"]["citation"]["verified"] is False
    r = api.client.post(f"/api/v1/supervisees/{SV_A}/permits", json={
        "valid_from": "2026-11-01T00:00:00+07:00", "valid_to": "2027-01-15T00:00:00+07:00",
        "reason": "đi làm ăn xa", "category": "work", "destination": "anywhere"},
        headers=api.auth("xa.a"))
    assert r.status_code == 422
    body = r.json()
    assert body["rule"] == "max_trip_days" and body["citation"]["article"] == "Điều 92"
    assert "Điều 92" in body["detail"]


def test_yearly_violation_rate_on_a_synthetic_year(cw):
    api = cw
    unit = "CAX-T09"
    with connect(api.db_url) as conn:
        conn.execute("INSERT INTO units (code, name, parent) VALUES (%s, 'Công an xã R', %s)",
                     (unit, PROVINCE))
        for k in range(250):  # 250 people supervised through 2027, one recorded violation
            conn.execute("INSERT INTO supervisees (id, name, sentence_type, sentence_start, "
                         "sentence_end, unit) VALUES (%s, %s, 'an_treo', %s, %s, %s)",
                         (f"R{k:03d}", f"Người {k}", "2026-06-01" if k % 2 else "2027-03-01",
                          "2027-12-31" if k % 3 else "2028-06-30", unit))
        conn.execute("INSERT INTO supervisees (id, name, sentence_type, sentence_start, "
                     "sentence_end, unit) VALUES ('R-LATER', 'Sau', 'an_treo', '2028-01-02', "
                     "'2029-01-01', %s)", (unit,))
        for sid, when in (("R001", "2027-05-01T10:00:00+07:00"),
                          ("R002", "2028-02-01T10:00:00+07:00")):
            aid = _alert(conn, sid, None, "zone_exit", ms(when), "residence")
            conn.execute("INSERT INTO violation_records (supervisee_id, alert_id, recorded_at, "
                         "recorded_by) VALUES (%s, %s, %s, 'xa.r')",
                         (sid, aid, datetime.fromisoformat(when)))
        conn.commit()
    year = api.client.get("/api/v1/casework/reports/violation-rate",
                          params={"unit": unit, "period": "2027"},
                          headers=api.auth("tinh.t")).json()
    assert (year["total"]["supervised"], year["total"]["violation_records"]) == (250, 1)
    assert year["total"]["violation_rate"] == 0.004 and year["total"]["meets_target"]
    assert "people supervised" in year["definition"] and year["target"] == 0.005
    q1 = api.client.get("/api/v1/casework/reports/violation-rate",
                        params={"unit": unit, "period": "2027-Q1"},
                        headers=api.auth("tinh.t")).json()
    assert q1["total"]["violation_records"] == 0
    quarterly = api.client.get("/api/v1/casework/reports/quarterly",
                               params={"unit": PROVINCE, "quarter": "2027-Q2",
                                       "format": "csv"}, headers=api.auth("tinh.t"))
    rows = {r["unit"]: r for r in csv.DictReader(io.StringIO(quarterly.text.lstrip("\ufeff")))}
    assert rows[unit]["violation_records"] == "1" and rows[unit]["supervised"] == "250"
    assert (rows[unit]["entered"], rows[unit]["left"]) == ("0", "0")  # none began in Q2
    first_q = api.client.get("/api/v1/casework/reports/quarterly",
                             params={"unit": unit, "quarter": "2027-Q1"},
                             headers=api.auth("tinh.t")).json()
    assert first_q["total"]["entered"] == 125  # the half whose sentence began on 1 March


def test_only_a_commune_officer_can_be_chief(cw):
    api = cw
    admin = api.auth("admin")
    bad = api.client.post("/api/v1/officers", json={
        "username": "truong.tinh", "password": PASSWORD, "role": "province", "unit": PROVINCE,
        "chief": True}, headers=admin)
    assert bad.status_code == 422 and bad.json()["field"] == "chief"
    made = api.client.post("/api/v1/officers", json={
        "username": "truong.b", "password": PASSWORD, "role": "commune", "unit": COMMUNE_B,
        "chief": True}, headers=admin)
    assert made.status_code == 201 and made.json()["chief"] is True
    moved = api.client.put("/api/v1/officers/truong.b", json={"unit": COMMUNE_A},
                           headers=admin)
    assert moved.status_code == 200 and moved.json()["chief"] is False  # not chief there


def test_a_units_station_is_validated_and_shown(cw):
    api = cw
    admin = api.auth("admin")
    unit = api.client.get(f"/api/v1/units/{COMMUNE_B}", headers=admin).json()
    assert unit["station"] == STATION_B
    body = {"name": unit["name"], "parent": PROVINCE, "boundary": unit["boundary"],
            "station": {"center": [LON0 + 0.1, LAT0], "radius_m": 0}}
    bad = api.client.put(f"/api/v1/units/{COMMUNE_B}", json=body, headers=admin)
    assert bad.status_code == 422 and bad.json()["path"] == "$.station.radius_m"
    body["station"] = STATION_B
    assert api.client.put(f"/api/v1/units/{COMMUNE_B}", json=body,
                          headers=admin).status_code == 200


@pytest.mark.parametrize("method,url,kw", [
    ("get", "/api/v1/casework/deadlines", {"params": {"on": "0001-01-15"}}),
    ("put", f"/api/v1/supervisees/{SV_A}/case-file", {"json": {"received_on": "9999-12-31"}}),
    ("put", f"/api/v1/supervisees/{SV_A}/judgment", {"json": {
        "number": "1", "issued_on": "0001-01-01", "court": "x", "sentence_type": "an_treo",
        "start_on": "2025-01-01", "end_on": "2026-01-01"}}),
    ("get", "/api/v1/casework/reports/violation-rate", {"params": {"period": "0001"}}),
    ("get", "/api/v1/casework/assessments", {"params": {"month": "9999-12"}}),
])
def test_dates_out_of_the_calendar_are_refused_not_errors(cw, method, url, kw):
    r = getattr(cw.client, method)(url, headers=cw.auth("xa.a"), **kw)
    assert r.status_code == 422, r.text


SUPERVISEE_ENDPOINTS = [
    ("get", f"/api/v1/supervisees/{SV_A}/rollcall?month=2026-08", None),
    ("post", f"/api/v1/supervisees/{SV_A}/checkins", {}),
    ("post", f"/api/v1/supervisees/{SV_A}/rollcall",
     {"opens_at": 1_790_000_000_000, "closes_at": 1_790_000_600_000}),
    ("put", f"/api/v1/supervisees/{SV_A}/assessments/2026-08", {"classification": "tot"}),
    ("get", f"/api/v1/supervisees/{SV_A}/case-file", None),
    ("put", f"/api/v1/supervisees/{SV_A}/case-file", {"received_on": "2026-08-01"}),
    ("get", f"/api/v1/supervisees/{SV_A}/judgment", None),
    ("put", f"/api/v1/supervisees/{SV_A}/judgment",
     {"number": "1", "issued_on": "2025-01-01", "court": "x", "sentence_type": "an_treo",
      "start_on": "2025-01-01", "end_on": "2026-01-01"}),
    ("post", f"/api/v1/supervisees/{SV_A}/judgment/changes",
     {"kind": "revoked", "effective_on": "2026-01-01"}),
]
UNIT_ENDPOINTS = [
    ("get", f"/api/v1/casework/assessments?month=2026-08&unit={COMMUNE_A}", None),
    ("post", "/api/v1/casework/assessments/sign", {"unit": COMMUNE_A, "month": "2026-08"}),
    ("get", f"/api/v1/casework/assessments/export?month=2026-08&unit={COMMUNE_A}", None),
    ("get", f"/api/v1/casework/deadlines?unit={COMMUNE_A}", None),
    ("get", f"/api/v1/casework/reconciliation?month=2026-08&unit={COMMUNE_A}", None),
    ("post", f"/api/v1/casework/reconciliation?month=2026-08&unit={COMMUNE_A}",
     {"csv": "number\n1\n"}),
    ("get", f"/api/v1/casework/reports/violation-rate?period=2026&unit={COMMUNE_A}", None),
    ("get", f"/api/v1/casework/reports/quarterly?quarter=2026-Q3&unit={COMMUNE_A}", None),
]


@pytest.mark.parametrize("method,url,body", SUPERVISEE_ENDPOINTS + UNIT_ENDPOINTS)
def test_another_units_officer_is_refused(cw, method, url, body):
    api = cw
    kw = {} if body is None else {"json": body}
    r = getattr(api.client, method)(url, headers=api.auth("xa.x"), **kw)
    expected = 404 if url.startswith("/api/v1/supervisees/") else 403
    assert r.status_code == expected, (url, r.status_code, r.text)
    assert "Thử" not in r.text  # nothing of the other unit's people leaks
