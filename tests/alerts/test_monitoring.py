"""Monitoring starts and ends (issue 11): a device never heard from goes offline on the usual
deadline; after the sentence ends the unit gets one monitoring_ended alert and the device
sweeps leave the person alone. And alerts raised from late fixes say so."""

from __future__ import annotations

import pytest

from alerts import rules, sweeps
from alerts.model import Occurrence, dt_to_ms, ms_to_dt
from alerts.payload import alert_json
from alerts.sources import Thresholds
from tests.alerts.helpers import alert_rows

pytestmark = pytest.mark.services

TH = Thresholds()


def _assign(db, device: str, at_ms: int) -> None:
    db.execute("UPDATE devices SET registered_at = %s WHERE id = %s", (ms_to_dt(at_ms), device))
    db.execute("INSERT INTO device_assignments (device_id, supervisee_id, assigned_at) "
               "SELECT id, supervisee_id, %s FROM devices WHERE id = %s", (ms_to_dt(at_ms), device))
    db.commit()


def test_a_device_never_heard_from_goes_offline_from_its_assignment(db, registry, clock):
    _assign(db, "DEV1", clock.now)
    clock.advance(599)
    assert sweeps.sweep_offline(db, clock.now, TH) == []
    clock.advance(5)
    [c] = sweeps.sweep_offline(db, clock.now, TH)
    assert (c.payload["type"], c.payload["device_id"], c.payload["active"]) == (
        "device_offline", "DEV1", True)
    assert c.payload["explanation"]["last_seen_at"] == clock.now - 604_000
    assert sweeps.sweep_offline(db, clock.now + 10_000, TH) == []  # once


def _end_sentence(db, end: str) -> None:
    db.execute("UPDATE supervisees SET sentence_end = %s WHERE id = 'SV1'", (end,))
    db.commit()


def test_monitoring_ended_once_at_the_end_of_the_last_local_day(db, registry, clock):
    # clock: 2026-01-01T00:00Z = 07:00 in Hà Nội on 1 January
    _end_sentence(db, "2026-01-01")
    assert sweeps.sweep_monitoring_ended(db, clock.now, TH) == []  # still the last day
    end_ms = clock.now + 17 * 3600_000  # midnight local = 17:00 UTC
    assert sweeps.sweep_monitoring_ended(db, end_ms - 1, TH) == []
    [c] = sweeps.sweep_monitoring_ended(db, end_ms + 1000, TH)
    p = c.payload
    assert (p["type"], p["severity"], p["device_id"], p["unit"]) == (
        "monitoring_ended", "medium", "DEV1", "CAX-BN-001")
    assert "2026-01-01" in p["message_vi"] and "thu hồi thiết bị DEV1" in p["message_vi"]
    assert p["explanation"]["sentence_end"] == "2026-01-01"
    assert sweeps.sweep_monitoring_ended(db, end_ms + 3600_000, TH) == []
    # resolved by the officer, it is still not raised again
    db.execute("UPDATE alerts SET status = 'resolved' WHERE type = 'monitoring_ended'")
    db.commit()
    assert sweeps.sweep_monitoring_ended(db, end_ms + 7200_000, TH) == []
    assert len(alert_rows(db, type="monitoring_ended")) == 1


def test_after_the_sentence_the_device_sweeps_leave_the_person_alone(db, registry, clock):
    _assign(db, "DEV1", clock.now - 86_400_000)
    _end_sentence(db, "2025-12-30")
    assert sweeps.sweep_offline(db, clock.now, TH) == []
    assert sweeps.sweep_gnss_lost(db, clock.now, TH) == []
    assert [c.payload["type"] for c in sweeps.sweep_monitoring_ended(db, clock.now, TH)] == [
        "monitoring_ended"]


def _exit(ts_ms: int, since_ms: int) -> Occurrence:
    return Occurrence("zone_exit", "SV1", True, ts_ms, zone_id="home", since_ms=since_ms,
                      edge=True, escalate_after_s=86_400)


def test_an_alert_from_late_fixes_says_when_it_happened(db, registry, clock):
    since = clock.now - 3_600_000  # the excursion began an hour ago (a backlog)
    with db.transaction():
        [c] = rules.apply_all(db, [_exit(since + 60_000, since)], clock.now, TH.late_after_ms)
    p = c.payload
    assert p["occurred_at"] == since
    assert p["raised_at"] == p["opened_at"] == clock.now
    [row] = alert_rows(db, type="zone_exit")
    assert dt_to_ms(row["occurred_at"]) == since
    assert alert_json(row)["occurred_at"] == since


def test_a_live_alert_has_no_occurred_at(db, registry, clock):
    with db.transaction():
        [c] = rules.apply_all(db, [_exit(clock.now - 59_000, clock.now - 120_000)], clock.now,
                              TH.late_after_ms)
    assert c.payload["occurred_at"] is None
    assert c.payload["raised_at"] == clock.now
