"""The registry into the live ``geofence.fence.Fence``: everything at start, one supervisee
after a change. The decision states come from ``geofence.store``."""

from __future__ import annotations

from typing import Any

import psycopg

from geofence.fence import Fence
from geofence.store import load_states
from geofence.transitions import Transition
from registry.permits import load_permits
from registry.supervisees import load_supervisees
from registry.zones import load_zones


def load_fence(conn: psycopg.Connection[Any], fence: Fence, *, now_ms: int) -> None:
    """Load every supervisee, the zones and permits in force, and the persisted states."""
    fence.load(load_supervisees(conn), load_zones(conn), load_permits(conn), load_states(conn),
               now_ms=now_ms)


def reload_supervisee(conn: psycopg.Connection[Any], fence: Fence, supervisee_id: str, *,
                      now_ms: int) -> list[Transition]:
    """Re-read one supervisee's registry rows and replace them in ``fence`` (incremental)."""
    sups = load_supervisees(conn, [supervisee_id])
    if not sups:
        return fence.remove_supervisee(supervisee_id, now_ms=now_ms)
    ids = [supervisee_id]
    return fence.replace_supervisee(sups[0], load_zones(conn, ids), load_permits(conn, ids),
                                    now_ms=now_ms)
