"""Alerts through the API: filters, history, acknowledge and resolve via the alerts lifecycle,
the confirmed-violation count and the court-threshold flag."""

from __future__ import annotations

import pytest

from tests.api.conftest import SV_A, SV_B

pytestmark = pytest.mark.services


def _list(api, who: str = "tinh.t", **params):
    r = api.client.get("/api/v1/alerts", params=params, headers=api.auth(who))
    assert r.status_code == 200, r.text
    return r.json()


def test_filters(api):
    everything = _list(api, limit=1000)
    assert everything["total"] == 5 and len(everything["alerts"]) == 5
    assert {a["supervisee_id"] for a in everything["alerts"]} == {SV_A, SV_B}
    assert _list(api, unit="CAX-T02")["total"] == 1
    assert {a["type"] for a in _list(api, type="zone_exit")["alerts"]} == {"zone_exit"}
    assert [a["severity"] for a in _list(api, severity="critical")["alerts"]] == ["critical"]
    assert _list(api, status="resolved")["total"] == 0
    page = _list(api, limit=2, offset=1)
    assert len(page["alerts"]) == 2 and page["total"] == 5 and page["offset"] == 1
    opened = everything["alerts"][0]["opened_at"]
    assert _list(api, **{"from": opened + 1})["total"] == 0
    assert _list(api, **{"to": opened + 1})["total"] == 5
    assert _list(api, supervisee_id=SV_B)["total"] == 1
    bad = api.client.get("/api/v1/alerts", params={"status": "closed", "limit": 0},
                         headers=api.auth("xa.a"))
    assert bad.status_code == 422
    assert {e["field"] for e in bad.json()["detail"]} == {"query.status", "query.limit"}


def test_json_has_the_contract_fields(api):
    alert = _list(api, type="zone_exit", unit="CAX-T01")["alerts"][0]
    for key in ("id", "type", "severity", "status", "active", "escalated", "supervisee_id",
                "device_id", "unit", "zone_id", "lat", "lon", "opened_at", "updated_at",
                "message_vi", "message_en"):
        assert key in alert
    assert isinstance(alert["opened_at"], int) and alert["zone_id"] == "residence"


def test_acknowledge_then_resolve_with_violations_counted(api):
    a = api.auth("xa.a")
    ids = {x["type"]: x["id"] for x in _list(api, "xa.a")["alerts"]}
    exit_id, offline_id = ids["zone_exit"], ids["device_offline"]
    ack = api.client.post(f"/api/v1/alerts/{exit_id}/ack", json={"note": "đã gọi"}, headers=a)
    assert ack.status_code == 200
    assert ack.json()["alert"]["status"] == "acknowledged"
    assert ack.json()["alert"]["acknowledged_by"] == "xa.a"
    twice = api.client.post(f"/api/v1/alerts/{exit_id}/ack", headers=a)
    assert twice.status_code == 409 and "acknowledged" in twice.json()["detail"]
    bad = api.client.post(f"/api/v1/alerts/{exit_id}/resolve", json={"outcome": "guilty"},
                          headers=a)
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "body.outcome"
    first = api.client.post(f"/api/v1/alerts/{exit_id}/resolve",
                            json={"outcome": "violation", "note": "biên bản số 12"}, headers=a)
    assert first.status_code == 200, first.text
    assert first.json()["violations"] == {"count": 1, "court_threshold": 2,
                                          "court_threshold_reached": False}
    assert api.client.post(f"/api/v1/alerts/{exit_id}/resolve", json={"outcome": "justified"},
                           headers=a).status_code == 409
    second = api.client.post(f"/api/v1/alerts/{offline_id}/resolve",
                             json={"outcome": "violation", "note": "biên bản số 13"}, headers=a)
    assert second.json()["violations"]["court_threshold_reached"] is True
    sup = api.client.get(f"/api/v1/supervisees/{SV_A}", headers=a).json()
    assert sup["violations"] == {"count": 2, "court_threshold": 2,
                                 "court_threshold_reached": True}
    hist = api.client.get(f"/api/v1/alerts/{exit_id}/history", headers=a).json()
    steps = [(h["action"], h["actor"], h["note"]) for h in hist["history"]]
    assert steps == [("opened", "system", None), ("acknowledged", "xa.a", "đã gọi"),
                     ("resolved", "xa.a", "biên bản số 12")]
    assert hist["alert"]["outcome"] == "violation"


def test_unknown_alert(api):
    h = api.auth("admin")
    assert api.client.get("/api/v1/alerts/999999", headers=h).status_code == 404
    assert api.client.post("/api/v1/alerts/999999/ack", headers=h).status_code == 404
    assert api.client.get("/api/v1/alerts/abc", headers=h).status_code == 422
