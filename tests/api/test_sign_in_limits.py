"""Failed sign-ins are logged, audited, throttled per username and per address (state in the
database: it survives a restart and holds across API processes), and shown to admins."""

from __future__ import annotations

import logging

import psycopg
import pytest
from fastapi.testclient import TestClient

from api.officers import create_officer, ensure_admin
from schema import connect
from tests.api.conftest import ADMIN_PASSWORD, PASSWORD, MutableClock, make_app

pytestmark = pytest.mark.services

T = 1_767_225_600_000
LIMITS = {"login_max_failures": 3, "login_max_failures_per_address": 6,
          "login_failure_window_s": 600}


def _app(db_url: str, clock: MutableClock):
    app = make_app(db_url, clock)
    settings = app.state.ctx.settings
    for key, value in LIMITS.items():
        setattr(settings, key, value)
    return app


@pytest.fixture
def accounts(db_url):
    with connect(db_url) as conn:
        ensure_admin(conn, ADMIN_PASSWORD)
        conn.execute("INSERT INTO units (code, name) VALUES ('PC10-1', 'Tỉnh'), ('CAX-1', 'Xã')")
        conn.execute("UPDATE units SET parent = 'PC10-1' WHERE code = 'CAX-1'")
        conn.commit()
        create_officer(conn, "can.bo", PASSWORD, "commune", "CAX-1")
        create_officer(conn, "can.bo2", PASSWORD, "commune", "CAX-1")
    return db_url


def _login(client: TestClient, user: str, password: str):
    return client.post("/api/v1/auth/token", data={"username": user, "password": password})


def test_wrong_passwords_for_one_account_are_throttled_logged_and_audited(accounts, caplog):
    clock = MutableClock(T)
    with TestClient(_app(accounts, clock)) as client, \
            caplog.at_level(logging.WARNING, logger="giamsat.api"):
        for _ in range(3):
            assert _login(client, "can.bo", "doan-sai-mat-khau").status_code == 401
        refused = _login(client, "can.bo", PASSWORD)  # even the right password now
        assert refused.status_code == 429
        wait = int(refused.headers["retry-after"])
        assert 0 < wait <= 601 and "try again" in refused.json()["detail"]
        assert _login(client, "can.bo2", PASSWORD).status_code == 200  # others sign in
    assert caplog.text.count("sign-in failed user='can.bo'") == 4
    with psycopg.connect(accounts) as conn:
        rows = conn.execute("SELECT actor, subject, params ->> 'reason' FROM audit_log "
                            "WHERE action = 'auth.failed' ORDER BY id").fetchall()
    assert rows == [("address:testclient", "can.bo", "password")] * 3 + [
        ("address:testclient", "can.bo", "throttled")]

    # a new API process on the same database: still refused, until the window has passed
    clock.ms += 60_000
    with TestClient(_app(accounts, clock)) as client:
        again = _login(client, "can.bo", PASSWORD)
        assert again.status_code == 429 and int(again.headers["retry-after"]) == wait - 60
        clock.ms += (wait - 60) * 1000
        ok = _login(client, "can.bo", PASSWORD)
        assert ok.status_code == 200, ok.text
        # a success ends the run: three more mistakes before the next refusal
        for _ in range(2):
            assert _login(client, "can.bo", "doan-sai-mat-khau").status_code == 401
        assert _login(client, "can.bo", PASSWORD).status_code == 200


def test_one_address_trying_many_usernames_is_throttled(accounts):
    with TestClient(_app(accounts, MutableClock(T))) as client:
        for i in range(6):
            assert _login(client, f"khong-co-{i}", "x" * 8).status_code == 401
        refused = _login(client, "can.bo", PASSWORD)
        assert refused.status_code == 429 and "retry-after" in refused.headers


def test_admins_see_recent_failures(accounts):
    clock = MutableClock(T)
    with TestClient(_app(accounts, clock)) as client:
        for _ in range(4):
            _login(client, "can.bo", "doan-sai-mat-khau")
        _login(client, "ai-do", "doan-sai-mat-khau")
        admin = _login(client, "admin", ADMIN_PASSWORD).json()["access_token"]
        officer = _login(client, "can.bo2", PASSWORD).json()["access_token"]
        got = client.get("/api/v1/auth/failures",
                         headers={"Authorization": f"Bearer {admin}"})
        assert got.status_code == 200
        body = got.json()
        assert [(f["username"], f["reason"], f["known_username"]) for f in body["failures"]] == [
            ("ai-do", "password", False)] + [("can.bo", "throttled", True)] + [
            ("can.bo", "password", True)] * 3
        assert body["failures"][0]["address"] == "testclient" and body["failures"][0]["at"] == T
        assert body["throttled_usernames"] == ["can.bo"] and body["throttled_addresses"] == []
        assert client.get("/api/v1/auth/failures", params={"since": T + 1},
                          headers={"Authorization": f"Bearer {admin}"}).json()["failures"] == []
        assert client.get("/api/v1/auth/failures",
                          headers={"Authorization": f"Bearer {officer}"}).status_code == 403
