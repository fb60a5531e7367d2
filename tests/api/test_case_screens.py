"""Casework endpoints of issue 15: people named in alerts and searched by name, and downlink
commands (locate now) sent by the API through a real broker and answered by the device."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import paho.mqtt.client as mqtt
import pytest
from fastapi.testclient import TestClient

from schema import connect
from tests.api.conftest import DEV_A, DEV_B, NAME_A, NAME_B, SV_A, SV_B, Api, make_app

pytestmark = pytest.mark.services


# --- people, not ids ------------------------------------------------------------------------

def test_alerts_carry_the_supervisees_name(api: Api):
    got = api.client.get("/api/v1/alerts", headers=api.auth("xa.a")).json()["alerts"]
    assert got and {a["supervisee_name"] for a in got} == {NAME_A}
    one = api.client.get(f"/api/v1/alerts/{api.world.alerts['a_exit']}",
                         headers=api.auth("xa.a")).json()
    assert (one["supervisee_id"], one["supervisee_name"]) == (SV_A, NAME_A)
    for field in ("id", "type", "severity", "status", "supervisee_id", "zone_id", "message_vi"):
        assert field in one  # the contract's fields stay


def test_the_queue_is_searched_by_name_within_the_scope(api: Api):
    def search(user: str, q: str) -> set[str]:
        r = api.client.get("/api/v1/alerts", params={"q": q}, headers=api.auth(user))
        assert r.status_code == 200, r.text
        return {a["supervisee_id"] for a in r.json()["alerts"]}

    assert search("tinh.t", "thị thử") == {SV_B}  # case-insensitive, part of the name
    assert search("tinh.t", "Thử") == {SV_A, SV_B}
    assert search("tinh.t", "sv-a") == {SV_A}  # the id too
    assert search("xa.a", NAME_B) == set()  # another commune's person: not found
    assert search("tinh.x", "Thử") == set()  # another province
    assert search("tinh.t", "100%_") == set()  # LIKE wildcards are literal


# --- commands -------------------------------------------------------------------------------

def _wall() -> datetime:
    return datetime.now(UTC)


class Device:
    """A device on the broker: answers each command on its ack topic, and a locate with a fix."""

    def __init__(self, host: str, port: int, device_id: str, lat: float, lon: float):
        self.device_id, self.lat, self.lon, self.seq = device_id, lat, lon, 5000
        self.received: list[dict] = []
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{device_id}-t")
        self.c.on_message = self._on_message
        self.c.connect(host, port)
        self.c.subscribe(f"em/v1/dev/{device_id}/cmd", qos=1)
        self.c.loop_start()

    def _on_message(self, client, userdata, msg) -> None:
        cmd = json.loads(msg.payload)
        self.received.append(cmd)
        now = int(time.time() * 1000)
        base = f"em/v1/dev/{self.device_id}"
        if cmd["type"] == "locate":
            self.seq += 1
            client.publish(f"{base}/fix", json.dumps({"seq": self.seq, "ts": now, "lat": self.lat,
                                                      "lon": self.lon, "acc": 6}), qos=1)
        client.publish(f"{base}/ack", json.dumps({"id": cmd["id"], "ts": now, "ok": True}), qos=1)

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


class Live:
    """The live app's client, the answering device, and tokens the live app accepts."""

    def __init__(self, client: TestClient, device: Device, app) -> None:
        self.client, self.device, self.app = client, device, app

    def auth(self, user: str) -> dict[str, str]:
        from tests.api.conftest import OFFICERS

        role = "admin" if user == "admin" else OFFICERS[user][0]
        token = self.app.state.ctx.tokens.issue(user, role, password_version=1)
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def live(api: Api, mqtt_broker, unique_id):
    """The world's app on the wall clock, publishing to the test broker, with ingest running
    (it stores the device's answers) and device DEV_A answering."""
    from config.settings import Settings
    from ingest.service import IngestService

    ingest = IngestService(Settings(mqtt_client_id=f"ingest-{unique_id}"), api.db_url,
                           mqtt_broker.url)
    ingest.start()
    device = Device(mqtt_broker.host, mqtt_broker.port, DEV_A, 21.2, 105.97)
    app = make_app(api.db_url, _wall, mqtt_url=mqtt_broker.url)
    try:
        with TestClient(app) as client:
            yield Live(client, device, app)
    finally:
        device.close()
        ingest.stop()


