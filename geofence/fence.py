"""The geofence facade: compiled zones of every supervisee plus their decision states.

The pipeline calls `decide` with each batch of fixes and `tick` on a timer; it persists
`drain_changed()` (one statement per batch, see `geofence.store`). Time is always passed in.

Time between fixes (contract §1: decisions follow each device's fixes in `ts` order whenever
they arrive). A supervisee's *boundaries* are the instants at which one of its schedule windows
or permits starts or ends, and the end of its sentence. Deciding a batch, every boundary B between
the supervisee's last decided fix (or clock) and a fix of the batch is applied at B before that
fix: the last fix before B is re-decided at B for the zones whose regime changed (transitions at
`ts_ms` = B). `tick(now)` applies every boundary B <= now the same way, for supervisees whose last
fix is older. So deciding a backlog gives what a live service would have decided, and the same
fixes decided in one batch, in many, or between ticks give the same transitions.

Fixes behind the clock. A tick may apply a boundary B before fixes older than B have arrived
(a restart's first tick before the broker's backlog, a coverage-gap batch). Such a fix (newer
than the last decided fix, so not late) is decided by *re-deciding from the base*: the state
keeps the zone states right after the last decided fix (`State.base`); from there the fixes and
the boundaries since are decided again in ts order, exactly as if they had arrived in time. Of
the transitions this gives, those the ticks already emitted (same zone, type, active, ts, reason,
since) are not emitted again. Where the ticks told something the fixes now contradict (a condition
opened at B on the older last fix while a newer fix shows compliance), the told outcome is
corrected by one transition with reason 'revised' at the last fix's ts, so the alert matches the
state. Nothing told is taken back otherwise: the live service decided it with what it knew.

End of sentence. From the end of `Supervisee.sentence_end` (local midnight after it, in the
fence's tz) no zone applies: fixes at or after it decide nothing, and open conditions end at that
instant with reason 'sentence_ended'. When a supervisee's clock first crosses that instant (a
tick at or after it, or a fix at or after it) `decide` / `tick` return one marker
`Transition(alert_type='monitoring_ended', zone_id='', active=True, ts_ms=end)`; the crossing is
recorded in the persisted state (`clock_ms >= end`), so it is returned once across restarts when
the caller saves the state with the alert (see `Fence.ended_at`).

Speed. Decision states live in numpy columns (`geofence.table`); `State` objects are built on
access (`states`, `drain_changed`). Per batch, supervisees with nothing in progress advance in
bulk; those whose zones keep one regime through the batch run the vectorised counters
(`geofence.machine`); a boundary splits a supervisee's entries into segments (the boundary through
`step`, the fixes between boundaries vectorised); a zone change or a fix behind the clock goes
through `step`, the scalar reference (`Fence.vectorised = False` sends every busy supervisee
there; tests check both give the same transitions and states).
"""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from itertools import repeat
from typing import NamedTuple
from zoneinfo import ZoneInfo

import numpy as np
import shapely
from numpy.typing import ArrayLike, NDArray

from geofence import kernels
from geofence.engine import COMPLIANT, IN_FORCE, NO_ZONE, VIOLATION, Evaluation, evaluate
from geofence.grid import GridOptions
from geofence.index import ZoneIndex
from geofence.machine import Counters, advance
from geofence.policy import Permit, PolicyTable, Supervisee
from geofence.schedule import DEFAULT_TZ, changes_between, next_change_ms
from geofence.table import StateTable
from geofence.transitions import (
    ALERT_TYPES,
    NEVER,
    NO_END,
    UNKNOWN_REGIME,
    Decisions,
    LastFix,
    State,
    Transition,
    ZoneMeta,
    close_removed,
    step,
    transitions_of,
)
from geofence.zones import Zone

__all__ = ["MONITORING_ENDED", "Fence", "Permit", "Supervisee", "Transition"]
NO_BOUNDARY = np.iinfo(np.int64).max
MONITORING_ENDED = "monitoring_ended"


class Fired(NamedTuple):
    """Transitions of the confirmation counters as columns: the group's position among the
    batch's groups, the zone's slot, the fix (index into the batch), whether the condition
    opened, its count (`tally`), its since and its alert type (index into ALERT_TYPES)."""

    group: NDArray[np.intp]
    slot: NDArray[np.intp]
    fix: NDArray[np.intp]
    active: NDArray[np.bool_]
    tally: NDArray[np.int64]
    since: NDArray[np.int64]
    alert_type: NDArray[np.int64]


