"""The one change watcher: has the registry changed, and whose part of it?

Writers call ``bump`` in the transaction of their change. A watcher polls ``stamp`` (cheap, one
row) and, when it moved, compares ``fingerprints`` (one per supervisee) to find whose zones,
permits or sentence changed. The stamp also moves when a zone version scheduled for later comes
into force, which no writer is there to announce.
"""

from __future__ import annotations

from typing import Any

import psycopg

# registry_version (migration 0001) plus the zone versions scheduled ahead (effective after
# they were recorded) that are in force by now: both only grow.
_STAMP = """
SELECT (SELECT version FROM registry_version)
     + (SELECT count(*) FROM zone_versions
         WHERE effective_from > recorded_at AND effective_from <= now())
"""

# Per supervisee: the sentence, and which version of each zone and permit is in force now
# (versions are never edited, so (id, version) stands for the content).
_FINGERPRINTS = """
WITH z AS (SELECT supervisee_id, string_agg(id || ':' || version, ',' ORDER BY id) AS v
             FROM zones GROUP BY supervisee_id),
     p AS (SELECT supervisee_id, string_agg(id || ':' || version, ',' ORDER BY id) AS v
             FROM permits GROUP BY supervisee_id)
SELECT s.id, md5(concat_ws('|', s.sentence_type, s.sentence_start, s.sentence_end, z.v, p.v))
  FROM supervisees s
  LEFT JOIN z ON z.supervisee_id = s.id
  LEFT JOIN p ON p.supervisee_id = s.id
"""


def bump(conn: psycopg.Connection[Any]) -> None:
    """Tell the running pipeline the registry changed (in the writer's transaction)."""
    conn.execute("UPDATE registry_version SET version = version + 1")


def stamp(conn: psycopg.Connection[Any]) -> int | None:
    """A number that moves whenever the registry does (see the module docstring)."""
    row = conn.execute(_STAMP).fetchone()
    return None if row is None or row[0] is None else int(row[0])


def fingerprints(conn: psycopg.Connection[Any]) -> dict[str, str]:
    """Supervisee id -> a hash of their sentence and the zone and permit versions in force."""
    return dict(conn.execute(_FINGERPRINTS).fetchall())


def changed(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """The supervisees added, removed or changed between two ``fingerprints``."""
    return sorted(s for s in set(before) | set(after) if before.get(s) != after.get(s))


def changes(conn: psycopg.Connection[Any], since: dict[str, str]) -> tuple[dict[str, str],
                                                                           list[str]]:
    """(the fingerprints now, the supervisees changed since ``since``)."""
    now = fingerprints(conn)
    return now, changed(since, now)
