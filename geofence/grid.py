"""Compile one zone into a lon/lat grid that answers most fixes without touching an edge.

Each grid covers the zone's bounding box padded by the decision band T (metres: the largest
`acc + margin` that can still be decided, plus a safety), plus a one-cell border that stands for
"everywhere else" (far outside). A cell is:
- FAR_IN / FAR_OUT: every point of the cell is more than T from the boundary, so every fix in it
  is classified from the cell alone (its distance is beyond the band);
- NEAR_IN / NEAR_OUT: the cell may hold points within T of the boundary. It keeps an anchor
  point whose side is known and the list of candidate edges: every edge within T of a point of
  the cell, so the exact distance of any fix within the band, and the side of any fix (by
  counting crossings of the anchor-to-fix segment), come from the candidates alone.

Guarantees rest on conservative metres-to-degrees conversions (the smallest metres per degree
over the grid's latitudes, +1 %) and on a 1-Lipschitz argument: a cell whose centre is farther
than T + half-diagonal from every candidate edge has no point within T of the boundary.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import shapely
from numpy.typing import NDArray
from shapely.geometry.base import BaseGeometry

from geofence.geodesy import metres_per_degree, vincenty
from geofence.zones import Circle

FAR_IN, FAR_OUT, NO_ZONE_CELL = 0, 1, 2  # cell values; a near cell holds 3 + its number
NEAR_BASE = 3
MAX_NEAR = 0x7FFF - NEAR_BASE  # cells are uint16 and bit 15 marks exclusion zones
_ANCHOR_CLEARANCE_M = 0.01  # an anchor this close to an edge is moved: its side would be fragile
BATCH_VERTICES = 20_000  # vertices compiled together: temporaries stay cache-sized (faster)
_LATTICE = np.array([0.0, -0.375, -0.125, 0.125, 0.375])  # anchor offsets, in cells
LATTICE = _LATTICE  # the same table, for the compiled near-cell kernel


@dataclass(frozen=True)
class GridOptions:
    """Grid sizing: target cell size (m) and the most cells per side (memory bound)."""

    cell_m: float = 75.0
    max_side: int = 64  # at most 178: near cells are numbered in 15 bits
    safety_m: float = 2.0  # added to the band: absorbs float32 cell lookup (~0.1 m) and rounding

    def __post_init__(self) -> None:
        if not 1 <= self.max_side <= 178 or self.cell_m <= 0:
            raise ValueError("GridOptions: need 1 <= max_side <= 178 and cell_m > 0")


@dataclass
class CompiledGrid:
    """One zone's grid and near-boundary data (see module docstring)."""

    lon0: float  # lower-left corner of border cell (0, 0), degrees
    lat0: float
    cw: float  # cell width / height, degrees
    ch: float
    nx2: int  # cells per row / column, border included
    ny2: int
    cells: NDArray[np.uint16]  # (ny2 * nx2,) FAR_IN / FAR_OUT / NEAR_BASE + near number
    near_in: NDArray[np.uint8]  # per near cell: 1 if its anchor is inside
    anchor_q: NDArray[np.uint8]  # per near cell: anchor lattice code (0: the cell centre)
    spans: NDArray[np.int32]  # (n_near, 4): candidate edges [a, a + n) and [b, b + m)
    vertices: NDArray[np.float64]  # (V, 2) rings one after another, a NaN row after each
    band_m: float
    circle: Circle | None = None


@dataclass(frozen=True)
class _Frame:
    lon0: float
    lat0: float
    cw: float
    ch: float
    nx2: int
    ny2: int
    pad_lon: float  # T in degrees of longitude / latitude, conservative
    pad_lat: float
    half_diag_m: float  # upper bound of a cell's half diagonal, m


