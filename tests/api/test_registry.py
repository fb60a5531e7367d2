"""Units, officers, zones, permits and devices through the API: validation that points at the
bad part, policy refusals naming the rule, assignment history, registry version bumps."""

from __future__ import annotations

import psycopg
import pytest

from tests.api.conftest import DEV_A, DEV_FREE, DEV_SPARE, SV_A, SV_A2, SV_B, square

SV_B2 = "SV-B2"  # a supervisee of commune B without a device

pytestmark = pytest.mark.services

Z = f"/api/v1/supervisees/{SV_A}/zones"


def _version(api) -> int:
    with psycopg.connect(api.db_url) as conn:
        return conn.execute("SELECT version FROM registry_version").fetchone()[0]


def _put(api, zone_id: str, body: dict, who: str = "xa.a"):
    return api.client.put(f"{Z}/{zone_id}", json=body, headers=api.auth(who))


@pytest.mark.parametrize("body, path, words", [
    ({"type": "Feature", "properties": {"kind": "inclusion"},
      "geometry": {"type": "Polygon", "coordinates": [[[105.9, 21.1], [106.0, 21.1],
                                                       [106.0, 21.2], [105.95, 21.3]]]}},
     "$.geometry.coordinates[0][3]", "not closed"),
    ({"type": "Feature", "properties": {"kind": "inclusion"},
      "geometry": {"type": "Polygon", "coordinates": [[[21.1, 105.9], [21.1, 106.0],
                                                       [21.2, 106.0], [21.1, 105.9]]]}},
     "$.geometry.coordinates[0][0][1]", "swapped"),
    ({"type": "Feature", "properties": {"kind": "inside"}, "geometry": square(21.18, 106.0, 0.01)},
     "$.properties.kind", "inclusion, exclusion"),
    ({"type": "Feature", "properties": {"kind": "inclusion"},
      "geometry": {"type": "Point", "coordinates": [106.0, 21.18]}},
     "$.properties.radius_m", "metres"),
    ({"type": "Feature", "geometry": square(21.18, 106.0, 0.01),
      "properties": {"kind": "inclusion",
                     "schedule": [{"days": [8], "start": "22:00", "end": "05:00"}]}},
     "$.properties.schedule[0].days[0]", "weekday"),
    ({"kind": "exclusion", "center": [106.0, 21.18], "radius_m": -3}, "$.radius_m", "metres"),
    ({"kind": "exclusion", "id": "other", "center": [106.0, 21.18], "radius_m": 50}, "$.id",
     "differs"),
])
def test_invalid_zone_points_at_the_bad_part(api, body, path, words):
    before = _version(api)
    r = _put(api, "bad", body)
    assert r.status_code == 422, r.text
    assert r.json()["path"] == path and words in r.json()["detail"]
    assert _version(api) == before
    assert api.client.get(f"{Z}/bad", headers=api.auth("xa.a")).status_code in (404, 405)


def test_a_zone_must_be_an_object(api):
    r = _put(api, "bad", [1, 2, 3])
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "body"


def test_zone_put_get_delete_bumps_the_registry(api):
    h = api.auth("xa.a")
    v0 = _version(api)
    circle = {"type": "Feature", "geometry": {"type": "Point", "coordinates": [105.97, 21.18]},
              "properties": {"kind": "inclusion", "purpose": "curfew", "radius_m": 250,
                             "schedule": [{"days": [1, 2, 3, 4, 5], "start": "22:00",
                                           "end": "05:00"}], "margin_m": 20}}
    created = _put(api, "curfew", circle)
    assert created.status_code == 201
    assert created.json()["properties"]["radius_m"] == 250
    assert _version(api) == v0 + 1
    replaced = _put(api, "curfew", {"kind": "inclusion", "purpose": "curfew",
                                    "center": [105.97, 21.18], "radius_m": 300})
    assert replaced.status_code == 200 and replaced.json()["properties"]["version"] == 2
    fc = api.client.get(Z, headers=h).json()
    zone = next(f for f in fc["features"] if f["id"] == "curfew")
    assert zone["geometry"] == {"type": "Point", "coordinates": [105.97, 21.18]}
    assert zone["properties"]["radius_m"] == 300 and zone["properties"]["schedule"] is None
    assert api.client.delete(f"{Z}/curfew", headers=h).status_code == 204
    assert api.client.delete(f"{Z}/curfew", headers=h).status_code == 404
    assert _version(api) == v0 + 3
    with psycopg.connect(api.db_url) as conn:
        actions = [r[0] for r in conn.execute(
            "SELECT action FROM audit_log WHERE subject = %s AND actor = 'xa.a' "
            "AND action LIKE 'zone.%%' ORDER BY id", (SV_A,))]
    assert actions[-3:] == ["zone.put", "zone.put", "zone.delete"]


