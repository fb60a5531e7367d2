"""Time between fixes: boundaries applied at their own instants, restarts and backlogs decided as
a live service would have, fixes behind an applied boundary, the end of the sentence."""

from __future__ import annotations

import struct
from collections import Counter
from datetime import date, datetime, timedelta, timezone

import numpy as np
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from geofence.fence import MONITORING_ENDED, Fence
from geofence.policy import Permit, Supervisee
from geofence.schedule import changes_between, next_change_ms, parse_schedule, week_mask
from geofence.transitions import LastFix, State, ZoneState

from .helpers import offset, square, zone

ICT = timezone(timedelta(hours=7))
MIN = 60_000
HOUR = 60 * MIN
LON, LAT = 105.80, 21.00
MONDAY = int(datetime(2026, 3, 2, tzinfo=ICT).timestamp() * 1000)  # 2026-03-02 00:00 local
HOME = (LON, LAT)
YARD = offset(LON, LAT, 300, 0)  # in the commune, outside the curfew square
AWAY = offset(LON, LAT, 3000, 0)  # outside the commune, inside the banned square
FAR = offset(LON, LAT, 0, 20_000)
EDGE = offset(LON, LAT, 500, 0)  # on the commune's border: uncertain
DEST = offset(LON, LAT, -10_000, 0)
POINTS = [HOME, YARD, AWAY, FAR, EDGE, DEST]


def at(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=ICT).timestamp() * 1000)


def sup(end: date = date(2027, 12, 31)) -> Supervisee:
    return Supervisee("S1", "an_treo", date(2025, 1, 1), end)


def zones(window: dict | None = None, confirm: int | None = None) -> list:
    night = parse_schedule([window or {"days": [1, 2, 3, 4, 5, 6, 7], "start": "22:00",
                                       "end": "06:00"}], "$")  # fmt: skip
    return [
        zone(square(LON, LAT, 500), "home", confirm_fixes=confirm),
        zone(square(LON, LAT, 100), "night", purpose="curfew", schedule=night,
             confirm_fixes=confirm),
        zone(square(*AWAY, 300), "ban", kind="exclusion", confirm_fixes=confirm),
    ]  # fmt: skip


def fence(zs, permits=(), state=None, end: date = date(2027, 12, 31), **kw) -> Fence:
    f = Fence(**kw)
    f.load([sup(end)], zs, permits, {"S1": state} if state is not None else None)
    return f


def decide(f: Fence, ts, points, acc=10.0):
    ts = np.asarray(ts, dtype=np.int64)
    lon = np.array([p[0] for p in points])
    lat = np.array([p[1] for p in points])
    return f.decide(
        ["S1"] * len(ts), ts, lon, lat, np.broadcast_to(np.asarray(acc, float), ts.shape)
    )


def key(t):
    return (t.ts_ms, t.zone_id, t.alert_type, t.active, t.reason, t.since_ms, t.count)


# ---- the late watermark and restarts ----------------------------------------------------------


def test_a_tick_never_makes_undecided_fixes_late():
    f = fence(zones()[:1])
    assert decide(f, [at("2026-03-02T09:00") + i * MIN for i in range(3)], [HOME] * 3) == []
    f.tick(at("2026-03-02T12:00"))
    assert f.states["S1"].decided_ms == at("2026-03-02T09:02")  # the tick did not move it
    out = decide(f, [at("2026-03-02T10:00") + i * MIN for i in range(3)], [FAR] * 3)
    assert [(t.alert_type, t.active, t.ts_ms) for t in out] == [
        ("zone_exit", True, at("2026-03-02T10:01"))
    ]


