"""The pure transition function: confirmation, end, late fixes, regimes, ticks, state size."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geofence.engine import COMPLIANT, IGNORED, IN_FORCE, RELAXED, UNCERTAIN, VIOLATION
from geofence.transitions import Decisions, State, ZoneMeta, ZoneState, step

V, C, U, X = VIOLATION, COMPLIANT, UNCERTAIN, IGNORED
HOME = ZoneMeta("home", "inclusion", "residence", False, 10.0, 2, 86_400, 1234)


def decisions(codes, ts=None, regime=IN_FORCE, zones=(HOME,), tick=False, dist=250.0):
    codes = np.atleast_2d(np.array(codes, dtype=np.int8))
    n = codes.shape[1]
    ts = np.arange(1, n + 1, dtype=np.int64) * 1000 if ts is None else np.array(ts, dtype=np.int64)
    reg = np.broadcast_to(np.array(regime, dtype=np.uint8).reshape(-1, 1) if np.ndim(regime) == 1
                          else np.array(regime, dtype=np.uint8), codes.shape).copy()  # fmt: skip
    return Decisions("S1", tuple(zones), ts, np.full(n, 105.8), np.full(n, 21.0), np.full(n, 12.0),
                     codes, np.full(codes.shape, dist, np.float32), reg, tick=tick)  # fmt: skip


def run(codes, state=None, **kw):
    return step(state or State(), decisions(codes, **kw))


def test_opens_after_confirm_fixes_consecutive_violations():
    state, out = run([V, V, V])
    assert len(out) == 1
    t = out[0]
    assert (t.active, t.alert_type, t.count, t.since_ms, t.ts_ms) == (
        True,
        "zone_exit",
        2,
        1000,
        2000,
    )
    assert (t.distance_m, t.acc_m, t.margin_m, t.escalate_after_s, t.purpose) == (
        250.0,
        12.0,
        10.0,
        86_400,
        "residence",
    )
    assert state.zone("home").open


def test_uncertain_and_ignored_fixes_change_nothing():
    _, out = run([V, U, X, V])
    assert [(t.active, t.ts_ms, t.since_ms) for t in out] == [(True, 4000, 1000)]


def test_a_compliant_fix_breaks_the_run():
    _, out = run([V, C, V, C, V])
    assert out == []


def test_condition_ends_after_confirm_fixes_compliant_fixes():
    state, out = run([V, V, C, U, C])
    assert [(t.active, t.count, t.ts_ms, t.reason) for t in out] == [
        (True, 2, 2000, "confirmed"),
        (False, 2, 5000, "compliant"),
    ]
    assert not state.zone("home").open


def test_late_fixes_decide_nothing():
    state, _ = run([V, V])
    again, out = step(state, decisions([C, C, C], ts=[500, 1999, 2000]))
    assert out == [] and again == state


def test_zone_override_of_confirm_fixes():
    three = ZoneMeta("home", "inclusion", "residence", False, 10.0, 3, 86_400, 1234)
    _, out = run([V, V, U, V], zones=(three,))
    assert [t.ts_ms for t in out] == [4000]


def test_zone_leaving_force_ends_its_condition_and_resets_the_run():
    curfew = ZoneMeta("night", "inclusion", "curfew", True, 10.0, 2, 86_400, 9)
    state, out = run([V, V, V, V], regime=[[1, 1, 0, 1]], zones=(curfew,))
    assert [(t.alert_type, t.active, t.reason) for t in out] == [
        ("curfew", True, "confirmed"),
        ("curfew", False, "not_in_force"),
    ]
    assert state.zone("night").viol == 1  # the run restarted at the last fix


def test_tick_recounts_only_zones_whose_regime_changed():
    state, _ = run([V], regime=0)  # out, but not in force
    same, out = step(state, decisions([V], ts=[5000], regime=0, tick=True))
    assert out == [] and same.zone("home").viol == 0
    now, out = step(state, decisions([V], ts=[5000], regime=IN_FORCE, tick=True))
    assert out == [] and now.zone("home").viol == 1
    # the tick applies time, not a fix: the late watermark stays at the last decided fix
    assert (now.decided_ms, now.clock_ms, now.last.ts) == (1000, 5000, 1000)
    assert now.base == state.zones  # the zones right after the last fix, for a later backlog
    again, out = step(now, decisions([V], ts=[5000], regime=IN_FORCE, tick=True))
    assert again.zone("home").viol == 1  # a second tick counts nothing twice


def test_permit_overrun_after_a_lifting_permit_ends():
    lifted = RELAXED  # anywhere permit: not in force, relaxed
    state, out = run([V, V, V, V, V], regime=[[lifted, lifted, IN_FORCE, IN_FORCE, IN_FORCE]])
    assert [(t.alert_type, t.ts_ms, t.since_ms) for t in out] == [("permit_overrun", 4000, 3000)]


def test_compliant_fix_after_a_permit_clears_the_overrun():
    state, out = run([V, C, V, V], regime=[[RELAXED, IN_FORCE, IN_FORCE, IN_FORCE]])
    assert [t.alert_type for t in out] == ["zone_exit"]


def test_exclusion_zone_opens_zone_enter():
    ban = ZoneMeta("ban", "exclusion", "protection", False, 10.0, 2, 0, 5)
    _, out = run([V, V], zones=(ban,), dist=-40.0)
    assert [(t.alert_type, t.purpose, t.distance_m) for t in out] == [
        ("zone_enter", "protection", 40.0)
    ]


def test_state_round_trips_and_is_small():
    state, _ = run([V, V, C], zones=(HOME,))
    assert State.from_bytes(state.to_bytes()) == state
    assert len(state.to_bytes()) < 100
    metas = tuple(
        ZoneMeta("z" * 63 + str(i), "exclusion", "ban", True, 10.0, 2, 0, i) for i in range(8)
    )
    big, _ = run(np.full((8, 3), V), zones=metas)
    assert len(big.zones) == 8 and State.from_bytes(big.to_bytes()) == big
    assert len(big.to_bytes()) <= 1024  # 8 zones with 64-byte ids still fit in 1 KB
    with pytest.raises(ValueError):
        State.from_bytes(b"\x02")
    with pytest.raises(ValueError):
        State.from_bytes(big.to_bytes()[:-3])


def test_quiet_batches_only_advance_the_decided_instant():
    state, _ = run([C])
    after, out = step(state, decisions([C, U, C], ts=[2000, 3000, 4000]))
    assert (
        out == []
        and after.zones == state.zones
        and after.decided_ms == 4000
        and after.last.ts == 4000
    )


def test_zone_state_quiet_flag():
    assert ZoneState().quiet and not ZoneState(viol=1).quiet and not ZoneState(open=True).quiet


def _reference(codes, regimes, confirm, kind="inclusion"):
    """The rules of contract §2 fix by fix, written plainly: (ts, active, count, since, type)."""
    out, viol, ok, since, is_open, prev, overrun, typ = [], 0, 0, 0, False, None, False, ""
    opened = 0
    for i, (c, r) in enumerate(zip(codes, regimes, strict=True)):
        ts = (i + 1) * 1000
        if r != prev:
            # a permit's end makes a later exit an overrun only when it leaves the zone in
            # force (not a curfew whose window is closed then: aee1f9c)
            ended = prev is not None and prev & RELAXED and not r & RELAXED and r & IN_FORCE
            if ended and kind == "inclusion":
                overrun = True
            viol = ok = 0
            if is_open and not r & IN_FORCE:
                out.append((ts, False, 0, opened, typ))
                is_open = False
            prev = r
        if not r & IN_FORCE:
            continue
        if c == V:
            since = ts if viol == 0 else since
            viol, ok = viol + 1, 0
            if not is_open and viol == confirm:
                typ = (
                    "zone_enter"
                    if kind == "exclusion"
                    else "permit_overrun"
                    if overrun
                    else "zone_exit"
                )
                is_open, opened = True, since
                out.append((ts, True, viol, since, typ))
        elif c == C:
            viol, overrun = 0, False
            if is_open:
                ok += 1
                if ok == confirm:
                    out.append((ts, False, ok, opened, typ))
                    is_open, ok = False, 0
    return out


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from([V, V, C, C, U, X]), st.sampled_from([IN_FORCE] * 6 + [0, RELAXED, 3])),
             min_size=1, max_size=60),
    st.integers(1, 4), st.sampled_from(["inclusion", "exclusion"]), st.integers(1, 59),
)  # fmt: skip
def test_step_equals_the_fix_by_fix_rules_in_one_batch_or_two(seq, confirm, kind, cut):
    codes, regimes = [c for c, _ in seq], [r for _, r in seq]
    meta = ZoneMeta("z", kind, "other", False, 10.0, confirm, 0, 7)
    want = _reference(codes, regimes, confirm, kind)
    _, out = run(codes, regime=[regimes], zones=(meta,))
    assert [(t.ts_ms, t.active, t.count, t.since_ms, t.alert_type) for t in out] == want
    # the same fixes in two batches, with a serialisation in between (a restart)
    cut = min(cut, len(seq))
    s1, out1 = run(codes[:cut], regime=[regimes[:cut]], zones=(meta,))
    s1 = State.from_bytes(s1.to_bytes())
    _, out2 = step(s1, decisions(codes, regime=[regimes], zones=(meta,)))
    assert [(t.ts_ms, t.active, t.count, t.since_ms, t.alert_type) for t in out1 + out2] == want
