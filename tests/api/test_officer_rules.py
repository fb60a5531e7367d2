"""Officer accounts stay administrable and coherent: the last admin stays, roles match units,
and one supervisee wears one device at a time."""

from __future__ import annotations

import psycopg
import pytest
from fastapi.testclient import TestClient

from schema import connect
from tests.api.conftest import (
    COMMUNE_A,
    DEV_A,
    DEV_FREE,
    PROVINCE,
    SV_A,
    MutableClock,
    make_app,
    seed,
)

pytestmark = pytest.mark.services


@pytest.fixture
def fresh(db_url):
    """A seeded database of this test's own (these tests change accounts)."""
    with connect(db_url) as conn:
        world = seed(conn)
    app = make_app(db_url, MutableClock(world.now_ms))
    with TestClient(app) as client:
        admin = {"Authorization": "Bearer " + app.state.ctx.tokens.issue(
            "admin", "admin", password_version=1)}
        yield client, admin, db_url


def test_the_last_active_admin_cannot_be_disabled_or_demoted(fresh):
    client, admin, db_url = fresh
    off = client.put("/api/v1/officers/admin", json={"active": False}, headers=admin)
    assert off.status_code == 409 and "last active admin" in off.json()["detail"]
    assert off.json()["field"] == "active"
    down = client.put("/api/v1/officers/admin", json={"role": "commune", "unit": COMMUNE_A},
                      headers=admin)
    assert down.status_code == 409 and "last active admin" in down.json()["detail"]
    assert client.get("/api/v1/me", headers=admin).json()["role"] == "admin"
    # with a second admin, the first may go; then the second is the last one
    made = client.post("/api/v1/officers", headers=admin, json={
        "username": "admin2", "password": "mat-khau-admin-2", "role": "admin"})
    assert made.status_code == 201, made.text
    assert client.put("/api/v1/officers/admin", json={"active": False},
                      headers=admin).status_code == 200
    with psycopg.connect(db_url) as conn:
        active = conn.execute("SELECT username FROM officers WHERE role = 'admin' AND active"
                              ).fetchall()
    assert active == [("admin2",)]


@pytest.mark.parametrize("body, words", [
    ({"role": "admin", "unit": COMMUNE_A}, "an admin has no unit"),
    ({"role": "province", "unit": COMMUNE_A}, "is a commune unit"),
    ({"role": "commune", "unit": PROVINCE}, "is a province unit"),
    ({"role": "commune"}, "needs a unit"),
])
def test_role_and_unit_must_agree(fresh, body, words):
    client, admin, _ = fresh
    r = client.post("/api/v1/officers", headers=admin,
                    json={"username": "moi.ca", "password": "mat-khau-moi-1", **body})
    assert r.status_code == 422 and words in r.json()["detail"], r.text
    assert r.json()["field"] == "unit"
    if "unit" in body:  # a change of role alone keeps the officer's unit
        moved = client.put("/api/v1/officers/xa.a", headers=admin, json=body)
        assert moved.status_code == 422 and words in moved.json()["detail"], moved.text


def test_an_officer_who_becomes_admin_leaves_the_unit(fresh):
    client, admin, _ = fresh
    r = client.put("/api/v1/officers/tinh.t", headers=admin, json={"role": "admin"})
    assert r.status_code == 200 and r.json()["unit"] is None and r.json()["role"] == "admin"
    back = client.put("/api/v1/officers/tinh.t", headers=admin,
                      json={"role": "province", "unit": PROVINCE})
    assert back.status_code == 200 and back.json()["unit"] == PROVINCE


def test_a_supervisee_wears_one_device_at_a_time(fresh):
    client, admin, db_url = fresh
    second = client.post(f"/api/v1/devices/{DEV_FREE}/assign", headers=admin,
                         json={"supervisee_id": SV_A})
    assert second.status_code == 409 and DEV_A in second.json()["detail"]
    created = client.post("/api/v1/devices", headers=admin,
                          json={"id": "dev-new-2", "supervisee_id": SV_A})
    assert created.status_code == 409
    assert client.get("/api/v1/devices/dev-new-2/assignments",
                      headers=admin).status_code == 404  # all or nothing: not created
    with psycopg.connect(db_url) as conn, pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute("INSERT INTO device_assignments (device_id, supervisee_id) "
                     "VALUES (%s, %s)", (DEV_FREE, SV_A))
    # once the first comes off, the other goes on
    assert client.post(f"/api/v1/devices/{DEV_A}/unassign", headers=admin).status_code == 200
    assert client.post(f"/api/v1/devices/{DEV_FREE}/assign", headers=admin,
                       json={"supervisee_id": SV_A}).status_code == 200
