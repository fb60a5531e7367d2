"""A supervisee's track: the stored fixes of the devices they wore, with the decision behind
each fix recomputed by the geofence engine.

Which fixes: those of every device assigned to the supervisee at the fix's time, by the
assignment history (``device_assignments``; a device whose ``supervisee_id`` names them with no
open assignment row counts as assigned throughout), in ``[from, to)``, ordered by ``ts``.

The decision (``properties.decision``) is recomputed, not replayed: each fix is evaluated by
``geofence.engine.evaluate`` against the versions of the supervisee's zones and permits that
were in force at the fix's own time (``registry.zones_in_force`` / ``permits_in_force``:
an edit made later does not change what an earlier fix shows), with schedules at the fix's local
time and permits lifting or extending zones. Per fix:
``decision`` is ``ignored`` (acc above ``max_accuracy_m``: never counts), ``violation`` (a zone in
force is definitely violated), ``uncertain`` (within acc + margin of a zone in force),
``compliant`` or ``no_zone`` (no zone in force); ``zones`` gives each zone's class, signed
distance in metres (positive = outside the zone; null beyond the decision band) and the
``version`` of the zone it was decided against. The
confirmation counters (``confirm_fixes``) are not replayed: the alerts that fixes confirmed are
listed beside the track (``alerts``), from the alert records themselves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import psycopg
from psycopg.rows import dict_row

import registry
from alerts.payload import alert_json
from api.wire import collection, feature, point, to_ms
from geofence.engine import COMPLIANT, IGNORED, IN_FORCE, RELAXED, UNCERTAIN, VIOLATION, evaluate
from geofence.index import ZoneIndex

MAX_POINTS = 50_000

_CLASS = {COMPLIANT: "compliant", VIOLATION: "violation", UNCERTAIN: "uncertain",
          IGNORED: "ignored"}

_FIXES = """
WITH spans AS (
    SELECT device_id, assigned_at AS since, coalesce(unassigned_at, 'infinity') AS until
      FROM device_assignments WHERE supervisee_id = %(sid)s
    UNION ALL
    SELECT d.id, '-infinity'::timestamptz, 'infinity'::timestamptz
      FROM devices d
     WHERE d.supervisee_id = %(sid)s
       AND NOT EXISTS (SELECT 1 FROM device_assignments a
                        WHERE a.device_id = d.id AND a.unassigned_at IS NULL)
)
SELECT f.device_id, f.ts, f.seq, f.lat, f.lon, f.acc, f.spd, f.hdg, f.src
  FROM fixes f
 WHERE f.device_id IN (SELECT device_id FROM spans)
   AND f.ts >= %(from)s AND f.ts < %(to)s
   AND EXISTS (SELECT 1 FROM spans s WHERE s.device_id = f.device_id
                                       AND f.ts >= s.since AND f.ts < s.until)
 ORDER BY f.ts, f.seq, f.device_id
 LIMIT %(limit)s
"""


@dataclass
class Track:
    fixes: list[dict[str, Any]]
    truncated: bool
    zone_ids: list[str]
    decisions: list[dict[str, Any]]
    alerts: list[dict[str, Any]]


def fixes(conn: psycopg.Connection, sid: str, start: datetime, end: datetime,
          limit: int = MAX_POINTS) -> tuple[list[dict[str, Any]], bool]:
    """The supervisee's fixes in [start, end), at most ``limit``; (rows, truncated)."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(_FIXES, {"sid": sid, "from": start, "to": end,
                                    "limit": limit + 1}).fetchall()
    return rows[:limit], len(rows) > limit


def decisions(conn: psycopg.Connection, sid: str, rows: list[dict[str, Any]],
              max_accuracy_m: float, margin_m: float, tz: str, start_ms: int,
              end_ms: int) -> tuple[list[str], list[dict]]:
    """(ids of the zones in force in [start_ms, end_ms), one decision per fix) recomputed with
    the geofence engine, each fix against the zone and permit versions in force at its ``ts``:
    the fixes are cut where a version starts or ends and each piece is evaluated on its own."""
    zones = registry.zones_in_force(conn, sid, start_ms, end_ms)
    zone_ids = sorted({v.zone.id for v in zones})
    if not rows or not zones:
        return zone_ids, [_decision(r["acc"] <= max_accuracy_m, []) for r in rows]
    permits = registry.permits_in_force(conn, sid, start_ms, end_ms)
    ts = np.array([to_ms(r["ts"]) for r in rows], dtype=np.int64)
    cuts = np.array(sorted({t for v in (*zones, *permits)
                            for t in (v.effective_from_ms, v.effective_to_ms) if t is not None}),
                    dtype=np.int64)
    piece = np.searchsorted(cuts, ts, side="right")  # equal within a piece: same versions
    out: list[dict] = [{}] * len(rows)
    for k in np.unique(piece).tolist():
        at = np.flatnonzero(piece == k)
        t0 = int(ts[at[0]])
        in_force = [v for v in zones if v.in_force_at(t0)]
        lifting = [v.permit for v in permits if v.in_force_at(t0)]
        for i, d in zip(at.tolist(), _evaluate(sid, [rows[i] for i in at], ts[at], in_force,
                                               lifting, max_accuracy_m, margin_m, tz),
                        strict=True):
            out[i] = d
    return zone_ids, out


