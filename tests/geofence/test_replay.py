"""Replay: the live engine's decisions reproduced from stored fixes; what-if zone sets."""

from __future__ import annotations

import numpy as np

from geofence.fence import MONITORING_ENDED
from geofence.policy import Permit
from geofence.replay import replay

from .test_time import AWAY, FAR, HOME, HOUR, MIN, YARD, at, decide, fence, key, sup, zones


def simulated_day():
    """36 hours of one fix a minute: at home, a trip on a permit that overruns it, an evening
    in the yard into the curfew, a visit to the banned square, a few inaccurate fixes."""
    t0 = at("2026-03-02T08:00")
    ts = t0 + np.arange(36 * 60, dtype=np.int64) * MIN
    where = np.array([HOME] * len(ts))
    hours = (ts - t0) / HOUR
    where[(hours >= 5.5) & (hours < 7.5)] = FAR  # 13:30-15:30, the permit ends at 15:00
    where[(hours >= 13.5) & (hours < 15.2)] = YARD  # 21:30-23:12, curfew from 22:00
    where[(hours >= 26) & (hours < 26.3)] = AWAY  # 10:00-10:18 next day, in the ban
    acc = np.where(np.arange(len(ts)) % 97 == 0, 150.0, 12.0)
    permit = Permit("S1", at("2026-03-02T13:00"), at("2026-03-02T15:00"), "clinic", "medical")
    return ts, where, acc, [permit]


def live(ts, where, acc, permits, rng):
    """The live fence: batches of 1 to 40 fixes; a tick 30 s after each batch (timely)."""
    f = fence(zones(), permits)
    out, i = [], 0
    while i < len(ts):
        n = int(rng.integers(1, 40))
        out += decide(f, ts[i : i + n], where[i : i + n], acc[i : i + n])
        i += n
        out += f.tick(int(ts[min(i, len(ts)) - 1]) + 30_000)
    return out, f


def test_replay_reproduces_the_live_decisions_exactly():
    ts, where, acc, permits = simulated_day()
    got_live, f = live(ts, where, acc, permits, np.random.default_rng(3))
    kinds = {(t.zone_id, t.alert_type, t.active) for t in got_live}
    assert {("ban", "zone_enter", True), ("home", "permit_overrun", True),
            ("home", "zone_exit", True)} <= kinds  # fmt: skip
    assert {(z, a) for z, _, a in kinds} == {(z, a) for z in ("ban", "home", "night")
                                             for a in (True, False)}  # fmt: skip
    until = int(ts[-1]) + 30_000
    order = np.random.default_rng(4).permutation(len(ts))  # stored order does not matter
    r = replay(sup(), zones(), permits, ts[order], where[order, 0], where[order, 1], acc[order],
               until_ms=until, chunk=211)  # fmt: skip
    full = [(*key(t), t.lon, t.lat, t.distance_m) for t in r.transitions]
    assert full == [(*key(t), t.lon, t.lat, t.distance_m) for t in got_live]
    assert r.state == f.states["S1"]


def test_what_if_a_longer_permit_removes_the_overrun():
    ts, where, acc, permits = simulated_day()
    as_was = replay(sup(), zones(), permits, ts, where[:, 0], where[:, 1], acc)
    longer = [Permit("S1", at("2026-03-02T13:00"), at("2026-03-02T16:00"), "clinic", "medical")]
    what_if = replay(sup(), zones(), longer, ts, where[:, 0], where[:, 1], acc)
    kinds = {(t.zone_id, t.alert_type) for t in as_was.transitions}
    assert ("home", "permit_overrun") in kinds
    assert {(t.zone_id, t.alert_type) for t in what_if.transitions} == kinds - {
        ("home", "permit_overrun")}  # fmt: skip
    assert [key(t) for t in as_was.transitions if t.zone_id != "home"] == [
        key(t) for t in what_if.transitions if t.zone_id != "home"]  # fmt: skip


def test_a_period_replayed_from_the_state_before_it_chains_exactly():
    ts, where, acc, permits = simulated_day()
    whole = replay(sup(), zones(), permits, ts, where[:, 0], where[:, 1], acc)
    mid = len(ts) // 2 + 17
    first = replay(sup(), zones(), permits, ts[:mid], where[:mid, 0], where[:mid, 1], acc[:mid])
    second = replay(sup(), zones(), permits, ts, where[:, 0], where[:, 1], acc,
                    start_state=first.state.to_bytes())  # fmt: skip
    assert [key(t) for t in first.transitions + second.transitions] == [
        key(t) for t in whole.transitions]  # fmt: skip
    assert second.state == whole.state


def test_until_applies_time_after_the_last_fix_up_to_the_end_of_monitoring():
    from datetime import date

    s = sup(date(2026, 3, 2))
    ts = np.array([at("2026-03-02T21:00"), at("2026-03-02T21:01")])
    out = replay(s, zones(confirm=1), [], ts, [YARD[0]] * 2, [YARD[1]] * 2, [10.0] * 2,
                 until_ms=at("2026-03-04T00:00")).transitions  # fmt: skip
    assert [(t.zone_id, t.alert_type, t.active, t.ts_ms, t.reason) for t in out] == [
        ("night", "curfew", True, at("2026-03-02T22:00"), "confirmed"),
        ("night", "curfew", False, at("2026-03-03T00:00"), "sentence_ended"),
        ("", MONITORING_ENDED, True, at("2026-03-03T00:00"), "sentence_ended"),
    ]