def test_restart_mid_excursion_raises_the_exit_from_the_backlog():
    """The issue's drill: 3 fixes at home, the service stops, 4 fixes 800 m outside the
    commune, the service starts (its start-up tick at the wall clock), the broker delivers."""
    zs = [zone(square(LON, LAT, 500))]
    live = fence(zs)
    t0 = at("2026-03-02T09:00")
    decide(live, [t0, t0 + MIN, t0 + 2 * MIN], [HOME] * 3)
    saved = live.drain_changed()["S1"]
    restarted = fence(zs, state=saved)
    assert restarted.tick(t0 + 30 * MIN) == []  # start-up, before the backlog arrives
    out = decide(restarted, t0 + np.arange(3, 7) * MIN, [offset(LON, LAT, 1300, 0)] * 4)
    assert [(t.alert_type, t.active, t.ts_ms, t.since_ms) for t in out] == [
        ("zone_exit", True, t0 + 4 * MIN, t0 + 3 * MIN)
    ]


def test_down_through_a_whole_curfew_the_backlog_decides_it_as_live():
    """Stopped before the curfew, started after it: the start-up tick applies both window
    edges with the last fix (at home); the night's buffered fixes (out from 23:00 to 02:00)
    then open and end the curfew exactly as a live service would have."""
    zs = zones()[:2]
    night = [at("2026-03-02T21:00")] + [at("2026-03-02T22:30") + i * 30 * MIN for i in range(18)]
    where = [HOME, HOME] + [YARD] * 7 + [HOME] * 10
    live = fence(zs)
    want = decide(live, night, where) + live.tick(at("2026-03-03T07:00"))
    assert [(t.zone_id, t.active, t.ts_ms) for t in want] == [
        ("night", True, at("2026-03-02T23:30")), ("night", False, at("2026-03-03T03:00"))]  # fmt: skip

    first = fence(zs)
    decide(first, night[:1], where[:1])
    restarted = fence(zs, state=first.drain_changed()["S1"])
    told = restarted.tick(at("2026-03-03T07:00"))
    assert told == []  # at home at 21:00: nothing to tell at 22:00 nor 06:00
    assert restarted.states["S1"].clock_ms == at("2026-03-03T06:00")
    got = told + decide(restarted, night[1:], where[1:])
    assert sorted(map(key, got)) == sorted(map(key, want))
    assert restarted.states["S1"].zones == live.states["S1"].zones


def test_a_fix_behind_an_applied_boundary_revises_what_the_tick_told():
    """The tick opened a curfew at 22:00 on the 21:50 fix (out, confirm 1); a 21:58 fix (home)
    arrives afterwards: it is not late, and the opening is revised at once."""
    f = fence(zones(confirm=1)[1:2])
    decide(f, [at("2026-03-02T21:50")], [YARD])
    told = f.tick(at("2026-03-02T22:05"))
    assert [(t.active, t.ts_ms) for t in told] == [(True, at("2026-03-02T22:00"))]
    out = decide(f, [at("2026-03-02T21:58")], [HOME])
    assert [(t.zone_id, t.active, t.ts_ms, t.reason) for t in out] == [
        ("night", False, at("2026-03-02T21:58"), "revised")
    ]
    st = f.states["S1"]
    assert not st.zone("night").open and st.decided_ms == at("2026-03-02T21:58")
    assert st.clock_ms == at("2026-03-02T22:00") and st.base is not None


def test_a_fix_behind_the_clock_in_the_window_counts_once():
    """Out at 21:50; the 22:00 tick counts it (1 of 2); a 22:03 fix, out, arrives after a
    22:05 tick: it is the second of the run, decided at its own time."""
    f = fence(zones()[1:2])
    decide(f, [at("2026-03-02T21:50")], [YARD])
    assert f.tick(at("2026-03-02T22:05")) == []
    out = decide(f, [at("2026-03-02T22:03")], [YARD])
    assert [(t.active, t.ts_ms, t.since_ms, t.count) for t in out] == [
        (True, at("2026-03-02T22:03"), at("2026-03-02T22:00"), 2)
    ]


