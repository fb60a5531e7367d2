"""The compiled kernels (`geofence.kernels`) give bit for bit what their numpy references give:
cell lookup and classification, near distances and sides, far distances, for any fix."""

from functools import lru_cache

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from geofence.engine import evaluate
from geofence.index import ZoneIndex
from geofence.policy import Permit
from geofence.synthetic import blob, population
from geofence.zones import Circle, Zone, circle_polygon

from .helpers import T0, offset, square, zone

HOUR = 3_600_000


@lru_cache(maxsize=1)
def mixed_index() -> tuple[ZoneIndex, list[list[Zone]]]:
    """Communes with exclusion blobs, a circle zone, a holed polygon, and a supervisee with a
    destination permit (its inclusion zone extended) and one with an "anywhere" permit."""
    pop = population(6, seed=11)
    zones = [list(zs) for zs in pop.zones]
    c = Circle(105.8, 21.0, 400.0)
    outer = blob(np.random.default_rng(3), 106.2, 20.5, 2500, 400)
    holed = outer.difference(square(106.2, 20.5, 300))
    zones.append([Zone("C", "c", "inclusion", "other", circle_polygon(c), circle=c),
                  zone(holed, "holed", kind="exclusion", sid="C")])  # fmt: skip
    ix = ZoneIndex()
    for zs in zones:
        sid = zs[0].supervisee_id
        permits = []
        if sid == pop.ids[0]:
            dest = square(*offset(*pop.homes[0], 5000, 0), 800)
            permits = [Permit(sid, T0, T0 + HOUR, "work", "work", dest)]
        elif sid == pop.ids[1]:
            permits = [Permit(sid, T0, T0 + HOUR, "leave", "other")]
        ix.set_supervisee(sid, zs, permits)
    return ix, zones


def anchor(zones: list[list[Zone]], s: int, j: int, t: float) -> tuple[float, float]:
    """A point of the boundary of supervisee s's zone j (its first ring), at fraction t."""
    geom = zones[s][j % len(zones[s])].geometry
    ring = (geom.geoms[0] if hasattr(geom, "geoms") else geom).exterior
    p = ring.interpolate(t, normalized=True)
    return p.x, p.y


fix = st.tuples(
    st.integers(0, 6), st.integers(0, 3), st.floats(0, 1),
    st.one_of(st.floats(-300, 300), st.floats(-20_000, 20_000)),
    st.one_of(st.floats(-300, 300), st.floats(-20_000, 20_000)),
    st.one_of(st.floats(0, 150), st.just(float("nan"))), st.integers(-HOUR, 2 * HOUR),
)  # fmt: skip


def batch(fixes: list[tuple]) -> tuple[np.ndarray, ...]:
    _, zones = mixed_index()
    sidx, lon, lat, acc, ts = [], [], [], [], []
    for s, j, t, east, north, a, dt in fixes:
        x, y = offset(*anchor(zones, s, j, t), east, north)
        sidx.append(s), lon.append(x), lat.append(y), acc.append(a), ts.append(T0 + dt)
    return (np.array(sidx, dtype=np.intp), np.array(ts, dtype=np.int64), np.array(lon),
            np.array(lat), np.array(acc))  # fmt: skip


def same(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal bit for bit (NaN where NaN, the same sign of zero)."""
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


@settings(max_examples=150, deadline=None)
@given(st.lists(fix, min_size=1, max_size=60), st.booleans(), st.booleans())
def test_compiled_evaluation_equals_the_numpy_reference(fixes, exact, grouped):
    """Classification, regime and metres of every (fix, zone): near the boundaries (exact
    distances and sides by crossings), far from them (±inf, or exact metres with `exact`), off
    the grids, through holes, circles and permits, with unknown accuracy."""
    ix, _ = mixed_index()
    sidx, ts, lon, lat, acc = batch(fixes)
    if grouped:
        order = np.argsort(sidx, kind="stable")
        sidx, ts, lon, lat, acc = sidx[order], ts[order], lon[order], lat[order], acc[order]
    try:
        got = evaluate(ix, sidx, ts, lon, lat, acc, exact=exact, compiled=True)
        ix.compiled = False
        want = evaluate(ix, sidx, ts, lon, lat, acc, exact=exact, compiled=False)
    finally:
        ix.compiled = True
    assert same(got.code, want.code)
    assert same(got.regime, want.regime)
    assert same(got.dist_m, want.dist_m)


@settings(max_examples=100, deadline=None)
@given(st.lists(fix, min_size=1, max_size=40))
def test_compiled_far_distances_equal_the_numpy_reference(fixes):
    """The nearest-edge search (branch and bound over pieces of edges) finds the same edge, so
    the geodesic metres are the same, at any distance from the zone."""
    ix, zones = mixed_index()
    sidx, _, lon, lat, _ = batch(fixes)
    slot = np.array([f[1] % len(zones[f[0]]) for f in fixes])
    rows = ix.slots[slot, sidx]
    try:
        got = ix.far_distances(rows, lon, lat)
        ix.compiled = False
        want = ix.far_distances(rows, lon, lat)
    finally:
        ix.compiled = True
    assert same(got, want)
    assert np.all(got >= 0)
