"""The geofence's only I/O: load the registry into a `Fence`, load and save decision states.

Synchronous psycopg 3; every function takes a `psycopg.Connection`. Tables: `supervisees`,
`zones`, `permits` (schema/migrations/0001_registry.sql) and `geofence_state` (0010). Saving is
one statement per batch of states, never one per fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import psycopg

from geofence.fence import Fence
from geofence.policy import Permit, Supervisee
from geofence.transitions import Transition
from geofence.zones import VIETNAM_BOUNDS, Zone, parse_geometry, parse_zone

_ZONE_SQL = """
SELECT supervisee_id, id, kind, purpose, geometry, center_lon, center_lat, radius_m, schedule,
       margin_m, confirm_fixes, escalate_after_s
  FROM zones {where} ORDER BY supervisee_id, id
"""
# a revoked permit ends when it was revoked; one revoked before it started never applied
_PERMIT_SQL = """
SELECT id, supervisee_id, valid_from, LEAST(valid_to, COALESCE(revoked_at, valid_to)) AS valid_to,
       reason, category, destination, anywhere
  FROM permits
 WHERE revoked_at IS NULL OR revoked_at > valid_from {and_where}
 ORDER BY supervisee_id, valid_from
"""
_SAVE_SQL = """
INSERT INTO geofence_state (supervisee_id, state, updated_at)
SELECT s, b, now() FROM unnest(%s::text[], %s::bytea[]) AS t(s, b)
ON CONFLICT (supervisee_id) DO UPDATE SET state = EXCLUDED.state, updated_at = EXCLUDED.updated_at
"""


def load_supervisees(
    conn: psycopg.Connection[Any], ids: list[str] | None = None
) -> list[Supervisee]:
    """Supervisees (all, or those in `ids`)."""
    sql = "SELECT id, sentence_type, sentence_start, sentence_end FROM supervisees"
    rows = conn.execute(sql + (" WHERE id = ANY(%s)" if ids is not None else "") + " ORDER BY id",
                        (ids,) if ids is not None else None).fetchall()  # fmt: skip
    return [Supervisee(r[0], r[1], r[2], r[3]) for r in rows]


def load_zones(
    conn: psycopg.Connection[Any],
    ids: list[str] | None = None,
    bounds: tuple[float, ...] = VIETNAM_BOUNDS,
) -> list[Zone]:
    """Zones (all, or of the supervisees in `ids`), validated like imported ones."""
    where = "WHERE supervisee_id = ANY(%s)" if ids is not None else ""
    rows = conn.execute(
        _ZONE_SQL.format(where=where), (ids,) if ids is not None else None
    ).fetchall()
    return [parse_zone(_zone_json(r), r[0], f"zones[{r[0]}/{r[1]}]", bounds) for r in rows]


def _zone_json(r: tuple[Any, ...]) -> dict[str, Any]:
    obj: dict[str, Any] = {"id": r[1], "kind": r[2], "purpose": r[3], "schedule": r[8]}
    if r[4] is not None:
        obj["geometry"] = r[4]
    else:
        obj["center"], obj["radius_m"] = [r[5], r[6]], r[7]
    for key, value in zip(("margin_m", "confirm_fixes", "escalate_after_s"), r[9:12], strict=True):
        if value is not None:
            obj[key] = value
    return obj


def load_permits(conn: psycopg.Connection[Any], ids: list[str] | None = None) -> list[Permit]:
    """Permits not revoked before they started (all, or of the supervisees in `ids`)."""
    and_where = "AND supervisee_id = ANY(%s)" if ids is not None else ""
    rows = conn.execute(
        _PERMIT_SQL.format(and_where=and_where), (ids,) if ids is not None else None
    ).fetchall()
    out = []
    for pid, sid, start, end, reason, category, dest, anywhere in rows:
        geom = (
            None
            if anywhere or dest is None
            else parse_geometry(dest, f"permits[{pid}].destination")
        )
        out.append(Permit(sid, start, end, reason, category, geom, id=pid))
    return out


def load_states(conn: psycopg.Connection[Any]) -> dict[str, bytes]:
    """Persisted decision states by supervisee id."""
    return {
        sid: bytes(b) for sid, b in conn.execute("SELECT supervisee_id, state FROM geofence_state")
    }


def save_states(conn: psycopg.Connection[Any], states: Mapping[str, bytes]) -> int:
    """Upsert a batch of states in one statement; returns how many were written. The caller
    owns the transaction (commit with the work that produced the states)."""
    if not states:
        return 0
    ids = list(states)
    conn.execute(_SAVE_SQL, (ids, [states[s] for s in ids]))
    return len(ids)


def load_fence(conn: psycopg.Connection[Any], fence: Fence, *, now_ms: int) -> None:
    """Load every supervisee, zone, permit and persisted state into `fence`."""
    fence.load(
        load_supervisees(conn),
        load_zones(conn),
        load_permits(conn),
        load_states(conn),
        now_ms=now_ms,
    )


def reload_supervisee(
    conn: psycopg.Connection[Any], fence: Fence, supervisee_id: str, *, now_ms: int
) -> list[Transition]:
    """Re-read one supervisee's registry rows and replace them in `fence` (incremental)."""
    sups = load_supervisees(conn, [supervisee_id])
    if not sups:
        return fence.remove_supervisee(supervisee_id, now_ms=now_ms)
    ids = [supervisee_id]
    return fence.replace_supervisee(
        sups[0], load_zones(conn, ids), load_permits(conn, ids), now_ms=now_ms
    )
