"""Compiled inner loops of the geofence (numba, compiled on first use and cached on disk).

Each kernel does, one element at a time, exactly the floating-point operations of the numpy
code it replaces (same types, same order, no fused multiply-add: numba's default is strict IEEE),
so results are bit for bit the same; the numpy versions stay as the reference the tests compare
against (`geofence.engine.far_codes_numpy`, `ZoneIndex.nearest_edges_numpy`). Why compiled:
numpy spends most of this work on temporaries of ~20 passes over every (fix, zone) pair, and on
gathering per-zone parameters, which a loop keeps in registers (see bench/bench_geofence.py).

Cold start: the first import of a process that finds no cache compiles for ~2 s; the cache
(`__pycache__/*.nbi|nbc` next to this file) makes later imports ~0.1 s.
"""

from __future__ import annotations

import numpy as np
from numba import njit
from numpy.typing import NDArray

NEAR_BASE = 3  # geofence.grid.NEAR_BASE (imported there from here would make a cycle)
VALUE_MASK = 0x7FFF  # geofence.index.VALUE_MASK
UNCERTAIN = 2  # geofence.engine.UNCERTAIN: the class of near cells
FAR_OUT = 1  # geofence.grid.FAR_OUT: the value of every border cell
EXCLUSION_BIT = 0x8000  # geofence.index.EXCLUSION_BIT


@njit(cache=True, nogil=True)
def _cell(p: NDArray[np.float32], x: np.float32, y: np.float32) -> tuple[int, bool]:
    """`ZoneIndex._cells_at` for one point in the grid of parameters `p` (a row of
    `ZoneIndex.p32_rows`), in float32: the cell's index in the grid, and whether the point is
    off the grid (clamped into its border, whose cells are all FAR_OUT)."""
    zero = np.float32(0.0)
    off = False
    fx = x - p[0]
    fx *= p[2]
    if fx < zero:
        fx, off = zero, True
    if fx > p[4]:
        fx, off = p[4], True
    fy = y - p[1]
    fy *= p[3]
    if fy < zero:
        fy, off = zero, True
    if fy > p[5]:
        fy, off = p[5], True
    fy = np.floor(fy)
    fy *= p[6]
    fy += np.floor(fx)
    return int(fy), off


@njit(cache=True, nogil=True)
def _values(
    i: int, k: int, slots: NDArray[np.intp], sidx: NDArray[np.intp], lon32: NDArray[np.float32],
    lat32: NDArray[np.float32], p32: NDArray[np.float32], p32i: NDArray[np.int32],
    exclusion: NDArray[np.bool_], cells: NDArray[np.uint16], cls: NDArray[np.int8],
    dist: NDArray[np.float32], code_out: NDArray[np.int8], dist_out: NDArray[np.float32],
) -> int:  # fmt: skip
    """Fix i against each of its supervisee's k slots; how many of them are near cells."""
    s = sidx[i]
    near = 0
    for j in range(k):
        r = slots[s, j]
        f, off = _cell(p32[r], lon32[i], lat32[i])
        if off:
            v = FAR_OUT | (EXCLUSION_BIT if exclusion[r] else 0)
        else:
            f += p32i[r, 7]  # the cell offset, in the parameters' own cache line
            if f < 0 or f >= len(cells):
                raise IndexError("geofence: cell index out of range")
            v = cells[f]
        code_out[j, i] = cls[v]
        dist_out[j, i] = dist[v]
        if (v & VALUE_MASK) >= NEAR_BASE:
            near += 1
    return near


