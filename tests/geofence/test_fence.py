"""Scenarios through the facade: jitter, real exits, curfews, permits, restarts."""

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from geofence.fence import Fence
from geofence.geodesy import metres_per_degree
from geofence.policy import Permit
from geofence.schedule import parse_schedule
from geofence.synthetic import blob
from geofence.transitions import State

from .helpers import T0, offset, reference_signed, square, supervisee, zone

ICT = timezone(timedelta(hours=7))
MIN = 60_000
HOME_LON, HOME_LAT = 105.80, 21.00


def at(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=ICT).timestamp() * 1000)


def commune():
    return blob(np.random.default_rng(1), HOME_LON, HOME_LAT, 2500, 1000)


def fence_with(zones, permits=(), sentence="an_treo", now=T0, **kw):
    f = Fence(**kw)
    f.load([supervisee(sentence_type=sentence)], zones, permits, now_ms=now)
    f.tick(now)
    return f


def walk(f, points, start, step_ms=30_000, acc=10.0):
    lon = np.array([p[0] for p in points])
    lat = np.array([p[1] for p in points])
    ts = start + np.arange(len(points)) * step_ms
    accs = np.broadcast_to(np.asarray(acc, dtype=float), (len(points),))
    return f.decide(["S1"] * len(points), ts, lon, lat, accs)


def test_jitter_along_the_boundary_opens_nothing_and_a_200_m_exit_opens_after_two_fixes():
    geom = commune()
    f = fence_with([zone(geom)])
    rng = np.random.default_rng(2)
    ring = geom.exterior
    points, accs = [], []
    for t in rng.random(600):
        p = ring.interpolate(t, normalized=True)
        acc = rng.uniform(5, 50)
        r, a = acc * np.sqrt(rng.random()), rng.uniform(0, 2 * np.pi)  # error within acc
        points.append(offset(p.x, p.y, r * np.cos(a), r * np.sin(a)))
        accs.append(acc)
    assert walk(f, points, T0, acc=np.array(accs)) == []
    # a real exit: 200 m out from a boundary point, away from the centre
    p, c = ring.interpolate(0.3, normalized=True), geom.centroid
    kx, ky = (float(v) for v in metres_per_degree(p.y))
    east, north = (p.x - c.x) * kx, (p.y - c.y) * ky
    out_pt = offset(
        p.x, p.y, 200 * east / np.hypot(east, north), 200 * north / np.hypot(east, north)
    )
    assert reference_signed(geom, *out_pt) > 150
    start = T0 + 600 * 30_000
    out = walk(f, [out_pt] * 3, start, acc=15.0)
    assert [(t.alert_type, t.active, t.count, t.ts_ms, t.since_ms) for t in out] == [
        ("zone_exit", True, 2, start + 30_000, start)]  # fmt: skip
    assert out[0].distance_m > 150 and out[0].acc_m == 15.0 and out[0].margin_m == 10.0


def test_late_fixes_do_not_reopen_a_decided_alert():
    f = fence_with([zone(square(HOME_LON, HOME_LAT, 500))])
    away = offset(HOME_LON, HOME_LAT, 3000, 0)
    assert len(walk(f, [away, away], T0)) == 1
    assert len(walk(f, [(HOME_LON, HOME_LAT)] * 2, T0 + 2 * MIN)) == 1  # ended
    assert walk(f, [away, away, away], T0 + 30_000) == []  # older than the latest decided fix


def test_curfew_crossing_midnight_someone_already_out_is_in_violation():
    night = parse_schedule([{"days": [5], "start": "22:00", "end": "06:00"}], "$")  # Friday night
    home = zone(square(HOME_LON, HOME_LAT, 100), "night", purpose="curfew", schedule=night)
    f = fence_with([home], now=at("2026-11-27T20:00"))
    away = offset(HOME_LON, HOME_LAT, 1500, 0)
    assert walk(f, [away, away], at("2026-11-27T21:50"), 5 * MIN) == []  # not yet in force
    assert f.tick(at("2026-11-27T21:59")) == []
    assert f.tick(at("2026-11-27T22:00")) == []  # already out: the last fix counts once
    out = walk(f, [away], at("2026-11-27T22:01"))
    assert [(t.alert_type, t.active, t.since_ms) for t in out] == [
        ("curfew", True, at("2026-11-27T22:00"))
    ]
    assert walk(f, [away], at("2026-11-28T03:00")) == []  # still open, no repeat
    out = f.tick(at("2026-11-28T06:00"))
    assert [(t.alert_type, t.active, t.reason) for t in out] == [("curfew", False, "not_in_force")]
    assert walk(f, [away, away], at("2026-11-28T23:00")) == []  # Saturday: no curfew


