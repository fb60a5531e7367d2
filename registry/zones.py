"""Zones of supervisees, versioned (schema/migrations/0050_registry_versions.sql).

One writer (``put_zone``, ``end_zone``) and one reader of zones for the API, the importer and
the decide stage. A change is a new version with its effective time and author, never an update
in place; removing a zone is a version that ends it. The version in force at an instant is the
latest by (effective_from, version) not after it.

Readers: ``load_zones`` (in force now, for the live fence), ``zones_in_force`` (the versions in
force over a period, each with its effective span, for the track, the case export and replay),
``zone_rows`` / ``zone_history`` (rows for the API's JSON).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any, NamedTuple

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from geofence.zones import VIETNAM_BOUNDS, Zone, ZoneError, parse_zone
from registry.common import ChangeRefused, db_now, lock_supervisee, ms_sql, ms_to_dt, not_before

log = logging.getLogger("giamsat.registry")

COLUMNS = ("kind", "purpose", "geometry", "center_lon", "center_lat", "radius_m", "schedule",
           "margin_m", "confirm_fixes", "escalate_after_s")
_OVERRIDES = ("schedule", "margin_m", "confirm_fixes", "escalate_after_s")

_SPANS = f"""
SELECT supervisee_id, zone_id AS id, version, ended, {", ".join(COLUMNS)}, changed_by,
       change_reason, recorded_at, {ms_sql("effective_from")}, {ms_sql("effective_to")}
  FROM zone_spans
"""
# in force at %(at)s (NULL: now), of the supervisees %(ids)s (NULL: all)
_AT = _SPANS + """
 WHERE NOT ended AND effective_from <= coalesce(%(at)s, now())
   AND effective_to > coalesce(%(at)s, now())
   AND (%(ids)s::text[] IS NULL OR supervisee_id = ANY(%(ids)s))
 ORDER BY supervisee_id, zone_id
"""
# in force at some instant of [%(from)s, %(to)s)
_OVER = _SPANS + """
 WHERE NOT ended AND effective_from < %(to)s AND effective_to > %(from)s
   AND effective_to > effective_from AND supervisee_id = ANY(%(ids)s)
 ORDER BY supervisee_id, zone_id, effective_from, version
"""


class ZoneVersion(NamedTuple):
    """One version of a zone and the span it is in force: [effective_from_ms, effective_to_ms),
    UTC epoch ms, None for an open end (since always / until further notice)."""

    zone: Zone
    effective_from_ms: int | None
    effective_to_ms: int | None
    version: int
    changed_by: str

    def in_force_at(self, ts_ms: int) -> bool:
        """True when this version is the one in force at ``ts_ms``."""
        return ((self.effective_from_ms is None or self.effective_from_ms <= ts_ms)
                and (self.effective_to_ms is None or ts_ms < self.effective_to_ms))


def zone_object(row: Mapping[str, Any]) -> dict[str, Any]:
    """A zone row as the contract's zone object (what ``parse_zone`` reads)."""
    obj: dict[str, Any] = {"id": row["id"], "kind": row["kind"], "purpose": row["purpose"]}
    if row["radius_m"] is not None:
        obj.update(center=[row["center_lon"], row["center_lat"]], radius_m=row["radius_m"])
    else:
        obj["geometry"] = row["geometry"]
    for key in _OVERRIDES:
        if row[key] is not None:
            obj[key] = row[key]
    return obj


def _parse(row: Mapping[str, Any], bounds: tuple[float, ...]) -> Zone | None:
    """The row as a geofence ``Zone``; a stored zone the geofence refuses (written around the
    registry) is left out and logged, by id."""
    sid = row["supervisee_id"]
    try:
        return parse_zone(zone_object(row), sid, f"zones[{sid}/{row['id']}]", bounds)
    except ZoneError as exc:
        log.warning("stored zone %s of supervisee %s (version %s) is invalid at %s: %s",
                    row["id"], sid, row["version"], exc.path, exc.message)
        return None


def zone_rows(conn: psycopg.Connection[Any], ids: list[str] | None = None,
              at: datetime | None = None) -> list[dict[str, Any]]:
    """Rows of the zone versions in force at ``at`` (default now), of the supervisees in ``ids``
    (default all), by supervisee and zone id."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(_AT, {"at": at, "ids": ids}).fetchall()


def load_zones(conn: psycopg.Connection[Any], ids: list[str] | None = None,
               bounds: tuple[float, ...] = VIETNAM_BOUNDS,
               at: datetime | None = None) -> list[Zone]:
    """The zones in force at ``at`` (default now) of the supervisees in ``ids`` (default all),
    validated like imported ones: what the live fence and the policy checks use."""
    return [z for r in zone_rows(conn, ids, at) if (z := _parse(r, bounds)) is not None]


def zone_rows_over(conn: psycopg.Connection[Any], supervisee_id: str, from_ms: int,
                   to_ms: int) -> list[dict[str, Any]]:
    """Rows of every zone version of the supervisee in force at some instant of
    [from_ms, to_ms), by zone id then time (the case export's list of zones)."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(_OVER, {"ids": [supervisee_id], "from": ms_to_dt(from_ms),
                                   "to": ms_to_dt(to_ms)}).fetchall()