def _evaluate(sid: str, rows: list[dict[str, Any]], ts: np.ndarray,
              zones: list[registry.ZoneVersion], permits: list, max_accuracy_m: float,
              margin_m: float, tz: str) -> list[dict]:
    """Decisions of fixes that share one set of zone and permit versions."""
    if not zones:
        return [_decision(r["acc"] <= max_accuracy_m, []) for r in rows]
    version = {v.zone.id: v.version for v in zones}
    index = ZoneIndex(max_accuracy_m=max_accuracy_m, default_margin_m=margin_m, tz=tz)
    idx = index.set_supervisee(sid, [v.zone for v in zones], permits)
    ev = evaluate(index, np.full(len(rows), idx, dtype=np.intp), ts,
                  np.array([r["lon"] for r in rows]), np.array([r["lat"] for r in rows]),
                  np.array([r["acc"] for r in rows], dtype=np.float64))
    slots = index.zones_of(idx)  # the evaluation is slot-major: (zone slot, fix)
    code, dist, regime = ev.code.tolist(), ev.dist_m.tolist(), ev.regime.tolist()
    return [_decision(r["acc"] <= max_accuracy_m,
                      [_zone_result(z.id, version[z.id], code[j][i], dist[j][i], regime[j][i])
                       for j, z in enumerate(slots)])
            for i, r in enumerate(rows)]


def _zone_result(zone_id: str, version: int, code: int, dist: float,
                 regime: int) -> dict[str, Any]:
    return {"zone_id": zone_id, "version": version, "class": _CLASS.get(code, "no_zone"),
            "distance_m": round(dist, 1) if math.isfinite(dist) else None,
            "in_force": bool(regime & IN_FORCE), "relaxed_by_permit": bool(regime & RELAXED)}


def _decision(counted: bool, zones: list[dict[str, Any]]) -> dict[str, Any]:
    if not counted:
        return {"decision": "ignored", "zones": zones}
    classes = {z["class"] for z in zones if z["in_force"]}
    for name in ("violation", "uncertain", "compliant"):
        if name in classes:
            return {"decision": name, "zones": zones}
    return {"decision": "no_zone", "zones": zones}


def alerts_between(conn: psycopg.Connection, sid: str, start: datetime,
                   end: datetime) -> list[dict[str, Any]]:
    """Alerts of the supervisee whose condition overlapped [start, end), oldest first."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT a.*, u.parent AS parent_unit FROM alerts a JOIN units u ON u.code = a.unit "
            "WHERE a.supervisee_id = %s AND coalesce(a.condition_since, a.opened_at) < %s "
            "AND (a.active OR a.updated_at >= %s) ORDER BY a.opened_at, a.id",
            (sid, end, start)).fetchall()
    return [alert_json(r, parent_unit=r["parent_unit"]) for r in rows]


def load(conn: psycopg.Connection, sid: str, start: datetime, end: datetime, *,
         max_accuracy_m: float, margin_m: float, tz: str, limit: int = MAX_POINTS) -> Track:
    """The track with decisions and the alerts of the period."""
    rows, truncated = fixes(conn, sid, start, end, limit)
    zone_ids, decided = decisions(conn, sid, rows, max_accuracy_m, margin_m, tz,
                                  to_ms(start) or 0, to_ms(end) or 0)
    return Track(rows, truncated, zone_ids, decided, alerts_between(conn, sid, start, end))


def as_geojson(track: Track, sid: str, start: datetime, end: datetime) -> dict:
    """The track as a GeoJSON FeatureCollection of Points, oldest first."""
    feats = [feature(point(r["lon"], r["lat"]),
                     {"ts": to_ms(r["ts"]), "seq": r["seq"], "acc": r["acc"],
                      "device_id": r["device_id"], "spd": r["spd"], "hdg": r["hdg"],
                      "src": r["src"], **d})
             for r, d in zip(track.fixes, track.decisions, strict=True)]
    return collection(feats, supervisee_id=sid, **{"from": to_ms(start), "to": to_ms(end)},
                      count=len(feats), truncated=track.truncated, max_points=MAX_POINTS,
                      zones=track.zone_ids, alerts=track.alerts)
