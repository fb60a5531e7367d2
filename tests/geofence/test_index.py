"""Zone index: incremental rebuilds, compaction, and the grid's guarantees."""

import numpy as np
import pytest
import shapely

from geofence.engine import evaluate
from geofence.grid import FAR_IN, FAR_OUT, GridOptions, compile_polygon
from geofence.index import ZoneIndex
from geofence.synthetic import blob, population

from .helpers import T0, offset, vn_provinces, zone


def _points(zones, n, seed):
    rng = np.random.default_rng(seed)
    sidx = rng.integers(0, len(zones), n)
    lon, lat = [], []
    for s in sidx:
        p = zones[s][0].geometry.exterior.interpolate(rng.random(), normalized=True)
        x, y = offset(p.x, p.y, *rng.uniform(-400, 400, 2))
        lon.append(x), lat.append(y)
    return sidx, np.array(lon), np.array(lat), rng.uniform(0, 60, n)


def test_far_cells_of_every_real_province_are_on_the_side_of_their_centre():
    for name, geom in vn_provinces():
        g = compile_polygon(geom, 110.0, GridOptions())
        iy, ix = np.divmod(np.arange(g.nx2 * g.ny2), g.nx2)
        cx, cy = g.lon0 + (ix + 0.5) * g.cw, g.lat0 + (iy + 0.5) * g.ch
        far = g.cells <= FAR_OUT
        inside = shapely.contains_xy(geom, cx[far], cy[far])
        assert np.array_equal(inside, g.cells[far] == FAR_IN), name


def test_replacing_one_supervisee_recompiles_only_what_changed_and_equals_a_fresh_build():
    pop = population(6, seed=3)
    ix = ZoneIndex()
    for sid, zs in zip(pop.ids, pop.zones, strict=True):
        ix.set_supervisee(sid, zs)
    before = (ix.cells.size, ix.vertices.size)
    ix.set_supervisee(pop.ids[2], pop.zones[2])  # unchanged: nothing compiled
    assert (ix.cells.size, ix.vertices.size) == before
    zones = [list(z) for z in pop.zones]
    c = zones[2][0].geometry.centroid
    zones[2][0] = zone(
        blob(np.random.default_rng(9), c.x, c.y, 2000, 500), "commune", sid=pop.ids[2]
    )
    ix.set_supervisee(pop.ids[2], zones[2])
    assert ix.vertices.size == before[1] + 501 + 1  # one ring of 500 (+ closing) + separator
    fresh = ZoneIndex()
    for sid, zs in zip(pop.ids, zones, strict=True):
        fresh.set_supervisee(sid, zs)
    sidx, lon, lat, acc = _points(zones, 2000, 4)
    ts = np.full(len(sidx), T0)
    a, b = evaluate(ix, sidx, ts, lon, lat, acc), evaluate(fresh, sidx, ts, lon, lat, acc)
    np.testing.assert_array_equal(a.code, b.code)
    np.testing.assert_array_equal(a.dist_m, b.dist_m)
    ix.compact()
    c2 = evaluate(ix, sidx, ts, lon, lat, acc)
    np.testing.assert_array_equal(c2.dist_m, b.dist_m)
    assert ix.cells.garbage == 0 and ix.cells.size < before[0] + 10_000


def test_removed_supervisees_free_their_slots_and_rows():
    pop = population(3, seed=2)
    ix = ZoneIndex()
    for sid, zs in zip(pop.ids, pop.zones, strict=True):
        ix.set_supervisee(sid, zs)
    ix.remove_supervisee(pop.ids[1])
    assert pop.ids[1] not in ix and (ix.slots[:, 1] == 0).all()
    assert ix.set_supervisee("new", pop.zones[1]) == 1  # the index is reused


def test_many_replacements_trigger_compaction_and_keep_results():
    pop = population(2, seed=4)
    ix = ZoneIndex()
    for sid, zs in zip(pop.ids, pop.zones, strict=True):
        ix.set_supervisee(sid, zs)
    sidx, lon, lat, acc = _points(pop.zones, 500, 6)
    ts = np.full(len(sidx), T0)
    ref = evaluate(ix, sidx, ts, lon, lat, acc)
    size = ix.cells.size
    for k in range(12):  # alternate margins: each time a new compile of every zone
        zs = [
            zone(z.geometry, z.id, z.kind, sid=z.supervisee_id, margin_m=10.0 + (k % 2) * 0.0001)
            for z in pop.zones[0]
        ]
        ix.set_supervisee(pop.ids[0], zs)
    assert ix.cells.size < 3 * size  # without compaction it would have grown ~7 times
    got = evaluate(ix, sidx, ts, lon, lat, acc)
    np.testing.assert_array_equal(got.code, ref.code)


def test_two_permits_to_the_same_destination_compile_and_reload():
    from datetime import date

    from geofence.fence import Fence
    from geofence.policy import Permit, Supervisee

    from .helpers import square, zone

    dest = square(105.9, 21.0, 500)
    permits = [Permit("S1", 0, 10, "a", "work", dest), Permit("S1", 20, 30, "b", "work", dest)]
    f = Fence()
    sup = Supervisee("S1", "an_treo", date(2025, 1, 1), date(2027, 12, 31))
    f.load([sup], [zone(square(105.8, 21.0, 500))], permits)
    f.replace_supervisee(
        sup, [zone(square(105.8, 21.0, 500))], permits[:1], now_ms=1_767_225_600_000
    )
    f.replace_supervisee(sup, [zone(square(105.8, 21.0, 500))], permits, now_ms=1_767_225_600_000)
    assert len(f.index.permits_of(f.index.index_of("S1"))) == 2


