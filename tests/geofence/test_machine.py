"""The vectorised confirmation counters equal the scalar reference `transitions.step`."""

import numpy as np
from hypothesis import given, note, settings
from hypothesis import strategies as st

from geofence.engine import COMPLIANT, IGNORED, IN_FORCE, UNCERTAIN, VIOLATION
from geofence.machine import Counters, advance
from geofence.transitions import ALERT_TYPES, Decisions, LastFix, State, ZoneMeta, ZoneState, step

V, C, U, X = VIOLATION, COMPLIANT, UNCERTAIN, IGNORED

zone_state = st.builds(
    lambda viol, ok, since, is_open, open_since, typ, overrun: ZoneState(
        7, IN_FORCE, viol, ok, since, is_open, open_since, typ, overrun),
    st.integers(0, 5), st.integers(0, 3), st.integers(0, 900), st.booleans(), st.integers(0, 900),
    st.integers(0, 3), st.booleans(),
)  # fmt: skip
pair = st.tuples(
    zone_state, st.integers(1, 4), st.sampled_from(["inclusion", "exclusion"]), st.booleans(),
    st.lists(st.sampled_from([V, V, C, C, U, X]), max_size=40),
)


def scalar(z0, confirm, kind, scheduled, codes):
    meta = ZoneMeta("z", kind, "other", scheduled, 10.0, confirm, 0, 7)
    state = State(999, LastFix(999, 105.8, 21.0, 10.0), (("z", z0),), 999)
    n = len(codes)
    d = Decisions("S", (meta,), 1000 + np.arange(n, dtype=np.int64) * 10, np.full(n, 105.8),
                  np.full(n, 21.0), np.full(n, 10.0), np.array([codes], np.int8).reshape(1, n),
                  np.zeros((1, n), np.float32), np.full((1, n), IN_FORCE, np.uint8))  # fmt: skip
    new, out = step(state, d)
    return new.zone("z") or z0, [(t.ts_ms, t.active, t.count, t.since_ms, t.alert_type) for t in out]


@settings(max_examples=300, deadline=None)
@given(st.lists(pair, min_size=1, max_size=6))
def test_vectorised_counters_equal_step_pair_by_pair(pairs):
    z0 = [p[0] for p in pairs]
    c0 = Counters(*(np.array([getattr(z, f) for z in z0]) for f in
                    ("viol", "ok", "run_since", "open", "open_since", "open_type", "overrun")))  # fmt: skip
    flat = [(p, i, code) for p, (*_, codes) in enumerate(pairs) for i, code in enumerate(codes)
            if code in (V, C)]  # fmt: skip
    pid = np.array([f[0] for f in flat], dtype=np.intp)
    ts = np.array([1000 + f[1] * 10 for f in flat], dtype=np.int64)
    viol = np.array([f[2] == V for f in flat], dtype=bool)
    c, ev = advance(c0, np.array([p[1] for p in pairs]), np.array([p[2] == "exclusion" for p in pairs]),
                    np.array([p[3] for p in pairs]), pid, viol, ts)  # fmt: skip
    for p, (z, confirm, kind, scheduled, codes) in enumerate(pairs):
        want_z, want_out = scalar(z, confirm, kind, scheduled, codes)
        got_z = ZoneState(7, IN_FORCE, int(c.viol[p]), int(c.ok[p]), int(c.run_since[p]),
                          bool(c.open[p]), int(c.open_since[p]), int(c.open_type[p]),
                          bool(c.overrun[p]))  # fmt: skip
        assert got_z == want_z
        mine = sorted((int(ts[ev.fix[e]]), bool(ev.active[e]), int(ev.count[e]), int(ev.since[e]),
                       ALERT_TYPES[ev.alert_type[e]]) for e in np.flatnonzero(ev.pair == p))  # fmt: skip
        assert mine == want_out


# ---- through the fence: vectorised and scalar paths decide the same ----------------------------

from datetime import date  # noqa: E402

