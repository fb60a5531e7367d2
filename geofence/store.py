"""The geofence's only I/O: load and save decision states.

Synchronous psycopg 3; every function takes a `psycopg.Connection`. Table: `geofence_state`
(schema/migrations/0010_geofence_state.sql). Saving is one statement per batch of states, never
one per fix. The supervisees, zones and permits a `Fence` decides against are loaded by the
registry package (`registry.load_fence`), which owns those tables.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import psycopg

_SAVE_SQL = """
INSERT INTO geofence_state (supervisee_id, state, updated_at)
SELECT s, b, now() FROM unnest(%s::text[], %s::bytea[]) AS t(s, b)
ON CONFLICT (supervisee_id) DO UPDATE SET state = EXCLUDED.state, updated_at = EXCLUDED.updated_at
"""


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