def test_far_distances_over_holes_and_several_polygons():
    """Ring separators never count as edges: a point in a hole is measured to the hole's ring,
    one near the second polygon of a MultiPolygon to that polygon."""
    import shapely

    from geofence.index import ZoneIndex

    from .helpers import offset, reference_signed, square, zone

    outer, hole = square(105.8, 21.0, 3000), square(105.8, 21.0, 1500)
    donut = shapely.Polygon(outer.exterior.coords, [hole.exterior.coords])
    pair = shapely.MultiPolygon([square(105.8, 21.0, 400), square(*offset(105.8, 21.0, 9000, 0), 400)])
    ix = ZoneIndex()
    ix.set_supervisee("S1", [zone(donut, "donut"), zone(pair, "pair", kind="exclusion")])
    points = [offset(105.8, 21.0, 0, 0), offset(105.8, 21.0, 200, -300),  # in the hole
              offset(105.8, 21.0, 9000, 2000), offset(105.8, 21.0, 9600, 0)]  # near the 2nd
    for j, geom in ((0, donut), (1, pair)):
        rows = np.full(len(points), ix.slots[j, 0])
        lon, lat = np.array(points).T
        d, exact = ix.signed_distance(rows, lon, lat, exact=True)
        assert exact.all()
        for k, (x, y) in enumerate(points):
            ref = reference_signed(geom, x, y)
            assert abs(d[k] - ref) <= 1 + 1e-3 * abs(ref), (j, k, d[k], ref)


def _nearest_in_frame(geometry, lon: float, lat: float) -> float:
    """Brute force over every edge: the nearest boundary point in the zone's metric frame
    (its bounding box's centre), then the geodesic to it (what `exact=True` promises)."""
    from geofence.geodesy import metres_per_degree, vincenty

    x0, y0, x1, y1 = geometry.bounds
    lon0, lat0 = (x0 + x1) / 2, (y0 + y1) / 2
    kx, ky = (float(v) for v in metres_per_degree(lat0))
    best = (np.inf, 0.0, 0.0)
    for ring in [geometry.exterior, *geometry.interiors]:
        c = np.asarray(ring.coords)
        x, y = (c[:, 0] - lon0) * kx - (lon - lon0) * kx, (c[:, 1] - lat0) * ky - (lat - lat0) * ky
        dx, dy = np.diff(x), np.diff(y)
        l2 = np.where(dx * dx + dy * dy > 0, dx * dx + dy * dy, 1)
        t = np.clip(-(x[:-1] * dx + y[:-1] * dy) / l2, 0, 1)
        qx, qy = x[:-1] + t * dx, y[:-1] + t * dy
        k = int(np.argmin(qx * qx + qy * qy))
        if qx[k] ** 2 + qy[k] ** 2 < best[0]:
            best = (qx[k] ** 2 + qy[k] ** 2, qx[k], qy[k])
    nx, ny = lon + best[1] / kx, lat + best[2] / ky
    return float(vincenty(lon, lat, nx, ny))


@pytest.mark.parametrize("cache", [1 << 25, 3000])
def test_far_distances_branch_and_bound_finds_the_nearest_edge(monkeypatch, cache):
    """The pruned search over groups and pieces of edges gives the brute-force nearest point
    (every edge), for communes of ~1,000 vertices, holes and points 0.1-30 km away, inside and
    out; a small cache that restarts between calls changes nothing."""
    import geofence.index as gi

    from .helpers import reference_signed

    monkeypatch.setattr(gi, "FRAME_CACHE", cache)
    rng = np.random.default_rng(7)
    ix = gi.ZoneIndex()
    geoms = []
    for s in range(6):
        lon, lat = rng.uniform(103.5, 108.5), rng.uniform(9.0, 22.5)
        g = blob(rng, lon, lat, rng.uniform(1500, 4000), int(rng.integers(200, 1500)))
        if s % 3 == 0:  # a hole
            g = shapely.Polygon(g.exterior.coords, [blob(rng, lon, lat, 600, 40).exterior.coords])
        geoms.append(g)
        ix.set_supervisee(f"S{s}", [zone(g, f"z{s}")])
    for _ in range(3):  # several calls: the pool fills, or restarts with the small cache
        s = rng.integers(0, len(geoms), 60)
        pts = []
        for k in s.tolist():
            c = geoms[k].centroid
            pts.append(offset(c.x, c.y, *rng.uniform(-1, 1, 2) * rng.choice([1500, 6000, 30000])))
        lon, lat = np.array(pts).T
        rows = np.array([ix.slots[0, ix.index_of(f"S{k}")] for k in s.tolist()])
        d, exact = ix.signed_distance(rows, lon, lat, exact=True)
        assert exact.all()
        for k, (x, y, got) in enumerate(zip(lon, lat, d, strict=True)):
            g = geoms[int(s[k])]
            want = _nearest_in_frame(g, x, y)
            side = reference_signed(g, x, y)
            assert np.sign(got) == np.sign(side), (k, got, side)
            if abs(side) > 150:  # beyond the band (within it: measured in the fix's frame)
                assert abs(abs(got) - want) < 1e-6, (k, got, want)
            if abs(side) < 5000:  # the tangent-frame reference is exact enough within ~5 km
                assert abs(got - side) <= 1 + 1e-3 * abs(side), (k, got, side)
