"""Police units: the one writer for the API (admins) and the importer."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.types.json import Jsonb

COLUMNS = "code, name, parent, ack_within_s"

# A unit written without a station keeps the one it has (import files of before issue 13).
_UPSERT = f"""
INSERT INTO units (code, name, parent, boundary, ack_within_s, station)
VALUES (%s, %s, %s, %s, %s, %s)
ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name, parent = EXCLUDED.parent,
    boundary = EXCLUDED.boundary, ack_within_s = EXCLUDED.ack_within_s,
    station = coalesce(EXCLUDED.station, units.station), updated_at = now()
WHERE (units.name, units.parent, units.boundary, units.ack_within_s, units.station)
    IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.parent, EXCLUDED.boundary, EXCLUDED.ack_within_s,
                      coalesce(EXCLUDED.station, units.station))
RETURNING (xmax = 0), {COLUMNS}
"""


def _json(value: Any) -> Jsonb | None:
    return None if value is None else Jsonb(value)


def create_unit(conn: psycopg.Connection[Any], code: str, name: str, parent: str | None,
                boundary: dict | None, ack_within_s: int,
                station: dict | None = None) -> tuple | None:
    """Insert a unit; its (code, name, parent, ack_within_s), or None when the code exists."""
    return conn.execute(
        "INSERT INTO units (code, name, parent, boundary, ack_within_s, station) VALUES (%s, %s, "
        f"%s, %s, %s, %s) ON CONFLICT (code) DO NOTHING RETURNING {COLUMNS}",
        (code, name, parent, _json(boundary), ack_within_s, _json(station))).fetchone()


def update_unit(conn: psycopg.Connection[Any], code: str, name: str, parent: str | None,
                boundary: dict | None, ack_within_s: int,
                station: dict | None = None) -> tuple | None:
    """Replace a unit's fields; its (code, name, parent, ack_within_s), or None when unknown."""
    return conn.execute(
        "UPDATE units SET name = %s, parent = %s, boundary = %s, ack_within_s = %s, "
        f"station = %s, updated_at = now() WHERE code = %s RETURNING {COLUMNS}",
        (name, parent, _json(boundary), ack_within_s, _json(station), code)).fetchone()


def upsert_unit(conn: psycopg.Connection[Any], code: str, name: str, parent: str | None,
                boundary: dict | None, ack_within_s: int, station: dict | None = None) -> str:
    """Create or update a unit, writing nothing when it is as given (a unit given no station
    keeps its own): created, updated or unchanged."""
    row = conn.execute(_UPSERT, (code, name, parent, _json(boundary), ack_within_s,
                                 _json(station))).fetchone()
    return "unchanged" if row is None else ("created" if row[0] else "updated")
