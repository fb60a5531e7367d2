"""Vectorised evaluation: a batch of fixes against each supervisee's zones in force.

For every (fix, zone of its supervisee) the result holds the signed distance to the boundary in
metres (positive = outside the zone) and the classification of contract §2:

- VIOLATION: inclusion zone, outside by more than acc + margin; exclusion zone, inside by more;
- COMPLIANT: on the right side by more than acc + margin (the mirror rule: only such fixes end a
  condition);
- UNCERTAIN: within acc + margin of the boundary (changes nothing);
- IGNORED: acc > max_accuracy_m (or not a number).

The classification is geometric; `regime` says whether the zone was in force at the fix's own
local time (schedule) and whether a permit lifted or extended it. Distances are exact within the
decision band (max_accuracy_m + margin); beyond it they are ±inf (the side is known, the
magnitude only bounded) unless `exact=True` is asked, which measures them too (slow).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from geofence import kernels
from geofence.grid import FAR_IN, FAR_OUT, NEAR_BASE, NO_ZONE_CELL
from geofence.index import EXCLUSION_BIT, LAT_REF, LON_REF, VALUE_MASK, CompiledPermit, ZoneIndex
from geofence.schedule import minute_of_week

COMPLIANT, VIOLATION, UNCERTAIN, IGNORED, NO_ZONE = 0, 1, 2, 3, -1
IN_FORCE, RELAXED = 1, 2  # regime bits: zone in force; a permit lifts or extends it


def _tables() -> tuple[NDArray[np.int8], NDArray[np.float32]]:
    """Cell value (uint16, bit 15 = exclusion) -> classification / distance of a far cell;
    near cells map to UNCERTAIN / NaN until measured, the "no zone" cell to NO_ZONE / NaN."""
    cls = np.full(1 << 16, UNCERTAIN, dtype=np.int8)
    dist = np.full(1 << 16, np.nan, dtype=np.float32)
    for excl, (inside_cls, outside_cls) in (
        (0, (COMPLIANT, VIOLATION)),
        (EXCLUSION_BIT, (VIOLATION, COMPLIANT)),
    ):
        cls[excl | FAR_IN], cls[excl | FAR_OUT] = inside_cls, outside_cls
        dist[excl | FAR_IN], dist[excl | FAR_OUT] = -np.inf, np.inf
    cls[NO_ZONE_CELL] = NO_ZONE
    return cls, dist


_CLS, _DIST = _tables()
CHUNK = 1 << 16  # fixes per pass: keeps the working set in cache


@dataclass(frozen=True)
class Evaluation:
    """Per (slot, fix) results, slot-major: slot j is the j-th zone of the fix's supervisee
    (`ZoneIndex.zones_of`).

    dist_m: float32 signed metres, positive outside the zone, ±inf beyond the decision band
    (NaN where no zone); code: classification (NO_ZONE where the supervisee has no j-th zone);
    regime: IN_FORCE / RELAXED bits.
    """

    dist_m: NDArray[np.float32]  # (k, n)
    code: NDArray[np.int8]  # (k, n)
    regime: NDArray[np.uint8]  # (k, n)


def classify(
    dist_m: NDArray[np.floating], sign: NDArray[np.integer], acc: NDArray[np.floating],
    margin_m: NDArray[np.floating],
) -> NDArray[np.int8]:  # fmt: skip
    """Classification of signed distances (positive outside); `sign` +1 inclusion, -1 exclusion."""
    s = dist_m * sign  # positive on the violating side
    thr = acc + margin_m
    return np.where(s > thr, VIOLATION, np.where(s < -thr, COMPLIANT, UNCERTAIN)).astype(np.int8)


def is_grouped(sidx: NDArray[np.integer]) -> bool:
    """True when equal supervisee indices are adjacent (sorted input is)."""
    s = np.asarray(sidx)
    if len(s) < 2:
        return True
    run_values = s[np.r_[True, s[1:] != s[:-1]]]
    return bool(np.bincount(run_values).max() == 1)


def evaluate(
    index: ZoneIndex,
    sidx: NDArray[np.integer],
    ts: NDArray[np.int64],
    lon: NDArray[np.float64],
    lat: NDArray[np.float64],
    acc: NDArray[np.floating],
    *,
    exact: bool = False,
    grouped: bool | None = None,
    compiled: bool | None = None,
) -> Evaluation:
    """Evaluate a batch of fixes against their supervisees' zones in force at each fix's time.

    Fixes may come in any order. The cell lookup runs in a compiled loop (`geofence.kernels`);
    `compiled=False` (default: `index.compiled`) runs the numpy reference instead (bit for bit
    the same result), where adjacent fixes of a supervisee (`grouped`, checked if None) are
    faster.
    """
    sx: NDArray[np.intp] = np.asarray(sidx, dtype=np.intp)
    lon, lat = np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)
    acc, ts = np.asarray(acc), np.asarray(ts, dtype=np.int64)
    use = index.compiled if compiled is None else compiled
    return _evaluate(index, sx, ts, lon, lat, acc, exact, grouped, use)


def _evaluate(
    index: ZoneIndex,
    sidx: NDArray[np.intp],
    ts: NDArray[np.int64],
    lon: NDArray[np.float64],
    lat: NDArray[np.float64],
    acc: NDArray[np.floating],
    exact: bool,
    grouped: bool | None,
    compiled: bool = True,
) -> Evaluation:
    n, k = len(sidx), index.max_slots
    out = Evaluation(
        dist_m=np.empty((k, n), dtype=np.float32),
        code=np.empty((k, n), dtype=np.int8),
        regime=np.empty((k, n), dtype=np.uint8),
    )
    if compiled:
        near = kernels.far_codes(
            index.slots_by_supervisee, sidx, (lon - LON_REF).astype(np.float32),
            (lat - LAT_REF).astype(np.float32), index.p32_rows, index.p32_rows.view(np.int32),
            index.sign < 0, index.cells.data, _CLS, _DIST, out.code, out.dist_m,
        )  # fmt: skip
    else:
        near = _far_numpy(index, out, sidx, lon, lat, grouped)
    if len(near[0]):
        _measure_near(index, out, sidx, lon, lat, acc, *near)
    np.not_equal(out.code, NO_ZONE, out=out.regime, casting="unsafe")  # IN_FORCE where a zone
    _apply_schedules(index, out, sidx, ts)
    _apply_permits(index, out, sidx, ts, lon, lat, acc)
    if exact:
        _measure_far(index, out, sidx, lon, lat)
    ignored = ~(acc <= index.max_accuracy_m)  # NaN accuracy is ignored too
    if ignored.any():
        col = out.code[:, ignored]
        out.code[:, ignored] = np.where(col == NO_ZONE, NO_ZONE, IGNORED)
    return out


def _far_numpy(
    index: ZoneIndex, out: Evaluation, sidx: NDArray[np.intp], lon: NDArray[np.float64],
    lat: NDArray[np.float64], grouped: bool | None,
) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.int64], NDArray[np.uint16]]:  # fmt: skip
    """The reference of `kernels.far_codes`: cell lookup chunk by chunk, slot by slot."""
    runs = is_grouped(sidx) if grouped is None else grouped
    near: list[
        tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.int64], NDArray[np.uint16]]
    ] = []
    for s in range(0, len(sidx), CHUNK):
        c = slice(s, min(s + CHUNK, len(sidx)))
        _far_chunk(index, out, s, sidx[c], lon[c], lat[c], runs, near)
    if not near:
        z = np.zeros(0, dtype=np.intp)
        return z, z, z.astype(np.int64), z.astype(np.uint16)
    slot, fix, flat, value = (np.concatenate(x) for x in zip(*near, strict=True))
    order = np.lexsort((fix, slot))  # slot-major, as the kernel lists them
    return slot[order], fix[order], flat[order], value[order]


def _far_chunk(
    index: ZoneIndex, out: Evaluation, s: int, sidx: NDArray[np.intp], lon: NDArray[np.float64],
    lat: NDArray[np.float64], runs: bool, near: list,
) -> None:  # fmt: skip
    """Cell lookup for every slot of a chunk of fixes; near-cell pairs are appended to `near`
    (slot, fix, cell, value) and measured later in one batch."""
    m = len(sidx)
    lon32 = (lon - LON_REF).astype(np.float32)
    lat32 = (lat - LAT_REF).astype(np.float32)
    if runs:
        starts = np.flatnonzero(np.r_[True, sidx[1:] != sidx[:-1]])
        run_len = np.diff(np.r_[starts, m])
        run_sidx = sidx[starts]
    for j in range(index.max_slots):
        code, dist = out.code[j, s : s + m], out.dist_m[j, s : s + m]
        if runs:
            run_rows = np.take(index.slots[j], run_sidx)
            has = run_rows > 0
            if has.all():
                fix = None
                value, flat = index.locate_runs(run_rows, run_len, lon32, lat32)
            else:
                # sparse slot (few supervisees have that many zones): only their fixes
                fix = _ranges(starts[has], run_len[has])
                value, flat = index.locate_runs(run_rows[has], run_len[has], lon32[fix], lat32[fix])
        else:
            value, flat = index.locate(np.take(index.slots[j], sidx), lon32, lat32)
            fix = None
        if fix is None:
            np.take(_CLS, value, out=code)
            np.take(_DIST, value, out=dist)
        else:
            code.fill(NO_ZONE)
            dist.fill(np.nan)
            code[fix], dist[fix] = np.take(_CLS, value), np.take(_DIST, value)
        hit = np.flatnonzero((value & VALUE_MASK) >= NEAR_BASE)
        if len(hit):
            at = hit if fix is None else fix[hit]
            near.append((np.full(len(hit), j, np.intp), at + s, flat[hit], value[hit]))


def _ranges(starts: NDArray[np.intp], lengths: NDArray[np.intp]) -> NDArray[np.intp]:
    """Concatenation of arange(start, start + length) for each pair."""
    first = np.cumsum(lengths) - lengths
    return np.repeat(starts - first, lengths) + np.arange(int(lengths.sum()))


def _measure_near(
    index: ZoneIndex, out: Evaluation, sidx: NDArray[np.intp], lon: NDArray[np.float64],
    lat: NDArray[np.float64], acc: NDArray[np.floating], slot: NDArray[np.intp],
    fix: NDArray[np.intp], flat: NDArray[np.int64], value: NDArray[np.uint16],
) -> None:  # fmt: skip
    """Exact distances and classifications of all near-cell pairs of the batch at once."""
    rows = index.slots[slot, sidx[fix]]
    dist, _ = index.near_distance(rows, flat, value, lon[fix], lat[fix])
    out.dist_m[slot, fix] = dist
    out.code[slot, fix] = classify(
        dist, np.take(index.sign, rows), acc[fix], np.take(index.margin_m, rows)
    )


def _measure_far(
    index: ZoneIndex, out: Evaluation, sidx: NDArray[np.intp], lon: NDArray[np.float64],
    lat: NDArray[np.float64],
) -> None:  # fmt: skip
    slot, fix = np.nonzero(np.isinf(out.dist_m))
    if not len(fix):
        return
    rows = index.slots[slot, sidx[fix]]
    d, _ = index.signed_distance(rows, lon[fix], lat[fix], exact=True)
    out.dist_m[slot, fix] = d


def _apply_schedules(
    index: ZoneIndex, out: Evaluation, sidx: NDArray[np.intp], ts: NDArray[np.int64]
) -> None:
    """Clear IN_FORCE where a scheduled zone's window is not open at the fix's local time."""
    if not len(index.mask_tz):
        return
    for j in range(index.max_slots):
        sched = np.take(index.sched, np.take(index.slots[j], sidx))
        fix = np.flatnonzero(sched >= 0)
        if not len(fix):
            continue
        mask_id = sched[fix]
        tzs = np.array(index.mask_tz)[mask_id]
        mow = np.empty(len(fix), dtype=np.intp)
        for tz in np.unique(tzs):
            m = tzs == tz
            mow[m] = minute_of_week(ts[fix[m]], str(tz))
        closed = fix[~index.masks[mask_id, mow]]
        out.regime[j, closed] &= np.uint8(~IN_FORCE & 0xFF)


def _apply_permits(
    index: ZoneIndex, out: Evaluation, sidx: NDArray[np.intp], ts: NDArray[np.int64],
    lon: NDArray[np.float64], lat: NDArray[np.float64], acc: NDArray[np.floating],
) -> None:  # fmt: skip
    """Lift zones (anywhere, visit) and extend inclusion zones by destinations, per permit."""
    holders = np.flatnonzero(np.take(index.has_permit, sidx))
    if not len(holders):
        return
    order = holders[np.argsort(sidx[holders], kind="stable")]
    bounds = np.flatnonzero(np.r_[True, sidx[order][1:] != sidx[order][:-1], True])
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        fixes = order[a:b]
        for p in index.permits_of(int(sidx[fixes[0]])):
            inside = fixes[(ts[fixes] >= p.from_ms) & (ts[fixes] < p.to_ms)]
            if len(inside):
                _apply_permit(index, out, p, inside, sidx, lon, lat, acc)


def _apply_permit(
    index: ZoneIndex, out: Evaluation, p: CompiledPermit, fixes: NDArray[np.intp],
    sidx: NDArray[np.intp], lon: NDArray[np.float64], lat: NDArray[np.float64],
    acc: NDArray[np.floating],
) -> None:  # fmt: skip
    for j in p.lifted_slots:
        out.regime[j, fixes] = (out.regime[j, fixes] & ~np.uint8(IN_FORCE)) | RELAXED
    if p.dest_row < 0:
        return
    rows = np.full(len(fixes), p.dest_row, dtype=np.intp)
    dest, _ = index.signed_distance(rows, lon[fixes], lat[fixes])
    for j in p.extended_slots:
        d = np.minimum(out.dist_m[j, fixes], dest).astype(np.float32)  # union: outside both
        zrows = index.slots[j, sidx[fixes]]
        out.dist_m[j, fixes] = d
        out.code[j, fixes] = classify(
            d, np.take(index.sign, zrows), acc[fixes], np.take(index.margin_m, zrows)
        )
        out.regime[j, fixes] |= RELAXED
