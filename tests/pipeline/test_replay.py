"""Replay (issue 11): a simulated day decided live through the broker is re-decided from the
stored fixes with the same engine and reproduces its alerts exactly; a what-if run with a
permit removes the exit it covers, and stores and sends nothing."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from psycopg.types.json import Jsonb

from alerts.decide.replay import differences, parse_proposal, recorded_changes, replay
from simulators import messages as sim
from tests.alerts.helpers import offset
from tests.pipeline.conftest import HOME

pytestmark = pytest.mark.services

MIN = 60_000
IN = offset(HOME[0], HOME[1], 0, 200)
OUT = offset(HOME[0], HOME[1], 0, 5000)
BAN = offset(HOME[0], HOME[1], 1500, 0)  # inside the banned place (300 m circle)


def _curfew(db, start_ms: int) -> None:
    """A curfew at home (500 m) from hour 20 to hour 22 of the replayed day, local time."""
    tz = ZoneInfo("Asia/Ho_Chi_Minh")
    begin = datetime.fromtimestamp((start_ms + 20 * 60 * MIN) / 1000, tz)
    end = begin + timedelta(hours=2)
    window = {"days": [begin.isoweekday()], "start": begin.strftime("%H:%M"),
              "end": end.strftime("%H:%M")}
    db.execute("INSERT INTO zones (supervisee_id, id, kind, purpose, center_lon, center_lat, "
               "radius_m, schedule) VALUES ('SV1', 'night', 'inclusion', 'curfew', %s, %s, 500, "
               "%s)", (HOME[0], HOME[1], Jsonb([window])))
    db.execute("UPDATE registry_version SET version = version + 1")
    db.commit()


def _day(running) -> tuple[int, int]:
    """A day of fixes every 30 minutes: an excursion out of the residence at 08:00-09:00, a
    visit to the banned place at 15:00-15:40, and out of the residence from 19:30 to 21:30,
    when the curfew (20:00-22:00) has begun; returns the day's [start, end)."""
    start = sim.now_ms() - 24 * 60 * MIN
    _curfew(running.db, start - start % MIN)
    running.pipe.stage.reload_registry()
    assert running.pipe.stage.wait_idle(10)
    for i in range(0, 144, 3):  # every 30 min, denser around the events
        t = start + i * 10 * MIN
        hour = i / 6
        away = 8 <= hour < 9 or 19.5 <= hour < 21.5
        where = OUT if away else BAN if 15 <= hour < 15.7 else IN
        running.fix(*where, ts=t)
        if where is not IN:
            running.fix(*where, ts=t + 5 * MIN)
    return start, start + 24 * 60 * MIN


def _counts(db) -> tuple[int, int, int]:
    db.commit()
    return db.execute("SELECT (SELECT count(*) FROM alerts), (SELECT count(*) FROM alert_history),"
                      " (SELECT count(*) FROM deliveries)").fetchone()


def test_replay_reproduces_a_day_and_a_what_if_permit_removes_its_exit(running, settings):
    start, end = _day(running)
    running.pipe.stage.tick()
    assert running.pipe.stage.wait_idle(10)
    db = running.db
    recorded = recorded_changes(db, "SV1", start, end)
    assert {(c.type, c.active) for c in recorded} == {
        ("zone_exit", True), ("zone_exit", False), ("zone_enter", True), ("zone_enter", False),
        ("curfew", True), ("curfew", False)}
    before = _counts(db)

    as_was = replay(db, settings, "SV1", start, end)
    assert as_was.fixes == db.execute("SELECT count(*) FROM fixes").fetchone()[0]
    assert as_was.differences == [] and as_was.reproduced is True
    assert [(c.type, c.active, c.ts_ms) for c in as_was.changes] == [
        (c.type, c.active, c.ts_ms) for c in recorded]

    # an officer shrinks the residence now: the day is still replayed against the version
    # that was in force then, so history is not rewritten
    db.execute("UPDATE zones SET radius_m = 50 WHERE supervisee_id = 'SV1' AND id = 'home'")
    db.commit()
    again = replay(db, settings, "SV1", start, end)
    assert again.differences == [] and again.changes == as_was.changes
    tomorrow = replay(db, settings, "SV1", start, sim.now_ms() + 60 * MIN, zones=None)
    assert tomorrow.differences == []

    exit_open = next(c for c in recorded if c.type == "zone_exit" and c.active)
    proposal = {"permits": [{"valid_from": exit_open.ts_ms - 3 * 60 * MIN,
                             "valid_to": exit_open.ts_ms + 3 * 60 * MIN,
                             "reason": "khám bệnh", "category": "medical",
                             "destination": "anywhere"}]}
    zones, permits = parse_proposal(proposal, "SV1")
    what_if = replay(db, settings, "SV1", start, end, zones=zones, permits=permits)
    assert what_if.recorded is None and what_if.reproduced is None
    # the morning's exit is covered; the evening's and the curfew are not
    assert sorted((c.type, c.active) for c in what_if.changes) == sorted(
        (c.type, c.active) for c in recorded if not (
            c.type == "zone_exit" and c.ts_ms < exit_open.ts_ms + 3 * 60 * MIN))
    assert _counts(db) == before, "a replay stores and sends nothing"


def test_differences_name_what_each_side_lacks():
    from alerts.decide.replay import Change

    a = [Change("home", "zone_exit", True, 1000), Change("home", "zone_exit", False, 5000)]
    b = [Change("home", "zone_exit", True, 1000)]
    [d] = differences(a, b)
    assert d.startswith("recorded, not replayed:") and "zone_exit ends" in d
    assert differences(a, a) == []