@dataclass(frozen=True)
class Entries:
    """One supervisee's fixes and boundary entries in decision order (boundary first at a tie)."""

    ts: NDArray[np.int64]
    lon: NDArray[np.float64]
    lat: NDArray[np.float64]
    acc: NDArray[np.float64]
    boundary: NDArray[np.bool_]


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
        self._permits: dict[str, tuple[Permit, ...]] = {}
        self._table = StateTable()  # decision states, as numpy columns
        # per supervisee index: end of the sentence, next boundary to apply, number of zones,
        # whether any zone has a schedule or any permit exists (boundaries other than the end)
        self._end = np.full(16, NO_END, dtype=np.int64)
        self._boundary = np.full(16, NO_BOUNDARY, dtype=np.int64)
        self._nzones = np.zeros(16, dtype=np.intp)
        self._timed = np.zeros(16, dtype=bool)
        # per (slot, index): the zone's rule, for the vectorised counters
        self._fp = np.zeros((1, 16), dtype=np.int64)
        self._confirm = np.ones((1, 16), dtype=np.int64)
        self._exclusion = np.zeros((1, 16), dtype=bool)
        self._scheduled = np.zeros((1, 16), dtype=bool)
        self._pending: set[int] = set()  # zones may have changed: re-decide at the next tick
        self.late = 0  # late fixes of the last `decide` call
        self._changed = np.zeros(16, dtype=bool)  # per index: state changed since the drain
        self.vectorised = True  # False: every busy supervisee through `step` (the reference)
        _warm_kernels()

    @property
    def compiled(self) -> bool:
        """Whether the compiled kernels run (`geofence.kernels`); False: their numpy references
        (the same decisions, slower)."""
        return self.index.compiled

    @compiled.setter
    def compiled(self, value: bool) -> None:
        self.index.compiled = value

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
        """Load the registry (and persisted states). The next `tick` applies the boundaries
        since each state's clock, and re-decides the last fix for zones that changed."""
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
        known = supervisee.id in self.index
        state = self._get(self.index.index_of(supervisee.id)) if known else State()
        keep = {z.id for z in zones}
        old = {m.zone_id: m for m in self._metas.get(self.index.index_of(supervisee.id), ())} \
            if supervisee.id in self.index else {}  # fmt: skip
        state, out = close_removed(state, supervisee.id, keep, now_ms, old)
        self._set(supervisee, list(zones), list(permits), state, now_ms)
        return out

    def remove_supervisee(self, supervisee_id: str, *, now_ms: int) -> list[Transition]:
        """Drop a supervisee; open conditions end now."""
        if supervisee_id not in self.index:
            return []
        idx = self.index.index_of(supervisee_id)
        metas = {m.zone_id: m for m in self._metas.pop(idx, ())}
        state = self._table.get(idx, tuple(metas))
        _, out = close_removed(state, supervisee_id, set(), now_ms, metas)
        self._table.clear(idx)
        self._changed[idx] = False
        self._nzones[idx], self._timed[idx] = 0, False
        self.index.remove_supervisee(supervisee_id)
        self._supervisees.pop(supervisee_id, None)
        self._permits.pop(supervisee_id, None)
        self._pending.discard(idx)
        self._boundary[idx] = NO_BOUNDARY
        self._end[idx] = NO_END
        return out

    def in_progress(self, supervisee_id: str) -> bool:
        """Whether a run, an open condition or a permit end is pending for the supervisee
        (the state is worth saving at once), without building its `State`."""
        idx = self.index.index_of(supervisee_id)
        t = self._table
        return bool(
            ((t.viol[:, idx] > 0) | t.open[:, idx] | t.overrun[:, idx])[t.present[:, idx]].any()
        )

    def ended_at(self, supervisee_id: str) -> int | None:
        """The instant (UTC ms) monitoring of the supervisee ends: local midnight after
        `sentence_end` in the fence's tz (None for an unknown supervisee)."""
        s = self._supervisees.get(supervisee_id)
        return None if s is None else _end_ms(s.sentence_end, self.tz)

    def _set(
        self, s: Supervisee, zones: list[Zone], permits: list[Permit], state: State | None,
        now_ms: int | None,
    ) -> None:  # fmt: skip
        idx = self.index.set_supervisee(s.id, zones, permits)
        self._grow(idx)
        self._supervisees[s.id] = s
        self._permits[s.id] = tuple(permits)
        metas = self._metas[idx] = tuple(self._meta(s, z, now_ms) for z in zones)
        self._end[idx] = _end_ms(s.sentence_end, self.tz)
        self._nzones[idx] = len(metas)
        self._timed[idx] = bool(permits) or any(m.scheduled for m in metas)
        self._fp[:, idx], self._confirm[:, idx] = 0, 1
        self._exclusion[:, idx] = self._scheduled[:, idx] = False
        for j, m in enumerate(metas):
            self._fp[j, idx], self._confirm[j, idx] = m.fingerprint, m.confirm_fixes
            self._exclusion[j, idx], self._scheduled[j, idx] = m.kind == "exclusion", m.scheduled
        self._store(idx, state or State())
        self._pending.add(idx)  # the next tick re-decides its last fix if zones changed

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
        k, cap = self.index.max_slots, len(self._end)
        while idx >= cap:
            cap *= 2
        self._table.grow(k, cap)
        if cap > len(self._end):
            n = cap - len(self._end)
            self._end = np.r_[self._end, np.full(n, NO_END)]
            self._boundary = np.r_[self._boundary, np.full(n, NO_BOUNDARY)]
            self._nzones = np.r_[self._nzones, np.zeros(n, np.intp)]
            self._timed = np.r_[self._timed, np.zeros(n, bool)]
            self._changed = np.r_[self._changed, np.zeros(n, bool)]
        for name, fill in (
            ("_fp", 0),
            ("_confirm", 1),
            ("_exclusion", False),
            ("_scheduled", False),
        ):
            old = getattr(self, name)
            if old.shape[0] < k or old.shape[1] < cap:
                new = np.full((max(k, old.shape[0]), max(cap, old.shape[1])), fill, dtype=old.dtype)
                new[: old.shape[0], : old.shape[1]] = old
                setattr(self, name, new)

    def _zone_ids(self, idx: int) -> tuple[str, ...]:
        return tuple(m.zone_id for m in self._metas.get(idx, ()))

    def _get(self, idx: int) -> State:
        """The decision state of supervisee index `idx`."""
        return self._table.get(idx, self._zone_ids(idx))

    def _store(self, idx: int, state: State, schedule: bool = True) -> None:
        """Keep a state (and, if `schedule`, find the supervisee's next boundary)."""
        self._table.put(idx, self._zone_ids(idx), state)
        self._changed[idx] = True
        if schedule:
            self._boundary[idx] = self._next_boundary(idx, state)

    def _stored_regime(self, group: NDArray[np.intp]) -> NDArray[np.uint8]:
        """(slots, groups): each zone's stored regime, UNKNOWN where none or its shape changed."""
        t = self._table
        k = self.index.max_slots
        same = t.present[:k, group] & (t.fp[:k, group] == self._fp[:k, group])
        return np.where(same, t.regime[:k, group], UNKNOWN_REGIME).astype(np.uint8)

    def _next_boundary(self, idx: int, state: State) -> int:
        """The first boundary after the state's watermark and clock: a window or permit edge
        (only once there is a last fix to re-decide) or the end of the sentence."""
        after = max(state.decided_ms, state.clock_ms)
        end = int(self._end[idx])
        if after >= end:
            return NO_BOUNDARY
        best = end
        if state.last is None:
            return best
        for j in range(len(self.index.zones_of(idx))):
            m = int(self.index.sched[self.index.slots[j, idx]])
            if m >= 0:
                nxt = next_change_ms(self.index.masks[m], after, self.index.mask_tz[m])
                best = min(best, nxt if nxt is not None else NO_BOUNDARY)
        for p in self.index.permits_of(idx):
            for edge in (p.from_ms, p.to_ms):
                if edge > after:
                    best = min(best, edge)
        return best

    def _edges(self, idx: int, after: int, until: int) -> NDArray[np.int64]:
        """Every boundary of the supervisee in (after, until], ascending."""
        end = int(self._end[idx])
        until = min(until, end)
        if until <= after:
            return np.zeros(0, dtype=np.int64)
        parts = [np.array([end], dtype=np.int64)] if after < end <= until else []
        for j in range(len(self.index.zones_of(idx))):
            m = int(self.index.sched[self.index.slots[j, idx]])
            if m >= 0:
                parts.append(
                    changes_between(self.index.masks[m], after, until, self.index.mask_tz[m])
                )
        for p in self.index.permits_of(idx):
            parts.append(
                np.array([e for e in (p.from_ms, p.to_ms) if after < e <= until], np.int64)
            )
        return np.unique(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)

    def _timeline(
        self, idx: int, state: State, fixes: Entries | None, after: int, until: int,
        extra_at: int | None = None,
    ) -> Entries:  # fmt: skip
        """The supervisee's fixes with a boundary entry (the last fix before it, at its
        instant) for each boundary in (after, until], plus one at `extra_at` if given."""
        f = fixes or _no_entries()
        lo = after if state.last is not None else max(after, int(f.ts[0]) if len(f.ts) else until)
        edges = self._edges(idx, lo, until)
        if extra_at is not None and extra_at > lo:
            edges = np.unique(np.r_[edges, np.int64(extra_at)])
        pos = np.searchsorted(f.ts, edges, side="left") - 1  # last fix before each edge
        if state.last is None:
            edges, pos = edges[pos >= 0], pos[pos >= 0]
        last = state.last or LastFix(0, np.nan, np.nan, np.nan)
        ts = np.r_[edges, f.ts]
        bnd = np.r_[np.ones(len(edges), bool), np.zeros(len(f.ts), bool)]
        order = np.lexsort((~bnd, ts))
        lon = np.r_[_prior(f.lon, pos, last.lon), f.lon][order]
        lat = np.r_[_prior(f.lat, pos, last.lat), f.lat][order]
        acc = np.r_[_prior(f.acc, pos, last.acc), f.acc][order]
        return Entries(ts[order], lon, lat, acc, bnd[order])

    # ---- decisions -----------------------------------------------------------------------
    @property
    def states(self) -> Mapping[str, State]:
        """Current decision state of every supervisee (read-only view, built on access)."""
        return _StatesView(self)

    def drain_changed(self) -> dict[str, bytes]:
        """Serialised states changed since the last call (to persist in one statement)."""
        out = {self.index.id_of(i): self._get(i).to_bytes()
               for i in np.flatnonzero(self._changed).tolist() if self.index.has_index(i)}  # fmt: skip
        self._changed[:] = False
        return out

    def decide(
        self, supervisees: Sequence[str] | ArrayLike, ts: ArrayLike, lon: ArrayLike,
        lat: ArrayLike, acc: ArrayLike,
    ) -> list[Transition]:  # fmt: skip
        """Decide a batch of fixes (any order; ids or indices). Late fixes, fixes at or after
        the end of the sentence and fixes of supervisees not in the fence decide nothing;
        `late` then says how many of the batch's fixes were late (contract §1)."""
        batch, self.late = _fresh(self._indices(supervisees), ts, lon, lat, acc,
                                  self._table.decided)
        if batch is None:
            return []
        s, t, x, y, a = batch
        beyond = t >= self._end[s]
        ended: list[int] = []
        if beyond.any():
            ended = np.unique(s[beyond & (self._table.clock[s] < self._end[s])]).tolist()
            s, t, x, y, a = s[~beyond], t[~beyond], x[~beyond], y[~beyond], a[~beyond]
        out = self._decide_sorted(s, t, x, y, a) if len(s) else []
        for g in ended:  # the end of the sentence was crossed: apply time up to it
            out += self._pass_time([g], {g: int(self._end[g])})
        return out

    def _decide_sorted(
        self, s: NDArray[np.intp], t: NDArray[np.int64], x: NDArray[np.float64],
        y: NDArray[np.float64], a: NDArray[np.float64],
    ) -> list[Transition]:  # fmt: skip
        starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
        ends = np.r_[starts[1:], len(s)]
        group = s[starts]
        clock, decided = self._table.clock[group], self._table.decided[group]
        behind = (clock > decided) & (t[starts] < clock)
        # boundaries up to the last fix; a first batch lists them from its first fix
        first = (decided == NEVER) & (self._timed[group] | (self._end[group] <= t[ends - 1]))
        need = ~behind & ((self._boundary[group] <= t[ends - 1]) | first)
        if not (behind.any() or need.any()):
            ev = evaluate(self.index, s, t, x, y, a, grouped=True)
            return self._apply(ev, s, t, x, y, a, None)
        out: list[Transition] = []
        for g in np.flatnonzero(behind):
            c = slice(starts[g], ends[g])
            out += self._redecide(int(group[g]), Entries(t[c], x[c], y[c], a[c], np.zeros(0, bool)))
        plain = np.repeat(~(behind | need), ends - starts)
        parts = [
            (s[plain], t[plain], x[plain], y[plain], a[plain], np.zeros(int(plain.sum()), bool))
        ]
        for g in np.flatnonzero(need):
            idx, c = int(group[g]), slice(starts[g], ends[g])
            st = self._get(idx)
            e = self._timeline(idx, st, Entries(t[c], x[c], y[c], a[c], np.zeros(0, bool)),
                               max(st.decided_ms, st.clock_ms), int(t[c][-1]))  # fmt: skip
            parts.append((np.full(len(e.ts), idx, np.intp), e.ts, e.lon, e.lat, e.acc, e.boundary))
        s, t, x, y, a, bnd = (np.concatenate(col) for col in zip(*parts, strict=True))
        if len(s):
            ev = evaluate(self.index, s, t, x, y, a, grouped=True)
            out += self._apply(ev, s, t, x, y, a, bnd)
        return out

    def tick(self, now_ms: int) -> list[Transition]:
        """Apply the passage of time up to `now_ms`: each boundary B <= now_ms since a
        supervisee's clock re-decides its last fix at B (zones whose regime changed only), the
        end of a sentence ends its conditions, and supervisees new, reloaded or changed re-decide
        their last fix now for zones that changed."""
        due = set(np.flatnonzero(self._boundary <= now_ms).tolist()) | self._pending
        pending, self._pending = self._pending, set()
        idx = [i for i in sorted(due) if self.index.has_index(i)]
        return self._pass_time(idx, dict.fromkeys(idx, now_ms), pending)

    def _pass_time(
        self, indices: Sequence[int], until: Mapping[int, int], changed: set[int] | None = None
    ) -> list[Transition]:
        """Boundary entries up to `until[i]` for each supervisee, decided in one batch."""
        out: list[Transition] = []
        parts = []
        for i in indices:
            st = self._get(i)
            now = until[i]
            if st.last is None:
                end = int(self._end[i])
                if st.clock_ms < end <= now:
                    out += self._commit(i, self.index.id_of(i), st, replace(st, clock_ms=end), [])
                continue
            extra = now if changed and i in changed and self._zones_changed(i, st) else None
            e = self._timeline(i, st, None, max(st.decided_ms, st.clock_ms), now, extra)
            if len(e.ts):
                parts.append((np.full(len(e.ts), i, np.intp), e.ts, e.lon, e.lat, e.acc))
        if not parts:
            return out
        s, t, x, y, a = (np.concatenate(col) for col in zip(*parts, strict=True))
        ev = evaluate(self.index, s, t, x, y, a, grouped=True)
        return out + self._apply(ev, s, t, x, y, a, np.ones(len(s), bool))

    def _zones_changed(self, idx: int, state: State) -> bool:
        zs = dict(state.zones)
        return any(
            (z := zs.get(m.zone_id)) is None or z.fingerprint != m.fingerprint
            for m in self._metas.get(idx, ())
        )

    def _indices(self, supervisees: Sequence[str] | ArrayLike) -> NDArray[np.intp]:
        arr = np.asarray(supervisees)
        if arr.dtype.kind in "iu":
            return arr.astype(np.intp)
        get = self.index._sidx.get  # one dict lookup per fix (~50 ns): map() saves the generator
        return np.fromiter(map(get, arr.tolist(), repeat(-1)), dtype=np.intp, count=len(arr))

    def _apply(
        self, ev: Evaluation, sidx: NDArray[np.intp], ts: NDArray[np.int64], lon: NDArray[np.float64],
        lat: NDArray[np.float64], acc: NDArray[np.float64], bnd: NDArray[np.bool_] | None,
    ) -> list[Transition]:  # fmt: skip
        """Entries grouped by supervisee (each group in decision order): quiet groups advance
        in bulk; groups whose zones keep their regime through the batch run the vectorised
        counters (`geofence.machine`); the others (a boundary, a regime or zone change) go
        through `step` one by one."""
        starts = np.flatnonzero(np.r_[True, sidx[1:] != sidx[:-1]])
        ends = np.r_[starts[1:], len(sidx)]
        group = sidx[starts]
        _end_of_sentence(ev, ts >= self._end[sidx])
        stored = self._stored_regime(group)
        flips = self._flips(ev, sidx, starts, stored)
        flags = _violations(ev) | flips
        if bnd is not None:
            flags |= bnd
        t = self._table
        k = ev.code.shape[0]
        held = (t.viol[:k, group] > 0) | t.open[:k, group] | t.overrun[:k, group]
        busy = (held & t.present[:k, group]).any(axis=0) | _groups_any(flags, starts)
        quiet = np.flatnonzero(~busy)
        self._advance_quiet(group[quiet], ends[quiet] - 1, ts, lon, lat, acc)
        steady = busy & self.vectorised & ~_groups_any(flips, starts, skip_first=True)
        timed = np.zeros(len(group), dtype=bool)
        if bnd is not None:
            timed = _groups_any(bnd, starts) & busy & self.vectorised
            steady &= ~timed
        steady &= self._fresh_or_same(ev, starts, group, stored)
        out: dict[int, list[Transition]] = {}
        if steady.any():
            out.update(
                self._counters(ev, sidx, ts, lon, lat, acc, starts, ends, np.flatnonzero(steady))
            )
        for g in np.flatnonzero(timed):
            out[int(g)] = self._segments(
                int(group[g]), starts[g], ends[g], ev, ts, lon, lat, acc, bnd
            )
        for g in np.flatnonzero(busy & ~steady & ~timed):
            c = slice(starts[g], ends[g])
            out[int(g)] = self._exact(self._step(int(group[g]), c, ev, ts, lon, lat, acc, bnd))
        return [tr for g in sorted(out) for tr in out[g]]

    def _flips(
        self, ev: Evaluation, sidx: NDArray[np.intp], starts: NDArray[np.intp],
        stored: NDArray[np.uint8],
    ) -> NDArray[np.bool_]:  # fmt: skip
        """Per fix: a zone's regime differs from the previous fix of the same supervisee (or
        from the stored regime for the first fix of each supervisee). Slots past a
        supervisee's last zone (NO_ZONE) never flip: their stored regime is "unknown"."""
        prev = np.empty_like(ev.regime)
        prev[:, 1:] = ev.regime[:, :-1]
        prev[:, starts] = stored
        return ((ev.regime != prev) & (ev.code != NO_ZONE)).any(axis=0)

    def _segments(
        self, g: int, a: int, b: int, ev: Evaluation, ts: NDArray[np.int64],
        lon: NDArray[np.float64], lat: NDArray[np.float64], acc: NDArray[np.float64],
        bnd: NDArray[np.bool_] | None,
    ) -> list[Transition]:  # fmt: skip
        """One supervisee's entries with boundaries among them, segment by segment: the
        boundary entries through `step`, the fixes up to the next boundary (one regime) through
        the vectorised counters when their zones allow it."""
        assert bnd is not None
        flags = bnd[a:b]
        cut = np.flatnonzero(flags & ~np.r_[False, flags[:-1]]) + a  # first of each boundary run
        fix_at = np.flatnonzero(~flags & np.r_[True, flags[:-1]]) + a  # first fix after a run
        marks = np.unique(np.r_[a, cut, fix_at, b])
        out: list[Transition] = []
        one = np.zeros(1, dtype=np.intp)
        sidx = np.full(b - a, g, dtype=np.intp)
        for s, e in zip(marks[:-1].tolist(), marks[1:].tolist(), strict=True):
            c = slice(s, e)
            if bnd[s]:
                d = self._decisions(g, c, ev, ts, lon, lat, acc, bnd)
                old = self._get(g)
                new, got = step(old, d)
                out += self._exact(
                    self._commit(g, self.index.id_of(g), old, new, got, schedule=False)
                )
                continue
            sub = Evaluation(ev.dist_m[:, c], ev.code[:, c], ev.regime[:, c])
            n = e - s
            group = np.array([g], dtype=np.intp)
            stored = self._stored_regime(group)
            if self._fresh_or_same(sub, one, group, stored)[0] and not (
                self._flips(sub, sidx[:n], one, stored)[1:].any()
            ):
                got_v = self._counters(sub, sidx[:n], ts[c], lon[c], lat[c], acc[c], one,
                                       np.array([n]), one)  # fmt: skip
                out += got_v.get(0, [])
            else:
                out += self._exact(self._step(g, c, ev, ts, lon, lat, acc, None))
        self._boundary[g] = self._next_boundary(g, self._get(g))
        slot = {m.zone_id: j for j, m in enumerate(self._metas[g])}
        late = len(slot)  # the end-of-monitoring marker (no zone) comes last, as from step()
        out.sort(key=lambda t: (t.zone_id == "", t.ts_ms, slot.get(t.zone_id, late)))
        return out

    def _fresh_or_same(
        self, ev: Evaluation, starts: NDArray[np.intp], group: NDArray[np.intp],
        stored: NDArray[np.uint8],
    ) -> NDArray[np.bool_]:  # fmt: skip
        """Per group: each zone either has no state yet or its stored regime (same shape) is
        the batch's first regime: the vectorised counters need no regime change."""
        t = self._table
        k = ev.code.shape[0]
        first = ev.regime[:, starts]
        ok = ~t.present[:k, group] | (stored == first) | (ev.code[:, starts] == NO_ZONE)
        return np.asarray(ok.all(axis=0))

    def _counters(
        self, ev: Evaluation, sidx: NDArray[np.intp], ts: NDArray[np.int64],
        lon: NDArray[np.float64], lat: NDArray[np.float64], acc: NDArray[np.float64],
        starts: NDArray[np.intp], ends: NDArray[np.intp], gs: NDArray[np.intp],
    ) -> dict[int, list[Transition]]:  # fmt: skip
        """The vectorised state machine for groups `gs` (positions among the batch's groups)
        whose zones keep one regime through the batch; writes their states in bulk."""
        t, k = self._table, ev.code.shape[0]
        idx = sidx[starts[gs]]
        regime = ev.regime[:, starts[gs]]  # (k, n_g): constant through each group
        has = np.arange(k)[:, None] < self._nzones[idx][None, :]
        cols = np.nonzero(has)
        at = (cols[0], idx[cols[1]])
        if self.compiled:
            fired = Fired(*kernels.counters(
                ev.code, ev.regime, ts, starts[gs], ends[gs], idx, self._nzones[idx], t.viol, t.ok,
                t.run_since, t.open, t.open_since, t.open_type, t.overrun, t.present,
                self._confirm, self._exclusion, self._scheduled,
            ))  # fmt: skip
        else:
            fired = self._advance_numpy(ev, sidx, ts, starts, ends, gs, idx, has, cols)
        t.present[at], t.fp[at], t.regime[at] = True, self._fp[:k, idx][cols], regime[cols]
        was_new = t.decided[idx] == NEVER
        self._advance_rows(idx, ends[gs] - 1, ts, lon, lat, acc)
        for i in idx[was_new & self._timed[idx]].tolist():
            self._boundary[i] = self._next_boundary(i, self._get(i))
        return self._events(ev, fired, gs, idx, ts, lon, lat, acc)

    def _advance_numpy(
        self, ev: Evaluation, sidx: NDArray[np.intp], ts: NDArray[np.int64],
        starts: NDArray[np.intp], ends: NDArray[np.intp], gs: NDArray[np.intp],
        idx: NDArray[np.intp], has: NDArray[np.bool_], cols: tuple[NDArray[np.intp], ...],
    ) -> Fired:  # fmt: skip
        """The reference of `kernels.counters`: `geofence.machine.advance` over all pairs."""
        t, k, n_g = self._table, ev.code.shape[0], len(gs)
        lens = ends[gs] - starts[gs]
        pos = np.full(len(sidx), -1, dtype=np.intp)
        pos[_ranges(starts[gs], lens)] = np.repeat(np.arange(n_g), lens)
        present = t.present[:k, idx] & has
        c0 = Counters(*(np.where(present, getattr(t, f)[:k, idx], 0).ravel() for f in
                        ("viol", "ok", "run_since", "open", "open_since", "open_type", "overrun")))  # fmt: skip
        definite = (pos >= 0) & ((ev.code == VIOLATION) | (ev.code == COMPLIANT))
        definite &= (ev.regime & IN_FORCE) > 0
        slot, fix = np.nonzero(definite)
        pair = slot * n_g + pos[fix]  # slot-major: sorted by pair, then by fix
        c, events = advance(c0, self._confirm[:k, idx].ravel(), self._exclusion[:k, idx].ravel(),
                            self._scheduled[:k, idx].ravel(), pair, ev.code[slot, fix] == VIOLATION,
                            ts[fix])  # fmt: skip
        at = (cols[0], idx[cols[1]])
        flat = cols[0] * n_g + cols[1]
        for f in ("viol", "ok", "run_since", "open", "open_since", "open_type", "overrun"):
            getattr(t, f)[at] = getattr(c, f)[flat]
        j_all, g_all = np.divmod(events.pair, n_g)
        return Fired(g_all, j_all, fix[events.fix], events.active, events.count, events.since,
                     events.alert_type)  # fmt: skip

    def _events(
        self, ev: Evaluation, fired: Fired, gs: NDArray[np.intp], idx: NDArray[np.intp],
        ts: NDArray[np.int64], lon: NDArray[np.float64], lat: NDArray[np.float64],
        acc: NDArray[np.float64],
    ) -> dict[int, list[Transition]]:  # fmt: skip
        """Transitions of the vectorised counters, per group in (ts, slot) order; distances
        beyond the decision band are measured (in one batch) before they are built."""
        out: dict[int, list[Transition]] = {}
        if not len(fired.group):
            return out
        j_all, g_all, i_all = fired.slot, fired.group, fired.fix
        order = np.lexsort((j_all, ts[i_all], g_all))
        j_all, g_all, i_all = j_all[order], g_all[order], i_all[order]
        sup = idx[g_all]
        dist = ev.dist_m[j_all, i_all].astype(np.float64)
        self._measure_far(dist, j_all, sup, lon[i_all], lat[i_all])
        act = fired.active[order]
        sign = np.take(self.index.sign, self.index.slots[j_all, sup])  # +1 inclusion
        dist = np.where(sign > 0, dist, -dist)  # positive on the violating side
        sup_l, j_l = sup.tolist(), j_all.tolist()
        metas = [self._metas[sp][j] for sp, j in zip(sup_l, j_l, strict=True)]
        with _collection_paused():
            made = transitions_of(
                self.index.ids_of(sup_l), [m.zone_id for m in metas],
                [ALERT_TYPES[a] for a in fired.alert_type[order].tolist()], act.tolist(),
                ts[i_all].tolist(), lon[i_all].tolist(), lat[i_all].tolist(), dist.tolist(),
                acc[i_all].tolist(), [m.margin_m for m in metas], fired.tally[order].tolist(),
                fired.since[order].tolist(), [m.escalate_after_s for m in metas],
                [m.purpose for m in metas], [m.kind for m in metas],
                np.where(act, "confirmed", "compliant").tolist(),
            )  # fmt: skip
        bounds = np.flatnonzero(np.r_[True, g_all[1:] != g_all[:-1], True]).tolist()
        for g, a, b in zip(gs[g_all[bounds[:-1]]].tolist(), bounds[:-1], bounds[1:], strict=True):
            out[g] = made[a:b]
        return out

    def _measure_far(
        self, dist: NDArray[np.float64], slot: NDArray[np.intp], sup: NDArray[np.intp],
        lon: NDArray[np.float64], lat: NDArray[np.float64],
    ) -> None:  # fmt: skip
        """Replace the ±inf distances (beyond the decision band) by the zone's exact metres.
        The kernel's side is the zone's own unless a permit's destination extended the zone
        (min of the two distances): those are located again."""
        far = np.flatnonzero(~np.isfinite(dist))
        if not len(far):
            return
        rows = self.index.slots[slot[far], sup[far]]
        known = ~self.index.has_permit[sup[far]]
        k, u = far[known], far[~known]
        dist[k] = np.sign(dist[k]) * self.index.far_distances(rows[known], lon[k], lat[k])
        if len(u):
            dist[u], _ = self.index.signed_distance(rows[~known], lon[u], lat[u], exact=True)

    def _advance_quiet(
        self, group: NDArray[np.intp], last: NDArray[np.intp], ts: NDArray[np.int64],
        lon: NDArray[np.float64], lat: NDArray[np.float64], acc: NDArray[np.float64],
    ) -> None:  # fmt: skip
        """Quiet groups (no boundary among them, none behind the clock): the watermark, the
        last fix and the clock move to the last fix."""
        self._advance_rows(group, last, ts, lon, lat, acc)  # zones: unchanged (no flip)

    def _advance_rows(
        self, group: NDArray[np.intp], last: NDArray[np.intp], ts: NDArray[np.int64],
        lon: NDArray[np.float64], lat: NDArray[np.float64], acc: NDArray[np.float64],
    ) -> None:  # fmt: skip
        t = self._table
        at = ts[last]
        t.decided[group], t.clock[group] = at, np.maximum(t.clock[group], at)
        t.has_last[group], t.last_ts[group] = True, at
        t.last_lon[group], t.last_lat[group], t.last_acc[group] = lon[last], lat[last], acc[last]
        if t.base:
            for i in group.tolist():
                t.base.pop(i, None)
        self._changed[group] = True

    def _decisions(
        self, g: int, c: slice, ev: Evaluation, ts: NDArray[np.int64], lon: NDArray[np.float64],
        lat: NDArray[np.float64], acc: NDArray[np.float64], bnd: NDArray[np.bool_] | None,
    ) -> Decisions:  # fmt: skip
        metas = self._metas[g]
        k = len(metas)
        return Decisions(self.index.id_of(g), metas, ts[c], lon[c], lat[c], acc[c],
                         ev.code[:k, c], ev.dist_m[:k, c], ev.regime[:k, c],
                         boundary=None if bnd is None else bnd[c], end_ms=int(self._end[g]))  # fmt: skip

    def _step(
        self, g: int, c: slice, ev: Evaluation, ts: NDArray[np.int64], lon: NDArray[np.float64],
        lat: NDArray[np.float64], acc: NDArray[np.float64], bnd: NDArray[np.bool_] | None,
    ) -> list[Transition]:  # fmt: skip
        d = self._decisions(g, c, ev, ts, lon, lat, acc, bnd)
        old = self._get(g)
        new, out = step(old, d)
        return self._commit(g, d.supervisee_id, old, new, out)

    def _commit(
        self, g: int, sid: str, old: State, new: State, out: list[Transition],
        schedule: bool = True,
    ) -> list[Transition]:  # fmt: skip
        """Store a new state; add the end-of-monitoring marker when its clock crossed it."""
        self._store(g, new, schedule)
        end = int(self._end[g])
        if old.clock_ms < end <= new.clock_ms:
            out = [*out, self._ended_marker(sid, new, end)]
        return out

    def _ended_marker(self, sid: str, state: State, end: int) -> Transition:
        f = state.last
        return Transition(
            supervisee_id=sid, zone_id="", alert_type=MONITORING_ENDED, active=True, ts_ms=end,
            lon=None if f is None else f.lon, lat=None if f is None else f.lat, distance_m=None,
            acc_m=None, margin_m=0.0, count=0, since_ms=end, escalate_after_s=0, purpose="",
            kind="", reason="sentence_ended",
        )  # fmt: skip

    # ---- fixes behind the clock ------------------------------------------------------------
    def _redecide(self, g: int, fixes: Entries) -> list[Transition]:
        """Fixes older than boundaries a tick already applied: decide again from the zone
        states right after the last decided fix (the base), fixes and boundaries in ts order;
        emit what the ticks did not already emit, and correct what they told otherwise."""
        sid = self.index.id_of(g)
        st = self._get(g)
        base = State(st.decided_ms, st.last, st.base if st.base is not None else st.zones,
                     st.decided_ms, None)  # fmt: skip
        _, told = self._run(g, base, self._timeline(g, base, None, st.decided_ms, st.clock_ms))
        until = max(int(fixes.ts[-1]), st.clock_ms)
        new, canon = self._run(g, base, self._timeline(g, base, fixes, st.decided_ms, until))
        fresh = _minus(canon, told)
        fresh += _revisions(sid, self._metas[g], st, new, fresh)
        return self._exact(self._commit(g, sid, st, new, fresh))

    def _run(self, g: int, state: State, e: Entries) -> tuple[State, list[Transition]]:
        """`step` over one supervisee's entries (no side effect on the fence)."""
        if not len(e.ts):
            return state, []
        s = np.full(len(e.ts), g, dtype=np.intp)
        ev = evaluate(self.index, s, e.ts, e.lon, e.lat, e.acc, grouped=True)
        _end_of_sentence(ev, e.ts >= self._end[g])
        return step(
            state, self._decisions(g, slice(None), ev, e.ts, e.lon, e.lat, e.acc, e.boundary)
        )

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


