"""The geofence facade: compiled zones of every supervisee plus their decision states.

The pipeline calls `decide` with each batch of fixes and `tick` on a timer; it persists
`drain_changed()` (one statement per batch, see `geofence.store`). Time is always passed in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime

import numpy as np
from numpy.typing import ArrayLike, NDArray

from geofence.engine import IN_FORCE, NO_ZONE, VIOLATION, Evaluation, evaluate
from geofence.grid import GridOptions
from geofence.index import ZoneIndex
from geofence.policy import Permit, PolicyTable, Supervisee
from geofence.schedule import DEFAULT_TZ, next_change_ms
from geofence.transitions import (
    UNKNOWN_REGIME,
    Decisions,
    LastFix,
    State,
    Transition,
    ZoneMeta,
    close_removed,
    step,
)
from geofence.zones import Zone

__all__ = ["Fence", "Permit", "Supervisee", "Transition"]
NO_BOUNDARY = np.iinfo(np.int64).max


class Fence:
    """Zones, permits and decision states of all supervisees; decides batches of fixes."""

    def __init__(
        self,
        *,
        policies: PolicyTable | None = None,
        margin_m: float = 10.0,
        confirm_fixes: int = 2,
        max_accuracy_m: float = 100.0,
        tz: str = DEFAULT_TZ,
        grid: GridOptions | None = None,
    ) -> None:
        self.index = ZoneIndex(
            max_accuracy_m=max_accuracy_m, default_margin_m=margin_m, grid=grid, tz=tz
        )
        self.policies = policies or PolicyTable.default()
        self.confirm_fixes = confirm_fixes
        self.tz = tz
        self._supervisees: dict[str, Supervisee] = {}
        self._metas: dict[int, tuple[ZoneMeta, ...]] = {}
        self._states: dict[str, State] = {}
        self._permits: dict[str, tuple[Permit, ...]] = {}
        self._decided = np.full(16, np.iinfo(np.int64).min, dtype=np.int64)  # mirror, per index
        self._busy = np.zeros(16, dtype=bool)  # state has a run, a condition or a permit end
        self._regime = np.full((1, 16), UNKNOWN_REGIME, dtype=np.uint8)  # mirror, per slot
        self._boundary = np.full(16, NO_BOUNDARY, dtype=np.int64)  # next window / permit edge
        self._pending: set[int] = set()  # re-decide the last fix at the next tick
        self._changed: set[str] = set()

    # ---- registry ------------------------------------------------------------------------
    def load(
        self,
        supervisees: Iterable[Supervisee],
        zones: Iterable[Zone],
        permits: Iterable[Permit] = (),
        states: Mapping[str, State | bytes] | None = None,
        *,
        now_ms: int | None = None,
    ) -> None:
        """Load the registry (and persisted states). Every supervisee with a last fix is
        re-decided at the next `tick` for zones whose regime changed (start-up rule)."""
        by_sup: dict[str, list[Zone]] = {}
        for z in zones:
            by_sup.setdefault(z.supervisee_id, []).append(z)
        perms: dict[str, list[Permit]] = {}
        for p in permits:
            perms.setdefault(p.supervisee_id, []).append(p)
        sups = list(supervisees)
        self.index.set_supervisees(
            [(s.id, by_sup.get(s.id, []), perms.get(s.id, [])) for s in sups]
        )
        for s in sups:
            st = (states or {}).get(s.id)
            state = State.from_bytes(st) if isinstance(st, bytes | bytearray | memoryview) else st
            self._set(s, by_sup.get(s.id, []), perms.get(s.id, []), state, now_ms)

    def replace_supervisee(
        self, supervisee: Supervisee, zones: Sequence[Zone], permits: Sequence[Permit] = (),
        *, now_ms: int,
    ) -> list[Transition]:  # fmt: skip
        """Replace one supervisee's zones and permits (only changed shapes are recompiled).

        Conditions of removed zones end now; new or changed zones are decided against the last
        fix at the next `tick`.
        """
        state = self._states.get(supervisee.id, State())
        keep = {z.id for z in zones}
        old = {m.zone_id: m for m in self._metas.get(self.index.index_of(supervisee.id), ())} \
            if supervisee.id in self.index else {}  # fmt: skip
        state, out = close_removed(state, supervisee.id, keep, now_ms, old)
        self._set(supervisee, list(zones), list(permits), state, now_ms)
        return out

    def remove_supervisee(self, supervisee_id: str, *, now_ms: int) -> list[Transition]:
        """Drop a supervisee (sentence ended); open conditions end now."""
        if supervisee_id not in self.index:
            return []
        idx = self.index.index_of(supervisee_id)
        metas = {m.zone_id: m for m in self._metas.pop(idx, ())}
        _, out = close_removed(
            self._states.pop(supervisee_id, State()), supervisee_id, set(), now_ms, metas
        )
        self.index.remove_supervisee(supervisee_id)
        self._supervisees.pop(supervisee_id, None)
        self._permits.pop(supervisee_id, None)
        self._pending.discard(idx)
        self._boundary[idx] = NO_BOUNDARY
        self._regime[:, idx] = UNKNOWN_REGIME
        return out

    def _set(
        self, s: Supervisee, zones: list[Zone], permits: list[Permit], state: State | None,
        now_ms: int | None,
    ) -> None:  # fmt: skip
        idx = self.index.set_supervisee(s.id, zones, permits)
        self._grow(idx)
        self._supervisees[s.id] = s
        self._permits[s.id] = tuple(permits)
        self._metas[idx] = tuple(self._meta(s, z, now_ms) for z in zones)
        state = state or State()
        self._store(idx, s.id, state)
        self._boundary[idx] = self._next_boundary(
            idx, state.decided_ms if now_ms is None else now_ms
        )
        self._pending.add(idx)  # the next tick re-decides its last fix and schedules its edges

    def _meta(self, s: Supervisee, z: Zone, now_ms: int | None) -> ZoneMeta:
        on = s.sentence_start if now_ms is None else _local_date(now_ms, self.tz)
        policy = self.policies.for_sentence(s.sentence_type, on)
        return ZoneMeta(
            zone_id=z.id, kind=z.kind, purpose=z.purpose, scheduled=z.scheduled,
            margin_m=self.index.margin_of(z),
            confirm_fixes=self.confirm_fixes if z.confirm_fixes is None else z.confirm_fixes,
            escalate_after_s=policy.escalate_after_s if z.escalate_after_s is None else z.escalate_after_s,
            fingerprint=z.fingerprint(),
        )  # fmt: skip

    def _grow(self, idx: int) -> None:
        k = self.index.max_slots
        if k > self._regime.shape[0]:
            extra = np.full(
                (k - self._regime.shape[0], self._regime.shape[1]), UNKNOWN_REGIME, np.uint8
            )
            self._regime = np.vstack([self._regime, extra])
        while idx >= len(self._decided):
            n = len(self._decided)
            self._decided = np.r_[self._decided, np.full(n, np.iinfo(np.int64).min)]
            self._busy = np.r_[self._busy, np.zeros(n, bool)]
            self._boundary = np.r_[self._boundary, np.full(n, NO_BOUNDARY)]
            self._regime = np.hstack(
                [self._regime, np.full((self._regime.shape[0], n), UNKNOWN_REGIME, np.uint8)]
            )

    def _store(self, idx: int, sid: str, state: State) -> None:
        """Keep a state and its numpy mirrors (decided instant, busy flag, regimes by slot)."""
        self._states[sid] = state
        self._changed.add(sid)
        self._decided[idx] = state.decided_ms
        zs = dict(state.zones)
        metas = self._metas.get(idx, ())
        self._busy[idx] = any(not z.quiet for z in zs.values())
        self._regime[:, idx] = UNKNOWN_REGIME
        for j, m in enumerate(metas):
            z = zs.get(m.zone_id)
            if z is not None and z.fingerprint == m.fingerprint:
                self._regime[j, idx] = z.regime

    def _next_boundary(self, idx: int, after_ms: int) -> int:
        """Next instant after `after_ms` at which a window or permit of the supervisee starts
        or ends (NO_BOUNDARY if none)."""
        if after_ms == np.iinfo(np.int64).min:
            return NO_BOUNDARY
        best = NO_BOUNDARY
        for j in range(len(self.index.zones_of(idx))):
            m = int(self.index.sched[self.index.slots[j, idx]])
            if m >= 0:
                nxt = next_change_ms(self.index.masks[m], after_ms, self.index.mask_tz[m])
                best = min(best, nxt if nxt is not None else NO_BOUNDARY)
        for p in self.index.permits_of(idx):
            for edge in (p.from_ms, p.to_ms):
                if edge > after_ms:
                    best = min(best, edge)
        return best

    # ---- decisions -----------------------------------------------------------------------
    @property
    def states(self) -> Mapping[str, State]:
        """Current decision state of every supervisee (read-only view)."""
        return self._states

    def drain_changed(self) -> dict[str, bytes]:
        """Serialised states changed since the last call (to persist in one statement)."""
        out = {sid: self._states[sid].to_bytes() for sid in self._changed if sid in self._states}
        self._changed.clear()
        return out

    def decide(
        self, supervisees: Sequence[str] | ArrayLike, ts: ArrayLike, lon: ArrayLike,
        lat: ArrayLike, acc: ArrayLike,
    ) -> list[Transition]:  # fmt: skip
        """Decide a batch of fixes (any order; ids or indices). Late fixes and fixes of
        supervisees not in the fence decide nothing."""
        batch = _fresh(self._indices(supervisees), ts, lon, lat, acc, self._decided)
        if batch is None:
            return []
        sidx, t, x, y, a = batch
        ev = evaluate(self.index, sidx, t, x, y, a, grouped=True)
        return self._apply(ev, sidx, t, x, y, a, tick=False)

    def tick(self, now_ms: int) -> list[Transition]:
        """Re-decide the last fix of supervisees whose windows or permits changed since, or
        that are new / reloaded / changed (zones whose regime changed only)."""
        due = set(np.flatnonzero(self._boundary <= now_ms).tolist()) | self._pending
        self._pending = set()
        idx = np.array(sorted(i for i in due if self.index.has_index(i)), dtype=np.intp)
        out: list[Transition] = []
        with_fix = [i for i in idx if self._states[self.index.id_of(int(i))].last is not None]
        for i in idx:
            self._boundary[i] = self._next_boundary(int(i), now_ms)
        if not with_fix:
            return out
        sidx = np.array(with_fix, dtype=np.intp)
        lasts = [self._states[self.index.id_of(int(i))].last for i in sidx]
        lon = np.array([f.lon for f in lasts if f is not None])
        lat = np.array([f.lat for f in lasts if f is not None])
        acc = np.array([f.acc for f in lasts if f is not None])
        ts = np.full(len(sidx), now_ms, dtype=np.int64)
        ev = evaluate(self.index, sidx, ts, lon, lat, acc, grouped=True)
        return self._apply(ev, sidx, ts, lon, lat, acc, tick=True)

    def _indices(self, supervisees: Sequence[str] | ArrayLike) -> NDArray[np.intp]:
        arr = np.asarray(supervisees)
        if arr.dtype.kind in "iu":
            return arr.astype(np.intp)
        get = self.index._sidx.get
        return np.fromiter((get(s, -1) for s in arr.tolist()), dtype=np.intp, count=len(arr))

    def _apply(
        self, ev: Evaluation, sidx: NDArray[np.intp], ts: NDArray[np.int64], lon: NDArray[np.float64],
        lat: NDArray[np.float64], acc: NDArray[np.float64], tick: bool,
    ) -> list[Transition]:  # fmt: skip
        starts = np.flatnonzero(np.r_[True, sidx[1:] != sidx[:-1]])
        ends = np.r_[starts[1:], len(sidx)]
        group = sidx[starts]
        busy = (
            tick
            | self._busy[group]
            | _groups_any(_violations(ev) | self._flips(ev, sidx, starts), starts)
        )
        quiet = np.flatnonzero(~busy)
        self._advance_quiet(group[quiet], ends[quiet] - 1, ts, lon, lat, acc)
        out: list[Transition] = []
        for g in np.flatnonzero(busy):
            out.extend(
                self._step(int(group[g]), slice(starts[g], ends[g]), ev, ts, lon, lat, acc, tick)
            )
        return self._exact(out)

    def _flips(
        self, ev: Evaluation, sidx: NDArray[np.intp], starts: NDArray[np.intp]
    ) -> NDArray[np.bool_]:
        """Per fix: a zone's regime differs from the previous fix of the same supervisee (or
        from the stored regime for the first fix of each supervisee). Slots past a
        supervisee's last zone (NO_ZONE) never flip: their stored regime is "unknown"."""
        prev = np.empty_like(ev.regime)
        prev[:, 1:] = ev.regime[:, :-1]
        prev[:, starts] = self._regime[: ev.regime.shape[0], sidx[starts]]
        return ((ev.regime != prev) & (ev.code != NO_ZONE)).any(axis=0)

    def _advance_quiet(
        self, group: NDArray[np.intp], last: NDArray[np.intp], ts: NDArray[np.int64],
        lon: NDArray[np.float64], lat: NDArray[np.float64], acc: NDArray[np.float64],
    ) -> None:  # fmt: skip
        self._decided[group] = ts[last]
        for g, i in zip(group.tolist(), last.tolist(), strict=True):
            sid = self.index.id_of(g)
            st = self._states[sid]
            self._states[sid] = replace(st, decided_ms=int(ts[i]),
                                        last=LastFix(int(ts[i]), float(lon[i]), float(lat[i]), float(acc[i])))  # fmt: skip
            self._changed.add(sid)

    def _step(
        self, g: int, c: slice, ev: Evaluation, ts: NDArray[np.int64], lon: NDArray[np.float64],
        lat: NDArray[np.float64], acc: NDArray[np.float64], tick: bool,
    ) -> list[Transition]:  # fmt: skip
        sid = self.index.id_of(g)
        metas = self._metas[g]
        k = len(metas)
        d = Decisions(sid, metas, ts[c], lon[c], lat[c], acc[c], ev.code[:k, c], ev.dist_m[:k, c],
                      ev.regime[:k, c], tick=tick)  # fmt: skip
        state, out = step(self._states[sid], d)
        self._store(g, sid, state)
        return out

    def _exact(self, out: list[Transition]) -> list[Transition]:
        """Measure, in one batch, the distance of transitions caused by fixes beyond the band."""
        far = [
            i
            for i, t in enumerate(out)
            if t.distance_m is not None and not np.isfinite(t.distance_m)
        ]
        if not far:
            return out
        rows, lon, lat = [], [], []
        for i in far:
            t = out[i]
            idx = self.index.index_of(t.supervisee_id)
            j = [m.zone_id for m in self._metas[idx]].index(t.zone_id)
            rows.append(self.index.slots[j, idx])
            lon.append(t.lon)
            lat.append(t.lat)
        d, _ = self.index.signed_distance(np.array(rows), np.array(lon), np.array(lat), exact=True)
        fixed = list(out)
        for i, dist in zip(far, d.tolist(), strict=True):
            t = out[i]
            fixed[i] = replace(t, distance_m=dist * (1 if t.kind == "inclusion" else -1))
        return fixed


