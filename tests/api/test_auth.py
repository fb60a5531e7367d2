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
        conn.execute("INSERT INTO units (code, name) VALUES ('PC10-1', 'Tỉnh Một'), "
                     "('CAX-1', 'Xã Một')")
        conn.execute("UPDATE units SET parent = 'PC10-1' WHERE code = 'CAX-1'")
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
                                "display_name": "Cán bộ", "chief": False}
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
    _officer(db_url, admin=True)
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


def test_refresh_extends_a_valid_token_until_the_session_limit(db_url):
    """A still-valid token buys a fresh one with the same sign-in time; an expired one does
    not; no refresh reaches past session_max_s after the password was given."""
    _officer(db_url)
    clock = MutableClock(T)
    settings = {"token_ttl_s": 900, "session_max_s": 2_000}
    with TestClient(make_app(db_url, clock, **settings)) as client:
        first = _login(client, "can.bo", PASSWORD).json()
        assert first["expires_in"] == 900 and first["session_expires_in"] == 2_000
        clock.ms += 600_000
        fresh = _refresh(client, first["access_token"])
        assert fresh.status_code == 200, fresh.text
        body = fresh.json()
        assert body["expires_in"] == 900 and body["session_expires_in"] == 1_400
        assert body["user"]["unit"] == "CAX-1" and body["access_token"] != first["access_token"]
        clock.ms += 800_000  # 1,400 s after sign-in: the first token is dead, the fresh one not
        assert client.get("/api/v1/me", headers=_bearer(first["access_token"])).status_code == 401
        assert client.get("/api/v1/me", headers=_bearer(body["access_token"])).status_code == 200
        last = _refresh(client, body["access_token"]).json()
        assert last["expires_in"] == 600 and last["session_expires_in"] == 600  # capped
        clock.ms += 600_000  # the sign-in is session_max_s old: nothing refreshes any more
        ended = _refresh(client, last["access_token"])
        assert ended.status_code == 401 and "expired" in ended.json()["detail"]
        assert _refresh(client, None).status_code == 401
        assert _login(client, "can.bo", PASSWORD).json()["session_expires_in"] == 2_000


def test_refresh_is_refused_to_a_disabled_officer_and_reads_the_role_again(db_url):
    _officer(db_url, "CAX-1", "CAX-2", admin=True)
    with TestClient(make_app(db_url, MutableClock(T))) as client:
        token = _login(client, "can.bo", PASSWORD).json()["access_token"]
        admin = _bearer(_login(client, "admin", ADMIN_PASSWORD).json()["access_token"])
        moved = client.put("/api/v1/officers/can.bo", json={"unit": "CAX-2"}, headers=admin)
        assert moved.status_code == 200, moved.text
        assert _refresh(client, token).json()["user"]["unit"] == "CAX-2"
        off = client.put("/api/v1/officers/can.bo", json={"active": False}, headers=admin)
        assert off.status_code == 200
        refused = _refresh(client, token)
        assert refused.status_code == 401 and "disabled" in refused.json()["detail"]


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _refresh(client: TestClient, token: str | None):
    return client.post("/api/v1/auth/refresh", headers=_bearer(token) if token else {})


def test_a_password_change_signs_the_officer_out_everywhere(db_url):
    """Tokens carry the password's version: after a reset, the officer's older tokens are
    refused and cannot be refreshed; signing in with the new password works."""
    _officer(db_url, admin=True)
    with TestClient(make_app(db_url, MutableClock(T))) as client:
        old = _login(client, "can.bo", PASSWORD).json()["access_token"]
        admin = _bearer(_login(client, "admin", ADMIN_PASSWORD).json()["access_token"])
        renamed = client.put("/api/v1/officers/can.bo", json={"display_name": "Cán bộ A"},
                             headers=admin)
        assert renamed.status_code == 200  # not a password change: the token lives on
        assert client.get("/api/v1/me", headers=_bearer(old)).status_code == 200
        reset = client.put("/api/v1/officers/can.bo", json={"password": "another-password-9"},
                           headers=admin)
        assert reset.status_code == 200, reset.text
        for refused in (client.get("/api/v1/me", headers=_bearer(old)), _refresh(client, old)):
            assert refused.status_code == 401 and "password was changed" in refused.text
        assert _login(client, "can.bo", PASSWORD).status_code == 401
        new = _login(client, "can.bo", "another-password-9").json()["access_token"]
        assert _refresh(client, new).status_code == 200


def test_refresh_refuses_a_token_past_a_lowered_session_limit(db_url):
    """Tokens issued under a longer GIAMSAT_SESSION_MAX_S than the running one: 401, not 500."""
    _officer(db_url)
    clock = MutableClock(T)
    with TestClient(make_app(db_url, clock, token_ttl_s=3_600)) as client:
        token = _login(client, "can.bo", PASSWORD).json()["access_token"]
    clock.ms += 1_000_000  # the token lives on (1 h), the sign-in is past the new 900 s limit
    with TestClient(make_app(db_url, clock, session_max_s=900)) as client:
        refused = _refresh(client, token)
        assert refused.status_code == 401 and "sign in again" in refused.text
        assert _login(client, "can.bo", PASSWORD).json()["session_expires_in"] == 900


def _officer(db_url: str, *units: str, admin: bool = False) -> None:
    """Commune officer ``can.bo`` (password PASSWORD) of the first of ``units`` (CAX-1, communes
    of province PC10-1), and with ``admin`` the admin (ADMIN_PASSWORD)."""
    units = units or ("CAX-1",)
    with connect(db_url) as conn:
        if admin:
            ensure_admin(conn, ADMIN_PASSWORD)
        conn.execute("INSERT INTO units (code, name) VALUES ('PC10-1', 'Tỉnh Một')")
        for code in units:  # communes of province PC10-1
            conn.execute("INSERT INTO units (code, name, parent) VALUES (%s, %s, 'PC10-1')",
                         (code, f"Xã {code}"))
        conn.commit()
        create_officer(conn, "can.bo", PASSWORD, "commune", units[0])


@pytest.mark.parametrize("token", [
    "not-a-jwt",
    "a.b.c",
    "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9.",  # alg none
    # well formed, signed with another key
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhZG1pbiIsImV4cCI6OTk5OTk5OTk5OSwiaWF0IjoxLC"
    "Jpc3MiOiJnaWFtc2F0In0.4r3H4QwW8fKQe0mFqk3gWkq6a3iC7s0HkC2x1Z9YQ0s",
])
def test_a_refused_token_gets_a_fixed_message_not_the_librarys(db_url, token):
    """401 answers say 'invalid token', never how the token library failed to read it."""
    with TestClient(make_app(db_url, MutableClock(T))) as client:
        for path in ("/api/v1/me", "/api/v1/auth/refresh"):
            call = client.post if path.endswith("refresh") else client.get
            r = call(path, headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 401
            assert r.json()["detail"].startswith("invalid token / "), r.text