_warmed = False


def _warm_kernels() -> None:
    """Compile the kernels (or load them from numba's cache) once per process, by deciding a
    few fixes on a throwaway fence, so that the first batch a worker decides does not wait for
    them: ~6 s of CPU without a cache (the first run after a change of `geofence.kernels`),
    ~0.3 s with one."""
    global _warmed
    if _warmed:
        return
    _warmed = True
    lon, lat = 105.8, 21.0
    square = shapely.box(lon - 0.01, lat - 0.01, lon + 0.01, lat + 0.01)
    fence = Fence()
    fence.load([Supervisee("warm", "an_treo", date(2025, 1, 1), date(2027, 12, 31))],
               [Zone("warm", "home", "inclusion", "residence", square)])  # fmt: skip
    # inside, near the edge, then far outside twice (a confirmed exit, far metres)
    x = np.array([lon, lon + 0.0099, lon + 0.05, lon + 0.05])
    ts = 1_767_225_600_000 + np.arange(4, dtype=np.int64) * 30_000
    fence.decide(np.zeros(4, dtype=np.intp), ts, x, np.full(4, lat), np.full(4, 10.0))


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
) -> tuple[Batch | None, int]:  # fmt: skip
    """The fixes to decide, sorted by (supervisee, ts): known supervisees only, not late (after
    the latest decided instant), not a repeat of the previous fix's instant; and how many of
    the known supervisees' fixes were late."""
    t = np.asarray(ts, dtype=np.int64)
    x, y = np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)
    a = np.asarray(acc, dtype=np.float64)
    if len(sidx) and sidx.min() < 0:  # unknown supervisees: left out before sorting
        known = np.flatnonzero(sidx >= 0)
        sidx, t, x, y, a = sidx[known], t[known], x[known], y[known], a[known]
    order, sidx, t = _order(sidx, t)
    x, y, a = x[order], y[order], a[order]
    keep = t > decided[sidx]
    late = len(keep) - int(np.count_nonzero(keep))
    keep[1:] &= (sidx[1:] != sidx[:-1]) | (t[1:] != t[:-1])
    if keep.all():
        return (sidx, t, x, y, a), late
    if not keep.any():
        return None, late
    return (sidx[keep], t[keep], x[keep], y[keep], a[keep]), late


