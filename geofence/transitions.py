"""Decision state and the pure transition function `step(state, decisions) -> (state, transitions)`.

Rules (contract §1, §2, §3):
- a supervisee's fixes are decided in `ts` order whenever they arrive; only a fix not newer than
  the last *decided fix* (`State.decided_ms`, the late watermark) is late: it is stored elsewhere
  and decides nothing. The passage of time never moves the watermark;
- per zone, `confirm_fixes` consecutive definite violations open a condition and as many
  consecutive definitely compliant fixes end it; uncertain and ignored fixes change nothing;
- a zone's regime is whether it is in force (schedule, permits) and whether a permit lifts or
  extends it, plus a fingerprint of its shape. When the regime changes the run counters restart
  (the next fix is the first of a new run); a condition still open when its zone goes out of
  force ends;
- the passage of time is a *boundary entry* in the same ts-ordered sequence as the fixes: at
  each instant B where a window or permit of the supervisee starts or ends (or the sentence
  ends, or its zones changed) the last fix before B is re-decided at B for the zones whose regime
  changed, and only for those, so someone already out when the curfew starts is counted at B and
  nothing is counted twice. `State.clock_ms` is how far time has been applied: a boundary entry
  not after it changes nothing;
- an inclusion condition that opens while the person has stayed out since a permit lifting that
  zone ended is a `permit_overrun`;
- from the end of the sentence (`Decisions.end_ms`) no zone is in force: open conditions end
  with reason `sentence_ended`.

When boundaries were applied after the last decided fix (`clock_ms > decided_ms`: a tick ran
before the next fixes arrived), the state also keeps `base`, the zone states right after that
fix. Fixes that then arrive with a `ts` before the clock are not late: the fence re-decides them
from `base` (see `geofence.fence`), so a backlog is decided as a live service would have.

The state is small (tens of bytes per zone, twice that while a `base` is kept) and serialisable
(`to_bytes` / `from_bytes`), so it is persisted and a restart fires nothing twice.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field, fields, replace

import numpy as np
from numpy.typing import NDArray

from geofence.engine import COMPLIANT, IN_FORCE, RELAXED, VIOLATION

ALERT_TYPES = ("zone_exit", "zone_enter", "curfew", "permit_overrun")
UNKNOWN_REGIME = 0xFF  # a zone never decided yet
NEVER = -(2**63)


@dataclass(frozen=True)
class Transition:
    """A condition confirmed (`active`) or ended, with what caused it (for the alert and the
    officer). `distance_m` is positive on the violating side."""

    supervisee_id: str
    zone_id: str
    alert_type: str  # 'zone_exit' | 'zone_enter' | 'curfew' | 'permit_overrun'
    active: bool  # True: condition confirmed (open / update alert); False: condition ended
    ts_ms: int  # ts of the fix (or tick) that caused it
    lon: float | None
    lat: float | None
    distance_m: float | None  # signed, positive = on the violating side, metres
    acc_m: float | None
    margin_m: float
    count: int  # consecutive definite fixes that confirmed (or ended) it
    since_ms: int  # when the condition started (first definite fix of the run)
    escalate_after_s: int  # from zone override or sentence policy
    purpose: str  # zone purpose; 'protection' means critical at once
    kind: str = "inclusion"  # zone kind
    reason: str = "confirmed"  # 'confirmed' | 'compliant' | 'not_in_force' | 'zone_removed' |
    # 'sentence_ended' | 'revised' (a backlog behind an applied boundary changed the outcome)


_TRANSITION_FIELDS = tuple(f.name for f in fields(Transition))


def transitions_of(*columns: list) -> list[Transition]:
    """Transitions from columns of field values (in `Transition`'s field order), many at once.

    The same objects as `Transition(*row)` (equal, same hash and repr), built ~2x faster: a
    frozen dataclass's `__init__` sets each of its 16 fields through `object.__setattr__`; here
    the instance dict is filled in one update (nothing is validated in `__init__` either)."""
    new, names, out = object.__new__, _TRANSITION_FIELDS, []
    for row in zip(*columns, strict=True):
        t = new(Transition)
        t.__dict__.update(zip(names, row, strict=True))
        out.append(t)
    return out


@dataclass(frozen=True)
class ZoneMeta:
    """What `step` needs to know about one zone (resolved overrides and policy)."""

    zone_id: str
    kind: str
    purpose: str
    scheduled: bool
    margin_m: float
    confirm_fixes: int
    escalate_after_s: int
    fingerprint: int


@dataclass(frozen=True)
class ZoneState:
    """Per-zone counters. `regime` = IN_FORCE | RELAXED bits of the last decision."""

    fingerprint: int = 0
    regime: int = UNKNOWN_REGIME
    viol: int = 0  # consecutive definite violations
    ok: int = 0  # consecutive definitely compliant fixes (counted while a condition is open)
    run_since: int = 0  # ts of the first violation of the current run
    open: bool = False
    open_since: int = 0
    open_type: int = 0  # index into ALERT_TYPES of the open condition
    overrun: bool = False  # a permit on this zone ended and no compliant fix came since

    @property
    def quiet(self) -> bool:
        """Nothing in progress: no run, no open condition, no pending permit end."""
        return not (self.viol or self.open or self.overrun)


@dataclass(frozen=True)
class LastFix:
    """The last decided fix (re-decided by ticks)."""

    ts: int
    lon: float
    lat: float
    acc: float


ZoneStates = tuple[tuple[str, ZoneState], ...]
_ZONE = struct.Struct("<IBBHHqq")  # fingerprint, regime, flags, viol, ok, run_since, open_since
_LAST = struct.Struct("<qddf")
STATE_VERSION = 2


@dataclass(frozen=True)
class State:
    """Decision state of one supervisee (one device at a time).

    `decided_ms`: ts of the last decided fix, the late watermark (fixes at or before it are
    late). `clock_ms`: boundaries (window and permit edges, sentence end) at or before it have
    been applied. `base`: the zone states right after the last decided fix, kept while
    `clock_ms > decided_ms` (None otherwise, or unknown for a state read from version 1).
    """

    decided_ms: int = NEVER
    last: LastFix | None = None
    zones: ZoneStates = ()
    clock_ms: int = NEVER
    base: ZoneStates | None = None

    def zone(self, zone_id: str) -> ZoneState | None:
        """The state of one zone, if any."""
        return dict(self.zones).get(zone_id)

    @property
    def ahead(self) -> bool:
        """Time has been applied past the last decided fix (a later fix may be behind it)."""
        return self.clock_ms > self.decided_ms

    def to_bytes(self) -> bytes:
        """Compact binary form (version 2): 19 bytes + 28 for the last fix + ~27 per zone and
        its id, the zones twice while a `base` is kept."""
        if len(self.zones) > 255 or (self.base is not None and len(self.base) > 255):
            raise ValueError("geofence state: more than 255 zones")
        flags = (self.last is not None) | (self.base is not None) << 1
        parts = [struct.pack("<BBqq", STATE_VERSION, flags, self.decided_ms, self.clock_ms)]
        if self.last is not None:
            f = self.last
            parts.append(_LAST.pack(f.ts, f.lon, f.lat, f.acc))
        _pack_zones(parts, self.zones)
        if self.base is not None:
            _pack_zones(parts, self.base)
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, data: bytes) -> State:
        """Inverse of `to_bytes`; ValueError on an unknown version or truncated data.

        Version 1 (before the clock existed) kept one instant that ticks advanced to the wall
        clock: it becomes the clock, and the last fix's ts the watermark, so fixes that the
        old rule skipped as late are decided and no boundary is applied twice. Its `base` is
        unknown (None): fixes behind such a clock are re-decided from the current zone states.
        """
        try:
            if data and data[0] == 1:
                return _from_v1(data)
            if not data or data[0] != STATE_VERSION:
                raise ValueError("geofence state: unknown version")
            flags = data[1]
            decided, clock = struct.unpack_from("<qq", data, 2)
            pos, last = 18, None
            if flags & 1:
                last, pos = LastFix(*_LAST.unpack_from(data, pos)), pos + _LAST.size
            zones, pos = _unpack_zones(data, pos)
            base = None
            if flags & 2:
                base, pos = _unpack_zones(data, pos)
        except (struct.error, IndexError, UnicodeDecodeError) as exc:
            raise ValueError("geofence state: truncated or corrupt") from exc
        if pos != len(data):
            raise ValueError("geofence state: trailing bytes")
        return cls(decided, last, zones, clock, base)


def _pack_zones(parts: list[bytes], zones: ZoneStates) -> None:
    parts.append(bytes([len(zones)]))
    for zid, z in zones:
        key = zid.encode()
        flags = z.open | z.overrun << 1 | z.open_type << 2
        parts.append(bytes([len(key)]) + key)
        parts.append(_ZONE.pack(z.fingerprint, z.regime, flags, min(z.viol, 65535),
                                min(z.ok, 65535), z.run_since, z.open_since))  # fmt: skip


def _unpack_zones(data: bytes, pos: int) -> tuple[ZoneStates, int]:
    n, pos = data[pos], pos + 1
    zones = []
    for _ in range(n):
        klen = data[pos]
        if pos + 1 + klen > len(data):
            raise IndexError("zone id")
        zid = data[pos + 1 : pos + 1 + klen].decode()
        pos += 1 + klen
        fp, regime, flags, viol, ok, run_since, open_since = _ZONE.unpack_from(data, pos)
        pos += _ZONE.size
        zones.append((zid, ZoneState(fp, regime, viol, ok, run_since, bool(flags & 1),
                                     open_since, flags >> 2, bool(flags & 2))))  # fmt: skip
    return tuple(zones), pos


def _from_v1(data: bytes) -> State:
    """Version 1: version, has_last, n, decided (advanced by ticks), [last], zones."""
    has_last = data[1]
    n, decided = struct.unpack_from("<Bq", data, 2)
    pos, last = 11, None
    if has_last:
        last, pos = LastFix(*_LAST.unpack_from(data, pos)), pos + _LAST.size
    zones, pos = _unpack_zones(bytes([n]) + data[pos:], 0)
    watermark = last.ts if last is not None else NEVER
    return State(watermark, last, zones, max(decided, watermark), None)


NO_END = 2**63 - 1  # no end of sentence


@dataclass(frozen=True)
class Decisions:
    """Classified entries of one supervisee in ts order (slot j = zones[j]): fixes, and
    boundary entries (the last fix re-decided at a boundary instant: only zones whose regime
    changed act). A boundary entry sorts before a fix of the same ts."""

    supervisee_id: str
    zones: tuple[ZoneMeta, ...]
    ts: NDArray[np.int64]
    lon: NDArray[np.float64]
    lat: NDArray[np.float64]
    acc: NDArray[np.floating]
    code: NDArray[np.int8]  # (k, n)
    dist_m: NDArray[np.float32]  # (k, n), positive outside the zone
    regime: NDArray[np.uint8]  # (k, n)
    tick: bool = False  # every entry is a boundary entry
    boundary: NDArray[np.bool_] | None = None  # (n,) which entries are boundary entries
    end_ms: int = NO_END  # end of the sentence: zones leaving force then end 'sentence_ended'

    def boundaries(self) -> NDArray[np.bool_]:
        """Per entry: a boundary entry (True) or a fix (False)."""
        if self.tick:
            return np.ones(len(self.ts), dtype=bool)
        if self.boundary is None:
            return np.zeros(len(self.ts), dtype=bool)
        return self.boundary


@dataclass
class _Run:
    """Mutable working copy of the zone states during one step."""

    zones: dict[str, ZoneState] = field(default_factory=dict)
    out: list[Transition] = field(default_factory=list)


def is_quiet(state: State, d: Decisions) -> bool:
    """True when `d` can change nothing but the decided instant and the last fix: fixes only,
    no run or condition in progress, no violation in force, no regime change."""
    if d.tick or (d.boundary is not None and d.boundary.any()):
        return False
    zs = dict(state.zones)
    for j, meta in enumerate(d.zones):
        z = zs.get(meta.zone_id)
        reg = d.regime[j]
        if z is None or not z.quiet or z.fingerprint != meta.fingerprint:
            return False
        if np.any(reg != z.regime) or np.any((d.code[j] == VIOLATION) & (reg & IN_FORCE > 0)):
            return False
    return True


def step(state: State, d: Decisions) -> tuple[State, list[Transition]]:
    """Apply decisions to a state; return the new state and the transitions it caused.

    Fixes not after `state.decided_ms` and boundary entries not after `state.clock_ms` are
    skipped. Entries are taken in the given order (the caller sorts them by ts)."""
    bnd = d.boundaries()
    keep = np.where(bnd, d.ts > state.clock_ms, d.ts > state.decided_ms)
    idx = np.flatnonzero(keep)
    if not len(idx):
        return state, []
    fixes = idx[~bnd[idx]]
    if is_quiet(state, d):
        return _advance(state, d, fixes, idx, state.zones, state.zones), []
    run = _Run(dict(state.zones))
    cut = int(np.searchsorted(idx, fixes[-1], side="right")) if len(fixes) else 0
    for j, meta in enumerate(d.zones):
        _decide_zone(run, d, bnd, meta, j, idx[:cut])
    snapshot = dict(run.zones)
    for j, meta in enumerate(d.zones):
        _decide_zone(run, d, bnd, meta, j, idx[cut:])
    known = {m.zone_id for m in d.zones}
    zones = _known(run.zones, known)
    new = _advance(state, d, fixes, idx, zones, _known(snapshot, known) if len(fixes) else None)
    run.out.sort(key=lambda t: t.ts_ms)
    return new, run.out


def _known(zones: dict[str, ZoneState], known: set[str]) -> ZoneStates:
    return tuple((zid, z) for zid, z in sorted(zones.items()) if zid in known)


def _advance(
    state: State, d: Decisions, fixes: NDArray[np.intp], idx: NDArray[np.intp],
    zones: ZoneStates, at_fix: ZoneStates | None,
) -> State:  # fmt: skip
    """The watermark and last fix move to the last fix decided; the clock to the last entry.
    `at_fix`: the zone states right after the last fix (None: no fix among the entries)."""
    clock = max(state.clock_ms, int(d.ts[idx[-1]]))
    if len(fixes):
        i = int(fixes[-1])
        ts = int(d.ts[i])
        last = LastFix(ts, float(d.lon[i]), float(d.lat[i]), float(d.acc[i]))
        base = at_fix if clock > ts else None
        return State(ts, last, zones, max(clock, ts), base)
    base = state.base if state.ahead else state.zones
    return replace(state, zones=zones, clock_ms=clock, base=base)


def _decide_zone(
    run: _Run, d: Decisions, bnd: NDArray[np.bool_], meta: ZoneMeta, j: int,
    idx: NDArray[np.intp],
) -> None:  # fmt: skip
    """All entries of one zone, segment by segment of constant regime. A boundary entry acts
    only where the zone's regime changes at it; fixes always count (when in force)."""
    if not len(idx):
        return
    z = run.zones.get(meta.zone_id, ZoneState(meta.fingerprint))
    reg = d.regime[j, idx].astype(np.int64)
    prev = np.empty_like(reg)
    prev[0] = z.regime if z.fingerprint == meta.fingerprint else -1
    prev[1:] = reg[:-1]
    cuts = np.flatnonzero(reg != prev)
    bounds = np.concatenate(([0], cuts[cuts > 0], [len(idx)]))
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        regime = int(reg[a])
        seg = idx[a:b]
        changed = regime != prev[a]
        if changed:
            z = _new_regime(run, d, meta, z, regime, int(seg[0]))
        if regime & IN_FORCE:
            counted = seg[~bnd[seg]]
            if changed and bnd[seg[0]]:
                counted = np.concatenate((seg[:1], counted))
            if len(counted):
                z = _count(run, d, meta, z, j, counted)
    run.zones[meta.zone_id] = z


def _new_regime(
    run: _Run, d: Decisions, meta: ZoneMeta, z: ZoneState, regime: int, i: int
) -> ZoneState:
    """Restart the run; end an open condition whose zone left force; note a permit's end.

    A permit's end counts (a later exit is a ``permit_overrun``) only when it leaves the zone in
    force: a curfew whose window is closed when the permit ends asks nothing of the person then,
    and a later absence in its window is a plain curfew violation."""
    permit_ended = (
        meta.kind == "inclusion" and z.regime != UNKNOWN_REGIME
        and bool(z.regime & RELAXED) and not regime & RELAXED and bool(regime & IN_FORCE)
    )  # fmt: skip
    z = replace(z, fingerprint=meta.fingerprint, regime=regime, viol=0, ok=0,
                overrun=z.overrun or permit_ended)  # fmt: skip
    if z.open and not regime & IN_FORCE:
        reason = "sentence_ended" if int(d.ts[i]) >= d.end_ms else "not_in_force"
        run.out.append(_transition(d, meta, z, i, False, 0, z.open_since, reason, slot=None))
        z = replace(z, open=False)
    return z


def _count(
    run: _Run, d: Decisions, meta: ZoneMeta, z: ZoneState, j: int, idx: NDArray[np.intp]
) -> ZoneState:
    """Apply the fixes of one in-force segment, run by run of definite fixes (uncertain and
    ignored fixes are skipped: they change nothing)."""
    codes = d.code[j, idx]
    pos = idx[(codes == VIOLATION) | (codes == COMPLIANT)]
    if not len(pos):
        return z
    viol = d.code[j, pos] == VIOLATION
    change = np.ones(len(viol), dtype=bool)
    change[1:] = viol[1:] != viol[:-1]
    starts = np.flatnonzero(change)
    ends = np.append(starts[1:], len(pos))
    for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
        z = (
            _violations(run, d, meta, z, j, pos[a:b])
            if viol[a]
            else _compliant(run, d, meta, z, j, pos[a:b])
        )
    return z


def _violations(
    run: _Run, d: Decisions, meta: ZoneMeta, z: ZoneState, j: int, pos: NDArray[np.intp]
) -> ZoneState:
    """A run of definite violations: the condition opens at the confirm_fixes-th."""
    before = z.viol
    since = int(d.ts[pos[0]]) if before == 0 else z.run_since
    z = replace(z, viol=before + len(pos), ok=0, run_since=since)
    if not z.open and z.viol >= meta.confirm_fixes:
        k = max(meta.confirm_fixes - before, 1)  # the k-th violation of this run confirms
        z = replace(z, open=True, open_since=since, open_type=_alert_type(meta, z))
        run.out.append(
            _transition(d, meta, z, int(pos[k - 1]), True, before + k, since, "confirmed", slot=j)
        )
    return z


def _compliant(
    run: _Run, d: Decisions, meta: ZoneMeta, z: ZoneState, j: int, pos: NDArray[np.intp]
) -> ZoneState:
    """A run of definitely compliant fixes: an open condition ends at the confirm_fixes-th."""
    z = replace(z, viol=0, overrun=False)
    if not z.open:
        return z
    need = max(meta.confirm_fixes - z.ok, 1)  # ok may exceed a lowered confirm_fixes
    if len(pos) < need:
        return replace(z, ok=z.ok + len(pos))
    i = int(pos[need - 1])
    run.out.append(
        _transition(d, meta, z, i, False, meta.confirm_fixes, z.open_since, "compliant", slot=j)
    )
    return replace(z, open=False, ok=0)


def _alert_type(meta: ZoneMeta, z: ZoneState) -> int:
    if meta.kind == "exclusion":
        return ALERT_TYPES.index("zone_enter")
    if z.overrun:
        return ALERT_TYPES.index("permit_overrun")
    return ALERT_TYPES.index("curfew" if meta.scheduled else "zone_exit")


def _transition(
    d: Decisions, meta: ZoneMeta, z: ZoneState, i: int, active: bool, count: int, since: int,
    reason: str, slot: int | None,
) -> Transition:  # fmt: skip
    sign = 1.0 if meta.kind == "inclusion" else -1.0
    dist = None if slot is None else float(d.dist_m[slot, i]) * sign
    return Transition(
        supervisee_id=d.supervisee_id, zone_id=meta.zone_id, alert_type=ALERT_TYPES[z.open_type],
        active=active, ts_ms=int(d.ts[i]), lon=float(d.lon[i]), lat=float(d.lat[i]),
        distance_m=dist, acc_m=float(d.acc[i]), margin_m=meta.margin_m, count=count,
        since_ms=since, escalate_after_s=meta.escalate_after_s, purpose=meta.purpose,
        kind=meta.kind, reason=reason,
    )  # fmt: skip


def close_removed(state: State, supervisee_id: str, keep: set[str], ts_ms: int,
                  metas: dict[str, ZoneMeta]) -> tuple[State, list[Transition]]:  # fmt: skip
    """Drop the states of zones not in `keep`, ending their open conditions at `ts_ms`."""
    out = []
    for zid, z in state.zones:
        if zid not in keep and z.open:
            meta = metas.get(zid)
            out.append(Transition(
                supervisee_id=supervisee_id, zone_id=zid, alert_type=ALERT_TYPES[z.open_type],
                active=False, ts_ms=ts_ms, lon=None, lat=None, distance_m=None, acc_m=None,
                margin_m=meta.margin_m if meta else 0.0, count=0, since_ms=z.open_since,
                escalate_after_s=meta.escalate_after_s if meta else 0,
                purpose=meta.purpose if meta else "other", kind=meta.kind if meta else "inclusion",
                reason="zone_removed",
            ))  # fmt: skip
    zones = tuple((zid, z) for zid, z in state.zones if zid in keep)
    base = None if state.base is None else tuple((zid, z) for zid, z in state.base if zid in keep)
    return replace(state, zones=zones, base=base), out
