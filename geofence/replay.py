"""Replay: re-decide one supervisee's period with the same engine as live decisions (pure).

A fresh `Fence` is loaded with the supervisee's zones and permits (as they were, or a proposed
set), and an initial state (none: the start of monitoring; or a persisted one, e.g. the state
before the period). The stored fixes are decided in ts order, in chunks, with the boundaries
(window and permit edges, the end of the sentence) applied between fixes at their own instants,
so the transitions equal those of the live fence that decided the same fixes with timely ticks
(see `geofence.fence`: only ticks that ran ahead of fixes still in transit can have told more).

    out = replay(supervisee, zones, permits, ts, lon, lat, acc, until_ms=period_end)
    out.transitions  # what the zone rules decided, in ts order
    out.state        # the decision state at the end (e.g. to chain periods)

With a start state whose zones differ from `zones` (a what-if from the middle of a sentence),
the last fix of that state is re-decided against the changed zones at the start, as the live
fence does when an officer changes them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from geofence.fence import Fence
from geofence.policy import Permit, Supervisee
from geofence.transitions import State, Transition
from geofence.zones import Zone

CHUNK = 100_000  # fixes per decide call: bounded memory for a year of one fix a minute


@dataclass(frozen=True)
class Replayed:
    """The outcome of a replay: the transitions in ts order and the final decision state."""

    transitions: list[Transition]
    state: State


def replay(
    supervisee: Supervisee,
    zones: Sequence[Zone],
    permits: Sequence[Permit],
    ts: ArrayLike,
    lon: ArrayLike,
    lat: ArrayLike,
    acc: ArrayLike,
    *,
    start_state: State | bytes | None = None,
    until_ms: int | None = None,
    chunk: int = CHUNK,
    make_fence: Callable[[], Fence] = Fence,
    policy_on_ms: int | None = None,
) -> Replayed:
    """Decide the supervisee's fixes (any order) from `start_state`, then apply time up to
    `until_ms` (boundaries after the last fix, e.g. a curfew or permit ending, the end of the
    sentence). Fixes not after the start state's last decided fix are late and decide nothing.
    `make_fence` builds an empty fence with the live options (settings: margin, confirm_fixes,
    accuracy, tz, policies). `policy_on_ms`: the instant whose policy version applies (default:
    the sentence start)."""
    fence = make_fence()
    states = {supervisee.id: start_state} if start_state is not None else None
    fence.load([supervisee], zones, permits, states, now_ms=policy_on_ms)
    t = np.asarray(ts, dtype=np.int64)
    order = np.argsort(t, kind="stable")
    t = t[order]
    x, y = np.asarray(lon, np.float64)[order], np.asarray(lat, np.float64)[order]
    a = np.asarray(acc, np.float64)[order]
    start = fence.states[supervisee.id]
    out = fence.tick(max(start.decided_ms, start.clock_ms, int(t[0]) - 1 if len(t) else 0))
    ids = np.full(min(chunk, len(t)), fence.index.index_of(supervisee.id), dtype=np.intp)
    for s in range(0, len(t), chunk):
        c = slice(s, s + chunk)
        out += fence.decide(ids[: len(t[c])], t[c], x[c], y[c], a[c])
    if until_ms is not None:
        out += fence.tick(until_ms)
    out.sort(key=lambda tr: tr.ts_ms)
    return Replayed(out, fence.states[supervisee.id])