@pytest.mark.parametrize("sid, permit, status, rule", [
    (SV_B, {"valid_from": "2026-03-01T00:00:00+07:00", "valid_to": "2026-03-12T00:00:00+07:00",
            "reason": "thăm người thân", "category": "family", "destination": "anywhere"},
     422, "max_trip_days"),  # quản chế: at most 10 days a trip
    (SV_A, {"valid_from": "2024-03-01T00:00:00+07:00", "valid_to": "2024-03-05T00:00:00+07:00",
            "reason": "đi làm", "destination": "anywhere"}, 422, "outside_sentence"),
    (SV_A, {"valid_from": 1_772_000_000_000, "valid_to": 1_772_100_000_000,
            "reason": "đi làm", "category": "work", "destination": square(21.0, 105.8, 0.05)},
     201, None),
])
def test_permits_are_checked_against_the_sentence_policy(api, sid, permit, status, rule):
    who = "xa.b" if sid == SV_B else "xa.a"
    v0 = _version(api)
    r = api.client.post(f"/api/v1/supervisees/{sid}/permits", json=permit, headers=api.auth(who))
    assert r.status_code == status, r.text
    if rule:
        assert r.json()["rule"] == rule and f"rule {rule}" in r.json()["detail"]
        assert _version(api) == v0
    else:
        assert r.json()["granted_by"] == who and r.json()["destination"]["type"] == "Polygon"
        assert _version(api) == v0 + 1
        again = api.client.post(f"/api/v1/supervisees/{sid}/permits", json=permit,
                                headers=api.auth(who))
        assert again.status_code == 409  # the same permit twice


def test_permit_input_errors(api):
    h = api.auth("xa.a")
    url = f"/api/v1/supervisees/{SV_A}/permits"
    naive = api.client.post(url, headers=h, json={
        "valid_from": "2026-03-01T00:00:00", "valid_to": "2026-03-02T00:00:00", "reason": "x",
        "destination": "anywhere"})
    assert naive.status_code == 422 and "offset" in naive.text
    bad_dest = api.client.post(url, headers=h, json={
        "valid_from": 1_772_000_000_000, "valid_to": 1_772_100_000_000, "reason": "x",
        "destination": {"type": "Polygon", "coordinates": [[[105.9, 21.1]]]}})
    assert bad_dest.status_code == 422
    assert bad_dest.json()["path"].startswith("$.destination.coordinates[0]")