def zones_in_force(conn: psycopg.Connection[Any], supervisee_id: str, from_ms: int, to_ms: int,
                   bounds: tuple[float, ...] = VIETNAM_BOUNDS) -> list[ZoneVersion]:
    """Every zone version of the supervisee in force at some instant of [from_ms, to_ms), with
    its effective span, by zone id then time: the track's per-fix decisions, the case export and
    replay decide each fix against the versions whose span holds its ``ts``."""
    rows = zone_rows_over(conn, supervisee_id, from_ms, to_ms)
    return [ZoneVersion(z, r["effective_from_ms"], r["effective_to_ms"], r["version"],
                        r["changed_by"]) for r in rows if (z := _parse(r, bounds)) is not None]


def zone_history(conn: psycopg.Connection[Any], supervisee_id: str,
                 zone_id: str) -> list[dict[str, Any]]:
    """Every version of one zone, oldest first, ended ones included, with their spans."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(_SPANS + " WHERE supervisee_id = %s AND zone_id = %s "
                           "ORDER BY effective_from, version", (supervisee_id, zone_id)).fetchall()


def _latest(conn: psycopg.Connection[Any], sid: str, zone_id: str) -> dict[str, Any] | None:
    """The zone's last version by (effective_from, version), ended or not."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(_SPANS + " WHERE supervisee_id = %s AND zone_id = %s "
                           "AND effective_to = 'infinity'", (sid, zone_id)).fetchone()


def _same(row: Mapping[str, Any], values: Mapping[str, Any]) -> bool:
    return not row["ended"] and all(row[c] == values[c] for c in COLUMNS)


def put_zone(conn: psycopg.Connection[Any], supervisee_id: str, zone_id: str,
             values: Mapping[str, Any], *, changed_by: str, now: datetime | None = None,
             effective_from: datetime | None = None,
             reason: str | None = None) -> tuple[str, dict[str, Any]]:
    """Make ``values`` (``geofence.zones.zone_columns`` of a validated zone) the zone's next
    version, in force from ``effective_from`` (default ``now``, never before it).

    Returns (outcome, the version's row): ``created`` (the zone had no version, or its last one
    ended it), ``updated`` (a new version), ``unchanged`` (its last version already says this:
    nothing written). The caller owns the transaction and bumps the registry (``registry.bump``).
    """
    now = now or db_now(conn)
    at = not_before(effective_from, now, "a zone change")
    if not lock_supervisee(conn, supervisee_id):
        raise ChangeRefused("no_supervisee", f"no supervisee {supervisee_id!r}")
    latest = _latest(conn, supervisee_id, zone_id)
    if latest is not None and _same(latest, values):
        return "unchanged", latest
    version = _next_version(conn, supervisee_id, zone_id)
    cols = ", ".join(COLUMNS)
    conn.execute(
        f"INSERT INTO zone_versions (supervisee_id, zone_id, version, effective_from, {cols}, "
        f"changed_by, change_reason, recorded_at) VALUES (%s, %s, %s, %s, "
        f"{', '.join(['%s'] * len(COLUMNS))}, %s, %s, %s)",
        (supervisee_id, zone_id, version, at, *_adapt(values), changed_by, reason, now))
    outcome = "created" if latest is None or latest["ended"] else "updated"
    row = _version_row(conn, supervisee_id, zone_id, version)
    return outcome, row


def end_zone(conn: psycopg.Connection[Any], supervisee_id: str, zone_id: str, *,
             changed_by: str, now: datetime | None = None,
             effective_from: datetime | None = None, reason: str | None = None) -> bool:
    """End the zone from ``effective_from`` (default ``now``) with a version saying so; False
    when it has no version in force or already ends."""
    now = now or db_now(conn)
    at = not_before(effective_from, now, "removing a zone")
    lock_supervisee(conn, supervisee_id)
    latest = _latest(conn, supervisee_id, zone_id)
    if latest is None or latest["ended"]:
        return False
    conn.execute("INSERT INTO zone_versions (supervisee_id, zone_id, version, effective_from, "
                 "ended, changed_by, change_reason, recorded_at) "
                 "VALUES (%s, %s, %s, %s, true, %s, %s, %s)",
                 (supervisee_id, zone_id, _next_version(conn, supervisee_id, zone_id), at,
                  changed_by, reason, now))
    return True


def _next_version(conn: psycopg.Connection[Any], sid: str, zone_id: str) -> int:
    row = conn.execute("SELECT coalesce(max(version), 0) + 1 FROM zone_versions "
                       "WHERE supervisee_id = %s AND zone_id = %s", (sid, zone_id)).fetchone()
    assert row is not None
    return int(row[0])


def _version_row(conn: psycopg.Connection[Any], sid: str, zone_id: str,
                 version: int) -> dict[str, Any]:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(_SPANS + " WHERE supervisee_id = %s AND zone_id = %s AND version = %s",
                          (sid, zone_id, version)).fetchone()
    assert row is not None
    return row


def _adapt(values: Mapping[str, Any]) -> list[Any]:
    out = [values[c] for c in COLUMNS]
    for i, c in enumerate(COLUMNS):
        if c in ("geometry", "schedule") and out[i] is not None:
            out[i] = Jsonb(out[i])
    return out
