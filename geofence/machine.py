"""The confirmation counters of `geofence.transitions.step`, vectorised over (supervisee, zone)
pairs whose regime stays the same through a batch (the common case: no window or permit edge,
no zone change). `step` stays the reference; tests check that both agree.

Input: per pair its counters before the batch and its rule (confirm_fixes, kind, schedule); the
batch's definite fixes (violation or compliant; uncertain and ignored ones change nothing) as
flat arrays sorted by (pair, ts). The fixes of a pair form runs of one kind. A violation run
opens a condition at its k-th fix, k = max(confirm - viol_before, 1), unless one is open; a
compliant run ends an open condition at its k-th fix, k = max(confirm - ok_before, 1). Whether a
condition is open before a run is decided by the last run long enough to open or end one (a
violation run opens, a compliant run ends), so every run is placed with cumulative maxima and
no loop over fixes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

EXIT, ENTER, CURFEW, OVERRUN = 0, 1, 2, 3  # indices into transitions.ALERT_TYPES

I64 = NDArray[np.int64]
Bool = NDArray[np.bool_]


@dataclass
class Counters:
    """Per pair: the `ZoneState` counters as arrays."""

    viol: I64
    ok: I64
    run_since: I64
    open: Bool
    open_since: I64
    open_type: I64
    overrun: Bool


@dataclass(frozen=True)
class Events:
    """Conditions opened (`active`) or ended: the pair, the fix (index into the flat input),
    the count and since of the transition and the alert type index."""

    pair: NDArray[np.intp]
    fix: NDArray[np.intp]
    active: Bool
    count: I64
    since: I64
    alert_type: I64


def advance(
    c0: Counters, confirm: I64, exclusion: Bool, scheduled: Bool, pair: NDArray[np.intp],
    violation: Bool, ts: I64,
) -> tuple[Counters, Events]:  # fmt: skip
    """Counters after the definite fixes (`pair`, `violation`, `ts`, sorted by pair then ts),
    and the transitions they cause. Pairs without fixes keep their counters."""
    if not len(pair):
        empty = np.zeros(0, dtype=np.int64)
        return c0, Events(empty.astype(np.intp), empty.astype(np.intp), empty.astype(bool),
                          empty, empty, empty)  # fmt: skip
    rs = np.flatnonzero(np.r_[True, (pair[1:] != pair[:-1]) | (violation[1:] != violation[:-1])])
    length = np.diff(np.r_[rs, len(pair)])
    rp, rv = pair[rs], violation[rs]
    first = np.r_[True, rp[1:] != rp[:-1]]
    r = np.arange(len(rs))
    head = np.maximum.accumulate(np.where(first, r, 0))  # first run of each run's pair
    conf = confirm[rp]
    v_before = np.where(first & rv, c0.viol[rp], 0)
    ok_before = np.where(first & ~rv, c0.ok[rp], 0)
    long = length + np.where(rv, v_before, ok_before) >= conf
    open_before = _last_before(long, rv, head, c0.open[rp])
    opens, ends = rv & long & ~open_before, ~rv & long & open_before
    v_since = np.where(first & rv & (c0.viol[rp] > 0), c0.run_since[rp], ts[rs])
    c_runs: I64 = np.cumsum(~rv) - ~rv  # compliant runs before each run (global)
    c_before: I64 = c_runs - c_runs[head]
    kind = np.where(scheduled[rp], CURFEW, EXIT)
    kind = np.where(exclusion[rp], ENTER, np.where(c0.overrun[rp] & (c_before == 0), OVERRUN, kind))
    cond_since = _last_before(opens, v_since, head, c0.open_since[rp], inclusive=True)
    cond_type = _last_before(opens, kind, head, c0.open_type[rp], inclusive=True)
    k_open, k_end = np.maximum(conf - v_before, 1), np.maximum(conf - ok_before, 1)
    o, e = np.flatnonzero(opens), np.flatnonzero(ends)
    events = Events(
        pair=np.r_[rp[o], rp[e]], fix=np.r_[rs[o] + k_open[o] - 1, rs[e] + k_end[e] - 1],
        active=np.r_[np.ones(len(o), bool), np.zeros(len(e), bool)],
        count=np.r_[v_before[o] + k_open[o], conf[e]], since=np.r_[v_since[o], cond_since[e]],
        alert_type=np.r_[kind[o], cond_type[e]],
    )  # fmt: skip
    last = np.r_[rp[1:] != rp[:-1], True]
    c = _final(c0, last, rp, rv, length, v_before, ok_before, long, open_before, v_since,
               c_before, cond_since, cond_type, head)  # fmt: skip
    return c, events


def _last_before(
    flag: Bool, value: NDArray, head: NDArray[np.intp], default: NDArray, inclusive: bool = False
) -> NDArray:
    """Per run: `value` of the last flagged run of the same pair before it (or at it, if
    `inclusive`), else the pair's `default`."""
    r = np.arange(len(flag))
    at = np.maximum.accumulate(np.where(flag, r, -1))
    if not inclusive:
        at = np.r_[-1, at[:-1]]
    return np.where(at >= head, value[np.maximum(at, 0)], default)


def _final(
    c0: Counters, last: Bool, rp: NDArray[np.intp], rv: Bool, length: I64, v_before: I64,
    ok_before: I64, long: Bool, open_before: Bool, v_since: I64, c_before: I64,
    cond_since: I64, cond_type: I64, head: NDArray[np.intp],
) -> Counters:  # fmt: skip
    """Counters after each pair's last run (the pairs with runs; others unchanged)."""
    R = np.flatnonzero(last)  # noqa: N806
    p, v = rp[R], rv[R]
    c = Counters(c0.viol.copy(), c0.ok.copy(), c0.run_since.copy(), c0.open.copy(),
                 c0.open_since.copy(), c0.open_type.copy(), c0.overrun.copy())  # fmt: skip
    c.viol[p] = np.where(v, v_before[R] + length[R], 0)
    ok_c = np.where(open_before[R], np.where(long[R], 0, ok_before[R] + length[R]), ok_before[R])
    c.ok[p] = np.where(v, 0, ok_c)
    c.run_since[p] = _last_before(rv, v_since, head, c0.run_since[rp], inclusive=True)[R]
    c.open[p] = np.where(long[R], v, open_before[R])
    c.open_since[p], c.open_type[p] = cond_since[R], cond_type[R]
    c.overrun[p] = c0.overrun[p] & (c_before[R] + ~v == 0)
    return c