def test_version_1_state_is_read_with_its_instant_as_the_clock():
    z = ZoneState(fingerprint=7, regime=1, viol=1, run_since=5, open=False)
    last = LastFix(1000, 105.8, 21.0, 12.0)
    key_ = b"home"
    v1 = (struct.pack("<BBBq", 1, 1, 1, 9000) + struct.pack("<qddf", 1000, 105.8, 21.0, 12.0)
          + bytes([len(key_)]) + key_ + struct.pack("<IBBHHqq", 7, 1, 0, 1, 0, 5, 0))  # fmt: skip
    st = State.from_bytes(v1)
    assert (st.decided_ms, st.clock_ms, st.last, st.zones, st.base) == (
        1000, 9000, last, (("home", z),), None)  # fmt: skip
    assert State.from_bytes(st.to_bytes()) == st


# ---- the end of the sentence ------------------------------------------------------------------


def test_sentence_end_ends_conditions_and_marks_monitoring_ended_once():
    f = fence(zones()[:1], end=date(2026, 3, 2))
    end = at("2026-03-03T00:00")
    assert f.ended_at("S1") == end
    out = decide(f, [at("2026-03-02T23:00"), at("2026-03-02T23:30")], [FAR] * 2)
    assert [t.active for t in out] == [True]
    out = f.tick(end + 5 * MIN)
    assert [(t.zone_id, t.alert_type, t.active, t.ts_ms, t.reason) for t in out] == [
        ("home", "zone_exit", False, end, "sentence_ended"),
        ("", MONITORING_ENDED, True, end, "sentence_ended"),
    ]
    assert decide(f, [end + 10 * MIN, end + 11 * MIN], [FAR] * 2) == []  # nothing applies
    assert f.tick(end + HOUR) == []
    again = fence(zones()[:1], state=f.drain_changed()["S1"], end=date(2026, 3, 2))
    assert again.tick(end + 2 * HOUR) == []  # the crossing was persisted: no second marker


def test_fixes_after_the_end_mark_it_without_a_tick_and_supervisees_never_heard_from_too():
    f = fence(zones()[:1], end=date(2026, 3, 2))
    end = at("2026-03-03T00:00")
    out = decide(f, [at("2026-03-02T23:00"), end + MIN], [FAR, FAR])
    assert [(t.alert_type, t.ts_ms) for t in out] == [(MONITORING_ENDED, end)]
    silent = fence(zones()[:1], end=date(2026, 3, 2))
    assert silent.tick(end - 1) == []
    assert [t.alert_type for t in silent.tick(end)] == [MONITORING_ENDED]
    assert silent.tick(end + 1) == []


# ---- schedules: edges listed in bulk ----------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(st.lists(st.booleans(), min_size=7, max_size=7), st.integers(0, 95), st.integers(0, 95),
       st.integers(-10**9, 10**9), st.integers(0, 3 * 7 * 86_400_000))  # fmt: skip
def test_changes_between_lists_what_next_change_finds(days, start, end, shift, span):
    mask = week_mask(parse_schedule([{"days": [d + 1 for d in range(7) if days[d]] or [1],
                                      "start": f"{start // 4:02d}:{start % 4 * 15:02d}",
                                      "end": f"{end // 4:02d}:{end % 4 * 15:02d}"}], "$"))  # fmt: skip
    a = MONDAY + shift
    want, t = [], a
    while (n := next_change_ms(mask, t)) is not None and n <= a + span:
        want.append(n)
        t = n
    assert changes_between(mask, a, a + span).tolist() == want


# ---- the equivalence property -----------------------------------------------------------------

GAPS = [1, 2, 7, 30, 45, 90, 180, 420, 600]  # minutes between fixes