Batch = tuple[
    NDArray[np.intp],
    NDArray[np.int64],
    NDArray[np.float64],
    NDArray[np.float64],
    NDArray[np.float64],
]


def _fresh(
    sidx: NDArray[np.intp], ts: ArrayLike, lon: ArrayLike, lat: ArrayLike, acc: ArrayLike,
    decided: NDArray[np.int64],
) -> Batch | None:  # fmt: skip
    """The fixes to decide, sorted by (supervisee, ts): known supervisees only, not late (after
    the latest decided instant), not a repeat of the previous fix's instant."""
    t = np.asarray(ts, dtype=np.int64)
    x, y = np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)
    a = np.asarray(acc, dtype=np.float64)
    known = np.flatnonzero(sidx >= 0)
    order = known[_order(sidx[known], t[known])]
    sidx, t, x, y, a = sidx[order], t[order], x[order], y[order], a[order]
    keep = (t > decided[sidx]) & np.r_[True, (sidx[1:] != sidx[:-1]) | (t[1:] != t[:-1])]
    if not keep.any():
        return None
    return sidx[keep], t[keep], x[keep], y[keep], a[keep]


def _violations(ev: Evaluation) -> NDArray[np.bool_]:
    return ((ev.code == VIOLATION) & ((ev.regime & IN_FORCE) > 0)).any(axis=0)


def _groups_any(flags: NDArray[np.bool_], starts: NDArray[np.intp]) -> NDArray[np.bool_]:
    return np.add.reduceat(flags.astype(np.int64), starts) > 0


def _order(sidx: NDArray[np.intp], ts: NDArray[np.int64]) -> NDArray[np.intp]:
    """Permutation sorting by (supervisee, ts), stable: a radix sort on the supervisee when the
    index fits 16 bits and fixes already arrive in ts order per device (the common case)."""
    if not len(sidx):
        return np.arange(0, dtype=np.intp)
    if sidx.max() < 1 << 16:
        order = np.argsort(sidx.astype(np.uint16), kind="stable")
        s, t = sidx[order], ts[order]
        same = s[1:] == s[:-1]
        if not np.any(same & (t[1:] < t[:-1])):
            return order
    return np.lexsort((ts, sidx))


def _local_date(ms: int, tz: str) -> date:
    from zoneinfo import ZoneInfo

    return datetime.fromtimestamp(ms / 1000, UTC).astimezone(ZoneInfo(tz)).date()
