"""Decisions in the fixes' own time (issue 11), through the real broker and database: a
coverage gap followed by one buffered batch, the passage of time meanwhile, late fixes."""

from __future__ import annotations

import pytest

from simulators import messages as sim
from tests.alerts.helpers import offset
from tests.pipeline.conftest import HOME

pytestmark = pytest.mark.services

IN = offset(HOME[0], HOME[1], 0, 200)
OUT = offset(HOME[0], HOME[1], 0, 5000)


def _buffered(running, fixes: list[tuple[int, tuple[float, float]]]) -> None:
    """One batch message of fixes (ts, (lon, lat)), as a device sends after a coverage gap."""
    items = []
    for ts, (lon, lat) in fixes:
        running.seq += 1
        items.append(sim.fix(seq=running.seq, ts=ts, lon=lon, lat=lat, acc=10.0))
    running._send(sim.topic("DEV1", "fix"), sim.encode({"fixes": items}))
    running.sent += len(items) - 1  # stored rows, not messages
    running.settle()


def _zone_exits(db) -> list[tuple]:
    db.commit()
    return db.execute("SELECT id, active, occurred_at IS NOT NULL FROM alerts "
                      "WHERE type = 'zone_exit' ORDER BY id").fetchall()


def test_a_coverage_gap_then_one_batch_with_the_exit(running):
    """40 s without coverage while the scheduled tick runs on the wall clock; then the device
    sends its buffer: the exit inside it is decided in order, not dropped as late."""
    t0 = sim.now_ms() - 45_000
    running.fix(*IN, ts=t0)
    for _ in range(3):  # the scheduled ticks of the gap
        running.pipe.stage.tick()
        assert running.pipe.stage.wait_idle(10)
    _buffered(running, [(t0 + 10_000, IN), (t0 + 20_000, OUT), (t0 + 30_000, OUT),
                        (t0 + 40_000, OUT)])
    _, msg = running.alert("zone_exit")
    assert msg["condition_since"] == t0 + 20_000
    assert msg["occurred_at"] is None  # 25 s old: within the late bound, a live alert


def test_a_fix_older_than_a_decided_one_is_late_and_reopens_nothing(running):
    t0 = sim.now_ms() - 30_000
    running.fix(*IN, ts=t0)
    running.fix(*OUT, ts=t0 + 10_000)
    running.fix(*OUT, ts=t0 + 20_000)
    _, opened = running.alert("zone_exit")
    before = running.db.execute("SELECT count(*) FROM alert_history").fetchone()[0]
    running.fix(*IN, ts=t0 + 15_000)  # older than the last decided fix: late
    running.fix(*IN, ts=t0 + 5_000)
    running.db.commit()
    assert running.db.execute("SELECT count(*) FROM fixes WHERE device_id = 'DEV1'"
                              ).fetchone()[0] == 5  # stored
    assert _zone_exits(running.db) == [(opened["id"], True, False)]  # still active, not ended
    assert running.db.execute("SELECT count(*) FROM alert_history").fetchone()[0] == before
    late = running.pipe.metrics.late_fixes._value.get()
    assert late == 2


def test_a_late_excursion_is_marked_retrospective(running):
    """Fixes from minutes ago (a device's buffer after a long gap) open an alert that says when
    the condition began by the fixes' times."""
    t0 = sim.now_ms() - 10 * 60_000
    running.fix(*IN, ts=t0)
    _buffered(running, [(t0 + 60_000, OUT), (t0 + 120_000, OUT), (t0 + 180_000, OUT)])
    _, msg = running.alert("zone_exit")
    assert msg["occurred_at"] == t0 + 60_000 == msg["condition_since"]
    assert msg["raised_at"] == msg["opened_at"] > t0 + 9 * 60_000