@njit(cache=True, nogil=True)
def far_codes(
    slots: NDArray[np.intp], sidx: NDArray[np.intp], lon32: NDArray[np.float32],
    lat32: NDArray[np.float32], p32: NDArray[np.float32], p32i: NDArray[np.int32],
    exclusion: NDArray[np.bool_], cells: NDArray[np.uint16], cls: NDArray[np.int8],
    dist: NDArray[np.float32], code_out: NDArray[np.int8], dist_out: NDArray[np.float32],
) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.int64], NDArray[np.uint16]]:  # fmt: skip
    """Cell value of every (slot j, fix i) in its zone's grid: the classification and distance
    of far cells into `code_out[j, i]` / `dist_out[j, i]` (near cells: UNCERTAIN / NaN), and
    the near-cell pairs (slot, fix, global cell, value) in slot-major order, to be measured.

    `slots`: (supervisees, k) zone row per slot (`ZoneIndex.slots` transposed); `p32`:
    `ZoneIndex.p32_rows` (and `p32i`, the same as int32: column 7 is the cell offset);
    `exclusion`: per row, whether its cell values carry EXCLUSION_BIT.
    A point off a grid is in its border, FAR_OUT: its cell is not read (the grids are large,
    reading a cell is most of the cost)."""
    k, n = slots.shape[1], len(sidx)
    near = 0
    # first the first fix of each run of a supervisee's fixes, then the others: the first
    # visit of a supervisee's zones misses the cache three times in a row (slots, parameters,
    # cell); short independent iterations let those of many supervisees overlap
    for i in range(n):
        if i == 0 or sidx[i] != sidx[i - 1]:
            near += _values(i, k, slots, sidx, lon32, lat32, p32, p32i, exclusion, cells,
                            cls, dist, code_out, dist_out)  # fmt: skip
    for i in range(1, n):
        if sidx[i] == sidx[i - 1]:
            near += _values(i, k, slots, sidx, lon32, lat32, p32, p32i, exclusion, cells,
                            cls, dist, code_out, dist_out)  # fmt: skip
    slot = np.empty(near, dtype=np.intp)
    fix = np.empty(near, dtype=np.intp)
    flat = np.empty(near, dtype=np.int64)
    value = np.empty(near, dtype=np.uint16)
    m = 0
    for j in range(k):
        for i in range(n):
            if code_out[j, i] == UNCERTAIN and np.isnan(dist_out[j, i]):  # near (or so coded)
                r = slots[sidx[i], j]
                f, off = _cell(p32[r], lon32[i], lat32[i])
                f += p32i[r, 7]
                v = cells[f]
                if not off and (v & VALUE_MASK) >= NEAR_BASE:
                    slot[m], fix[m], flat[m], value[m] = j, i, f, v
                    m += 1
    return slot, fix, flat, value


@njit(cache=True, nogil=True)
def _edge_d2(xa: float, ya: float, dx: float, dy: float) -> float:
    """`index._edge_distances2` for one edge: squared distance from the origin (the fix) to
    the edge from (xa, ya) along (dx, dy), in the same operations."""
    l2 = dx * dx + dy * dy
    l2 += 1e-300  # zero-length edges: t = 0, the vertex itself
    t = xa * dx
    t += ya * dy
    t = -t
    t /= l2
    if t < 0.0:  # NaN stays NaN, as np.clip leaves it
        t = 0.0
    elif t > 1.0:
        t = 1.0
    qx = xa + t * dx
    qy = ya + t * dy
    d2 = qx * qx
    d2 += qy * qy
    return d2


@njit(cache=True, nogil=True)
def _fmax(a: float, b: float) -> float:
    """np.fmax: the larger, ignoring a NaN."""
    if np.isnan(a):
        return b
    if np.isnan(b):
        return a
    return a if a >= b else b


@njit(cache=True, nogil=True)
def _box_upper(b: NDArray[np.float64], qx: float, qy: float) -> float:
    """`index._box_bounds` upper bound: the distance to the first vertex (inf if not finite)."""
    u = np.hypot(b[4] - qx, b[5] - qy)
    return u if np.isfinite(u) else np.inf


@njit(cache=True, nogil=True)
def _below(b: NDArray[np.float64], qx: float, qy: float, bound: float) -> float:
    """min(bound, `_box_upper`): hypot (slow) only when neither leg reaches the bound, as
    hypot(x, y) >= max(|x|, |y|) holds for the rounded result too."""
    dx, dy = abs(b[4] - qx), abs(b[5] - qy)
    if dx >= bound or dy >= bound:
        return bound
    return min(bound, _box_upper(b, qx, qy))


