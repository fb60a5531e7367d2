"""The roll-call on the database (alerts.rollcall): a device's checkin event placed by its last
fix against the station zone, the sweep once per window across restarts, and a sentence that
ended before the window owing nothing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from psycopg.types.json import Jsonb

from alerts import rollcall
from alerts.model import ms_to_dt
from alerts.sources import Thresholds
from alerts.telemetry import apply_device_messages
from geofence.policy import PolicyTable
from ingest.records import Event
from tests.alerts.helpers import COMMUNE

pytestmark = pytest.mark.services

TH = Thresholds()
POLICIES = PolicyTable.default()
LAT, LON = 21.18, 106.07


def ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso).astimezone(UTC).timestamp() * 1000)


@pytest.fixture(autouse=True)
def _registered_long_ago(db, registry):
    """SV1 was registered before the windows swept here (later windows only are owed)."""
    db.execute("UPDATE supervisees SET created_at = '2025-01-01T00:00:00Z'")
    db.commit()


def _station(db) -> None:
    db.execute("UPDATE units SET station = %s WHERE code = %s",
               (Jsonb({"center": [LON, LAT], "radius_m": 80}), COMMUNE))
    db.execute("INSERT INTO device_state (device_id, last_fix_ts, last_fix_lat, last_fix_lon) "
               "VALUES ('DEV1', %s, %s, %s)", (ms_to_dt(ms("2026-09-02T08:00:00+07:00")),
                                                LAT + 0.0003, LON))
    db.commit()


def test_a_checkin_event_without_a_fix_is_placed_by_the_last_fix(db, registry):
    _station(db)
    ev = Event("DEV1", 7, ms("2026-09-02T08:01:00+07:00"), "checkin")
    with db.transaction():
        apply_device_messages(db, [], [ev], ev.ts + 1000, TH)
    row = db.execute("SELECT method, device_id, at_station, lat FROM checkins").fetchone()
    assert row[:3] == ("device", "DEV1", True) and abs(row[3] - (LAT + 0.0003)) < 1e-9
    closes = ms("2026-09-06T00:00:00+07:00")
    windows = {c.payload["explanation"]["window_first_day"]
               for c in rollcall.sweep_checkin_missed(db, closes + 1, TH, POLICIES)}
    # September's was answered; July's closed more than LOOKBACK_DAYS (62) ago
    assert windows == {"2026-08-01"}


def test_a_missed_window_is_reported_once_across_runs(db, registry):
    closes = ms("2026-09-06T00:00:00+07:00")
    assert [c.type for c in rollcall.sweep_checkin_missed(db, closes - 1, TH, POLICIES)
            if c.payload["explanation"].get("window_first_day") == "2026-09-01"] == []
    [c] = [c for c in rollcall.sweep_checkin_missed(db, closes + 1, TH, POLICIES)
           if c.payload["explanation"]["window_first_day"] == "2026-09-01"]
    assert c.payload["type"] == "checkin_missed" and c.payload["active"]
    assert c.payload["explanation"]["citation"]["verified"] is False
    assert rollcall.sweep_checkin_missed(db, closes + 60_000, TH, POLICIES) == []
    row = db.execute("SELECT kind, alert_id FROM rollcall_misses WHERE opens_at = %s",
                     (ms_to_dt(ms("2026-09-01T00:00:00+07:00")),)).fetchone()
    assert row == ("monthly", c.alert_id)


def test_no_window_closed_before_registration_is_owed(db, registry):
    db.execute("UPDATE supervisees SET created_at = %s",
               (ms_to_dt(ms("2026-08-20T10:00:00+07:00")),))
    db.commit()
    changes = rollcall.sweep_checkin_missed(db, ms("2026-09-06T00:00:00+07:00") + 1, TH,
                                            POLICIES)
    assert {c.payload["explanation"]["window_first_day"] for c in changes} == {"2026-09-01"}


def test_no_window_is_owed_outside_the_sentence(db, registry):
    db.execute("UPDATE supervisees SET sentence_end = '2026-08-31' WHERE id = 'SV1'")
    db.commit()
    changes = rollcall.sweep_checkin_missed(db, ms("2026-09-07T00:00:00+07:00"), TH, POLICIES)
    # August is owed (July is past the lookback); none for September, after the sentence
    assert {c.payload["explanation"]["window_first_day"] for c in changes} == {"2026-08-01"}