def test_device_assignment_history(api):
    """A device moves from a supervisee of commune B to one of commune A (each wearing no
    other device: one at a time), its history kept and shown per scope."""
    admin, a, b = api.auth("admin"), api.auth("xa.a"), api.auth("xa.b")
    assert api.client.post(f"/api/v1/devices/{DEV_SPARE}/unassign",
                           headers=a).status_code == 200  # SV_A2 wears nothing now
    with psycopg.connect(api.db_url) as conn:
        conn.execute("INSERT INTO supervisees (id, name, sentence_type, sentence_start, "
                     "sentence_end, unit) VALUES (%s, 'B2', 'an_treo', '2025-01-01', "
                     "'2027-12-31', 'CAX-T02')", (SV_B2,))
    v0 = _version(api)
    r = api.client.post("/api/v1/devices", json={"id": "dev-hist", "supervisee_id": SV_B2},
                        headers=admin)
    assert r.status_code == 201 and r.json()["supervisee_id"] == SV_B2
    assert api.client.post("/api/v1/devices", json={"id": "dev-hist"},
                           headers=admin).status_code == 409
    busy = api.client.post("/api/v1/devices/dev-hist/assign", json={"supervisee_id": SV_A2},
                           headers=admin)
    assert busy.status_code == 409 and SV_B2 in busy.json()["detail"]
    # xa.a cannot touch a device worn in another commune
    assert api.client.post("/api/v1/devices/dev-hist/unassign", headers=a).status_code == 404
    assert api.client.post("/api/v1/devices/dev-hist/unassign", headers=b).status_code == 200
    assert api.client.post("/api/v1/devices/dev-hist/unassign", headers=b).status_code == 404
    assert api.client.post("/api/v1/devices/dev-hist/unassign",
                           headers=admin).status_code == 409
    again = api.client.post("/api/v1/devices/dev-hist/assign", json={"supervisee_id": SV_A2},
                            headers=a)
    assert again.status_code == 200 and again.json()["supervisee_id"] == SV_A2
    history = api.client.get("/api/v1/devices/dev-hist/assignments", headers=admin).json()
    assert [(h["supervisee_id"], h["unassigned_at"] is None) for h in history] == [
        (SV_A2, True), (SV_B2, False)]
    assert history[0]["assigned_by"] == "xa.a"
    # each officer sees the part of the history of their own scope
    assert [h["supervisee_id"] for h in api.client.get(
        "/api/v1/devices/dev-hist/assignments", headers=a).json()] == [SV_A2]
    assert [h["supervisee_id"] for h in api.client.get(
        "/api/v1/devices/dev-hist/assignments", headers=b).json()] == [SV_B2]
    with psycopg.connect(api.db_url) as conn:
        assert conn.execute("SELECT supervisee_id FROM devices WHERE id = 'dev-hist'"
                            ).fetchone()[0] == SV_A2
    assert _version(api) >= v0 + 3


def test_assign_refuses_an_unknown_supervisee_or_device(api):
    a = api.auth("xa.a")
    assert api.client.post(f"/api/v1/devices/{DEV_FREE}/assign", json={"supervisee_id": "nope"},
                           headers=a).status_code == 404
    assert api.client.post("/api/v1/devices/no-such/assign", json={"supervisee_id": SV_A},
                           headers=a).status_code == 404
    assert api.client.post(f"/api/v1/devices/{DEV_A}/assign", json={"supervisee_id": SV_B},
                           headers=api.auth("xa.b")).status_code == 404


def test_units_and_officers_validation(api):
    admin = api.auth("admin")
    bad = api.client.post("/api/v1/units", headers=admin, json={
        "code": "CAX-BAD", "name": "x", "boundary": {"type": "Polygon", "coordinates": []}})
    assert bad.status_code == 422 and bad.json()["path"].startswith("$.boundary")
    orphan = api.client.post("/api/v1/units", headers=admin, json={
        "code": "CAX-BAD", "name": "x", "parent": "NO-SUCH"})
    assert orphan.status_code == 422 and orphan.json()["path"] == "$.parent"
    cycle = api.client.put("/api/v1/units/PC10-T", headers=admin, json={
        "name": "PC10", "parent": "CAX-T01"})
    assert cycle.status_code == 422 and "below" in cycle.json()["detail"]
    no_unit = api.client.post("/api/v1/officers", headers=admin, json={
        "username": "xa.z", "password": "mat-khau-123", "role": "commune"})
    assert no_unit.status_code == 422 and no_unit.json()["field"] == "unit"
    dup = api.client.post("/api/v1/officers", headers=admin, json={
        "username": "xa.a", "password": "mat-khau-123", "role": "commune", "unit": "CAX-T01"})
    assert dup.status_code == 409
    short = api.client.post("/api/v1/officers", headers=admin, json={
        "username": "xa.z", "password": "short", "role": "commune", "unit": "CAX-T01"})
    assert short.status_code == 422
    assert short.json()["detail"][0]["field"] == "body.password"