@njit(cache=True, nogil=True)
def _within(b: NDArray[np.float64], qx: float, qy: float, bound: float) -> bool:
    """Whether the `index._box_bounds` lower bound (the distance from the point to the box)
    is <= bound, without hypot when a leg alone exceeds the bound."""
    ex = _fmax(_fmax(b[0] - qx, qx - b[2]), 0.0)
    ey = _fmax(_fmax(b[1] - qy, qy - b[3]), 0.0)
    if ex > bound or ey > bound:
        return False
    return np.hypot(ex, ey) <= bound


@njit(cache=True, nogil=True)
def nearest_edges(
    z: NDArray[np.float64], lon: NDArray[np.float64], lat: NDArray[np.float64],
    groups: NDArray[np.float64], pieces: NDArray[np.float64], vertices: NDArray[np.float64],
    vert_off: NDArray[np.int64], rows: NDArray[np.intp],
) -> NDArray[np.int64]:  # fmt: skip
    """Per point: the global vertex index starting the edge of its zone's boundary nearest to
    it, by the branch and bound of `ZoneIndex._nearest_geodesic` (same bounds, same candidate
    pieces, same squared distances, the first edge wins a tie). `z`: `_frame_of(rows)`."""
    n = len(rows)
    out = np.empty(n, dtype=np.int64)
    for p in range(n):
        kx, ky = z[p, 2], z[p, 3]
        px, py = (lon[p] - z[p, 0]) * kx, (lat[p] - z[p, 1]) * ky
        g0, ng = int(z[p, 6]), int(z[p, 7])
        bound = np.inf
        for g in range(g0, g0 + ng):
            bound = _below(groups[g], px, py, bound)
        keep = np.empty(ng, dtype=np.bool_)
        for g in range(g0, g0 + ng):
            keep[g - g0] = _within(groups[g], px, py, bound)
        for g in range(g0, g0 + ng):
            if keep[g - g0]:
                a = int(groups[g, 6])
                for c in range(a, a + int(groups[g, 7])):
                    bound = _below(pieces[c], px, py, bound)
        base = vert_off[rows[p]]
        best, best_at = np.inf, -1
        x0 = lon[p]
        y0 = lat[p]
        for g in range(g0, g0 + ng):
            if not keep[g - g0]:
                continue
            a = int(groups[g, 6])
            for c in range(a, a + int(groups[g, 7])):
                if not _within(pieces[c], px, py, bound):
                    continue
                first = base + int(pieces[c, 6])
                for e in range(first, first + int(pieces[c, 7])):
                    xa = (vertices[e, 0] - x0) * kx
                    ya = (vertices[e, 1] - y0) * ky
                    xb = (vertices[e + 1, 0] - x0) * kx
                    yb = (vertices[e + 1, 1] - y0) * ky
                    d2 = _edge_d2(xa, ya, xb - xa, yb - ya)
                    if not np.isfinite(d2):
                        d2 = np.inf
                    if d2 < best or best_at < 0:
                        best, best_at = d2, e
        out[p] = best_at
    return out


@njit(cache=True, nogil=True)
def _span(
    vertices: NDArray[np.float64], first: int, edges: int, lon: float, lat: float, r: float,
    ux: float, uy: float, best: float,
) -> tuple[float, int]:  # fmt: skip
    """One span of `edges` edges from vertex `first`: the least squared distance so far, and
    the edges crossed by the segment from the fix to the anchor."""
    crossed = 0
    xa = vertices[first, 0] - lon
    ya = vertices[first, 1] - lat
    ya *= r
    sa = ux * ya - uy * xa > 0
    for e in range(first, first + edges):
        xb = vertices[e + 1, 0] - lon
        yb = vertices[e + 1, 1] - lat
        yb *= r
        dx, dy = xb - xa, yb - ya
        d2 = _edge_d2(xa, ya, dx, dy)
        if d2 < best:  # NaN (ring separators) never
            best = d2
        sb = ux * yb - uy * xb > 0
        if sb != sa:  # the edge's ends on either side of the segment's line
            anchor_side = dx * (uy - ya) - dy * (ux - xa) > 0
            fix_side = dy * xa - dx * ya > 0
            if anchor_side != fix_side:
                crossed += 1
        xa, ya, sa = xb, yb, sb
    return best, crossed