def test_locate_now_is_published_answered_and_shown(api: Api, live):
    client, device = live.client, live.device
    r = client.post(f"/api/v1/devices/{DEV_A}/commands",
                    json={"type": "locate", "alert_id": api.world.alerts["a_exit"]},
                    headers=live.auth("xa.a"))
    assert r.status_code == 201, r.text
    cmd = r.json()
    assert (cmd["type"], cmd["sent_by"], cmd["ok"]) == ("locate", "xa.a", None)
    deadline = time.monotonic() + 20
    while True:
        got = client.get(f"/api/v1/devices/{DEV_A}/commands", headers=live.auth("xa.a")).json()
        mine = next(c for c in got if c["id"] == cmd["id"])
        if mine["ok"] and mine["fix"]:
            break
        assert time.monotonic() < deadline, f"no answer stored: {mine}"
        time.sleep(0.3)
    assert device.received[-1] == {"id": cmd["id"], "type": "locate"}
    assert mine["answered_at"] >= mine["sent_at"]
    assert (mine["fix"]["lat"], mine["fix"]["lon"], mine["fix"]["acc"]) == (21.2, 105.97, 6)
    with connect(api.db_url) as conn:
        audited = conn.execute("SELECT actor, params FROM audit_log WHERE action = "
                               "'device.command' AND subject = %s", (DEV_A,)).fetchall()
    assert ("xa.a", {"command_id": cmd["id"], "type": "locate",
                     "alert_id": api.world.alerts["a_exit"]}) in audited


def test_set_interval_and_notify_need_their_fields(api: Api, live):
    client = live.client
    h = live.auth("xa.a")
    url = f"/api/v1/devices/{DEV_A}/commands"
    assert client.post(url, json={"type": "set_interval"}, headers=h).status_code == 422
    assert client.post(url, json={"type": "notify_wearer"}, headers=h).status_code == 422
    assert client.post(url, json={"type": "reboot"}, headers=h).status_code == 422
    r = client.post(url, json={"type": "set_interval", "fix_s": 15}, headers=h)
    assert r.status_code == 201 and r.json()["payload"]["fix_s"] == 15


def test_commands_stay_in_the_unit(api: Api, live):
    client = live.client
    for user in ("xa.b", "tinh.x", "xa.x"):  # another commune, province, or both
        r = client.post(f"/api/v1/devices/{DEV_A}/commands", json={"type": "locate"},
                        headers=live.auth(user))
        assert r.status_code == 404, (user, r.text)
        assert client.get(f"/api/v1/devices/{DEV_A}/commands",
                          headers=live.auth(user)).status_code == 404
    assert client.post(f"/api/v1/devices/{DEV_B}/commands", json={"type": "locate"},
                       headers=live.auth("tinh.t")).status_code == 201  # the province: yes
    assert client.post(f"/api/v1/devices/{DEV_A}/commands",
                       json={"type": "locate"}).status_code == 401


