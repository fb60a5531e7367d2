"""The rule path, driven directly with synthetic transitions, heartbeats and events."""

from __future__ import annotations

import pytest

from alerts import rules, sources, sweeps
from alerts.model import Occurrence, ms_to_dt
from alerts.sources import Thresholds
from alerts.telemetry import apply_device_messages
from tests.alerts.helpers import COMMUNE, PROVINCE, FakeTransition, alert_rows, history

pytestmark = pytest.mark.services

TH = Thresholds()


def _transition(clock, **kw):
    base = dict(supervisee_id="SV1", zone_id="home", alert_type="zone_exit", active=True,
                ts_ms=clock.now, since_ms=clock.now - 30_000)
    return FakeTransition(**{**base, **kw})


def _apply(db, occs, clock):
    with db.transaction():
        return rules.apply_all(db, occs, clock.now)


def _hb(clock, seq=1, **kw):
    return {"device_id": "DEV1", "seq": seq, "ts": clock.now, "batt": 80, **kw}


def _evt(clock, type_, seq=1):
    return {"device_id": "DEV1", "seq": seq, "ts": clock.now, "type": type_}


def _device(db, clock, hbs=(), evts=()):
    with db.transaction():
        return apply_device_messages(db, list(hbs), list(evts), clock.now, TH)


@pytest.mark.parametrize("alert_type,purpose,escalate,severity", [
    ("zone_exit", "residence", 86_400, "medium"),
    ("zone_enter", "ban", 21_600, "medium"),
    ("zone_enter", "protection", 21_600, "critical"),
    ("curfew", "curfew", 86_400, "medium"),
    ("permit_overrun", "residence", 86_400, "medium"),
    ("zone_exit", "residence", 0, "high"),  # quản chế: any exit
])
def test_zone_transition_opens_alert(db, registry, clock, alert_type, purpose, escalate, severity):
    t = _transition(clock, alert_type=alert_type, purpose=purpose, escalate_after_s=escalate)
    [change] = _apply(db, [sources.from_transition(t, "DEV1")], clock)
    p = change.payload
    assert change.action == "opened" and p["type"] == alert_type
    assert p["severity"] == severity and p["status"] == "open" and p["active"] is True
    assert p["unit"] == COMMUNE and p["zone_id"] == "home" and p["device_id"] == "DEV1"
    assert (p["lat"], p["lon"]) == (21.19, 106.08)
    assert p["opened_at"] == p["updated_at"] == clock.now
    assert p["explanation"]["distance_m"] == 250.0 and p["explanation"]["count"] == 2
    assert "Đối tượng SV1" in p["message_vi"] and "SV1" in p["message_en"]
    topics = [r[0] for r in db.execute("SELECT target FROM deliveries WHERE alert_id = %s",
                                       (p["id"],))]
    assert topics == [f"em/v1/alerts/{COMMUNE}"]


def test_residence_exit_message_in_vietnamese(db, registry, clock):
    [change] = _apply(db, [sources.from_transition(_transition(clock), "DEV1")], clock)
    assert change.payload["message_vi"] == (
        "Đối tượng SV1 ra khỏi khu vực cư trú (vùng home), cách ranh giới 250 m.")
    assert change.payload["message_en"] == (
        "Supervisee SV1 left the residence area (zone home), 250 m from the boundary.")


def test_active_follows_condition_and_repeats_fold(db, registry, clock):
    [opened] = _apply(db, [sources.from_transition(_transition(clock), "DEV1")], clock)
    clock.advance(60)
    [ended] = _apply(db, [sources.from_transition(_transition(clock, active=False))], clock)
    assert ended.action == "inactive" and ended.payload["active"] is False
    assert ended.payload["id"] == opened.alert_id
    clock.advance(60)
    [again] = _apply(db, [sources.from_transition(_transition(clock), "DEV1")], clock)
    assert again.alert_id == opened.alert_id and again.action == "active"
    assert again.payload["occurrences"] == 2 and again.payload["active"] is True
    assert len(alert_rows(db)) == 1
    assert [a for _, a in history(db, opened.alert_id)] == ["opened", "inactive", "active"]


def test_ending_without_alert_changes_nothing(db, registry, clock):
    assert _apply(db, [sources.from_transition(_transition(clock, active=False))], clock) == []
    assert _device(db, clock, evts=[_evt(clock, "strap_closed")]) == []
    assert alert_rows(db) == []


def test_level_repeat_changes_nothing_edge_repeat_folds(db, registry, clock):
    [c] = _device(db, clock, hbs=[_hb(clock, batt=15)])
    assert c.payload["type"] == "battery_low" and c.payload["severity"] == "low"
    clock.advance(60)
    assert _device(db, clock, hbs=[_hb(clock, seq=2, batt=14)]) == []
    [t1] = _device(db, clock, evts=[_evt(clock, "strap_open")])
    clock.advance(1)
    [t2] = _device(db, clock, evts=[_evt(clock, "strap_open", seq=2)])
    assert t2.alert_id == t1.alert_id and t2.action == "updated"
    assert t2.payload["occurrences"] == 2