def test_curfew_with_confirm_one_opens_at_the_start_of_the_window():
    night = parse_schedule([{"days": [1, 2, 3, 4, 5, 6, 7], "start": "22:00", "end": "06:00"}], "$")
    home = zone(
        square(HOME_LON, HOME_LAT, 100), "night", purpose="curfew", schedule=night, confirm_fixes=1
    )
    f = fence_with([home], now=at("2026-11-27T20:00"))
    walk(f, [offset(HOME_LON, HOME_LAT, 1500, 0)], at("2026-11-27T21:58"))
    out = f.tick(at("2026-11-27T22:00:30"))  # a tick 30 s late: the curfew began at 22:00
    assert [(t.alert_type, t.ts_ms) for t in out] == [("curfew", at("2026-11-27T22:00"))]


def test_anywhere_permit_at_its_exact_edges_then_overrun():
    start, end = at("2026-03-01T08:00"), at("2026-03-03T08:00")
    permit = Permit("S1", start, end, "family visit", "family")
    f = fence_with([zone(square(HOME_LON, HOME_LAT, 500))], [permit], now=start - 10 * MIN)
    away = offset(HOME_LON, HOME_LAT, 20_000, 0)
    ts = np.array([start - 1, start, end - 1])
    out = f.decide(["S1"] * 3, ts, *np.array([away] * 3).T, np.full(3, 10.0))
    assert out == []  # one definite fix before the permit; in the window the zone is lifted
    assert f.states["S1"].zone("home").viol == 0
    assert f.tick(end) == []  # the permit ends: the last fix (away) counts once
    out = walk(f, [away], end + MIN)
    assert [(t.alert_type, t.active, t.count, t.since_ms) for t in out] == [
        ("permit_overrun", True, 2, end)
    ]


def test_fix_one_ms_before_a_permit_counts():
    start = at("2026-03-01T08:00")
    permit = Permit("S1", start, start + 86_400_000, "x", "work")
    f = fence_with([zone(square(HOME_LON, HOME_LAT, 500))], [permit], now=start - 10 * MIN)
    away = offset(HOME_LON, HOME_LAT, 20_000, 0)
    out = f.decide(
        ["S1"] * 2, np.array([start - 2, start - 1]), *np.array([away] * 2).T, np.full(2, 10.0)
    )
    assert [t.alert_type for t in out] == ["zone_exit"]


def test_destination_permit_extends_the_residence():
    start, end = at("2026-03-01T08:00"), at("2026-03-05T08:00")
    dest_c = offset(HOME_LON, HOME_LAT, 30_000, 0)
    permit = Permit("S1", start, end, "hospital", "medical", destination=square(*dest_c, 1000))
    f = fence_with([zone(square(HOME_LON, HOME_LAT, 500))], [permit], now=start)
    assert walk(f, [dest_c] * 3, start + MIN) == []
    out = walk(f, [offset(*dest_c, 5000, 0)] * 2, start + 10 * MIN)  # outside both
    assert [t.alert_type for t in out] == ["zone_exit"]


def test_visit_permit_lifts_only_the_visited_ban_for_cam_cu_tru():
    ban = zone(square(106.70, 10.80, 3000), "hcm", kind="exclusion")
    other = zone(square(105.80, 21.00, 3000), "hn", kind="exclusion")
    start = at("2026-03-01T08:00")
    visit = Permit(
        "S1",
        start,
        start + 3 * 86_400_000,
        "funeral",
        "visit",
        destination=square(106.70, 10.80, 200),
    )
    f = fence_with([ban, other], [visit], sentence="cam_cu_tru", now=start)
    assert walk(f, [(106.70, 10.80)] * 3, start + MIN) == []
    out = walk(f, [(105.80, 21.00)] * 2, start + 10 * MIN)
    assert [(t.zone_id, t.alert_type, t.escalate_after_s) for t in out] == [
        ("hn", "zone_enter", 21_600)
    ]