def test_a_broker_outage_is_a_clear_503_and_nothing_is_recorded(api: Api):
    app = make_app(api.db_url, _wall, mqtt_url="mqtt://127.0.0.1:1")
    token = app.state.ctx.tokens.issue("xa.a", "commune", password_version=1)
    with TestClient(app) as client:
        r = client.post(f"/api/v1/devices/{DEV_A}/commands", json={"type": "locate"},
                        headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 503 and "MQTT" in r.json()["detail"]
    with connect(api.db_url) as conn:
        assert conn.execute("SELECT count(*) FROM device_commands WHERE sent_at > now() - "
                            "interval '1 minute' AND payload->>'type' = 'locate' AND "
                            "sent_by = 'xa.a' AND NOT EXISTS (SELECT 1 FROM audit_log WHERE "
                            "params->>'command_id' = device_commands.id)").fetchone()[0] == 0


# --- evidence packs -------------------------------------------------------------------------

def _pack(api: Api, user: str = "xa.a"):
    from tests.api.conftest import T0

    return api.client.get(f"/api/v1/supervisees/{SV_A}/evidence",
                          params={"from": T0 - 3_600_000, "to": T0 + 7_200_000},
                          headers=api.auth(user))


def _rezip(data: bytes, change) -> bytes:
    import io
    import zipfile

    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name in src.namelist():
            zf.writestr(name, change(name, src.read(name)))
    return out.getvalue()


def _verify_cli(tmp_path, data: bytes) -> tuple[int, str]:
    import subprocess
    import sys

    from tests.api.conftest import SECRET

    path = tmp_path / "pack.zip"
    path.write_bytes(data)
    key = tmp_path / "key"
    key.write_text(SECRET)
    r = subprocess.run([sys.executable, "-m", "giamsat", "verify-evidence", str(path),
                        "--key-file", str(key)], capture_output=True, text=True, timeout=60)
    return r.returncode, r.stdout + r.stderr


def test_an_evidence_pack_holds_the_case_and_verifies(api: Api, tmp_path):
    import csv
    import io
    import zipfile

    r = _pack(api)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/zip"
    zf = zipfile.ZipFile(io.BytesIO(r.content))
    assert set(zf.namelist()) == {"manifest.json", "report.pdf", "fixes.csv", "fixes.geojson",
                                  "decisions.json", "alerts.json", "audit.json", "case.json"}
    assert zf.read("report.pdf").startswith(b"%PDF")
    rows = list(csv.DictReader(io.StringIO(zf.read("fixes.csv").decode())))
    assert len(rows) == 10 and {r["device_id"] for r in rows} == {DEV_A}
    geo = json.loads(zf.read("fixes.geojson"))
    assert len(geo["features"]) == 10
    decisions = json.loads(zf.read("decisions.json"))["decisions"]
    assert {d["decision"] for d in decisions} >= {"compliant", "violation"}
    alerts = json.loads(zf.read("alerts.json"))
    assert alerts and all(a["history"] and a["history"][0]["action"] == "opened" for a in alerts)
    audit = json.loads(zf.read("audit.json"))
    assert any(e["action"] == "evidence.read" and e["actor"] == "xa.a" for e in audit)
    assert json.loads(zf.read("case.json"))["supervisee"]["name"] == NAME_A
    code, out = _verify_cli(tmp_path, r.content)
    assert code == 0 and "OK" in out, out


def test_verify_evidence_names_a_changed_byte_and_a_changed_manifest(api: Api, tmp_path):
    data = _pack(api).content

    def one_byte(name: str, body: bytes) -> bytes:
        if name != "fixes.csv":
            return body
        i = body.index(b"\n") + 5
        return body[:i] + bytes([body[i] ^ 1]) + body[i + 1:]

    code, out = _verify_cli(tmp_path, _rezip(data, one_byte))
    assert code == 1 and "fixes.csv: changed" in out and "manifest.json changed" not in out

    def manifest(name: str, body: bytes) -> bytes:
        if name != "manifest.json":
            return body
        m = json.loads(body)
        m["generated_by"] = "someone-else"
        return json.dumps(m).encode()

    code, out = _verify_cli(tmp_path, _rezip(data, manifest))
    assert code == 1 and "manifest.json changed" in out, out
    assert "fixes.csv" not in out


def test_evidence_stays_in_the_unit(api: Api):
    for user in ("xa.b", "tinh.x"):
        r = _pack(api, user)
        assert r.status_code == 404 and NAME_A not in r.text
    assert _pack(api, "tinh.t").status_code == 200


# --- webhooks per unit and the audit log ------------------------------------------------------

def test_a_province_registers_tests_and_disables_a_unit_webhook(api: Api):
    from alerts.delivery.webhook import verify
    from tests.alerts.helpers import Receiver
    from tests.api.conftest import COMMUNE_A

    receiver = Receiver()
    h = api.auth("tinh.t")
    try:
        r = api.client.post(f"/api/v1/units/{COMMUNE_A}/webhooks", json={"url": receiver.url},
                            headers=h)
        assert r.status_code == 201, r.text
        hook = r.json()
        secret = hook["secret"]
        assert len(secret) >= 32 and hook["enabled"] and hook["created_by"] == "tinh.t"
        listed = api.client.get(f"/api/v1/units/{COMMUNE_A}/webhooks", headers=h).json()
        assert [w["id"] for w in listed] == [hook["id"]] and "secret" not in listed[0]
        assert api.client.post(f"/api/v1/units/{COMMUNE_A}/webhooks", json={"url": receiver.url},
                               headers=h).status_code == 409
        test = api.client.post(f"/api/v1/webhooks/{hook['id']}/test", headers=h).json()
        assert test["ok"] and test["status_code"] == 200
        sent = receiver.requests[-1]
        assert verify(secret, sent["headers"]["X-Giamsat-Timestamp"], sent["body"],
                      sent["headers"]["X-Giamsat-Signature"])
        assert json.loads(sent["body"])["type"] == "test"
        log = api.client.get(f"/api/v1/webhooks/{hook['id']}/deliveries", headers=h).json()
        assert log["tests"][0]["ok"] is True and log["tests"][0]["by"] == "tinh.t"
        off = api.client.post(f"/api/v1/webhooks/{hook['id']}/disable", headers=h).json()
        assert off["enabled"] is False and off["disabled_at"]
        on = api.client.post(f"/api/v1/webhooks/{hook['id']}/enable", headers=h).json()
        assert on["enabled"] is True and on["disabled_at"] is None
        # a receiver that is down: the test says so
        receiver.close()
        down = api.client.post(f"/api/v1/webhooks/{hook['id']}/test", headers=h).json()
        assert down["ok"] is False and down["error"]
        # other officers: a commune officer may not manage webhooks; another province sees none
        for user, code in (("xa.a", 403), ("tinh.x", 404)):
            assert api.client.get(f"/api/v1/units/{COMMUNE_A}/webhooks",
                                  headers=api.auth(user)).status_code == code
            assert api.client.post(f"/api/v1/webhooks/{hook['id']}/test",
                                   headers=api.auth(user)).status_code == code
            r = api.client.get(f"/api/v1/webhooks/{hook['id']}/deliveries",
                               headers=api.auth(user))
            assert r.status_code == code and receiver.url not in r.text
    finally:
        receiver.server.server_close()


def test_a_province_reads_the_audit_of_its_units_only(api: Api):
    _pack(api, "xa.a")  # xa.a reads SV_A's evidence: an audit entry of COMMUNE_A
    api.client.get(f"/api/v1/supervisees/{SV_B}", headers=api.auth("xa.b"))
    got = api.client.get("/api/v1/audit", headers=api.auth("tinh.t"), params={"limit": 1000})
    assert got.status_code == 200, got.text
    entries = got.json()["entries"]
    assert any(e["action"] == "evidence.read" and e["subject"] == SV_A and e["actor"] == "xa.a"
               for e in entries)
    other = api.client.get("/api/v1/audit", headers=api.auth("tinh.x"),
                           params={"limit": 1000}).json()["entries"]
    assert not any(e["subject"] in (SV_A, SV_B) for e in other)
    assert not any(e["actor"] in ("xa.a", "xa.b", "tinh.t") for e in other)
    again = api.client.get("/api/v1/audit", headers=api.auth("tinh.x")).json()["entries"]
    assert any(e["action"] == "audit.read" and e["actor"] == "tinh.x" for e in again)
    assert api.client.get("/api/v1/audit", headers=api.auth("xa.a")).status_code == 403
    assert api.client.get("/api/v1/audit", params={"unit": "CAX-T01"},
                          headers=api.auth("tinh.x")).status_code == 403
    only_a = api.client.get("/api/v1/audit", params={"unit": "CAX-T01", "limit": 1000},
                            headers=api.auth("tinh.t")).json()["entries"]
    assert only_a and not any(e["subject"] == SV_B for e in only_a)


def test_the_map_tiles_setting_and_its_older_name(monkeypatch):
    from config.settings import Settings

    monkeypatch.delenv("GIAMSAT_MAP_TILES_URL", raising=False)
    monkeypatch.setenv("GIAMSAT_TILE_URL", "https://tiles.internal/old/{z}/{x}/{y}.png")
    assert Settings().map_tiles_url == "https://tiles.internal/old/{z}/{x}/{y}.png"
    monkeypatch.setenv("GIAMSAT_MAP_TILES_URL", "https://tiles.internal/new/{z}/{x}/{y}.png")
    assert Settings().map_tiles_url == "https://tiles.internal/new/{z}/{x}/{y}.png"