@njit(cache=True, nogil=True)
def near_pairs(
    rows: NDArray[np.intp], flat: NDArray[np.int64], nid: NDArray[np.int64],
    lon: NDArray[np.float64], lat: NDArray[np.float64], kx: NDArray[np.float64],
    r: NDArray[np.float64], p64: NDArray[np.float64], cell_off: NDArray[np.int64],
    anchor_q: NDArray[np.uint8], lattice: NDArray[np.float64], spans: NDArray[np.int32],
    base: NDArray[np.int64], vertices: NDArray[np.float64], near_in: NDArray[np.uint8],
    pad_m: NDArray[np.float64],
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:  # fmt: skip
    """`ZoneIndex._near_chunk` whole for polygon pairs in near cells: the cell's anchor
    (`ZoneIndex._anchor`, `grid.anchor_offsets`), `near_edges`, then signed metres (±inf beyond
    the zone's pad) and whether exact. `kx`, `r`: `metres_per_degree` at each fix (numpy's)."""
    n = len(rows)
    ux, uy = np.empty(n), np.empty(n)
    for p in range(n):
        w = rows[p]
        iy, ix = divmod(flat[p] - cell_off[w], np.int64(p64[w, 4]))
        c = np.intp(anchor_q[nid[p]])
        ox = lattice[1 + (c - 1) % 4] if c > 0 else 0.0
        oy = lattice[1 + (c - 1) // 4] if c > 0 else 0.0
        ux[p] = p64[w, 0] + (ix + 0.5 + ox) * p64[w, 2] - lon[p]
        uy[p] = (p64[w, 1] + (iy + 0.5 + oy) * p64[w, 3] - lat[p]) * r[p]
    d2, odd = near_edges(spans, nid, base, vertices, lon, lat, r, ux, uy)
    dist = np.empty(n)
    ok = np.empty(n, dtype=np.bool_)
    for p in range(n):
        dmin = np.sqrt(d2[p]) * kx[p]
        ok[p] = dmin <= pad_m[rows[p]]
        mag = dmin if ok[p] else np.inf
        dist[p] = -mag if (near_in[nid[p]] != 0) != odd[p] else mag
    return dist, ok


@njit(cache=True, nogil=True)
def near_edges(
    spans: NDArray[np.int32], nid: NDArray[np.int64], base: NDArray[np.int64],
    vertices: NDArray[np.float64], lon: NDArray[np.float64], lat: NDArray[np.float64],
    r: NDArray[np.float64], ux: NDArray[np.float64], uy: NDArray[np.float64],
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:  # fmt: skip
    """Per near pair, `ZoneIndex._near_chunk`'s work on the candidate spans of its cell: the
    least squared distance to their edges (degrees of longitude, north scaled by `r`) and the
    parity of the edges crossed by the segment from the fix to the cell's anchor (`ux`, `uy`:
    the anchor relative to the fix, same scale). Same operations as the numpy reference."""
    n = len(nid)
    d2min = np.empty(n, dtype=np.float64)
    odd = np.zeros(n, dtype=np.bool_)
    for p in range(n):
        q = nid[p]
        best, crossed = _span(vertices, base[p] + spans[q, 0], spans[q, 1], lon[p], lat[p],
                              r[p], ux[p], uy[p], np.inf)  # fmt: skip
        if spans[q, 3] > 0:
            best, more = _span(vertices, base[p] + spans[q, 2], spans[q, 3], lon[p], lat[p],
                               r[p], ux[p], uy[p], best)  # fmt: skip
            crossed += more
        d2min[p] = best
        odd[p] = crossed & 1
    return d2min, odd


@njit(cache=True, nogil=True)
def counters(
    code: NDArray[np.int8], regime: NDArray[np.uint8], ts: NDArray[np.int64],
    starts: NDArray[np.intp], ends: NDArray[np.intp], idx: NDArray[np.intp],
    nzones: NDArray[np.intp], viol: NDArray[np.int64], ok: NDArray[np.int64],
    run_since: NDArray[np.int64], is_open: NDArray[np.bool_], open_since: NDArray[np.int64],
    open_type: NDArray[np.int64], overrun: NDArray[np.bool_], present: NDArray[np.bool_],
    confirm: NDArray[np.int64], exclusion: NDArray[np.bool_], scheduled: NDArray[np.bool_],
) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.intp], NDArray[np.bool_],
           NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:  # fmt: skip
    """`geofence.machine.advance` (the confirmation counters of `transitions.step`) one fix at
    a time, for groups of fixes (supervisee idx[g]: fixes starts[g]..ends[g], in ts order)
    whose zones keep one regime through the batch. The state columns (slot, supervisee) of
    `geofence.table` are read (a zone without state starts from zero) and updated in place;
    returns the transitions: group position, slot, fix, active, count, since, alert type."""
    cap = 64
    e_g = np.empty(cap, dtype=np.intp)
    e_j = np.empty(cap, dtype=np.intp)
    e_i = np.empty(cap, dtype=np.intp)
    e_act = np.empty(cap, dtype=np.bool_)
    e_cnt = np.empty(cap, dtype=np.int64)
    e_since = np.empty(cap, dtype=np.int64)
    e_type = np.empty(cap, dtype=np.int64)
    m = 0
    for g in range(len(idx)):
        s = idx[g]
        for j in range(nzones[g]):
            if present[j, s]:
                v, k, rs, op = viol[j, s], ok[j, s], run_since[j, s], is_open[j, s]
                os, ot, ov = open_since[j, s], open_type[j, s], overrun[j, s]
            else:
                v, k, rs, op, os, ot, ov = 0, 0, 0, False, 0, 0, False
            conf = confirm[j, s]
            for i in range(starts[g], ends[g]):
                c = code[j, i]
                if (regime[j, i] & 1) == 0 or (c != 0 and c != 1):  # not in force / definite
                    continue
                act = False
                if c == 1:  # violation
                    if v == 0:
                        rs = ts[i]
                    v += 1
                    k = 0
                    if op or v < conf:
                        continue
                    op, os, act = True, rs, True
                    if exclusion[j, s]:
                        ot = 1  # zone_enter
                    elif ov:
                        ot = 3  # permit_overrun
                    elif scheduled[j, s]:
                        ot = 2  # curfew
                    else:
                        ot = 0  # zone_exit
                    count = v
                else:  # compliant
                    v, ov = 0, False
                    if not op:
                        continue
                    k += 1
                    if k < conf:
                        continue
                    op, k, count = False, 0, conf
                if m == cap:
                    cap *= 2
                    e_g, e_j, e_i = _grow(e_g, cap), _grow(e_j, cap), _grow(e_i, cap)
                    e_act, e_cnt = _grow(e_act, cap), _grow(e_cnt, cap)
                    e_since, e_type = _grow(e_since, cap), _grow(e_type, cap)
                e_g[m], e_j[m], e_i[m], e_act[m] = g, j, i, act
                e_cnt[m], e_since[m], e_type[m] = count, os, ot
                m += 1
            viol[j, s], ok[j, s], run_since[j, s], is_open[j, s] = v, k, rs, op
            open_since[j, s], open_type[j, s], overrun[j, s] = os, ot, ov
            present[j, s] = True
    return e_g[:m], e_j[:m], e_i[:m], e_act[:m], e_cnt[:m], e_since[:m], e_type[:m]


@njit(cache=True, nogil=True)
def _grow(a: NDArray, cap: int) -> NDArray:
    out = np.empty(cap, dtype=a.dtype)
    out[: len(a)] = a
    return out