def test_restart_from_persisted_state_fires_nothing_twice():
    zones = [
        zone(square(HOME_LON, HOME_LAT, 500)),
        zone(
            square(*offset(HOME_LON, HOME_LAT, 2000, 0), 200),
            "victim",
            kind="exclusion",
            purpose="protection",
        ),
    ]
    away = offset(HOME_LON, HOME_LAT, 2000, 0)  # outside home, inside the protection zone
    points = [away] * 4 + [(HOME_LON, HOME_LAT)] * 4
    ts = T0 + np.arange(len(points)) * 30_000
    lon, lat = np.array(points).T

    whole = fence_with(zones)
    expected = whole.decide(["S1"] * 8, ts, lon, lat, np.full(8, 10.0))
    assert sorted((t.zone_id, t.active) for t in expected) == [
        ("home", False), ("home", True), ("victim", False), ("victim", True)]  # fmt: skip
    assert {t.purpose for t in expected if t.zone_id == "victim"} == {"protection"}

    first = fence_with(zones)
    got = first.decide(["S1"] * 3, ts[:3], lon[:3], lat[:3], np.full(3, 10.0))
    saved = first.drain_changed()
    assert set(saved) == {"S1"} and len(saved["S1"]) < 200

    restarted = Fence()
    restarted.load([supervisee()], zones, [], {"S1": saved["S1"]}, now_ms=int(ts[3]))
    assert restarted.tick(int(ts[2])) == []  # start-up re-decision: nothing changed
    got += restarted.decide(["S1"] * 8, ts, lon, lat, np.full(8, 10.0))  # the whole batch again
    assert got == expected


def test_replacing_zones_ends_conditions_of_removed_zones_and_recompiles_only_changes():
    home = zone(square(HOME_LON, HOME_LAT, 500))
    ban = zone(square(*offset(HOME_LON, HOME_LAT, 3000, 0), 300), "ban", kind="exclusion")
    f = fence_with([home, ban])
    inside_ban = offset(HOME_LON, HOME_LAT, 3000, 0)
    out = walk(f, [inside_ban] * 2, T0)
    assert {t.zone_id for t in out} == {"home", "ban"}
    cells = f.index.cells.size
    out = f.replace_supervisee(supervisee(), [home], now_ms=T0 + 5 * MIN)
    assert [(t.zone_id, t.active, t.reason) for t in out] == [("ban", False, "zone_removed")]
    assert f.index.cells.size == cells  # home reused as is, nothing compiled
    assert f.states["S1"].zone("home").open and f.states["S1"].zone("ban") is None
    moved = zone(square(*offset(HOME_LON, HOME_LAT, 3000, 0), 600))
    out = f.replace_supervisee(supervisee(), [moved], now_ms=T0 + 6 * MIN)
    assert f.index.cells.size > cells  # the changed shape was compiled
    assert f.tick(T0 + 6 * MIN) == []  # new regime: the last fix counts once
    out = walk(f, [inside_ban], T0 + 7 * MIN)
    assert [(t.zone_id, t.active, t.reason) for t in out] == [("home", False, "compliant")]


def test_policy_escalation_and_zone_override():
    f = fence_with([zone(square(HOME_LON, HOME_LAT, 500)), zone(square(HOME_LON, HOME_LAT, 50), "core",
                                                               escalate_after_s=60)], sentence="quan_che")  # fmt: skip
    out = walk(f, [offset(HOME_LON, HOME_LAT, 5000, 0)] * 2, T0)
    assert sorted((t.zone_id, t.escalate_after_s) for t in out) == [("core", 60), ("home", 0)]


def test_unknown_supervisees_are_ignored_and_states_stay_small():
    f = fence_with([zone(commune())])
    assert f.decide(["nobody"], [T0], [HOME_LON], [HOME_LAT], [5.0]) == []
    walk(f, [(HOME_LON, HOME_LAT)], T0)
    assert len(f.states["S1"].to_bytes()) < 1024
    assert State.from_bytes(f.drain_changed()["S1"]) == f.states["S1"]


@pytest.mark.parametrize("shuffle", [False, True])
def test_batch_order_does_not_matter(shuffle):
    geom = square(HOME_LON, HOME_LAT, 500)
    pts = [offset(HOME_LON, HOME_LAT, 2000, 0)] * 3 + [(HOME_LON, HOME_LAT)] * 3
    ts = T0 + np.arange(6) * 30_000
    order = np.random.default_rng(0).permutation(6) if shuffle else np.arange(6)
    lon, lat = np.array(pts).T
    f = fence_with([zone(geom)])
    out = f.decide(["S1"] * 6, ts[order], lon[order], lat[order], np.full(6, 10.0))
    assert [(t.active, t.ts_ms) for t in out] == [(True, ts[1]), (False, ts[4])]


def test_a_repeated_fix_in_one_batch_is_decided_once():
    f = fence_with([zone(square(HOME_LON, HOME_LAT, 500))])
    away = offset(HOME_LON, HOME_LAT, 3000, 0)
    ts = np.array([T0, T0])  # the same instant twice (a redelivered message)
    assert f.decide(["S1", "S1"], ts, *np.array([away, away]).T, np.full(2, 10.0)) == []
    assert f.states["S1"].zone("home").viol == 1


