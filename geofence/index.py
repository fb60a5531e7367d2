"""The packed zone index of all supervisees: compiled grids in shared slabs, updated per
supervisee (only zones whose shape or band changed are recompiled), queried in bulk.

Hot path (`locate`): a fix's cell in its zone's grid from float32 offsets, one gather of packed
zone parameters and one of the cell byte. Near path (`near_distance`): exact metres to the
candidate edges of the fix's near cell and its side by crossing parity from the cell's anchor.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import shapely
from numpy.typing import NDArray
from shapely.geometry.base import BaseGeometry

from geofence import kernels
from geofence.geodesy import metres_per_degree, vincenty
from geofence.grid import (
    LATTICE,
    NEAR_BASE,
    NO_ZONE_CELL,
    CompiledGrid,
    GridOptions,
    anchor_offsets,
    compile_circle,
    compile_polygons,
)
from geofence.policy import Permit
from geofence.schedule import DEFAULT_TZ, Window, week_mask
from geofence.slab import Slab
from geofence.zones import Circle, Zone

LON_REF, LAT_REF = 105.0, 15.0  # float32 offsets from here keep ~0.1 m anywhere in Vietnam
EXCLUSION_BIT = 0x8000  # set in the cell values of exclusion zones
VALUE_MASK = 0x7FFF
FRAME_PIECE = 16  # edges per piece of a zone's boundary for far distances
FRAME_GROUP = 16  # pieces per group (the first level of the far-distance search)
FRAME_CACHE = 1 << 25  # zone vertices whose pieces are kept for far distances (~3 B each)
P_CACHED = 4  # column of `_pool_rows`: the zone's pieces are in the pool
FAR_CHUNK = 256  # far points per pass (~40k pieces and vertices: the temporaries stay in L2)
NEAR_CHUNK = 1024  # near pairs per pass (~20k candidate edges: the temporaries stay in L2)
IntArray = NDArray[np.intp]
FloatArray = NDArray[np.float64]


@dataclass
class _Row:
    """Where one compiled zone lives in the slabs."""

    key: bytes
    cell_off: int
    n_cells: int
    near_off: int
    n_near: int
    vert_off: int
    n_vert: int


@dataclass(frozen=True)
class _Spec:
    """A shape a supervisee needs compiled (a zone or a permit destination)."""

    key: bytes
    circle: Circle | None
    geometry: BaseGeometry
    band: float
    margin: float
    sign: int


@dataclass
class _Plan:
    """What `set_supervisees` will do for one supervisee."""

    idx: int
    zones: tuple[Zone, ...]
    permits: tuple[Permit, ...]
    specs: list[_Spec]
    old: dict[bytes, int]


@dataclass(frozen=True)
class CompiledPermit:
    """A permit as the evaluator uses it: window, destination row, slots it lifts."""

    from_ms: int
    to_ms: int
    dest_row: int  # -1: anywhere
    lifted_slots: tuple[int, ...]  # slots not in force during the window
    extended_slots: tuple[int, ...]  # inclusion slots whose area is extended by the destination


class ZoneIndex:
    """Compiled zones (and permits) of every supervisee, packed for vectorised evaluation."""

    def __init__(
        self,
        *,
        max_accuracy_m: float = 100.0,
        default_margin_m: float = 10.0,
        grid: GridOptions | None = None,
        tz: str = DEFAULT_TZ,
    ) -> None:
        self.max_accuracy_m = float(max_accuracy_m)
        self.default_margin_m = float(default_margin_m)
        self.grid = grid or GridOptions()
        self.tz = tz
        self.compiled = True  # False: the numpy references of the compiled kernels
        self._sidx: dict[str, int] = {}
        self._ids: list[str | None] = []
        self._free_s: list[int] = []
        self._zones: list[tuple[Zone, ...]] = []
        self._permits: list[tuple[CompiledPermit, ...]] = []
        self._slot_rows: list[list[int]] = []
        self._dest_rows: list[list[int]] = []
        # (max_slots, capacity): zone row per slot; row 0 is reserved for "no zone", a one-cell
        # grid whose value classifies as NO_ZONE, so every slot can be evaluated densely
        self.slots = np.zeros((1, 16), dtype=np.intp)
        self._slots_t: IntArray | None = None  # `slots` transposed, kept until slots change
        self.has_permit = np.zeros(16, dtype=bool)
        self._init_rows(64)
        self._pool_rows = np.zeros((64, 8))  # per row: frame, pieces (P_* columns)
        self._pool_box = np.full((0, 8), np.nan)  # pieces: box, first vertex, first edge, edges
        self._pool_grp = np.full((0, 8), np.nan)  # groups: box, first vertex, first piece, pieces
        self._pool_n = self._pool_g = self._pool_v = 0  # pieces, groups, vertices cached
        self._init_slabs()
        self._free_rows.remove(0)
        self._store_no_zone()
        self._masks: list[NDArray[np.bool_]] = []
        self._mask_ids: dict[tuple[tuple[Window, ...], str], int] = {}
        self.mask_tz: list[str] = []
        self.masks = np.zeros((0, 7 * 1440), dtype=bool)

    # ---- storage -------------------------------------------------------------------------
    def _store_no_zone(self) -> None:
        self.cells.append(np.array([NO_ZONE_CELL], dtype=np.uint16))
        self.p32[:, 0] = (0, 0, 0, 0, 0.5, 0.5, 1, 0)
        self.p64[0] = (0, 0, 1, 1, 1, 1)
        self.circle[0] = np.nan

    def _init_rows(self, cap: int) -> None:
        # columns of float32 parameters per row: lon0, lat0 (offsets from LON_REF, LAT_REF),
        # cells per degree x / y, largest fx / fy, nx2, and the cell offset (int32 bits)
        # stored row-major (one cache line per zone for the compiled lookup), seen column-wise
        self.p32_rows = np.zeros((cap, 8), dtype=np.float32)
        self.p32 = self.p32_rows.T
        self.p64 = np.zeros((cap, 6))  # lon0, lat0, cw, ch, nx2, ny2 (exact)
        self.cell_off = np.zeros(cap, dtype=np.int64)
        self.near_off = np.zeros(cap, dtype=np.int64)
        self.vert_off = np.zeros(cap, dtype=np.int64)
        self.pad_m = np.zeros(cap)  # band + safety: distances up to this are exact
        self.margin_m = np.zeros(cap)
        self.sign = np.ones(cap, dtype=np.int8)  # +1 inclusion, -1 exclusion (violating side)
        self.circle = np.full((cap, 3), np.nan)
        self.sched = np.full(cap, -1, dtype=np.intp)
        self._rows: list[_Row | None] = [None] * cap
        self._free_rows = list(range(cap - 1, -1, -1))

    def _row_arrays(self) -> tuple[NDArray, ...]:
        return (self.p32, self.p64, self.cell_off, self.near_off, self.vert_off, self.pad_m,
                self.margin_m, self.sign, self.circle, self.sched)  # fmt: skip

    def _grow_rows(self) -> None:
        cap = len(self._rows)
        old = self._row_arrays()
        rows = self._rows
        self._init_rows(2 * cap)
        for new, prev in zip(self._row_arrays(), old, strict=True):
            if new is self.p32:
                new[:, :cap] = prev
            else:
                new[:cap] = prev
        self._rows[:cap] = rows
        pool = np.zeros((2 * cap, self._pool_rows.shape[1]))
        pool[:cap] = self._pool_rows
        self._pool_rows = pool
        self._free_rows = list(range(2 * cap - 1, cap - 1, -1))

    def _init_slabs(self) -> None:
        self.cells = Slab(np.uint16, capacity=1 << 16)
        self.near_in = Slab(np.uint8)
        self.anchor_q = Slab(np.uint8)
        self.spans = Slab(np.int32, width=4)
        self.vertices = Slab(np.float64, width=2)

    def _slabs(self) -> tuple[Slab, ...]:
        return (self.cells, self.near_in, self.anchor_q, self.spans, self.vertices)

    def _store(self, g: CompiledGrid, key: bytes, sign: int, margin: float) -> int:
        if not self._free_rows:
            self._grow_rows()
        r = self._free_rows.pop()
        vert_off = self.vertices.append(g.vertices)
        # the zone's kind is folded into its cell values, so one lookup table turns a cell value
        # into a classification
        cell_off = self.cells.append(g.cells | np.uint16(0 if sign > 0 else EXCLUSION_BIT))
        near_off = self.near_in.append(g.near_in)
        self.anchor_q.append(g.anchor_q)
        self.spans.append(g.spans)
        self._rows[r] = _Row(
            key, cell_off, len(g.cells), near_off, len(g.near_in), vert_off, len(g.vertices)
        )
        self.p32[:, r] = (g.lon0 - LON_REF, g.lat0 - LAT_REF, 1 / g.cw, 1 / g.ch,
                          g.nx2 - 0.5, g.ny2 - 0.5, g.nx2, 0)  # fmt: skip
        self.p32.view(np.int32)[7, r] = cell_off
        self.p64[r] = (g.lon0, g.lat0, g.cw, g.ch, g.nx2, g.ny2)
        self.cell_off[r], self.near_off[r], self.vert_off[r] = cell_off, near_off, vert_off
        self.pad_m[r] = g.band_m + self.grid.safety_m
        self.margin_m[r], self.sign[r] = margin, sign
        c = g.circle
        self.circle[r] = (c.lon, c.lat, c.radius_m) if c is not None else (np.nan, np.nan, np.nan)
        return r

    def _release(self, r: int) -> None:
        row = self._rows[r]
        assert row is not None
        for slab, n in ((self.cells, row.n_cells), (self.near_in, row.n_near), (self.anchor_q, row.n_near),
                        (self.spans, row.n_near), (self.vertices, row.n_vert)):  # fmt: skip
            slab.release(n)
        self._rows[r] = None
        self._pool_rows[r, P_CACHED] = 0
        self.sched[r] = -1
        self._free_rows.append(r)

    # ---- supervisees -----------------------------------------------------------------------
    def index_of(self, supervisee_id: str) -> int:
        """The supervisee's index (KeyError if unknown)."""
        return self._sidx[supervisee_id]

    def has_index(self, index: int) -> bool:
        """Whether `index` currently belongs to a supervisee."""
        return 0 <= index < len(self._ids) and self._ids[index] is not None

    def id_of(self, index: int) -> str:
        """The supervisee id at `index`."""
        sid = self._ids[index]
        if sid is None:
            raise KeyError(index)
        return sid

    def ids_of(self, indices: list[int]) -> list[str]:
        """The supervisee ids at `indices` (all in use)."""
        ids = self._ids
        return [ids[i] for i in indices]  # type: ignore[misc]

    def __contains__(self, supervisee_id: object) -> bool:
        return supervisee_id in self._sidx

    @property
    def supervisee_ids(self) -> list[str]:
        """All supervisee ids in the index."""
        return list(self._sidx)

    @property
    def slots_by_supervisee(self) -> IntArray:
        """`slots` transposed, C-contiguous: (supervisee index, slot) -> zone row."""
        if self._slots_t is None or self._slots_t.shape[::-1] != self.slots.shape:
            self._slots_t = np.ascontiguousarray(self.slots.T)
        return self._slots_t

    @property
    def max_slots(self) -> int:
        """Most zones any supervisee has (columns of `slots`)."""
        return self.slots.shape[0]

    def zones_of(self, index: int) -> tuple[Zone, ...]:
        """The supervisee's zones in slot order."""
        return self._zones[index]

    def permits_of(self, index: int) -> tuple[CompiledPermit, ...]:
        """The supervisee's compiled permits."""
        return self._permits[index]

    def margin_of(self, zone: Zone) -> float:
        """The zone's margin (override or default), metres."""
        return self.default_margin_m if zone.margin_m is None else float(zone.margin_m)

    def set_supervisee(
        self, supervisee_id: str, zones: Sequence[Zone], permits: Sequence[Permit] = ()
    ) -> int:
        """Add or replace a supervisee's zones and permits; recompile only changed shapes.

        Returns the supervisee's index (stable while the supervisee stays in the index).
        """
        return self.set_supervisees([(supervisee_id, zones, permits)])[0]

    def set_supervisees(
        self, items: Sequence[tuple[str, Sequence[Zone], Sequence[Permit]]]
    ) -> list[int]:
        """`set_supervisee` for many at once: every shape to compile is compiled in one
        vectorised pass (much faster when loading a whole registry)."""
        plans = [self._plan(sid, zones, permits) for sid, zones, permits in items]
        todo = {spec.key: spec for plan in plans for spec in self._to_compile(plan)}
        compiled = self._compile(list(todo.values()))
        return [self._apply_plan(plan, compiled) for plan in plans]

    def _plan(self, supervisee_id: str, zones: Sequence[Zone], permits: Sequence[Permit]) -> _Plan:
        idx = self._sidx.get(supervisee_id)
        if idx is None:
            idx = self._new_supervisee(supervisee_id)
        old = {self._rows[r].key: r for r in self._slot_rows[idx] + self._dest_rows[idx]}  # type: ignore[union-attr]
        specs = [
            self._spec(z, z.geometry, self.margin_of(z), 1 if z.kind == "inclusion" else -1)
            for z in zones
        ]
        incl = [self.margin_of(z) for z in zones if z.kind == "inclusion"]
        margin = max(incl, default=self.default_margin_m)
        for p in permits:
            if p.destination is not None:
                specs.append(self._spec(None, p.destination, margin, 1))
        return _Plan(idx, tuple(zones), tuple(permits), specs, old)

    @staticmethod
    def _to_compile(plan: _Plan) -> list[_Spec]:
        """Specs without a row to reuse: new shapes, and repeats of a shape (two permits to the
        same destination) beyond the one old row each key has."""
        seen: dict[bytes, int] = {}
        out = []
        for spec in plan.specs:
            seen[spec.key] = seen.get(spec.key, 0) + 1
            if spec.key not in plan.old or seen[spec.key] > 1:
                out.append(spec)
        return out

    def _spec(self, zone: Zone | None, geometry: BaseGeometry, margin: float, sign: int) -> _Spec:
        band = self.max_accuracy_m + margin
        if zone is not None:
            key = zone.kind.encode() + zone.geometry_key(band)
        else:
            key = b"dest:" + shapely.to_wkb(geometry) + f":{band!r}".encode()
        return _Spec(key, zone.circle if zone is not None else None, geometry, band, margin, sign)

    def _compile(self, specs: list[_Spec]) -> dict[bytes, CompiledGrid]:
        polys = [s for s in specs if s.circle is None]
        grids = compile_polygons([s.geometry for s in polys], [s.band for s in polys], self.grid)
        out = {s.key: g for s, g in zip(polys, grids, strict=True)}
        for s in specs:
            if s.circle is not None:
                out[s.key] = compile_circle(s.circle, s.band, self.grid)
        return out

    def _apply_plan(self, plan: _Plan, compiled: dict[bytes, CompiledGrid]) -> int:
        rows = []
        for spec in plan.specs:
            r = plan.old.pop(spec.key, None)
            if r is None:
                r = self._store(compiled[spec.key], spec.key, spec.sign, spec.margin)
            self.margin_m[r] = spec.margin
            rows.append(r)
        for r in plan.old.values():
            self._release(r)
        idx, zones = plan.idx, plan.zones
        slot_rows, dest_iter = rows[: len(zones)], iter(rows[len(zones) :])
        perms = []
        for p in plan.permits:
            dest = next(dest_iter) if p.destination is not None else -1
            extended = (
                tuple(i for i, z in enumerate(zones) if z.kind == "inclusion") if dest >= 0 else ()
            )
            lifted = tuple(i for i, z in enumerate(zones) if p.lifts(z))
            perms.append(CompiledPermit(p.from_ms, p.to_ms, dest, lifted, extended))
        self._zones[idx] = zones
        self._slot_rows[idx], self._dest_rows[idx] = slot_rows, rows[len(zones) :]
        self._permits[idx] = tuple(perms)
        self.has_permit[idx] = bool(perms)
        self._set_slots(idx, slot_rows)
        for z, r in zip(zones, slot_rows, strict=True):
            self.sched[r] = self._mask_id(z.schedule, z.tz or self.tz) if z.schedule else -1
        self._maybe_compact()
        return idx

    def remove_supervisee(self, supervisee_id: str) -> None:
        """Drop a supervisee and free its rows."""
        idx = self._sidx.pop(supervisee_id)
        for r in self._slot_rows[idx] + self._dest_rows[idx]:
            self._release(r)
        self._ids[idx] = None
        self._zones[idx], self._permits[idx] = (), ()
        self._slot_rows[idx], self._dest_rows[idx] = [], []
        self.slots[:, idx] = 0
        self._slots_t = None
        self.has_permit[idx] = False
        self._free_s.append(idx)

    def _new_supervisee(self, supervisee_id: str) -> int:
        if self._free_s:
            idx = self._free_s.pop()
            self._ids[idx] = supervisee_id
        else:
            idx = len(self._ids)
            self._ids.append(supervisee_id)
            self._zones.append(())
            self._permits.append(())
            self._slot_rows.append([])
            self._dest_rows.append([])
            if idx >= self.slots.shape[1]:
                grow = self.slots.shape[1]
                self.slots = np.hstack([self.slots, np.zeros((self.max_slots, grow), np.intp)])
                self.has_permit = np.r_[self.has_permit, np.zeros(grow, bool)]
        self._sidx[supervisee_id] = idx
        return idx

    def _set_slots(self, idx: int, rows: list[int]) -> None:
        if len(rows) > self.max_slots:
            extra = np.zeros((len(rows) - self.max_slots, self.slots.shape[1]), np.intp)
            self.slots = np.vstack([self.slots, extra])
        self.slots[:, idx] = 0
        self.slots[: len(rows), idx] = rows
        self._slots_t = None

    def _mask_id(self, schedule: tuple[Window, ...], tz: str) -> int:
        key = (schedule, tz)
        if key not in self._mask_ids:
            self._mask_ids[key] = len(self._masks)
            self._masks.append(week_mask(schedule))
            self.mask_tz.append(tz)
            self.masks = np.vstack(self._masks)
        return self._mask_ids[key]

    def _maybe_compact(self) -> None:
        if any(slab.needs_compaction() for slab in self._slabs()):
            self.compact()

    def compact(self) -> None:
        """Copy live rows into fresh slabs (drops the garbage of replaced zones)."""
        cells, near_in, anchor_q, spans, vertices = (slab.data for slab in self._slabs())
        self._init_slabs()
        self.cells.append(cells[:1])  # row 0: no zone
        for r, row in enumerate(self._rows):
            if row is None:
                continue
            vert_off = self.vertices.append(vertices[row.vert_off : row.vert_off + row.n_vert])
            cell_off = self.cells.append(cells[row.cell_off : row.cell_off + row.n_cells])
            ns = slice(row.near_off, row.near_off + row.n_near)
            near_off = self.near_in.append(near_in[ns])
            self.anchor_q.append(anchor_q[ns])
            self.spans.append(spans[ns])
            self._rows[r] = _Row(
                row.key, cell_off, row.n_cells, near_off, row.n_near, vert_off, row.n_vert
            )
            self.cell_off[r], self.near_off[r], self.vert_off[r] = cell_off, near_off, vert_off
            self.p32.view(np.int32)[7, r] = cell_off

    # ---- queries -------------------------------------------------------------------------
    def locate(
        self, rows: IntArray, lon32: NDArray[np.float32], lat32: NDArray[np.float32]
    ) -> tuple[NDArray[np.uint16], NDArray[np.int64]]:
        """Cell value and global cell index of each (row, point); points as float32 offsets
        from (LON_REF, LAT_REF). Points off the grid land in its border (far outside)."""
        params = [np.take(col, rows) for col in self.p32]
        params[7] = np.take(self.p32.view(np.int32)[7], rows)  # type: ignore[call-overload]
        return self._cells_at(params, lon32, lat32)

    def locate_runs(
        self, run_rows: IntArray, run_len: NDArray[np.intp], lon32: NDArray[np.float32],
        lat32: NDArray[np.float32],
    ) -> tuple[NDArray[np.uint16], NDArray[np.int64]]:  # fmt: skip
        """`locate` for points grouped in runs sharing a row: parameters are repeated per run
        instead of gathered per point (several times cheaper)."""
        params = [np.repeat(np.take(col, run_rows), run_len) for col in self.p32]
        params[7] = np.repeat(np.take(self.p32.view(np.int32)[7], run_rows), run_len)
        return self._cells_at(params, lon32, lat32)

    def _cells_at(
        self, p: list[NDArray], lon32: NDArray[np.float32], lat32: NDArray[np.float32]
    ) -> tuple[NDArray[np.uint16], NDArray[np.int64]]:
        fx = lon32 - p[0]
        fx *= p[2]
        np.maximum(fx, 0, out=fx)
        np.minimum(fx, p[4], out=fx)
        fy = lat32 - p[1]
        fy *= p[3]
        np.maximum(fy, 0, out=fy)
        np.minimum(fy, p[5], out=fy)
        np.floor(fy, out=fy)
        fy *= p[6]
        fy += np.floor(fx, out=fx)
        flat = fy.astype(np.int64)
        flat += p[7]
        return np.take(self.cells.data, flat), flat

    def near_distance(
        self, rows: IntArray, flat: NDArray[np.int64], value: NDArray[np.uint16],
        lon: FloatArray, lat: FloatArray,
    ) -> tuple[FloatArray, NDArray[np.bool_]]:  # fmt: skip
        """Signed metres (positive outside) of points in near cells (cell values `value`), and
        whether exact (else the magnitude only exceeds the band and ±inf is returned)."""
        nid = np.take(self.near_off, rows) + (value & VALUE_MASK).astype(np.int64) - NEAR_BASE
        dist = np.empty(len(rows))
        exact = np.ones(len(rows), dtype=bool)
        is_circle = ~np.isnan(np.take(self.circle[:, 2], rows))
        if is_circle.any():
            c = np.take(self.circle, rows[is_circle], axis=0)
            dist[is_circle] = vincenty(lon[is_circle], lat[is_circle], c[:, 0], c[:, 1]) - c[:, 2]
        poly = np.flatnonzero(~is_circle)
        if len(poly):
            d, ex = self._near_polygon(rows[poly], flat[poly], nid[poly], lon[poly], lat[poly])
            dist[poly], exact[poly] = d, ex
        return dist, exact

    def _anchor(self, rows: IntArray, flat: NDArray[np.int64], nid: NDArray[np.int64]) -> tuple[
            FloatArray, FloatArray]:  # fmt: skip
        p = np.take(self.p64, rows, axis=0)
        iy, ix = np.divmod(flat - np.take(self.cell_off, rows), p[:, 4].astype(np.int64))
        ox, oy = anchor_offsets(np.take(self.anchor_q.data, nid))
        return p[:, 0] + (ix + 0.5 + ox) * p[:, 2], p[:, 1] + (iy + 0.5 + oy) * p[:, 3]

    def _near_polygon(
        self, rows: IntArray, flat: NDArray[np.int64], nid: NDArray[np.int64],
        lon: FloatArray, lat: FloatArray,
    ) -> tuple[FloatArray, NDArray[np.bool_]]:  # fmt: skip
        if self.compiled:
            return self._near_compiled(rows, flat, nid, lon, lat)
        dist = np.empty(len(rows))
        exact = np.empty(len(rows), dtype=bool)
        for s in range(0, len(rows), NEAR_CHUNK):
            c = slice(s, s + NEAR_CHUNK)
            dist[c], exact[c] = self._near_chunk(rows[c], flat[c], nid[c], lon[c], lat[c])
        return dist, exact

    def _near_compiled(
        self, rows: IntArray, flat: NDArray[np.int64], nid: NDArray[np.int64],
        lon: FloatArray, lat: FloatArray,
    ) -> tuple[FloatArray, NDArray[np.bool_]]:  # fmt: skip
        """`_near_chunk` with the per-edge work compiled (`kernels.near_edges`)."""
        kx, ky = metres_per_degree(lat)
        return kernels.near_pairs(rows, flat, nid, lon, lat, kx, ky / kx, self.p64, self.cell_off,
                                  self.anchor_q.data, LATTICE, self.spans.data,
                                  np.take(self.vert_off, rows), self.vertices.data,
                                  self.near_in.data, self.pad_m)  # fmt: skip

    def _near_chunk(
        self, rows: IntArray, flat: NDArray[np.int64], nid: NDArray[np.int64],
        lon: FloatArray, lat: FloatArray,
    ) -> tuple[FloatArray, NDArray[np.bool_]]:  # fmt: skip
        """Distances to the candidate edges of each pair's near cell and side by crossings.

        Work is per vertex of the candidate spans: each span [a, a + n) of edges is its n + 1
        vertices, edges are consecutive vertex pairs, and the pair straddling two spans is
        masked. Coordinates are metres east / north of the fix, the east axis measured in
        degrees of longitude (x) and the north axis scaled to the same unit (y * r).
        """
        vid, cnt, first, junction = self._span_vertices(rows, nid)
        v = np.take(self.vertices.data, vid, axis=0)
        kx, ky = metres_per_degree(lat)
        r = ky / kx  # north scale in degrees-of-longitude units
        x = v[:, 0] - np.repeat(lon, cnt)
        y = v[:, 1] - np.repeat(lat, cnt)
        y *= np.repeat(r, cnt)
        dx, dy, d2 = _edge_distances2(x, y)
        d2[junction] = np.inf
        dmin = np.sqrt(np.fmin.reduceat(np.append(d2, np.inf), first)) * kx
        inside = np.take(self.near_in.data, nid).astype(bool) ^ self._odd_crossings(
            rows, flat, nid, lon, lat, r, x, y, dx, dy, cnt, first, junction
        )
        ok = dmin <= np.take(self.pad_m, rows)
        mag = np.where(ok, dmin, np.inf)
        return np.where(inside, -mag, mag), ok

    def _span_vertices(
        self, rows: IntArray, nid: NDArray[np.int64]
    ) -> tuple[NDArray[np.int64], ...]:
        """Global vertex ids of each pair's candidate spans (a span of n edges is n + 1
        vertices), vertices per pair, each pair's first position, and the junction positions
        (last vertex of a span: its "edge" to the next vertex is not an edge)."""
        sp = np.take(self.spans.data, nid, axis=0).astype(np.int64)
        base = np.take(self.vert_off, rows)
        n1, n2 = sp[:, 1] + 1, np.where(sp[:, 3] > 0, sp[:, 3] + 1, 0)
        cnt = n1 + n2
        first = np.cumsum(cnt) - cnt
        j = np.arange(int(cnt.sum())) - np.repeat(first, cnt)
        vid = np.where(
            j < np.repeat(n1, cnt),
            np.repeat(base + sp[:, 0], cnt),
            np.repeat(base + sp[:, 2] - n1, cnt),
        )
        vid += j
        junction = np.concatenate([first + n1 - 1, first[n2 > 0] + cnt[n2 > 0] - 1])
        return vid, cnt, first, junction[junction < len(vid) - 1]

    def _odd_crossings(
        self, rows: IntArray, flat: NDArray[np.int64], nid: NDArray[np.int64], lon: FloatArray,
        lat: FloatArray, r: FloatArray, x: FloatArray, y: FloatArray, dx: FloatArray,
        dy: FloatArray, cnt: NDArray[np.int64], first: NDArray[np.int64], junction: NDArray[np.int64],
    ) -> NDArray[np.bool_]:  # fmt: skip
        """Parity of the edges crossed by the segment from each pair's anchor to its fix.

        An edge crosses when its ends lie on either side of the segment's line (half-open: a
        vertex on the line counts once) and the fix and the anchor on either side of the edge's
        line. NaN (ring separator) vertices compare False: their edges never cross.
        """
        anc_x, anc_y = self._anchor(rows, flat, nid)
        ux = np.repeat(anc_x - lon, cnt)
        uy = np.repeat((anc_y - lat) * r, cnt)
        side = ux * y - uy * x > 0
        across = side[1:] != side[:-1]
        across[junction] = False
        e = np.flatnonzero(across)
        if not len(e):
            return np.zeros(len(rows), dtype=bool)
        ex, ey, edx, edy, eux, euy = x[e], y[e], dx[e], dy[e], ux[e], uy[e]
        anchor_side = edx * (euy - ey) - edy * (eux - ex) > 0
        fix_side = edy * ex - edx * ey > 0
        hit = e[anchor_side != fix_side]
        owner = np.searchsorted(first, hit, side="right") - 1
        return (np.bincount(owner, minlength=len(rows)) & 1).astype(bool)

    def signed_distance(
        self, rows: IntArray, lon: FloatArray, lat: FloatArray, exact: bool = False
    ) -> tuple[FloatArray, NDArray[np.bool_]]:
        """Signed metres (positive outside) for arbitrary (row, point) pairs.

        With `exact=False`, points farther than the band get ±inf (side known, `exact` False).
        With `exact=True` those are measured too (slow: all edges of the zone, then Vincenty).
        """
        rows = np.asarray(rows, dtype=np.intp)
        lon, lat = np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)
        value, flat = self.locate(
            rows, (lon - LON_REF).astype(np.float32), (lat - LAT_REF).astype(np.float32)
        )
        v = value & VALUE_MASK
        dist = np.where(v == 0, -np.inf, np.inf)
        done = np.zeros(len(rows), dtype=bool)
        near = np.flatnonzero(v >= NEAR_BASE)
        if len(near):
            dist[near], done[near] = self.near_distance(
                rows[near], flat[near], value[near], lon[near], lat[near]
            )
        if exact and not done.all():
            todo = np.flatnonzero(~done)
            dist[todo] = np.sign(dist[todo]) * self.far_distances(rows[todo], lon[todo], lat[todo])
            done[todo] = True
        return dist, done

    def far_distances(self, rows: IntArray, lon: FloatArray, lat: FloatArray) -> FloatArray:
        """Metres from points to their zones' boundaries at any distance. Polygons: the nearest
        boundary point in the zone's metric frame (pieces cached per zone), Vincenty measures
        the geodesic to it (a slightly distorted frame moves the nearest point, so the
        distance, stationary there, only to second order); FAR_CHUNK points at a time."""
        out = np.empty(len(rows))
        c = np.take(self.circle, rows, axis=0)
        circ = ~np.isnan(c[:, 2])
        if circ.any():
            out[circ] = np.abs(vincenty(lon[circ], lat[circ], c[circ, 0], c[circ, 1]) - c[circ, 2])
        poly = np.flatnonzero(~circ)
        if len(poly) and self.compiled:
            out[poly] = self._nearest_geodesic(rows[poly], lon[poly], lat[poly])
        elif len(poly):
            for a in range(0, len(poly), FAR_CHUNK):
                p = poly[a : a + FAR_CHUNK]
                out[p] = self._nearest_geodesic(rows[p], lon[p], lat[p])
        return out

    def _frame_of(self, rows: IntArray) -> FloatArray:
        """Per row (`_pool_rows` columns): lon0, lat0, kx, ky of its metric frame (its bounding
        box's centre), cached flag, vertices, and its first group and groups in the pool."""
        u = np.unique(rows)
        missing = u[self._pool_rows[u, P_CACHED] == 0].tolist()
        need = sum(self._rows[r].n_vert for r in missing)  # type: ignore[union-attr]
        if missing and self._pool_v + need > FRAME_CACHE:
            self._pool_rows[:, P_CACHED] = 0  # restart the pool (between calls, never within one)
            self._pool_v = self._pool_n = self._pool_g = 0
            missing = u.tolist()
        for r in missing:
            self._add_frame(r)
        return self._pool_rows[rows]

    def _add_frame(self, r: int) -> None:
        """Cache the zone's frame, its pieces of FRAME_PIECE edges (box, first vertex, first
        edge, edges) and its groups of FRAME_GROUP pieces (box, first vertex, pieces)."""
        row = self._rows[r]
        assert row is not None
        v = self.vertices.data[row.vert_off : row.vert_off + row.n_vert]
        lon0 = float(np.nanmin(v[:, 0]) + np.nanmax(v[:, 0])) / 2
        lat0 = float(np.nanmin(v[:, 1]) + np.nanmax(v[:, 1])) / 2
        kx, ky = (float(k) for k in metres_per_degree(lat0))
        x, y = (v[:, 0] - lon0) * kx, (v[:, 1] - lat0) * ky
        start = np.arange(0, max(len(v) - 1, 1), FRAME_PIECE)
        pieces = _boxes(x, y, start, np.minimum(start + FRAME_PIECE + 1, len(v)))
        pieces[:, 6] = start  # a piece's last vertex starts the next
        pieces[:, 7] = np.maximum(np.minimum(FRAME_PIECE, len(v) - 1 - start), 0)
        n, g = self._pool_n, self._pool_g
        gstart = np.arange(0, len(start), FRAME_GROUP)
        groups = _group_boxes(pieces, gstart)
        groups[:, 6] = gstart + n
        groups[:, 7] = np.minimum(FRAME_GROUP, len(start) - gstart)
        self._pool_box = _put(self._pool_box, n, pieces)
        self._pool_grp = _put(self._pool_grp, g, groups)
        self._pool_rows[r] = (lon0, lat0, kx, ky, 1, row.n_vert, g, len(gstart))
        self._pool_n, self._pool_g = n + len(start), g + len(gstart)
        self._pool_v += row.n_vert

    def _nearest_geodesic(self, rows: IntArray, lon: FloatArray, lat: FloatArray) -> FloatArray:
        """`_nearest_geodesic_numpy` with the search for the nearest edge compiled
        (`kernels.nearest_edges`: the same bounds and candidates, one point at a time)."""
        if not self.compiled:
            return self._nearest_geodesic_numpy(rows, lon, lat)
        z = self._frame_of(rows)
        e = kernels.nearest_edges(z, lon, lat, self._pool_grp, self._pool_box,
                                  self.vertices.data, self.vert_off, rows)  # fmt: skip
        v = self.vertices.data
        kx, ky = z[:, 2], z[:, 3]
        x, y = (v[e, 0] - lon) * kx, (v[e, 1] - lat) * ky
        dx, dy = (v[e + 1, 0] - lon) * kx - x, (v[e + 1, 1] - lat) * ky - y
        return self._geodesic_to(x, y, dx, dy, z, lon, lat)

    def _nearest_geodesic_numpy(
        self, rows: IntArray, lon: FloatArray, lat: FloatArray
    ) -> FloatArray:
        """Per point: Vincenty metres to its zone's nearest boundary point found in the zone's
        metric frame (a slightly distorted frame moves that point, so the distance, stationary
        there, only to second order). Branch and bound, exact: groups of pieces whose box is
        farther than some group's first vertex are skipped, then pieces whose box is farther
        than some kept piece's first vertex; exact per (point, edge) of the pieces left."""
        z = self._frame_of(rows)
        px, py = (lon - z[:, 0]) * z[:, 2], (lat - z[:, 1]) * z[:, 3]
        n_g = z[:, 7].astype(np.intp)
        owner = np.repeat(np.arange(len(rows)), n_g)
        grp = _ranges(z[:, 6].astype(np.intp), n_g)
        g = self._pool_grp[grp]
        lower, upper = _box_bounds(g, px[owner], py[owner])
        bound = np.minimum.reduceat(upper, np.cumsum(n_g) - n_g)  # every zone has a group
        keep = np.flatnonzero(lower <= bound[owner])
        cnt = g[keep, 7].astype(np.intp)
        owner = np.repeat(owner[keep], cnt)  # ascending: every point keeps a group
        piece = _ranges(g[keep, 6].astype(np.intp), cnt)
        pc = self._pool_box[piece]
        lower, upper = _box_bounds(pc, px[owner], py[owner])
        firsts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
        bound = np.minimum(bound, np.minimum.reduceat(upper, firsts))
        keep = np.flatnonzero(lower <= bound[owner])
        owner = owner[keep]
        first = np.take(self.vert_off, rows)[owner] + pc[keep, 6].astype(np.intp)
        return self._nearest_on_pieces(first, pc[keep, 7].astype(np.intp), owner, z, lon, lat)

    def _nearest_on_pieces(
        self, first: IntArray, edges: IntArray, owner: IntArray, z: FloatArray, lon: FloatArray,
        lat: FloatArray,
    ) -> FloatArray:  # fmt: skip
        """Vincenty metres from each point to the nearest point of its candidate pieces (piece:
        `edges` edges from vertex `first`; `owner` ascending: the point's index, every point
        present), found in the frame's scales; the first edge wins a tie."""
        n = edges + 1  # vertices per piece: one gather of them, edges between neighbours
        who = np.repeat(owner, n)
        v = np.take(self.vertices.data, _ranges(first, n), axis=0)
        kx, ky = z[:, 2][who], z[:, 3][who]
        x = (v[:, 0] - lon[who]) * kx  # metres east of the point, in the frame's scale
        y = (v[:, 1] - lat[who]) * ky
        dx, dy, d2 = _edge_distances2(x, y)
        ends = np.cumsum(n) - 1  # a piece's last vertex: no edge to the next piece's first
        d2[ends[:-1]] = np.inf
        d2[~np.isfinite(d2)] = np.inf  # "edges" across a ring separator
        d2 = np.append(d2, np.inf)
        at = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
        starts = (ends - n + 1)[at]  # each point's first vertex
        low = np.minimum.reduceat(d2, starts)
        hit = np.flatnonzero(d2 <= low[who])
        best = hit[np.r_[True, who[hit][1:] != who[hit][:-1]]]  # one per point, in order
        return self._geodesic_to(x[best], y[best], dx[best], dy[best], z, lon, lat)

    @staticmethod
    def _geodesic_to(
        bx: FloatArray, by: FloatArray, bdx: FloatArray, bdy: FloatArray, z: FloatArray,
        lon: FloatArray, lat: FloatArray,
    ) -> FloatArray:  # fmt: skip
        """Vincenty metres from each point to the nearest point of its edge (start bx, by and
        vector bdx, bdy, in the frame's scales relative to the point)."""
        t = np.clip(-(bx * bdx + by * bdy) / np.maximum(bdx * bdx + bdy * bdy, 1e-300), 0.0, 1.0)
        nx = lon + (bx + t * bdx) / z[:, 2]
        ny = lat + (by + t * bdy) / z[:, 3]
        return vincenty(lon, lat, nx, ny)


