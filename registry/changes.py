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
SELECT s.id, md5(concat_ws('|', s.sentence_type, s.sentence_start, s.sentence_end,
    (SELECT string_agg(concat_ws(':', z.id, z.version), ',' ORDER BY z.id)
       FROM zones z WHERE z.supervisee_id = s.id),
    (SELECT string_agg(concat_ws(':', p.id, p.version), ',' ORDER BY p.id)
       FROM permits p WHERE p.supervisee_id = s.id)))
  FROM supervisees s
"""

# What ingest and the broker's credentials depend on: the registered devices.
DEVICES_STAMP_SQL = ("SELECT (SELECT version FROM registry_version), count(*), "
                     "max(registered_at) FROM devices")


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