@contextmanager
def _collection_paused() -> Iterator[None]:
    """The cyclic garbage collector paused while many acyclic transitions are built that all
    survive the call: collections triggered by them would promote them and can start a full
    collection of the caller's whole heap (~0.25 s of a 1 M-fix batch with the benchmark's
    heap). A caller that paused it already keeps it paused."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _no_entries() -> Entries:
    return Entries(np.zeros(0, np.int64), np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0, bool))


def _prior(
    values: NDArray[np.float64], pos: NDArray[np.intp], before: float
) -> NDArray[np.float64]:
    """values[pos], or `before` where pos < 0 (the last fix before the batch)."""
    if not len(values):
        return np.full(len(pos), before)
    return np.where(pos >= 0, values[np.maximum(pos, 0)], before)


def _end_of_sentence(ev: Evaluation, past: NDArray[np.bool_]) -> None:
    """From the end of the sentence no zone is in force."""
    if past.any():
        ev.regime[:, past] = 0


def _end_ms(sentence_end: date, tz: str) -> int:
    """Local midnight after `sentence_end` (the end of that local date), UTC ms."""
    midnight = datetime.combine(sentence_end + timedelta(days=1), time(), ZoneInfo(tz))
    return int(midnight.astimezone(UTC).timestamp() * 1000)


def _key(t: Transition) -> tuple[str, str, bool, int, str, int]:
    return t.zone_id, t.alert_type, t.active, t.ts_ms, t.reason, t.since_ms


def _minus(canon: list[Transition], told: list[Transition]) -> list[Transition]:
    """The transitions of `canon` not already in `told` (as a multiset, by key)."""
    seen = Counter(_key(t) for t in told)
    out = []
    for t in canon:
        if seen[_key(t)]:
            seen[_key(t)] -= 1
        else:
            out.append(t)
    return out


def _revisions(
    sid: str, metas: tuple[ZoneMeta, ...], told: State, new: State, fresh: list[Transition]
) -> list[Transition]:
    """One 'revised' transition per zone whose condition, as told so far (the told state,
    then `fresh`), differs from the re-decided state."""
    now = {zid: z.open for zid, z in told.zones}
    for t in fresh:
        now[t.zone_id] = t.active
    f = new.last
    out = []
    for m in metas:
        z, was = new.zone(m.zone_id), now.get(m.zone_id, False)
        if z is None or z.open == was:
            continue
        prior = told.zone(m.zone_id)
        src = z if z.open or prior is None else prior
        out.append(Transition(
            supervisee_id=sid, zone_id=m.zone_id, alert_type=ALERT_TYPES[src.open_type],
            active=z.open, ts_ms=new.decided_ms, lon=None if f is None else f.lon,
            lat=None if f is None else f.lat, distance_m=None, acc_m=None if f is None else f.acc,
            margin_m=m.margin_m, count=0, since_ms=src.open_since,
            escalate_after_s=m.escalate_after_s, purpose=m.purpose, kind=m.kind, reason="revised",
        ))  # fmt: skip
    return out


def _violations(ev: Evaluation) -> NDArray[np.bool_]:
    return ((ev.code == VIOLATION) & ((ev.regime & IN_FORCE) > 0)).any(axis=0)


def _groups_any(
    flags: NDArray[np.bool_], starts: NDArray[np.intp], skip_first: bool = False
) -> NDArray[np.bool_]:
    """Per group: any flag among its entries (but its first, with `skip_first`)."""
    if skip_first:
        flags = flags.copy()
        flags[starts] = False
    return np.add.reduceat(flags.astype(np.int64), starts) > 0


def _ranges(starts: NDArray[np.intp], lengths: NDArray[np.intp]) -> NDArray[np.intp]:
    """Concatenation of arange(start, start + length) for each pair."""
    first = np.cumsum(lengths) - lengths
    return np.repeat(starts - first, lengths) + np.arange(int(lengths.sum()))


class _StatesView(Mapping[str, State]):
    """`Fence.states`: decision states by supervisee id, built from the table on access."""

    def __init__(self, fence: Fence) -> None:
        self._fence = fence

    def __getitem__(self, sid: str) -> State:
        return self._fence._get(self._fence.index.index_of(sid))

    def __iter__(self) -> Iterator[str]:
        return iter(self._fence.index.supervisee_ids)

    def __len__(self) -> int:
        return len(self._fence.index.supervisee_ids)


def _order(
    sidx: NDArray[np.intp], ts: NDArray[np.int64]
) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.int64]]:
    """Permutation sorting by (supervisee, ts), stable, and both columns in that order. When
    the index fits 16 bits: a radix sort on the supervisee if fixes already arrive in ts order
    per device (the common case: tried when the batch is mostly in ts order), else one plain
    sort of packed (supervisee, ts, position) keys when they fit 63 bits (unique keys, so the
    order is the stable one; a value sort is ~2x faster than an argsort), else an argsort of a
    packed (supervisee, ts) key (the stable sort only when two fixes share both)."""
    if not len(sidx):
        return np.arange(0, dtype=np.intp), sidx, ts
    if sidx.max() < 1 << 16:
        if np.count_nonzero(ts[1:] < ts[:-1]) * 4 < len(ts):  # near arrival order: try radix
            order = np.argsort(sidx.astype(np.uint16), kind="stable")
            s, t = sidx[order], ts[order]
            if not np.any((s[1:] == s[:-1]) & (t[1:] < t[:-1])):
                return order, s, t
        t0 = int(ts.min())
        bi, bt = (len(ts) - 1).bit_length(), (int(ts.max()) - t0).bit_length()
        bs = int(sidx.max()).bit_length()
        if bs + bt + bi <= 63:  # (supervisee, ts, arrival) packed: a plain sort of unique keys
            key = (sidx.astype(np.int64) << (bt + bi)) | ((ts - t0) << bi)
            key |= np.arange(len(ts))
            key.sort()
            order = key & ((1 << bi) - 1)
            return order, sidx[order], ts[order]
        if int(ts.max()) - t0 < 1 << 47:  # ~4,400 years of ms: the key fits 63 bits
            key = (sidx.astype(np.int64) << 47) | (ts - t0)
            order = np.argsort(key)
            k = key[order]
            if np.any(k[1:] == k[:-1]):  # repeats keep their arrival order
                order = np.argsort(key, kind="stable")
            return order, sidx[order], ts[order]
    order = np.lexsort((ts, sidx))
    return order, sidx[order], ts[order]


def _local_date(ms: int, tz: str) -> date:
    return datetime.fromtimestamp(ms / 1000, UTC).astimezone(ZoneInfo(tz)).date()
