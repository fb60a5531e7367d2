"""A device's ``checkin`` event through MQTT, ingest and the decide stage (contract §1, issue
13): stored as a device event and recorded as a roll-call check-in, placed by the device's last
fix against the commune police station's zone."""

from __future__ import annotations

import time

import pytest
from psycopg.types.json import Jsonb

from tests.alerts.helpers import COMMUNE, offset
from tests.pipeline.conftest import HOME

pytestmark = pytest.mark.services


def _checkins(db) -> list[tuple]:
    db.commit()  # a fresh snapshot
    return db.execute("SELECT method, device_id, at_station FROM checkins ORDER BY id").fetchall()


def _wait_for(db, n: int) -> list[tuple]:
    deadline = time.monotonic() + 15
    while len(rows := _checkins(db)) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    return rows


def test_a_checkin_event_is_stored_and_counted_at_the_station(running):
    db = running.db
    db.execute("UPDATE units SET station = %s WHERE code = %s",
               (Jsonb({"center": list(HOME), "radius_m": 100}), COMMUNE))
    db.commit()
    running.fix(*HOME)  # at the station
    running.settle()
    running.event("checkin")
    running.settle()
    assert _wait_for(db, 1) == [("device", "DEV1", True)]
    running.fix(*offset(HOME[0], HOME[1], 0, 2000))  # 2 km away: stored, does not count
    running.settle()
    running.event("checkin")
    running.settle()
    assert _wait_for(db, 2)[1] == ("device", "DEV1", False)
    events = db.execute("SELECT count(*) FROM device_events WHERE device_id = 'DEV1' "
                        "AND type = 'checkin'").fetchone()[0]
    assert events == 2