def test_resolved_while_condition_holds_opens_no_second_alert(db, registry, clock):
    from alerts.lifecycle import resolve

    [c] = _device(db, clock, hbs=[_hb(clock, batt=15)])
    with db.transaction():
        resolve(db, c.alert_id, "officer1", "justified", "charging at home", clock.now)
    clock.advance(60)
    assert _device(db, clock, hbs=[_hb(clock, seq=2, batt=12)]) == []
    clock.advance(60)
    [ended] = _device(db, clock, hbs=[_hb(clock, seq=3, batt=60)])
    assert ended.alert_id == c.alert_id and ended.payload["active"] is False
    clock.advance(60)
    [new] = _device(db, clock, hbs=[_hb(clock, seq=4, batt=19)])
    assert new.action == "opened" and new.alert_id != c.alert_id


@pytest.mark.parametrize("hb,alert_type,severity", [
    ({"batt": 20}, "battery_low", "low"),
    ({"strap": "open"}, "strap_tamper", "critical"),
    ({"case": "open"}, "case_tamper", "critical"),
    ({"gnss": "jammed"}, "gnss_jamming", "high"),
])
def test_heartbeat_conditions(db, registry, clock, hb, alert_type, severity):
    [c] = _device(db, clock, hbs=[_hb(clock, **hb)])
    assert (c.payload["type"], c.payload["severity"]) == (alert_type, severity)
    assert c.payload["device_id"] == "DEV1"


def test_battery_critical_and_hysteresis(db, registry, clock):
    changes = _device(db, clock, hbs=[_hb(clock, batt=5)])
    assert sorted(c.payload["type"] for c in changes) == ["battery_critical", "battery_low"]
    crit = next(c for c in changes if c.payload["type"] == "battery_critical")
    assert crit.payload["severity"] == "high"
    assert "sắp cạn (5 %)" in crit.payload["message_vi"]
    clock.advance(60)
    assert _device(db, clock, hbs=[_hb(clock, seq=2, batt=7)]) == []  # within hysteresis
    clock.advance(60)
    [c] = _device(db, clock, hbs=[_hb(clock, seq=3, batt=8)])
    assert (c.payload["type"], c.payload["active"]) == ("battery_critical", False)


@pytest.mark.parametrize("event,alert_type,severity", [
    ("strap_open", "strap_tamper", "critical"),
    ("case_open", "case_tamper", "critical"),
    ("battery_low", "battery_low", "low"),
    ("battery_critical", "battery_critical", "high"),
    ("gnss_jamming", "gnss_jamming", "high"),
])
def test_device_events(db, registry, clock, event, alert_type, severity):
    [c] = _device(db, clock, evts=[_evt(clock, event)])
    assert (c.payload["type"], c.payload["severity"], c.payload["active"]) == (
        alert_type, severity, True)


def test_tamper_closed_event_ends_it_in_ts_order(db, registry, clock):
    open_ = _evt(clock, "strap_open", seq=1)
    closed = {**_evt(clock, "strap_closed", seq=2), "ts": clock.now + 5000}
    changes = _device(db, clock, evts=[closed, open_])  # given out of order
    assert [c.action for c in changes] == ["opened", "inactive"]


def test_stale_and_replayed_messages_change_nothing(db, registry, clock):
    hb_new = _hb(clock, seq=5, strap="ok")
    _device(db, clock, hbs=[hb_new])
    stale = {**_hb(clock, seq=4, strap="open"), "ts": clock.now - 10_000}
    assert _device(db, clock, hbs=[stale]) == []
    [c] = _device(db, clock, evts=[_evt(clock, "case_open", seq=1)])
    assert _device(db, clock, evts=[_evt(clock, "case_open", seq=1)]) == []  # replay
    assert c.payload["type"] == "case_tamper"


def test_unassigned_device_raises_nothing(db, registry, clock):
    db.execute("INSERT INTO devices (id) VALUES ('SPARE1')")
    spare = {"device_id": "SPARE1", "seq": 1, "ts": clock.now, "type": "strap_open"}
    assert _device(db, clock, evts=[spare]) == []


def _seen(db, device, at_ms, good_fix_ms=None, hb=True):
    db.execute(
        "INSERT INTO device_state (device_id, last_seen_at, last_hb_ts, last_good_fix_ts, "
        "last_fix_lat, last_fix_lon) VALUES (%s, %s, %s, %s, 21.2, 106.1) "
        "ON CONFLICT (device_id) DO UPDATE SET last_seen_at = excluded.last_seen_at, "
        "last_hb_ts = excluded.last_hb_ts, last_good_fix_ts = excluded.last_good_fix_ts",
        (device, ms_to_dt(at_ms), ms_to_dt(at_ms) if hb else None,
         ms_to_dt(good_fix_ms) if good_fix_ms else None))
    db.commit()