def _boxes(
    x: FloatArray, y: FloatArray, start: NDArray[np.int64], end: NDArray[np.int64]
) -> FloatArray:
    """(n, 8): box (x0, y0, x1, y1) of vertices [start, end) and the first vertex (x, y);
    columns 6 and 7 are left for the caller."""
    size = (end - start).astype(np.intp)
    idx = _ranges(start.astype(np.intp), size)
    at = (np.cumsum(size) - size).astype(np.intp)
    out = np.full((len(start), 8), np.nan)
    for k, (col, fn) in enumerate(((x, np.fmin), (y, np.fmin), (x, np.fmax), (y, np.fmax))):
        out[:, k] = fn.reduceat(col[idx], at)
    out[:, 4], out[:, 5] = x[start], y[start]
    return out


def _group_boxes(pieces: FloatArray, start: NDArray[np.int64]) -> FloatArray:
    """(n, 8): box of pieces [start, next start) and the first piece's first vertex."""
    out = np.full((len(start), 8), np.nan)
    for k, fn in enumerate((np.fmin, np.fmin, np.fmax, np.fmax)):
        out[:, k] = fn.reduceat(pieces[:, k], start)
    out[:, 4:6] = pieces[start, 4:6]
    return out


def _put(pool: FloatArray, n: int, rows: FloatArray) -> FloatArray:
    """`pool` (grown if needed) with `rows` written at n."""
    if n + len(rows) > len(pool):
        grown = np.full((2 * (n + len(rows)), pool.shape[1]), np.nan)
        grown[:n] = pool[:n]
        pool = grown
    pool[n : n + len(rows)] = rows
    return pool


