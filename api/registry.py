"""Registry reads and writes the routes share: scoped lookups and the registry version."""

from __future__ import annotations

import logging
from typing import Annotated

import psycopg
from fastapi import HTTPException, Path
from psycopg.rows import dict_row

from api.scope import Scope
from geofence.policy import Permit
from geofence.zones import ZoneError, parse_geometry
from protocol import DEVICE_ID_PATTERN

log = logging.getLogger("giamsat.api")

SuperviseeId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f]+$",
                                   description="supervisee id")]
DeviceId = Annotated[str, Path(pattern=f"^{DEVICE_ID_PATTERN}$", description="device id")]


def bump_registry(conn: psycopg.Connection) -> None:
    """Tell the running pipeline to reload zones, permits and devices (migration 0001)."""
    conn.execute("UPDATE registry_version SET version = version + 1")


def supervisee(conn: psycopg.Connection, caller: Scope, sid: str) -> dict:
    """The supervisee row if the caller may see it; 404 otherwise (never a hint it exists)."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute("SELECT * FROM supervisees WHERE id = %s", (sid,)).fetchone()
    if row is None or not caller.allows(row["unit"]):
        raise HTTPException(404, f"no supervisee {sid!r} in your scope / không có đối tượng")
    return row


def stored_permits(conn: psycopg.Connection, sid: str) -> list[Permit]:
    """The supervisee's permits not revoked, as geofence ``Permit`` values (a destination the
    geofence refuses is logged by permit id and the permit left out)."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute("SELECT * FROM permits WHERE supervisee_id = %s "
                           "AND revoked_at IS NULL ORDER BY valid_from, id", (sid,)).fetchall()
    out = []
    for r in rows:
        try:
            dest = None if r["anywhere"] else parse_geometry(r["destination"])
        except ZoneError as exc:
            log.warning("permit %s has an invalid destination at %s", r["id"], exc.path)
            continue
        out.append(Permit(sid, r["valid_from"], r["valid_to"], r["reason"], r["category"],
                          dest, r["id"]))
    return out