from geofence.fence import Fence  # noqa: E402
from geofence.policy import Permit, Supervisee  # noqa: E402
from geofence.schedule import parse_schedule  # noqa: E402

from .helpers import square, zone  # noqa: E402
from .test_time import AWAY, DEST, HOUR, LAT, LON, MIN, MONDAY, POINTS  # noqa: E402

SIDS = ("S1", "S2", "S3")


def fleet(windows, permits, confirm, vectorised, compiled=True):
    zs = []
    for sid, w in zip(SIDS, windows, strict=True):
        night = parse_schedule([w], "$")
        zs += [zone(square(LON, LAT, 500), "home", sid=sid, confirm_fixes=confirm),
               zone(square(*AWAY, 300), "ban", kind="exclusion", sid=sid)]  # fmt: skip
        if sid != "S3":  # supervisees with different numbers of zones
            zs.append(zone(square(LON, LAT, 100), "night", purpose="curfew", schedule=night,
                           sid=sid))  # fmt: skip
    f = Fence(confirm_fixes=confirm)
    f.vectorised, f.compiled = vectorised, compiled
    sups = [Supervisee(s, "an_treo", date(2025, 1, 1), date(2027, 12, 31)) for s in SIDS]
    f.load(sups, zs, permits)
    return f


window = st.builds(lambda d, a, b: {"days": d, "start": f"{a // 4:02d}:{a % 4 * 15:02d}",
                                    "end": f"{b // 4:02d}:{b % 4 * 15:02d}"},
                   st.lists(st.integers(1, 7), min_size=1, max_size=7, unique=True),
                   st.integers(0, 95), st.integers(0, 95))  # fmt: skip


@settings(max_examples=250, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(SIDS), st.sampled_from([1, 1, 2, 5, 30, 200]),
                       st.integers(0, len(POINTS) - 1), st.sampled_from([10.0] * 5 + [150.0])),
             min_size=1, max_size=80),
    st.lists(window, min_size=3, max_size=3),
    st.lists(st.tuples(st.sampled_from(SIDS), st.integers(0, 60), st.integers(1, 30), st.booleans()),
             max_size=3),
    st.integers(1, 4), st.lists(st.integers(1, 79), max_size=5),
)  # fmt: skip
def test_the_vectorised_fence_decides_as_the_scalar_reference(fixes, windows, perms, confirm, cuts):
    """The fence as it runs (vectorised, compiled kernels), and with the numpy references of
    the kernels, decide as the scalar reference `step`: same transitions, same states."""
    note(repr((fixes, windows, perms, confirm, cuts)))
    permits = [Permit(s, MONDAY + a * 15 * MIN, MONDAY + (a + b) * 15 * MIN, "p", "work",
                      square(*DEST, 1000) if dest else None) for s, a, b, dest in perms]  # fmt: skip
    clock = {s: MONDAY for s in SIDS}
    rows = []
    for sid, gap, where, acc in fixes:
        clock[sid] += gap * MIN
        rows.append((sid, clock[sid], *POINTS[where], acc))
    bounds = [0, *sorted({c for c in cuts if c < len(rows)}), len(rows)]
    results = []
    for vectorised, compiled in ((True, True), (False, True), (True, False)):
        f = fleet(windows, permits, confirm, vectorised, compiled)
        out = []
        for a, b in zip(bounds[:-1], bounds[1:], strict=True):
            sids, ts, lon, lat, acc = zip(*rows[a:b], strict=True)
            out += f.decide(list(sids), np.array(ts), np.array(lon), np.array(lat), np.array(acc))
        out += f.tick(max(clock.values()) + HOUR)
        results.append((out, {s: f.states[s] for s in SIDS}))
    (vec, vec_states), (ref, ref_states), (numpy, numpy_states) = results
    assert vec == ref
    assert vec_states == ref_states
    assert numpy == ref  # the numpy references of the compiled kernels decide the same
    assert numpy_states == ref_states
