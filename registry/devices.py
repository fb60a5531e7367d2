"""Devices and who wears them: the one writer of ``devices`` and ``device_assignments`` (the
assignment history: one open row per worn device, closed when it is taken off)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg

from registry.common import db_now


def register(conn: psycopg.Connection[Any], device_id: str,
             now: datetime | None = None) -> bool:
    """Register a device, worn by nobody; False when it exists already."""
    return conn.execute("INSERT INTO devices (id, registered_at) VALUES (%s, %s) "
                        "ON CONFLICT (id) DO NOTHING",
                        (device_id, now or db_now(conn))).rowcount == 1


def assign(conn: psycopg.Connection[Any], device_id: str, supervisee_id: str, *, by: str,
           now: datetime | None = None) -> None:
    """Put a free device on a supervisee and open its assignment row."""
    conn.execute("UPDATE devices SET supervisee_id = %s WHERE id = %s", (supervisee_id, device_id))
    conn.execute("INSERT INTO device_assignments (device_id, supervisee_id, assigned_at, "
                 "assigned_by) VALUES (%s, %s, %s, %s)",
                 (device_id, supervisee_id, now or db_now(conn), by))


def unassign(conn: psycopg.Connection[Any], device_id: str, now: datetime | None = None) -> None:
    """Take the device off its wearer; the assignment row is closed, kept in the history."""
    conn.execute("UPDATE device_assignments SET unassigned_at = %s "
                 "WHERE device_id = %s AND unassigned_at IS NULL", (now or db_now(conn), device_id))
    conn.execute("UPDATE devices SET supervisee_id = NULL WHERE id = %s", (device_id,))


def set_wearer(conn: psycopg.Connection[Any], device_id: str, supervisee_id: str | None, *,
               by: str) -> str:
    """Make the device registered and worn by ``supervisee_id`` (None: nobody), moving it from
    another wearer if need be: created, updated or unchanged (the importer's write)."""
    row = conn.execute("SELECT supervisee_id FROM devices WHERE id = %s", (device_id,)).fetchone()
    if row is None:
        register(conn, device_id)
        if supervisee_id is not None:
            assign(conn, device_id, supervisee_id, by=by)
        return "created"
    if row[0] == supervisee_id:
        return "unchanged"
    unassign(conn, device_id)  # closes the open assignment, if any
    if supervisee_id is not None:
        assign(conn, device_id, supervisee_id, by=by)
    return "updated"
