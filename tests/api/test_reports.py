"""The monthly report: figures, definitions, CSV, month and unit checks."""

from __future__ import annotations

import csv
import io

import psycopg
import pytest

from api.routes.reports import month_bounds

pytestmark = pytest.mark.services

MONTH = {"unit": "PC10-T", "month": "2026-01"}


def test_month_bounds_are_local():
    start, end, first, last = month_bounds("2026-02", "Asia/Ho_Chi_Minh")
    assert start.isoformat() == "2026-02-01T00:00:00+07:00"
    assert end.isoformat() == "2026-03-01T00:00:00+07:00"
    assert (first.day, last.day) == (1, 28)
    assert month_bounds("2025-12", "UTC")[1].isoformat() == "2026-01-01T00:00:00+00:00"


def test_monthly_report_json_and_csv(api):
    prov = api.auth("tinh.t")
    ids = {a["type"]: a["id"] for a in api.client.get(
        "/api/v1/alerts", params={"unit": "CAX-T01"}, headers=prov).json()["alerts"]}
    api.clock.ms += 120_000  # acknowledged 2 min after it was processed
    api.client.post(f"/api/v1/alerts/{ids['battery_low']}/ack", headers=prov)
    api.clock.ms += 480_000
    r = api.client.post(f"/api/v1/alerts/{ids['zone_exit']}/resolve", headers=prov,
                        json={"outcome": "violation", "note": "biên bản"})
    assert r.status_code == 200
    report = api.client.get("/api/v1/reports/monthly", params=MONTH, headers=prov).json()
    assert report["units"] == ["CAX-T01", "CAX-T02", "PC10-T"]
    assert report["supervisees_monitored"] == 3  # SV_A, SV_A2 (no alerts), SV_B
    assert report["alerts_total"] == 5
    assert report["alerts_by_type"]["zone_exit"] == 2 and report["alerts_by_type"]["curfew"] == 0
    assert report["alerts_by_outcome"]["violation"] == 1
    assert report["confirmed_violations"] == 1 and report["supervisees_with_violations"] == 1
    assert report["violation_rate"] == round(1 / 3, 6) and report["meets_target"] is False
    assert report["violation_rate_target"] == 0.005
    assert "supervisees monitored" in report["violation_rate_definition"]
    # the alerts were opened 30 min before the clock's start: acknowledged 32 and 40 min later
    assert report["ack_time_s"] == {"p50": 2160.0, "p90": 2352.0, "acknowledged": 2}
    got = api.client.get("/api/v1/reports/monthly", params={**MONTH, "format": "csv"},
                         headers=prov)
    assert got.headers["content-type"].startswith("text/csv")
    assert "attachment" in got.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(got.text)))
    figures = {(r["metric"], r["key"]): r["value"] for r in rows}
    assert figures[("supervisees_monitored", "")] == "3"
    assert figures[("alerts_by_type", "zone_exit")] == "2"
    assert figures[("ack_time_s", "p50")] == "2160.0"


def test_a_month_without_anything(api):
    r = api.client.get("/api/v1/reports/monthly", params={"unit": "CAX-T02", "month": "2024-05"},
                       headers=api.auth("xa.b")).json()
    assert r["supervisees_monitored"] == 0 and r["violation_rate"] == 0.0
    assert r["ack_time_s"] == {"p50": None, "p90": None, "acknowledged": 0}


def test_bad_month_and_units(api):
    h = api.auth("xa.a")
    for month in ("2026-13", "2026-1", "january", "0000-01"):
        assert api.client.get("/api/v1/reports/monthly", params={"month": month},
                              headers=h).status_code == 422
    assert api.client.get("/api/v1/reports/monthly", params={"month": "2026-01"},
                          headers=h).json()["unit"] == "CAX-T01"  # own unit by default
    assert api.client.get("/api/v1/reports/monthly", params={"month": "2026-01"},
                          headers=api.auth("admin")).status_code == 422  # admins name one
    assert api.client.get("/api/v1/reports/monthly", params={"month": "2026-01", "unit": "nope"},
                          headers=api.auth("admin")).status_code == 404


def test_a_supervisee_without_a_device_is_not_monitored(api):
    with psycopg.connect(api.db_url) as conn:
        conn.execute("INSERT INTO supervisees (id, name, sentence_type, sentence_start, "
                     "sentence_end, unit) VALUES ('SV-NODEV', 'Không thiết bị', 'an_treo', "
                     "'2025-01-01', '2027-01-01', 'CAX-T02')")
    r = api.client.get("/api/v1/reports/monthly", params={"unit": "CAX-T02", "month": "2026-01"},
                       headers=api.auth("xa.b")).json()
    assert r["supervisees_monitored"] == 1