def rings_of(geometry: BaseGeometry) -> list[NDArray[np.float64]]:
    """All linear rings (exteriors and holes) of a (Multi)Polygon, as closed (n, 2) arrays."""
    polys = getattr(geometry, "geoms", [geometry])
    rings = []
    for p in polys:
        rings.append(np.asarray(p.exterior.coords)[:, :2])
        rings.extend(np.asarray(h.coords)[:, :2] for h in p.interiors)
    return rings


def vertices_of(rings: list[NDArray[np.float64]]) -> NDArray[np.float64]:
    """Rings (closed) one after another with a NaN row after each: edge i is (v[i], v[i+1]),
    and the edges that touch a NaN row measure NaN and cross nothing."""
    gap = np.full((1, 2), np.nan)
    return np.ascontiguousarray(np.concatenate([x for r in rings for x in (r, gap)]))


def edges_from(v: NDArray[np.float64]) -> NDArray[np.float64]:
    """(V, 4) edges lon1, lat1, lon2, lat2 of a vertex array (the last one NaN)."""
    return np.hstack([v, np.vstack([v[1:], np.full((1, 2), np.nan)])])


def _frame(bbox: tuple[float, float, float, float], pad_m: float, opts: GridOptions) -> _Frame:
    return _frames(np.array([bbox]), np.array([pad_m]), opts).frame(0)


