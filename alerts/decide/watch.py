"""Noticing registry changes the decide stage must reload (zones, permits, sentences).

Writers bump ``registry_version``; the stage polls it and then compares a fingerprint per
supervisee to reload only those whose rows changed.
"""

from __future__ import annotations

import psycopg

# Registry fingerprint per supervisee: what the geofence needs reloading for when it changes.
_FINGERPRINTS = """
SELECT s.id, md5(concat_ws('|', s.sentence_type, s.sentence_start, s.sentence_end,
    (SELECT string_agg(concat_ws(':', z.id, z.version, z.updated_at), ',' ORDER BY z.id)
       FROM zones z WHERE z.supervisee_id = s.id),
    (SELECT string_agg(concat_ws(':', p.id, p.valid_from, p.valid_to, p.revoked_at,
                                 md5(coalesce(p.destination::text, ''))), ',' ORDER BY p.id)
       FROM permits p WHERE p.supervisee_id = s.id)))
  FROM supervisees s
"""


def fingerprints(conn: psycopg.Connection) -> dict[str, str]:
    """Supervisee id -> fingerprint of its sentence, zones and permits."""
    return dict(conn.execute(_FINGERPRINTS).fetchall())


def registry_version(conn: psycopg.Connection) -> int | None:
    """The registry's change counter (None before the first migration's row exists)."""
    row = conn.execute("SELECT version FROM registry_version").fetchone()
    return None if row is None else int(row[0])


def changed(old: dict[str, str], new: dict[str, str]) -> list[str]:
    """Supervisees added, removed or changed between two fingerprint maps, sorted."""
    return sorted(sid for sid in set(old) | set(new) if old.get(sid) != new.get(sid))