def test_offline_sweep_with_injected_clock(db, registry, clock):
    _seen(db, "DEV1", clock.now, good_fix_ms=clock.now)
    clock.advance(599)
    assert sweeps.sweep_offline(db, clock.now, TH) == []
    clock.advance(5)  # the next sweep after the 600 s deadline
    [c] = sweeps.sweep_offline(db, clock.now, TH)
    p = c.payload
    assert (p["type"], p["severity"], p["active"]) == ("device_offline", "high", True)
    assert (p["lat"], p["lon"]) == (21.2, 106.1)
    assert "mất kết nối hơn 10 phút" in p["message_vi"]
    assert sweeps.sweep_offline(db, clock.now + 5000, TH) == []  # not twice
    _seen(db, "DEV1", clock.advance(30), good_fix_ms=clock.now)
    [back] = sweeps.sweep_offline(db, clock.now, TH)
    assert back.alert_id == c.alert_id and back.payload["active"] is False


def test_gnss_lost_sweep(db, registry, clock):
    last_fix = clock.now
    _seen(db, "DEV1", clock.now, good_fix_ms=last_fix)
    clock.advance(840)
    _seen(db, "DEV1", clock.now, good_fix_ms=last_fix)  # heartbeats, no usable fix
    assert sweeps.sweep_gnss_lost(db, clock.now, TH) == []
    clock.advance(120)
    _seen(db, "DEV1", clock.now, good_fix_ms=last_fix)
    changes = sweeps.sweep_gnss_lost(db, clock.now, TH)
    assert [(c.payload["type"], c.payload["severity"]) for c in changes] == [("gnss_lost", "high")]
    _seen(db, "DEV1", clock.advance(10), good_fix_ms=clock.now)
    [ended] = sweeps.sweep_gnss_lost(db, clock.now, TH)
    assert ended.payload["active"] is False


def test_escalation_routes_to_parent(db, registry, clock):
    [c] = _apply(db, [sources.from_transition(_transition(clock), "DEV1")], clock)
    clock.advance(299)
    assert sweeps.sweep_escalation(db, clock.now) == []
    clock.advance(1)
    [e] = sweeps.sweep_escalation(db, clock.now)
    assert e.action == "escalated" and e.payload["escalated"] is True
    assert e.payload["parent_unit"] == PROVINCE
    targets = sorted(r[0] for r in db.execute(
        "SELECT target FROM deliveries WHERE history_id = %s", (e.history_id,)))
    assert targets == [f"em/v1/alerts/{COMMUNE}", f"em/v1/alerts/{PROVINCE}"]
    assert sweeps.sweep_escalation(db, clock.advance(600)) == []
    assert history(db, c.alert_id)[-1] == ("system", "escalated")


def test_acknowledged_alert_is_not_escalated(db, registry, clock):
    from alerts.lifecycle import acknowledge

    [c] = _device(db, clock, evts=[_evt(clock, "strap_open")])
    with db.transaction():
        acknowledge(db, c.alert_id, "officer1", None, clock.advance(100))
    assert sweeps.sweep_escalation(db, clock.advance(1000)) == []


def test_unit_ack_within_s_is_per_unit(db, registry, clock):
    db.execute("UPDATE units SET ack_within_s = 60 WHERE code = %s", (COMMUNE,))
    db.commit()
    _device(db, clock, evts=[_evt(clock, "strap_open")])
    assert len(sweeps.sweep_escalation(db, clock.advance(60))) == 1


def test_severity_rises_after_escalate_after_s(db, registry, clock):
    t = _transition(clock, alert_type="zone_enter", purpose="ban", escalate_after_s=21_600,
                    since_ms=clock.now - 60_000)
    [c] = _apply(db, [sources.from_transition(t, "DEV1")], clock)
    assert c.payload["severity"] == "medium"
    assert sweeps.sweep_severity(db, clock.advance(21_600 - 61)) == []
    [r] = sweeps.sweep_severity(db, clock.advance(1))
    assert (r.action, r.payload["severity"]) == ("severity", "high")
    assert sweeps.sweep_severity(db, clock.advance(60)) == []


def test_severity_does_not_rise_once_condition_ended(db, registry, clock):
    _apply(db, [sources.from_transition(_transition(clock), "DEV1")], clock)
    _apply(db, [sources.from_transition(_transition(clock, active=False))], clock)
    assert sweeps.sweep_severity(db, clock.advance(90_000)) == []


def test_one_unresolved_alert_per_key_even_under_races(db_url, registry, clock):
    """Two writers applying the same opening at once: one alert (advisory key lock)."""
    import threading

    from schema import connect

    occ = Occurrence("strap_tamper", "SV1", True, clock.now, device_id="DEV1")
    barrier, results = threading.Barrier(2), []

    def writer():
        with connect(db_url) as conn:
            barrier.wait()
            with conn.transaction():
                results.append(rules.apply(conn, occ, clock.now))

    threads = [threading.Thread(target=writer) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(len(r) for r in results) == [0, 1]
    with connect(db_url) as conn:
        assert len(alert_rows(conn, type="strap_tamper")) == 1
