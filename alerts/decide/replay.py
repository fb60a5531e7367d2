"""Replay: re-decide one supervisee's period from the stored fixes with the live engine.

- as it was: the zones and permits of the registry in force at each instant (their versions),
  from an empty decision state at ``from``;
  the transitions must reproduce the zone alert changes that the service recorded for that
  period (``alert_history``), and ``differences`` lists any that do not (a self-check);
- what if: the same fixes against a proposed set of zones and permits; nothing is stored or
  sent, the result lists the alerts that would have opened and ended, and when.

The engine is ``geofence.replay`` over ``geofence.fence.Fence``, the one the decide stage runs,
loaded with this one supervisee: the fixes go through it in ``ts`` order with the passage of
time (windows, permit edges, the sentence's end) applied between them at its own instants, and
after the last fix up to ``to``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import psycopg

import registry
from alerts.model import ZONE_TYPES, ms_to_dt
from geofence.fence import Fence
from geofence.policy import Permit, PolicyTable
from geofence.replay import replay as geofence_replay
from geofence.transitions import Transition
from geofence.zones import Zone

CHUNK = 500_000  # fixes read and decided at once


@dataclass(frozen=True)
class Change:
    """A zone condition that opened (``active``) or ended, at ``ts_ms`` (the fix's time)."""

    zone_id: str
    type: str
    active: bool
    ts_ms: int
    since_ms: int | None = None

    def line(self) -> str:
        verb = "opens" if self.active else "ends"
        return f"{ms_to_dt(self.ts_ms).isoformat()} {self.type} {verb} (zone {self.zone_id})"


@dataclass
class ReplayResult:
    """What a replay decided; ``recorded`` and ``differences`` only for an "as it was" run."""

    supervisee_id: str
    from_ms: int
    to_ms: int
    fixes: int = 0
    changes: list[Change] = field(default_factory=list)
    recorded: list[Change] | None = None
    differences: list[str] = field(default_factory=list)

    @property
    def reproduced(self) -> bool | None:
        return None if self.recorded is None else not self.differences

    def as_json(self) -> dict[str, Any]:
        def rows(cs: Sequence[Change]) -> list[dict[str, Any]]:
            return [{"zone_id": c.zone_id, "type": c.type, "active": c.active, "ts": c.ts_ms,
                     "since": c.since_ms} for c in cs]

        return {"supervisee_id": self.supervisee_id, "from": self.from_ms, "to": self.to_ms,
                "fixes": self.fixes, "alerts": rows(self.changes),
                "recorded": None if self.recorded is None else rows(self.recorded),
                "reproduced": self.reproduced, "differences": self.differences}


def replay(conn: psycopg.Connection, settings: Any, supervisee_id: str, from_ms: int,
           to_ms: int, *, zones: Sequence[Zone] | None = None,
           permits: Sequence[Permit] | None = None,
           policies: PolicyTable | None = None) -> ReplayResult:
    """Re-decide ``[from_ms, to_ms)`` of one supervisee (see the module docstring). With
    ``zones`` and/or ``permits`` it is a what-if run (the other comes from the registry).

    The registry's zones and permits are the versions in force at each instant: the period is
    cut where a version starts or ends, and each piece is decided against its versions from the
    decision state the previous piece ended with, as the live fence reloads an edited zone."""
    sups = registry.load_supervisees(conn, [supervisee_id])
    if not sups:
        raise LookupError(f"no supervisee {supervisee_id!r}")
    what_if = zones is not None or permits is not None
    ts, lon, lat, acc = _fixes(conn, supervisee_id, from_ms, to_ms)
    transitions: list[Transition] = []
    state = None
    for start, end, zs, ps in _pieces(conn, supervisee_id, from_ms, to_ms, zones, permits):
        part = (ts >= start) & (ts < end)
        out = geofence_replay(sups[0], zs, ps, ts[part], lon[part], lat[part], acc[part],
                              start_state=state, until_ms=end,
                              make_fence=lambda: _fence(settings, policies), policy_on_ms=from_ms)
        transitions += out.transitions
        state = out.state
    result = ReplayResult(supervisee_id, from_ms, to_ms, fixes=len(ts))
    result.changes = [Change(t.zone_id, t.alert_type, t.active, t.ts_ms, t.since_ms)
                      for t in transitions
                      if from_ms <= t.ts_ms < to_ms and t.alert_type in ZONE_TYPES]
    if not what_if:
        result.recorded = recorded_changes(conn, supervisee_id, from_ms, to_ms)
        result.differences = differences(result.recorded, result.changes)
    return result


def _pieces(conn: psycopg.Connection, sid: str, from_ms: int, to_ms: int,
            zones: Sequence[Zone] | None, permits: Sequence[Permit] | None,
            ) -> list[tuple[int, int, list[Zone], list[Permit]]]:
    """[start, end) pieces of the period with the zones and permits in force in each: the
    proposed ones where given, else the registry's versions."""
    zv = [] if zones is not None else registry.zones_in_force(conn, sid, from_ms, to_ms)
    pv = [] if permits is not None else registry.permits_in_force(conn, sid, from_ms, to_ms)
    edges = {e for v in (*zv, *pv) for e in (v.effective_from_ms, v.effective_to_ms)
             if e is not None and from_ms < e < to_ms}
    cuts = sorted({from_ms, to_ms} | edges)

    def holds(v: Any, at: int) -> bool:
        return ((v.effective_from_ms is None or v.effective_from_ms <= at)
                and (v.effective_to_ms is None or at < v.effective_to_ms))

    return [(a, b, list(zones) if zones is not None else [v.zone for v in zv if holds(v, a)],
             list(permits) if permits is not None else [v.permit for v in pv if holds(v, a)])
            for a, b in zip(cuts[:-1], cuts[1:], strict=True)]


def _fence(settings: Any, policies: PolicyTable | None) -> Fence:
    """An empty fence with the live decision settings."""
    return Fence(policies=policies or PolicyTable.default(), margin_m=settings.margin_m,
                 confirm_fixes=settings.confirm_fixes, max_accuracy_m=settings.max_accuracy_m,
                 tz=settings.timezone)


def _fixes(conn: psycopg.Connection, supervisee_id: str, from_ms: int,
           to_ms: int) -> tuple[np.ndarray, ...]:
    """The stored fixes of the period, in ts order, as arrays (ts, lon, lat, acc)."""
    cur = conn.execute(
        "SELECT (extract(epoch FROM ts) * 1000)::int8, lon, lat, acc FROM fixes "
        "WHERE supervisee_id = %s AND ts >= %s AND ts < %s ORDER BY ts",
        (supervisee_id, ms_to_dt(from_ms), ms_to_dt(to_ms)))
    parts: list[list[tuple]] = []
    while rows := cur.fetchmany(CHUNK):
        parts.append(rows)
    cols = list(zip(*[r for p in parts for r in p], strict=True)) or [(), (), (), ()]
    return (np.array(cols[0], np.int64), np.array(cols[1], np.float64),
            np.array(cols[2], np.float64), np.array(cols[3], np.float64))


def recorded_changes(conn: psycopg.Connection, supervisee_id: str, from_ms: int,
                     to_ms: int) -> list[Change]:
    """The zone alert openings and endings the service recorded for the period, by the time of
    the fix that caused them (the history's ``data.ts``)."""
    rows = conn.execute(
        """
        SELECT a.zone_id, a.type, h.action, (h.data->>'ts')::int8,
               (h.data->'explanation'->>'since_ms')::int8
          FROM alert_history h JOIN alerts a ON a.id = h.alert_id
         WHERE a.supervisee_id = %s AND a.type = ANY(%s)
           AND h.action IN ('opened', 'active', 'inactive')
           AND coalesce(h.note, '') <> 'superseded by a new occurrence'
           AND (h.data->>'ts')::int8 >= %s AND (h.data->>'ts')::int8 < %s
         ORDER BY (h.data->>'ts')::int8, h.id
        """, (supervisee_id, list(ZONE_TYPES), from_ms, to_ms)).fetchall()
    return [Change(z or "", t, action != "inactive", ts, since if action != "inactive" else None)
            for z, t, action, ts, since in rows]


def differences(recorded: Sequence[Change], replayed: Sequence[Change]) -> list[str]:
    """What one side has and the other has not, compared by (zone, type, opens/ends, ts)."""
    def key(c: Change) -> tuple:
        return (c.zone_id, c.type, c.active, c.ts_ms)

    rec, rep = {key(c): c for c in recorded}, {key(c): c for c in replayed}
    out = [f"recorded, not replayed: {c.line()}" for k, c in rec.items() if k not in rep]
    out += [f"replayed, not recorded: {c.line()}" for k, c in rep.items() if k not in rec]
    return sorted(out)


def parse_time(value: Any, path: str) -> int:
    """Epoch ms from an int (ms) or an ISO date-time with its offset."""
    from datetime import datetime

    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value)
        except ValueError:
            dt = None
        if dt is not None and dt.tzinfo is not None:
            return int(dt.timestamp() * 1000)
    raise ValueError(f"{path}: expected epoch ms or an ISO date-time with its offset")