@dataclass(frozen=True)
class _Frames:
    """Grid frames of a batch of zones (arrays by zone); cells are numbered globally, zone z
    owning [coff[z], coff[z + 1])."""

    lon0: NDArray[np.float64]
    lat0: NDArray[np.float64]
    cw: NDArray[np.float64]
    ch: NDArray[np.float64]
    nx2: NDArray[np.int64]
    ny2: NDArray[np.int64]
    pad_lon: NDArray[np.float64]
    pad_lat: NDArray[np.float64]
    half_diag: NDArray[np.float64]
    pad_m: NDArray[np.float64]
    coff: NDArray[np.int64]

    def frame(self, z: int) -> _Frame:
        """Zone z's frame."""
        return _Frame(float(self.lon0[z]), float(self.lat0[z]), float(self.cw[z]), float(self.ch[z]),
                      int(self.nx2[z]), int(self.ny2[z]), float(self.pad_lon[z]), float(self.pad_lat[z]),
                      float(self.half_diag[z]))  # fmt: skip

    def zone_of(self, cell: NDArray[np.int64]) -> NDArray[np.int64]:
        """Zone of each global cell."""
        return np.searchsorted(self.coff, cell, side="right") - 1

    def centres(
        self, cell: NDArray[np.int64], z: NDArray[np.int64]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Lon/lat of global cells' centres."""
        iy, ix = np.divmod(cell - self.coff[z], self.nx2[z])
        return self.lon0[z] + (ix + 0.5) * self.cw[z], self.lat0[z] + (iy + 0.5) * self.ch[z]

    def border_mask(self) -> NDArray[np.bool_]:
        """True for the one-cell border of every zone's grid."""
        cell = np.arange(self.coff[-1])
        z = self.zone_of(cell)
        iy, ix = np.divmod(cell - self.coff[z], self.nx2[z])
        return (ix == 0) | (iy == 0) | (ix == self.nx2[z] - 1) | (iy == self.ny2[z] - 1)


def _frames(bounds: NDArray[np.float64], pad_m: NDArray[np.float64], opts: GridOptions) -> _Frames:
    """Frames of zones with bounding boxes `bounds` (n, 4) padded by `pad_m` metres."""
    minx, miny, maxx, maxy = bounds.T
    # conservative: fewest metres per degree of longitude at the most poleward latitude (+1 deg
    # for the pad), of latitude at the most equatorward one
    lat_hi = np.minimum(np.maximum(np.abs(miny), np.abs(maxy)) + 1.0, 89.0)
    lat_lo = np.where(
        (miny <= 0) & (maxy >= 0),
        0.0,
        np.maximum(np.minimum(np.abs(miny), np.abs(maxy)) - 1.0, 0.0),
    )
    kx_min, ky_max = metres_per_degree(lat_hi)
    kx_max, ky_min = metres_per_degree(lat_lo)
    pad_lon, pad_lat = pad_m / kx_min * 1.01, pad_m / ky_min * 1.01
    x0, x1, y0, y1 = minx - pad_lon, maxx + pad_lon, miny - pad_lat, maxy + pad_lat
    kx_mid, ky_mid = metres_per_degree((y0 + y1) / 2)
    nx = np.clip(np.ceil((x1 - x0) * kx_mid / opts.cell_m), 1, opts.max_side).astype(np.int64)
    ny = np.clip(np.ceil((y1 - y0) * ky_mid / opts.cell_m), 1, opts.max_side).astype(np.int64)
    cw, ch = (x1 - x0) / nx, (y1 - y0) / ny
    half_diag = 0.5 * np.hypot(cw * kx_max, ch * ky_max) * 1.01
    coff = np.r_[0, np.cumsum((nx + 2) * (ny + 2))]
    return _Frames(
        x0 - cw, y0 - ch, cw, ch, nx + 2, ny + 2, pad_lon, pad_lat, half_diag, pad_m, coff
    )


def _centres(f: _Frame, flat: NDArray[np.int64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    iy, ix = np.divmod(flat, f.nx2)
    return f.lon0 + (ix + 0.5) * f.cw, f.lat0 + (iy + 0.5) * f.ch


def segment_distance(
    qx: NDArray[np.float64], qy: NDArray[np.float64], e: NDArray[np.float64],
    scale: tuple[NDArray[np.float64], NDArray[np.float64]] | None = None,
) -> NDArray[np.float64]:  # fmt: skip
    """Metres from points (lon qx, lat qy) to segments e (n, 4), each pair in the affine frame
    tangent at the point (exact to ~1e-4 relative within a few km); `scale` = metres per degree
    at the points if already known."""
    kx, ky = metres_per_degree(qy) if scale is None else scale
    x1, y1, x2, y2 = np.ascontiguousarray(e.T)
    ax, ay = (x1 - qx) * kx, (y1 - qy) * ky
    dx, dy = (x2 - x1) * kx, (y2 - y1) * ky
    l2 = dx * dx + dy * dy
    t = np.clip(-(ax * dx + ay * dy) / np.where(l2 > 0, l2, 1.0), 0.0, 1.0)
    return np.hypot(ax + t * dx, ay + t * dy)


def _runs(
    edges: NDArray[np.float64], ezone: NDArray[np.int64], fr: _Frames
) -> tuple[NDArray[np.float64], NDArray[np.int64], NDArray[np.int64], tuple[NDArray, ...]]:
    """Group consecutive edges (long ones cut in pieces) into runs at most ~1 cell long.

    Returns each run's bbox (n, 4), its edge interval (n, 2) [first, last] and its zone:
    rasterising runs instead of edges makes far fewer duplicate (cell, edge) pairs on finely
    drawn borders.
    """
    ok = np.flatnonzero(np.isfinite(edges).all(axis=1))
    e, z = np.take(edges, ok, axis=0), ezone[ok]
    span = np.maximum(np.abs(e[:, 2] - e[:, 0]) / fr.cw[z], np.abs(e[:, 3] - e[:, 1]) / fr.ch[z])
    n_sub = np.maximum(1, np.ceil(2 * span)).astype(np.int64)
    sub = np.repeat(np.arange(len(e)), n_sub)
    k = np.arange(len(sub)) - np.repeat(np.cumsum(n_sub) - n_sub, n_sub)
    t0, t1 = k / n_sub[sub], (k + 1) / n_sub[sub]
    es = np.take(e, sub, axis=0)
    xa, xb = es[:, 0] + t0 * (es[:, 2] - es[:, 0]), es[:, 0] + t1 * (es[:, 2] - es[:, 0])
    ya, yb = es[:, 1] + t0 * (es[:, 3] - es[:, 1]), es[:, 1] + t1 * (es[:, 3] - es[:, 1])
    length = (span / n_sub)[sub]
    eid = ok[sub]
    # a new run where the half-cell count of the path length ticks over, or a ring starts
    tick = np.floor((np.cumsum(length) - length) / 0.5)
    new = np.r_[True, (tick[1:] != tick[:-1]) | (np.diff(eid) > 1)]
    first = np.flatnonzero(new)
    bbox = np.column_stack([
        np.minimum.reduceat(np.minimum(xa, xb), first), np.minimum.reduceat(np.minimum(ya, yb), first),
        np.maximum.reduceat(np.maximum(xa, xb), first), np.maximum.reduceat(np.maximum(ya, yb), first),
    ])  # fmt: skip
    interval = np.column_stack([eid[first], np.maximum.reduceat(eid, first)])
    return bbox, interval, z[sub][first], (xa, ya, xb, yb, eid, z[sub])


def _rasterise(
    edges: NDArray[np.float64], ezone: NDArray[np.int64], fr: _Frames
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """(global cell, run interval) pairs: every interior cell within T (the pad) of each run's
    bbox; and the cells whose centre lies within 1 cm of an edge."""
    bbox, interval, z, pieces = _runs(edges, ezone, fr)
    tight = _cells_near_centre(edges, pieces, fr)
    lon0, lat0, cw, ch, nx2, ny2 = fr.lon0[z], fr.lat0[z], fr.cw[z], fr.ch[z], fr.nx2[z], fr.ny2[z]
    pad_lon, pad_lat = fr.pad_lon[z], fr.pad_lat[z]
    ix0 = np.clip(np.floor((bbox[:, 0] - pad_lon - lon0) / cw), 1, nx2 - 2).astype(np.int64)
    ix1 = np.clip(np.floor((bbox[:, 2] + pad_lon - lon0) / cw), 0, nx2 - 2).astype(np.int64)
    iy0 = np.clip(np.floor((bbox[:, 1] - pad_lat - lat0) / ch), 1, ny2 - 2).astype(np.int64)
    iy1 = np.clip(np.floor((bbox[:, 3] + pad_lat - lat0) / ch), 0, ny2 - 2).astype(np.int64)
    w = np.maximum(ix1 - ix0 + 1, 0)
    count = w * np.maximum(iy1 - iy0 + 1, 0)
    rep = np.repeat(np.arange(len(bbox)), count)
    j = np.arange(len(rep)) - np.repeat(np.cumsum(count) - count, count)
    jy, jx = np.divmod(j, np.maximum(w[rep], 1))
    cell = fr.coff[z[rep]] + (iy0[rep] + jy) * nx2[rep] + ix0[rep] + jx
    return cell, np.take(interval, rep, axis=0), tight


def _cells_near_centre(
    edges: NDArray[np.float64], pieces: tuple[NDArray, ...], fr: _Frames
) -> NDArray[np.int64]:
    """Global cells whose centre lies within 1 cm of an edge (their anchor must move): only
    the <= 4 cells under each piece (pieces are at most half a cell) can hold such a centre."""
    xa, ya, xb, yb, eid, z = pieces
    tol = 2e-7  # degrees, > 1 cm anywhere
    cells, owners = [], []
    for dx in (0, 1):
        for dy in (0, 1):
            x = np.where(dx, np.maximum(xa, xb) + tol, np.minimum(xa, xb) - tol)
            y = np.where(dy, np.maximum(ya, yb) + tol, np.minimum(ya, yb) - tol)
            ix = np.clip(np.floor((x - fr.lon0[z]) / fr.cw[z]), 0, fr.nx2[z] - 1).astype(np.int64)
            iy = np.clip(np.floor((y - fr.lat0[z]) / fr.ch[z]), 0, fr.ny2[z] - 1).astype(np.int64)
            cells.append(fr.coff[z] + iy * fr.nx2[z] + ix)
            owners.append(eid)
    cell, owner = np.concatenate(cells), np.concatenate(owners)  # repeats are harmless
    cx, cy = fr.centres(cell, fr.zone_of(cell))
    d = segment_distance(cx, cy, np.take(edges, owner, axis=0))
    return np.unique(cell[d < _ANCHOR_CLEARANCE_M])


def _spans(cell: NDArray[np.int64], interval: NDArray[np.int64], n_vertices: int) -> tuple[
        NDArray[np.int64], NDArray[np.int64]]:  # fmt: skip
    """Per touched cell (sorted): at most two edge spans (a, n, b, m) covering its intervals,
    cut at the largest gap (extra edges in other gaps are harmless candidates)."""
    order = np.argsort(cell * n_vertices + interval[:, 0], kind="stable")
    cell, lo, hi = cell[order], np.take(interval[:, 0], order), np.take(interval[:, 1], order)
    first = np.flatnonzero(np.r_[True, cell[1:] != cell[:-1]])
    seg = np.repeat(np.arange(len(first)), np.diff(np.r_[first, len(cell)]))
    runmax = np.maximum.accumulate(hi + seg * n_vertices) - seg * n_vertices
    gap = np.full(len(cell), -1, dtype=np.int64)
    same = seg[1:] == seg[:-1]
    gap[:-1] = np.where(same, lo[1:] - runmax[:-1] - 1, -1)
    best = np.maximum.reduceat(gap, first)
    at = np.where(gap == best[seg], np.arange(len(cell)), len(cell))
    cut = np.minimum.reduceat(at, first)
    last = np.r_[first[1:], len(cell)] - 1
    split = best > 0
    a = lo[first]
    end1 = np.where(split, runmax[np.minimum(cut, len(cell) - 1)], runmax[last])
    b = np.where(split, lo[np.minimum(cut + 1, len(cell) - 1)], 0)
    end2 = np.where(split, runmax[last], -1)
    spans = np.column_stack([a, end1 - a + 1, b, end2 - b + 1])
    return cell[first], spans


def _parity_inside(
    edges: NDArray[np.float64], ezone: NDArray[np.int64], fr: _Frames
) -> NDArray[np.bool_]:
    """Even-odd side of every cell centre (global cells): a ray to +lon, counting edges by the
    half-open rule (y1 > y) != (y2 > y) evaluated on the very float row centre, so a vertex on
    a row is counted once."""
    ok = np.isfinite(edges).all(axis=1)
    edges, ezone = np.compress(ok, edges, axis=0), ezone[ok]
    lat0, ch, ny2 = fr.lat0[ezone], fr.ch[ezone], fr.ny2[ezone]
    ylo, yhi = np.minimum(edges[:, 1], edges[:, 3]), np.maximum(edges[:, 1], edges[:, 3])
    r0 = np.clip(np.floor((ylo - lat0) / ch - 0.5) - 1, 0, ny2 - 1).astype(np.int64)
    r1 = np.clip(np.ceil((yhi - lat0) / ch - 0.5) + 1, 0, ny2 - 1).astype(np.int64)
    count = r1 - r0 + 1
    eid = np.repeat(np.arange(len(edges)), count)
    row = r0[eid] + np.arange(len(eid)) - np.repeat(np.cumsum(count) - count, count)
    z = ezone[eid]
    yc = fr.lat0[z] + (row + 0.5) * fr.ch[z]
    e = np.take(edges, eid, axis=0)
    cross = (e[:, 1] > yc) != (e[:, 3] > yc)
    e, yc, row, z = e[cross], yc[cross], row[cross], z[cross]
    xi = e[:, 0] + (yc - e[:, 1]) * (e[:, 2] - e[:, 0]) / (e[:, 3] - e[:, 1])
    # a crossing counts for the cells of its row whose centre lies left of it: row-wise suffix
    # sums over (nx2 + 1) slots per row, slot c + 1 for cell c
    nx2 = fr.nx2[z]
    col = np.clip(np.ceil((xi - fr.lon0[z]) / fr.cw[z] - 0.5), 0, nx2).astype(np.int64)
    soff = np.r_[0, np.cumsum(fr.ny2 * (fr.nx2 + 1))]
    hits = np.bincount(soff[z] + row * (nx2 + 1) + col, minlength=int(soff[-1]))
    suffix = np.r_[np.cumsum(hits[::-1])[::-1], 0]
    cell = np.arange(fr.coff[-1])
    cz = fr.zone_of(cell)
    iy, ix = np.divmod(cell - fr.coff[cz], fr.nx2[cz])
    slot = soff[cz] + iy * (fr.nx2[cz] + 1) + ix + 1
    row_end = soff[cz] + (iy + 1) * (fr.nx2[cz] + 1)
    return ((suffix[slot] - suffix[row_end]) & 1).astype(bool)


def compile_polygon(geometry: BaseGeometry, band_m: float, opts: GridOptions) -> CompiledGrid:
    """Compile a lon/lat (Multi)Polygon for decisions up to `band_m` metres from its boundary."""
    return compile_polygons([geometry], [band_m], opts)[0]


def compile_polygons(
    geometries: Sequence[BaseGeometry], bands_m: Sequence[float], opts: GridOptions
) -> list[CompiledGrid]:
    """Compile many (Multi)Polygons at once (every step vectorised across them), in batches of
    about BATCH_VERTICES vertices to bound memory."""
    out: list[CompiledGrid] = []
    start, count = 0, 0
    for i, g in enumerate(geometries):
        count += shapely.get_num_coordinates(g)
        if count >= BATCH_VERTICES or i == len(geometries) - 1:
            out.extend(
                _compile_batch(
                    list(geometries[start : i + 1]), np.asarray(bands_m[start : i + 1], float), opts
                )
            )
            start, count = i + 1, 0
    return out


def _compile_batch(
    geoms: list[BaseGeometry], bands: NDArray[np.float64], opts: GridOptions
) -> list[CompiledGrid]:
    verts = [vertices_of(rings_of(g)) for g in geoms]
    nv = np.array([len(v) for v in verts])
    voff = np.r_[0, np.cumsum(nv)]
    vertices = np.concatenate(verts)
    ezone = np.repeat(np.arange(len(geoms)), nv)  # an edge belongs to its first vertex's zone
    edges = edges_from(vertices)
    fr = _frames(shapely.bounds(np.array(geoms, dtype=object)), bands + opts.safety_m, opts)
    cell, interval, tight = _rasterise(edges, ezone, fr)
    # every cell within T of a run's box is near: a cell farther than T + its half diagonal
    # from all edges would be far, but checking costs more than the few extra near cells
    near, spans = _spans(cell, interval, len(vertices))
    nz = fr.zone_of(near)
    inside = _parity_inside(edges, ezone, fr)
    near_in = inside[near]
    anchor_q = np.zeros(len(near), dtype=np.uint8)
    for i in np.flatnonzero(np.isin(near, tight)):
        z = int(nz[i])
        anchor_q[i], near_in[i] = _move_anchor(
            geoms[z], fr.frame(z), int(near[i] - fr.coff[z]), edges, spans[i]
        )
    cells = np.where(inside, FAR_IN, FAR_OUT).astype(np.uint16)
    cells[fr.border_mask()] = FAR_OUT
    zone_first_near = np.searchsorted(near, fr.coff[:-1])
    cells[near] = NEAR_BASE + np.arange(len(near)) - zone_first_near[nz]
    spans[:, 0] -= voff[nz]
    spans[:, 2] = np.where(spans[:, 3] > 0, spans[:, 2] - voff[nz], 0)
    near_bounds = np.r_[zone_first_near, len(near)]
    return [
        CompiledGrid(
            float(fr.lon0[z]), float(fr.lat0[z]), float(fr.cw[z]), float(fr.ch[z]), int(fr.nx2[z]),
            int(fr.ny2[z]), cells[fr.coff[z] : fr.coff[z + 1]], near_in[near_bounds[z] : near_bounds[z + 1]].astype(np.uint8),
            anchor_q[near_bounds[z] : near_bounds[z + 1]], spans[near_bounds[z] : near_bounds[z + 1]].astype(np.int32),
            vertices[voff[z] : voff[z + 1]], float(bands[z]),
        )
        for z in range(len(geoms))
    ]  # fmt: skip


def _set_border(cells: NDArray[np.uint16], f: _Frame) -> None:
    grid = cells.reshape(f.ny2, f.nx2)
    grid[0, :] = grid[-1, :] = grid[:, 0] = grid[:, -1] = FAR_OUT


def anchor_offsets(code: NDArray[np.uint8]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Anchor offsets from the cell centre, in cells, of lattice codes (0: the centre)."""
    c = code.astype(np.intp)
    return np.where(c > 0, _LATTICE[1 + (c - 1) % 4], 0.0), np.where(
        c > 0, _LATTICE[1 + (c - 1) // 4], 0.0
    )


def _move_anchor(
    geometry: BaseGeometry,
    f: _Frame,
    cell: int,
    edges: NDArray[np.float64],
    span: NDArray[np.int64],
) -> tuple[int, bool]:
    """The lattice point of the cell farthest from its candidate edges, and its side."""
    eid = np.r_[np.arange(span[0], span[0] + span[1]), np.arange(span[2], span[2] + span[3])]
    e = edges[eid]
    cx, cy = _centres(f, np.array([cell]))
    codes = np.arange(1, 17, dtype=np.uint8)
    ox, oy = anchor_offsets(codes)
    px, py = cx[0] + ox * f.cw, cy[0] + oy * f.ch
    d = segment_distance(np.repeat(px, len(e)), np.repeat(py, len(e)), np.tile(e, (16, 1)))
    best = int(np.argmax(np.fmin.reduce(d.reshape(16, len(e)), axis=1)))
    return int(codes[best]), bool(shapely.contains_xy(geometry, px[best], py[best]))


def compile_circle(circle: Circle, band_m: float, opts: GridOptions) -> CompiledGrid:
    """Compile a circle: its grid's near cells hold no edges, their fixes are measured exactly
    (Vincenty to the centre minus the radius)."""
    kx, ky = metres_per_degree(circle.lat)
    rx, ry = circle.radius_m / float(kx) * 1.02, circle.radius_m / float(ky) * 1.02
    bbox = (circle.lon - rx, circle.lat - ry, circle.lon + rx, circle.lat + ry)
    pad = band_m + opts.safety_m
    f = _frame(bbox, pad, opts)
    flat = np.arange(f.nx2 * f.ny2, dtype=np.int64)
    cx, cy = _centres(f, flat)
    d = vincenty(cx, cy, circle.lon, circle.lat) - circle.radius_m
    cells = np.where(d < 0, FAR_IN, FAR_OUT).astype(np.uint16)
    _set_border(cells, f)
    interior = np.zeros(f.ny2 * f.nx2, dtype=bool)
    interior.reshape(f.ny2, f.nx2)[1:-1, 1:-1] = True
    near = flat[interior & (np.abs(d) <= pad + f.half_diag_m)]
    cells[near] = NEAR_BASE + np.arange(len(near))
    return CompiledGrid(f.lon0, f.lat0, f.cw, f.ch, f.nx2, f.ny2, cells,
                        (d[near] < 0).astype(np.uint8), np.zeros(len(near), np.uint8),
                        np.zeros((len(near), 4), np.int32), np.zeros((0, 2)), band_m, circle)  # fmt: skip