def test_window_edges_are_scheduled_for_a_supervisee_loaded_without_time():
    night = parse_schedule([{"days": [1, 2, 3, 4, 5, 6, 7], "start": "22:00", "end": "06:00"}], "$")
    f = Fence()
    f.load(
        [supervisee()],
        [zone(square(HOME_LON, HOME_LAT, 100), "night", schedule=night, confirm_fixes=1)],
    )
    assert f.tick(at("2026-11-27T20:00")) == []  # first tick: schedules the next edge
    walk(f, [offset(HOME_LON, HOME_LAT, 1500, 0)], at("2026-11-27T21:00"))
    assert [t.alert_type for t in f.tick(at("2026-11-27T22:00"))] == ["curfew"]


def test_a_quiet_supervisee_with_fewer_zones_than_another_skips_the_state_machine(monkeypatch):
    """Fixes well inside the only zone of S1, while S2 has three: S1's decisions are made on
    the vectorised quiet path (no per-supervisee step), and its state still advances."""
    import geofence.fence as fence_module

    f = Fence()
    zones = [zone(commune()), zone(square(HOME_LON, HOME_LAT, 3000), "z1", sid="S2"),
             zone(square(HOME_LON + 0.1, HOME_LAT, 200), "z2", "exclusion", sid="S2"),
             zone(square(HOME_LON - 0.1, HOME_LAT, 200), "z3", "exclusion", sid="S2")]
    f.load([supervisee("S1"), supervisee("S2")], zones, now_ms=T0)
    f.tick(T0)
    assert f.index.max_slots == 3
    walk(f, [(HOME_LON, HOME_LAT)], T0)  # the first fix sets up S1's zone state
    stepped: list[str] = []
    real_step = fence_module.step
    monkeypatch.setattr(fence_module, "step",
                        lambda state, d: stepped.append(d.supervisee_id) or real_step(state, d))
    assert walk(f, [(HOME_LON, HOME_LAT)] * 5, T0 + MIN) == []
    assert stepped == []
    assert f.states["S1"].decided_ms == T0 + MIN + 4 * 30_000


def test_a_permit_ending_outside_the_curfew_window_makes_no_overrun():
    """An 'anywhere' permit ends at 11:00, when the curfew (22:00-06:00) asks nothing; being
    out when the curfew starts that evening is a plain curfew violation, not an overrun."""
    night = parse_schedule([{"days": [1, 2, 3, 4, 5, 6, 7], "start": "22:00", "end": "06:00"}], "$")
    home = zone(square(HOME_LON, HOME_LAT, 100), "night", purpose="curfew", schedule=night)
    permit = Permit("S1", at("2026-11-27T05:00"), at("2026-11-27T11:00"), "khám bệnh", "medical")
    f = fence_with([home], [permit], now=at("2026-11-27T04:00"))
    away = offset(HOME_LON, HOME_LAT, 1500, 0)
    assert walk(f, [away], at("2026-11-27T09:00")) == []
    assert walk(f, [away, away], at("2026-11-27T21:40"), 10 * MIN) == []  # window closed
    out = walk(f, [away, away], at("2026-11-27T22:10"), 10 * MIN)
    assert [(t.alert_type, t.active) for t in out] == [("curfew", True)]


@pytest.mark.parametrize(
    ("supervisees", "span", "in_order"),
    [(50, 10**6, True), (50, 10**6, False), (50, 20, False), (50, 20, True),
     (70_000, 10**6, False),
     (50, 1 << 50, False)],
)  # fmt: skip
def test_batch_sort_is_the_stable_sort_by_supervisee_then_ts(supervisees, span, in_order):
    """Every path of the batch sort (radix when each device's fixes are in ts order, a packed
    key otherwise, with repeated (supervisee, ts) pairs, lexsort beyond 16 bits or a ts span
    beyond 47 bits) gives the stable order of lexsort."""
    from geofence.fence import _order

    rng = np.random.default_rng(supervisees + span)
    sidx = rng.integers(0, supervisees, 5000).astype(np.intp)
    ts = T0 + rng.integers(0, span, 5000).astype(np.int64)
    if in_order:
        ts = np.sort(ts)
    want = np.lexsort((ts, sidx))
    order, s, t = _order(sidx, ts)
    assert np.array_equal(order, want)
    assert np.array_equal(s, sidx[want]) and np.array_equal(t, ts[want])


def test_collection_pause_restores_the_callers_setting():
    """Building transitions pauses the garbage collector and gives back the caller's setting,
    also when the caller had paused it or the block raised."""
    import gc

    from geofence.fence import _collection_paused

    assert gc.isenabled()
    with pytest.raises(ZeroDivisionError), _collection_paused():
        assert not gc.isenabled()
        1 / 0  # noqa: B018
    assert gc.isenabled()
    gc.disable()
    try:
        with _collection_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
