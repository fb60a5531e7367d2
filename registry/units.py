"""Police units: the one writer for the API (admins) and the importer."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.types.json import Jsonb

COLUMNS = "code, name, parent, ack_within_s"

_UPSERT = f"""
INSERT INTO units (code, name, parent, boundary, ack_within_s) VALUES (%s, %s, %s, %s, %s)
ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name, parent = EXCLUDED.parent,
    boundary = EXCLUDED.boundary, ack_within_s = EXCLUDED.ack_within_s, updated_at = now()
WHERE (units.name, units.parent, units.boundary, units.ack_within_s)
    IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.parent, EXCLUDED.boundary, EXCLUDED.ack_within_s)
RETURNING (xmax = 0), {COLUMNS}
"""


def _json(value: Any) -> Jsonb | None:
    return None if value is None else Jsonb(value)


def create_unit(conn: psycopg.Connection[Any], code: str, name: str, parent: str | None,
                boundary: dict | None, ack_within_s: int) -> tuple | None:
    """Insert a unit; its (code, name, parent, ack_within_s), or None when the code exists."""
    return conn.execute(
        f"INSERT INTO units (code, name, parent, boundary, ack_within_s) VALUES (%s, %s, %s, %s, "
        f"%s) ON CONFLICT (code) DO NOTHING RETURNING {COLUMNS}",
        (code, name, parent, _json(boundary), ack_within_s)).fetchone()


def update_unit(conn: psycopg.Connection[Any], code: str, name: str, parent: str | None,
                boundary: dict | None, ack_within_s: int) -> tuple | None:
    """Replace a unit's fields; its (code, name, parent, ack_within_s), or None when unknown."""
    return conn.execute(
        "UPDATE units SET name = %s, parent = %s, boundary = %s, ack_within_s = %s, "
        f"updated_at = now() WHERE code = %s RETURNING {COLUMNS}",
        (name, parent, _json(boundary), ack_within_s, code)).fetchone()


def upsert_unit(conn: psycopg.Connection[Any], code: str, name: str, parent: str | None,
                boundary: dict | None, ack_within_s: int) -> str:
    """Create or update a unit, writing nothing when it is as given: created, updated or
    unchanged."""
    row = conn.execute(_UPSERT, (code, name, parent, _json(boundary), ack_within_s)).fetchone()
    return "unchanged" if row is None else ("created" if row[0] else "updated")
