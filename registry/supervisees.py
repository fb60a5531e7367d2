"""Supervisees (người chấp hành án): the one writer and the loader the geofence uses."""

from __future__ import annotations

from datetime import date
from typing import Any

import psycopg

from geofence.policy import Supervisee

_UPSERT = """
INSERT INTO supervisees AS s (id, name, sentence_type, sentence_start, sentence_end, unit,
                              residence_unit)
VALUES (%s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, sentence_type = EXCLUDED.sentence_type,
    sentence_start = EXCLUDED.sentence_start, sentence_end = EXCLUDED.sentence_end,
    unit = EXCLUDED.unit, residence_unit = EXCLUDED.residence_unit, updated_at = now()
WHERE (s.name, s.sentence_type, s.sentence_start, s.sentence_end, s.unit, s.residence_unit)
    IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.sentence_type, EXCLUDED.sentence_start,
                      EXCLUDED.sentence_end, EXCLUDED.unit, EXCLUDED.residence_unit)
RETURNING (xmax = 0)
"""


def upsert_supervisee(conn: psycopg.Connection[Any], sid: str, name: str, sentence_type: str,
                      sentence_start: date, sentence_end: date, unit: str,
                      residence_unit: str | None) -> str:
    """Create or update a supervisee, writing nothing when it is as given: created, updated
    or unchanged."""
    row = conn.execute(_UPSERT, (sid, name, sentence_type, sentence_start, sentence_end, unit,
                                 residence_unit or unit)).fetchone()
    return "unchanged" if row is None else ("created" if row[0] else "updated")


def load_supervisees(conn: psycopg.Connection[Any],
                     ids: list[str] | None = None) -> list[Supervisee]:
    """Supervisees (all, or those in ``ids``) as the geofence sees them, by id."""
    rows = conn.execute("SELECT id, sentence_type, sentence_start, sentence_end FROM supervisees "
                        "WHERE %(ids)s::text[] IS NULL OR id = ANY(%(ids)s) ORDER BY id",
                        {"ids": ids}).fetchall()
    return [Supervisee(r[0], r[1], r[2], r[3]) for r in rows]
