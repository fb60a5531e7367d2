"""Decision states of every supervisee as numpy columns (`State` objects built on demand).

The fence decides most supervisees of a batch without a Python object per supervisee: the quiet
ones and those whose zones keep their regime (`geofence.machine`) read and write these columns
in bulk. Column (slot j, supervisee index i) holds the state of the supervisee's j-th zone.
"""

from __future__ import annotations

import numpy as np

from geofence.transitions import NEVER, LastFix, State, ZoneState, ZoneStates

_ZONE_COLUMNS = {
    "present": np.bool_,
    "fp": np.int64,
    "regime": np.uint8,
    "viol": np.int64,
    "ok": np.int64,
    "run_since": np.int64,
    "open": np.bool_,
    "open_since": np.int64,
    "open_type": np.int64,
    "overrun": np.bool_,
}
_ROW_COLUMNS = {
    "decided": (np.int64, NEVER),
    "clock": (np.int64, NEVER),
    "has_last": (np.bool_, False),
    "last_ts": (np.int64, 0),
    "last_lon": (np.float64, 0.0),
    "last_lat": (np.float64, 0.0),
    "last_acc": (np.float64, 0.0),
}


class StateTable:
    """Per supervisee index: watermark, clock, last fix; per (slot, index): zone counters.
    `base` (rare: time applied past the last fix) stays a dict of Python tuples."""

    present: np.ndarray
    fp: np.ndarray
    regime: np.ndarray
    viol: np.ndarray
    ok: np.ndarray
    run_since: np.ndarray
    open: np.ndarray
    open_since: np.ndarray
    open_type: np.ndarray
    overrun: np.ndarray
    decided: np.ndarray
    clock: np.ndarray
    has_last: np.ndarray
    last_ts: np.ndarray
    last_lon: np.ndarray
    last_lat: np.ndarray
    last_acc: np.ndarray

    def __init__(self, slots: int = 1, capacity: int = 16) -> None:
        for name, (dtype, fill) in _ROW_COLUMNS.items():
            setattr(self, name, np.full(capacity, fill, dtype=dtype))
        for name, dtype in _ZONE_COLUMNS.items():
            setattr(self, name, np.zeros((slots, capacity), dtype=dtype))
        self.base: dict[int, ZoneStates] = {}

    @property
    def shape(self) -> tuple[int, int]:
        """(slots, capacity)."""
        return self.present.shape  # type: ignore[return-value]

    def grow(self, slots: int, capacity: int) -> None:
        """Make room for `slots` zones and `capacity` supervisees."""
        k, cap = self.shape
        if slots <= k and capacity <= cap:
            return
        k2, cap2 = max(k, slots), max(cap, capacity)
        for name, (dtype, fill) in _ROW_COLUMNS.items():
            row: np.ndarray = np.full(cap2, fill, dtype=dtype)
            row[:cap] = getattr(self, name)
            setattr(self, name, row)
        for name, dtype in _ZONE_COLUMNS.items():
            col: np.ndarray = np.zeros((k2, cap2), dtype=dtype)
            col[:k, :cap] = getattr(self, name)
            setattr(self, name, col)

    def clear(self, i: int) -> None:
        """Forget supervisee index `i`."""
        for name, (_, fill) in _ROW_COLUMNS.items():
            getattr(self, name)[i] = fill
        self.present[:, i] = False
        self.base.pop(i, None)

    def get(self, i: int, zone_ids: tuple[str, ...]) -> State:
        """The state of index `i` (its zones in slot order `zone_ids`)."""
        zones = tuple(sorted((zid, self._zone(j, i)) for j, zid in enumerate(zone_ids)
                             if self.present[j, i]))  # fmt: skip
        last = None
        if self.has_last[i]:
            last = LastFix(int(self.last_ts[i]), float(self.last_lon[i]), float(self.last_lat[i]),
                           float(self.last_acc[i]))  # fmt: skip
        return State(int(self.decided[i]), last, zones, int(self.clock[i]), self.base.get(i))

    def _zone(self, j: int, i: int) -> ZoneState:
        return ZoneState(int(self.fp[j, i]), int(self.regime[j, i]), int(self.viol[j, i]),
                         int(self.ok[j, i]), int(self.run_since[j, i]), bool(self.open[j, i]),
                         int(self.open_since[j, i]), int(self.open_type[j, i]),
                         bool(self.overrun[j, i]))  # fmt: skip

    def put(self, i: int, zone_ids: tuple[str, ...], state: State) -> None:
        """Store the state of index `i`; zone states of zones not in `zone_ids` are dropped."""
        self.decided[i], self.clock[i] = state.decided_ms, state.clock_ms
        f = state.last
        self.has_last[i] = f is not None
        if f is not None:
            self.last_ts[i], self.last_lon[i], self.last_lat[i] = f.ts, f.lon, f.lat
            self.last_acc[i] = f.acc
        self.present[:, i] = False
        slot = {zid: j for j, zid in enumerate(zone_ids)}
        for zid, z in state.zones:
            j = slot.get(zid)
            if j is None:
                continue
            self.present[j, i] = True
            (self.fp[j, i], self.regime[j, i], self.viol[j, i], self.ok[j, i], self.run_since[j, i],
             self.open[j, i], self.open_since[j, i], self.open_type[j, i], self.overrun[j, i]) = (
                z.fingerprint, z.regime, z.viol, z.ok, z.run_since, z.open, z.open_since,
                z.open_type, z.overrun)  # fmt: skip
        if state.base is None:
            self.base.pop(i, None)
        else:
            self.base[i] = tuple((zid, z) for zid, z in state.base if zid in slot)