def parse_proposal(doc: Any, supervisee_id: str) -> tuple[list[Zone] | None,
                                                          list[Permit] | None]:
    """The proposed ``zones`` and/or ``permits`` of a what-if replay, in the import format
    (contract §4); a key that is absent keeps the registry's. ValueError names the JSON path."""
    from geofence.zones import ZoneError, parse_geometry, parse_zone

    if not isinstance(doc, dict):
        raise ValueError("$: expected an object with zones and/or permits")
    zones = permits = None
    try:
        if "zones" in doc:
            if not isinstance(doc["zones"], list):
                raise ValueError("$.zones: expected a list")
            zones = [parse_zone(z, supervisee_id, f"$.zones[{i}]")
                     for i, z in enumerate(doc["zones"])]
        if "permits" in doc:
            if not isinstance(doc["permits"], list):
                raise ValueError("$.permits: expected a list")
            permits = []
            for i, p in enumerate(doc["permits"]):
                path = f"$.permits[{i}]"
                if not isinstance(p, dict):
                    raise ValueError(f"{path}: expected a permit object")
                dest = p.get("destination")
                geom = None if dest == "anywhere" else parse_geometry(dest, f"{path}.destination")
                permits.append(Permit(supervisee_id, parse_time(p.get("valid_from"),
                                                                f"{path}.valid_from"),
                                      parse_time(p.get("valid_to"), f"{path}.valid_to"),
                                      str(p.get("reason") or "what-if"),
                                      str(p.get("category") or "other"), geom))
    except ZoneError as exc:
        raise ValueError(str(exc)) from exc
    return zones, permits