@st.composite
def scenario(draw):
    n = draw(st.integers(1, 30))
    gaps = draw(st.lists(st.sampled_from(GAPS), min_size=n, max_size=n))
    ts = MONDAY + 20 * HOUR + np.cumsum(gaps).astype(np.int64) * MIN
    where = draw(st.lists(st.integers(0, len(POINTS) - 1), min_size=n, max_size=n))
    acc = draw(st.lists(st.sampled_from([10.0] * 6 + [150.0]), min_size=n, max_size=n))
    start, length = draw(st.integers(0, 95)), draw(st.integers(1, 48))
    window = {"days": sorted(draw(st.sets(st.integers(1, 7), min_size=1))),
              "start": f"{start // 4:02d}:{start % 4 * 15:02d}",
              "end": f"{(start + length) % 96 // 4:02d}:{(start + length) % 4 * 15:02d}"}  # fmt: skip
    horizon = int(ts[-1]) + 2 * HOUR
    permits = []
    for i in range(draw(st.integers(0, 2))):
        a = MONDAY + 20 * HOUR + draw(st.integers(0, (horizon - MONDAY) // (15 * MIN))) * 15 * MIN
        b = a + draw(st.integers(1, 40)) * 15 * MIN
        dest = square(*DEST, 1000) if draw(st.booleans()) else None
        permits.append(Permit("S1", a, b, f"p{i}", "work", dest))
    end = draw(st.sampled_from([date(2027, 12, 31)] * 3 + [date(2026, 3, 3), date(2026, 3, 4)]))
    cuts = sorted(draw(st.sets(st.integers(1, max(1, n - 1)), max_size=6)))
    ticks = draw(st.lists(st.integers(0, horizon - MONDAY), max_size=6))
    confirm = draw(st.integers(1, 3))
    return ts, where, acc, window, permits, end, cuts, ticks, horizon, confirm


def _play(sc, batches, ticks_before):
    """Decide the batches in order, with the given ticks before each; then tick to the end."""
    ts, where, acc, window, permits, end, _, _, horizon, confirm = sc
    f = fence(zones(window), permits, end=end, confirm_fixes=confirm)
    out = []
    for (a, b), tick_times in zip(batches, ticks_before, strict=True):
        for now in tick_times:
            out += f.tick(now)
            f = _restart(f, window, permits, end, confirm) if now % 2 else f
        out += decide(f, ts[a:b], [POINTS[i] for i in where[a:b]], np.array(acc[a:b]))
    out += f.tick(horizon)
    return out, f.states["S1"]


def _restart(f, window, permits, end, confirm):
    """A restart from the persisted state (every other tick)."""
    return fence(zones(window), permits, state=f.drain_changed()["S1"], end=end,
                 confirm_fixes=confirm)  # fmt: skip


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario())
def test_one_batch_many_batches_and_ticks_in_between_decide_the_same(sc):
    note(repr(sc))
    ts, *_, cuts, ticks, _, _ = sc
    n = len(ts)
    whole, final = _play(sc, [(0, n)], [[]])
    bounds = [0, *(c for c in cuts if c < n), n]
    batches = list(zip(bounds[:-1], bounds[1:], strict=True))
    # ticks that do not run ahead of the fixes still to come (a live service without delays)
    timely = [[int(ts[a]) - 1 - (t % int(ts[a] - (ts[a - 1] if a else MONDAY))) for t in ticks[:2]]
              for a, _ in batches]  # fmt: skip
    timely = [sorted(x) for x in timely]
    split, split_final = _play(sc, batches, timely)
    assert sorted(map(key, split)) == sorted(map(key, whole))
    assert split_final.zones == final.zones and split_final.decided_ms == final.decided_ms
    # ticks at arbitrary times, ahead of fixes not yet delivered: every transition of the
    # one-batch decision is emitted once; anything more is a tick's outcome (at a boundary,
    # told before the fixes arrived) or its revision
    early = [sorted(MONDAY + t for t in ticks) if i == 0 else [] for i in range(len(batches))]
    raced, raced_final = _play(sc, batches, early)
    want, got = Counter(map(key, whole)), Counter(map(key, raced))
    assert not want - got
    assert raced_final.zones == final.zones and raced_final.decided_ms == final.decided_ms
    assert all(n == 1 for k, n in got.items() if k[4] != "revised")


def test_in_progress_says_whether_a_run_or_condition_is_pending():
    f = fence(zones()[:1])
    decide(f, [at("2026-03-02T09:00")], [HOME])
    assert not f.in_progress("S1")
    decide(f, [at("2026-03-02T09:01")], [FAR])
    assert f.in_progress("S1")
    assert any(not z.quiet for _, z in f.states["S1"].zones)  # the same, from the State
