"""The whole in-process pipeline, driven through MQTT with the simulator's message builders:
one scenario per alert type, asserting the JSON that arrives on em/v1/alerts/{unit}."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import orjson
import pytest

from alerts.payload import REQUIRED_FIELDS
from simulators import messages as sim
from tests.alerts.helpers import COMMUNE, PROVINCE, offset
from tests.pipeline.conftest import HOME

pytestmark = pytest.mark.services


def _at(east_m: float, north_m: float) -> tuple[float, float]:
    return offset(HOME[0], HOME[1], east_m, north_m)


def test_zone_exit_through_mqtt(running):
    inside, outside = _at(0, 500), _at(0, 5000)
    running.fix(*inside)
    running.fix(*outside)
    running.fix(*outside)
    topic, msg = running.alert("zone_exit")
    assert topic == f"em/v1/alerts/{COMMUNE}"
    assert set(REQUIRED_FIELDS) <= set(msg)
    assert (msg["severity"], msg["status"], msg["active"], msg["escalated"]) == (
        "medium", "open", True, False)
    assert (msg["supervisee_id"], msg["device_id"], msg["unit"], msg["zone_id"]) == (
        "SV1", "DEV1", COMMUNE, "home")
    assert msg["lat"] == pytest.approx(outside[1]) and msg["lon"] == pytest.approx(outside[0])
    assert msg["message_vi"].startswith("Đối tượng SV1 ra khỏi khu vực cư trú (vùng home)")
    assert msg["explanation"]["count"] == 2 and msg["explanation"]["distance_m"] > 1900
    for _ in range(2):
        running.fix(*inside)
    _, ended = running.alert("zone_exit", active=False)
    assert ended["id"] == msg["id"] and ended["change"] == "inactive"


def test_jitter_at_the_boundary_opens_nothing(running):
    edge = _at(0, 3000)
    for _ in range(6):
        running.fix(*edge, acc=40.0)
    running.event("strap_open")  # a marker that is processed after the fixes
    running.alert("strap_tamper")
    types = {m["type"] for _, m in running.sub.messages}
    assert "zone_exit" not in types


@pytest.mark.parametrize("where,zone,severity", [
    ((1500, 0), "ban1", "medium"),
    ((-1500, 0), "victim", "critical"),  # protection zone: critical at once
])
def test_zone_enter_through_mqtt(running, where, zone, severity):
    for _ in range(2):
        running.fix(*_at(*where))
    _, msg = running.alert("zone_enter", zone_id=zone)
    assert msg["severity"] == severity and msg["active"] is True


def test_curfew_through_mqtt(running):
    local = datetime.now(ZoneInfo("Asia/Ho_Chi_Minh"))
    window = {"days": [1, 2, 3, 4, 5, 6, 7], "start": (local - timedelta(hours=1)).strftime("%H:%M"),
              "end": (local + timedelta(hours=1)).strftime("%H:%M")}
    running.db.execute(
        "INSERT INTO zones (supervisee_id, id, kind, purpose, center_lon, center_lat, radius_m, "
        "schedule) VALUES ('SV1', 'night', 'inclusion', 'curfew', %s, %s, 200, %s)",
        (HOME[0], HOME[1], orjson.dumps([window]).decode()))
    running.db.execute("UPDATE registry_version SET version = version + 1")
    running.db.commit()
    running.pipe.stage.reload_registry()
    assert running.pipe.stage.wait_idle(10)
    for _ in range(2):
        running.fix(*_at(1000, 0))  # inside the residence, away from home at night
    _, msg = running.alert("curfew")
    assert msg["zone_id"] == "night" and msg["severity"] == "medium"
    assert "khung giờ" in msg["message_vi"]


def test_permit_overrun_through_mqtt(running):
    now = sim.now_ms()
    start, end = datetime.fromtimestamp(now / 1000 - 3600, UTC), datetime.fromtimestamp(
        now / 1000 + 60, UTC)
    running.db.execute("INSERT INTO permits (supervisee_id, valid_from, valid_to, reason, "
                       "category, anywhere) VALUES ('SV1', %s, %s, 'thăm người thân', 'family', "
                       "true)", (start, end))
    running.db.execute("UPDATE registry_version SET version = version + 1")
    running.db.commit()
    running.pipe.stage.reload_registry()
    assert running.pipe.stage.wait_idle(10)
    away = _at(0, 8000)
    running.fix(*away, ts=now)  # away under the permit: fine
    running.fix(*away, ts=now + 61_000)  # the permit ended a second ago: still away
    running.fix(*away, ts=now + 62_000)
    _, msg = running.alert("permit_overrun")
    assert msg["zone_id"] == "home" and "giấy phép" in msg["message_vi"]
    types = [m["type"] for _, m in running.sub.messages if m["type"].startswith("zone")]
    assert types == []


@pytest.mark.parametrize("send,alert_type,severity", [
    (lambda r: r.heartbeat(batt=18), "battery_low", "low"),
    (lambda r: r.heartbeat(batt=4), "battery_critical", "high"),
    (lambda r: r.event("strap_open"), "strap_tamper", "critical"),
    (lambda r: r.event("case_open"), "case_tamper", "critical"),
    (lambda r: r.heartbeat(case="open"), "case_tamper", "critical"),
    (lambda r: r.event("gnss_jamming"), "gnss_jamming", "high"),
    (lambda r: r.heartbeat(gnss="jammed"), "gnss_jamming", "high"),
])
def test_device_alerts_through_mqtt(running, send, alert_type, severity):
    send(running)
    _, msg = running.alert(alert_type)
    assert (msg["severity"], msg["device_id"], msg["unit"]) == (severity, "DEV1", COMMUNE)
    assert msg["message_vi"] and msg["message_en"]


def test_strap_closed_ends_the_tamper_alert(running):
    running.event("strap_open")
    _, opened = running.alert("strap_tamper")
    running.event("strap_closed")
    _, ended = running.alert("strap_tamper", active=False)
    assert ended["id"] == opened["id"] and ended["status"] == "open"


def test_device_offline_and_back_with_injected_clock(running):
    running.heartbeat(batt=80)
    running.fix(*_at(0, 100))
    running.settle()
    stage, clock = running.pipe.stage, running.clock
    clock.advance(590)
    assert [c for c in stage.run_sweeps() if c.type == "device_offline"] == []
    clock.advance(15)  # the next sweep after the 600 s deadline
    stage.run_sweeps()
    _, msg = running.alert("device_offline")
    assert msg["severity"] == "high" and msg["active"] is True
    running.heartbeat(batt=80)  # heard again (ingest stamps wall time; clock is 605 s ahead)
    running.settle()
    clock.offset_ms = 0
    stage.run_sweeps()
    _, back = running.alert("device_offline", active=False)
    assert back["id"] == msg["id"]


def test_gnss_lost_with_injected_clock(running):
    running.fix(*_at(0, 100))
    running.heartbeat(gnss="nofix")
    running.settle()
    # heartbeats keep arriving (last_seen recent), the last usable fix is 901 s old
    running.db.execute("UPDATE device_state SET last_good_fix_ts = last_good_fix_ts "
                       "- interval '901 seconds'")
    running.db.commit()
    running.pipe.stage.run_sweeps()
    _, msg = running.alert("gnss_lost")
    assert msg["severity"] == "high"


def test_escalation_reaches_the_province_topic(running):
    running.event("case_open")
    running.alert("case_tamper")
    running.clock.advance(301)
    running.pipe.stage.run_sweeps(offline=False)
    topic, msg = running.sub.wait_for(lambda t, m: t == f"em/v1/alerts/{PROVINCE}")
    assert msg["escalated"] is True and msg["parent_unit"] == PROVINCE


def test_acknowledge_is_published(running):
    from alerts import acknowledge

    running.event("strap_open")
    _, msg = running.alert("strap_tamper")
    acknowledge(running.db, msg["id"], "officer1", "đang xác minh", running.clock())
    running.db.commit()  # the NOTIFY of the commit wakes the deliverer
    _, acked = running.alert("strap_tamper", status="acknowledged")
    assert acked["acknowledged_by"] == "officer1"
