"""Operations: metrics with bounded labels, liveness, readiness, the dashboard mount, and
errors that are 4xx saying what is wrong, never 500."""

from __future__ import annotations

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg import errors as pgerr

from tests.api.conftest import SV_A, MutableClock, make_app

pytestmark = pytest.mark.services


def test_metrics_use_route_templates_not_ids(api):
    api.client.get(f"/api/v1/supervisees/{SV_A}", headers=api.auth("xa.a"))
    text = api.client.get("/metrics").text
    assert 'route="/api/v1/supervisees/{sid}"' in text
    assert SV_A not in text and "xa.a" not in text
    assert "giamsat_api_request_duration_seconds_bucket" in text
    assert 'giamsat_api_logins_total' in text


def test_health_and_readiness(db_url):
    reason = {"value": None}
    app = make_app(db_url, MutableClock(0), readiness=lambda: reason["value"])
    with TestClient(app) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        assert client.get("/readyz").status_code == 200
        reason["value"] = "pipeline not started"
        r = client.get("/readyz")
        assert r.status_code == 503 and r.json()["reason"] == "pipeline not started"
    down = make_app("postgresql://nobody@127.0.0.1:1/none?connect_timeout=1", MutableClock(0))
    with TestClient(down) as client:
        assert client.get("/healthz").status_code == 200
        r = client.get("/readyz")
        assert r.status_code == 503 and r.json()["reason"] == "database unreachable"


def test_dashboard_is_served_at_root(db_url, tmp_path):
    (tmp_path / "index.html").write_text("<!doctype html><title>giamsat</title>")
    app = make_app(db_url, MutableClock(0), static_dir=tmp_path)
    with TestClient(app) as client:
        assert "giamsat" in client.get("/").text
        assert client.get("/healthz").status_code == 200
        assert client.get("/api/v1/config").json()["map_tiles_url"] is None
        assert client.get("/api/v1/me").status_code == 401
    bare = make_app(db_url, MutableClock(0), static_dir=tmp_path / "missing")
    with TestClient(bare) as client:
        assert client.get("/").status_code == 404


@pytest.mark.parametrize("exc, status", [
    (pgerr.ForeignKeyViolation("fk"), 409),
    (pgerr.UniqueViolation("dup"), 409),
    (pgerr.CheckViolation("check"), 422),
    (psycopg.DataError("bad value"), 422),
    (pgerr.QueryCanceled("slow"), 503),
])
def test_database_errors_become_4xx(db_url, exc, status):
    app = make_app(db_url, MutableClock(0), static_dir=None)

    @app.get("/boom")
    def boom():
        raise exc

    with TestClient(app, raise_server_exceptions=False) as client:
        r = client.get("/boom")
    assert r.status_code == status and r.json()["detail"].startswith("the request")


def test_validation_errors_name_the_field(api):
    r = api.client.get("/api/v1/alerts", params={"limit": "many"}, headers=api.auth("xa.a"))
    assert r.status_code == 422
    body = r.json()
    assert body["detail"][0]["field"] == "query.limit" and "query.limit" in body["message"]
    r = api.client.post("/api/v1/auth/token", data={"username": "xa.a"})
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "body.password"
    nul = api.client.get("/api/v1/supervisees/SV%00A", headers=api.auth("xa.a"))
    assert nul.status_code in (404, 422)
    nul = api.client.get("/api/v1/alerts", params={"supervisee_id": "SV\x00A"},
                         headers=api.auth("xa.a"))
    assert nul.status_code == 422, nul.text