def _box_bounds(b: FloatArray, qx: FloatArray, qy: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Lower bound (distance to the box) and upper bound (distance to the first vertex, inf if
    not a number) from each point to the boundary part described by `b` (`_boxes` rows)."""
    lower = np.hypot(np.fmax(np.fmax(b[:, 0] - qx, qx - b[:, 2]), 0),
                     np.fmax(np.fmax(b[:, 1] - qy, qy - b[:, 3]), 0))  # fmt: skip
    upper = np.hypot(b[:, 4] - qx, b[:, 5] - qy)
    upper[~np.isfinite(upper)] = np.inf
    return lower, upper


def _edge_distances2(x: FloatArray, y: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Edge vectors (vertex i to i + 1) and the squared distance from the origin (the fix) to
    each edge, for vertices relative to the fix."""
    dx, dy = x[1:] - x[:-1], y[1:] - y[:-1]
    l2 = dx * dx + dy * dy
    l2 += 1e-300  # zero-length edges: t = 0, the vertex itself
    t = x[:-1] * dx
    t += y[:-1] * dy
    np.negative(t, out=t)
    t /= l2
    np.clip(t, 0.0, 1.0, out=t)
    px = x[:-1] + t * dx
    py = y[:-1] + t * dy
    d2 = px * px
    d2 += py * py
    return dx, dy, d2


def _pieces(ring: NDArray[np.int64], size: int) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """Vertex positions and piece ids cutting each ring (`ring`: ring id per vertex, rings
    contiguous) into runs of `size` edges; consecutive pieces share their joining vertex."""
    start = np.flatnonzero(np.r_[True, ring[1:] != ring[:-1]])
    length = np.diff(np.r_[start, len(ring)])
    edges = np.maximum(length - 1, 1)
    n_pieces = -(-edges // size)
    piece_ring = np.repeat(np.arange(len(start)), n_pieces)
    k = np.arange(len(piece_ring)) - np.repeat(np.cumsum(n_pieces) - n_pieces, n_pieces)
    a = start[piece_ring] + k * size
    b = np.minimum(a + size, start[piece_ring] + length[piece_ring] - 1)  # inclusive end
    count = b - a + 1
    piece = np.repeat(np.arange(len(a)), count)
    at = (
        np.repeat(a, count)
        + np.arange(int(count.sum()))
        - np.repeat(np.cumsum(count) - count, count)
    )
    return at, piece


def _ranges(starts: NDArray[np.intp], lengths: NDArray[np.intp]) -> NDArray[np.intp]:
    """Concatenation of arange(start, start + length) for each pair."""
    first = np.cumsum(lengths) - lengths
    return np.repeat(starts - first, lengths) + np.arange(int(lengths.sum()))
