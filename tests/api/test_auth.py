"""Sign-in, token expiry, disabled accounts, argon2 hashes, the first-start admin."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from api.officers import OfficerError, create_officer, ensure_admin, get_officer
from schema import connect
from tests.api.conftest import ADMIN_PASSWORD, PASSWORD, MutableClock, make_app

pytestmark = pytest.mark.services

T = 1_767_225_600_000


def _login(client: TestClient, user: str, password: str):
    return client.post("/api/v1/auth/token", data={"username": user, "password": password})


def test_login_me_and_expiry(db_url):
    with connect(db_url) as conn:
        conn.execute("INSERT INTO units (code, name) VALUES ('CAX-1', 'Xã Một')")
        conn.commit()
        create_officer(conn, "can.bo", PASSWORD, "commune", "CAX-1", display_name="Cán bộ")
    clock = MutableClock(T)
    with TestClient(make_app(db_url, clock)) as client:
        bad = _login(client, "can.bo", "wrong-password")
        assert bad.status_code == 401 and "sai" in bad.json()["detail"].lower()
        assert _login(client, "nobody", PASSWORD).status_code == 401
        got = _login(client, "can.bo", PASSWORD)
        assert got.status_code == 200
        body = got.json()
        assert body["token_type"] == "bearer" and body["expires_in"] == 900
        assert body["user"] == {"username": "can.bo", "role": "commune", "unit": "CAX-1",
                                "display_name": "Cán bộ"}
        h = {"Authorization": f"Bearer {body['access_token']}"}
        me = client.get("/api/v1/me", headers=h)
        assert me.status_code == 200 and me.json()["units"] == ["CAX-1"]
        clock.ms += 899_000
        assert client.get("/api/v1/me", headers=h).status_code == 200
        clock.ms += 1_000  # exactly token_ttl_s after issue
        expired = client.get("/api/v1/me", headers=h)
        assert expired.status_code == 401 and "expired" in expired.json()["detail"]
        forged = body["access_token"][:-4] + ("AAAA" if not body["access_token"].endswith(
            "AAAA") else "BBBB")
        assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {forged}"}
                          ).status_code == 401


def test_disabled_officer_is_refused_at_once(db_url):
    with connect(db_url) as conn:
        ensure_admin(conn, ADMIN_PASSWORD)
        conn.execute("INSERT INTO units (code, name) VALUES ('CAX-1', 'Xã Một')")
        conn.commit()
        create_officer(conn, "can.bo", PASSWORD, "commune", "CAX-1")
    with TestClient(make_app(db_url, MutableClock(T))) as client:
        token = _login(client, "can.bo", PASSWORD).json()["access_token"]
        admin = _login(client, "admin", ADMIN_PASSWORD).json()["access_token"]
        off = client.put("/api/v1/officers/can.bo", json={"active": False},
                         headers={"Authorization": f"Bearer {admin}"})
        assert off.status_code == 200 and off.json()["active"] is False
        assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}
                          ).status_code == 401
        assert _login(client, "can.bo", PASSWORD).status_code == 401


def test_passwords_are_argon2_hashes_and_admin_is_created_once(db):
    assert ensure_admin(db, "first-password") == "first-password"
    assert ensure_admin(db, "second-password") is None  # a later start changes nothing
    stored = db.execute("SELECT password_hash FROM officers WHERE username = 'admin'").fetchone()
    assert stored[0].startswith("$argon2id$") and "first-password" not in stored[0]
    assert get_officer(db, "admin").role == "admin"


def test_ensure_admin_generates_a_password_when_none_is_set(db):
    password = ensure_admin(db, None)
    assert password and len(password) >= 12
    assert db.execute("SELECT count(*) FROM officers").fetchone()[0] == 1


def test_officer_fields_are_checked(db):
    with pytest.raises(OfficerError) as short:
        create_officer(db, "can.bo", "short", "commune", "CAX-1")
    assert short.value.field == "password"
    with pytest.raises(OfficerError) as unit:
        create_officer(db, "can.bo", PASSWORD, "commune", "NO-SUCH-UNIT")
    assert unit.value.field == "unit"
    with pytest.raises(OfficerError) as role:
        create_officer(db, "can.bo", PASSWORD, "chief", None)
    assert role.value.field == "role"
