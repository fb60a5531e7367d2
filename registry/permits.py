"""Permits (giấy phép vắng mặt), versioned (schema/migrations/0050_registry_versions.sql).

One writer (``grant``, ``revoke``, ``shorten``, ``amend``) and one reader of permits for the
API, the importer and the decide stage. Revoking or shortening a permit is a new version, in
force from when the change was made; the version in force at an instant is the latest by
(effective_from, version) not after it.

THE revocation rule, applied by every reader here and nowhere else (``_APPLIES``, ``_ENDS``): a
permit revoked after it started counts up to its revocation (it was in use until then, so the
policy's total of trips counts that part); one revoked before it started never applied.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any, NamedTuple

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from geofence.policy import Permit
from geofence.zones import ZoneError, parse_geometry
from registry.common import ChangeRefused, db_now, lock_supervisee, ms_sql, ms_to_dt

log = logging.getLogger("giamsat.registry")

_APPLIES = "(revoked_at IS NULL OR revoked_at > valid_from)"
_ENDS = "LEAST(valid_to, coalesce(revoked_at, valid_to))"

_SPANS = f"""
SELECT permit_id AS id, version, supervisee_id, valid_from, valid_to, reason, category,
       destination, anywhere, granted_by, created_at, revoked_at, changed_by, change_reason,
       recorded_at, {_APPLIES} AS applies, {_ENDS} AS ends_at,
       {ms_sql("effective_from")}, {ms_sql("effective_to")}
  FROM permit_spans
"""
_CURRENT = _SPANS + " WHERE effective_to = 'infinity'"


class PermitVersion(NamedTuple):
    """One version of a permit as it applies (the revocation rule applied) and the span it is
    in force: [effective_from_ms, effective_to_ms), UTC epoch ms, None for an open end."""

    permit: Permit
    effective_from_ms: int | None
    effective_to_ms: int | None
    version: int
    changed_by: str

    def in_force_at(self, ts_ms: int) -> bool:
        """True when this version is the one in force at ``ts_ms``."""
        return ((self.effective_from_ms is None or self.effective_from_ms <= ts_ms)
                and (self.effective_to_ms is None or ts_ms < self.effective_to_ms))


def as_permit(row: Mapping[str, Any]) -> Permit | None:
    """A permit row as the geofence's ``Permit`` under the revocation rule: None when it never
    applied, or when its stored destination is one the geofence refuses (logged, by id)."""
    if not row["applies"]:
        return None
    try:
        dest = None if row["anywhere"] else parse_geometry(row["destination"],
                                                           f"permits[{row['id']}].destination")
    except ZoneError as exc:
        log.warning("permit %s has an invalid destination at %s", row["id"], exc.path)
        return None
    return Permit(row["supervisee_id"], row["valid_from"], row["ends_at"], row["reason"],
                  row["category"], dest, id=row["id"])


def permit_rows(conn: psycopg.Connection[Any], ids: list[str] | None = None) -> list[dict]:
    """The current version of every permit of the supervisees in ``ids`` (default all), revoked
    ones included, by supervisee and start."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(_CURRENT + " AND (%(ids)s::text[] IS NULL "
                           "OR supervisee_id = ANY(%(ids)s)) "
                           "ORDER BY supervisee_id, valid_from, permit_id",
                           {"ids": ids}).fetchall()


def permit_row(conn: psycopg.Connection[Any], permit_id: int) -> dict[str, Any] | None:
    """The current version of one permit."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(_CURRENT + " AND permit_id = %s", (permit_id,)).fetchone()


def load_permits(conn: psycopg.Connection[Any], ids: list[str] | None = None) -> list[Permit]:
    """The permits as they apply now (current versions, the revocation rule applied) of the
    supervisees in ``ids`` (default all): the live fence and every policy check use these."""
    return [p for r in permit_rows(conn, ids) if (p := as_permit(r)) is not None]


def permit_rows_over(conn: psycopg.Connection[Any], supervisee_id: str, from_ms: int,
                     to_ms: int) -> list[dict[str, Any]]:
    """Rows of every version of the supervisee's permits in force at some instant of
    [from_ms, to_ms), revoked ones included, by start, permit and time."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(_SPANS + " WHERE supervisee_id = %s AND effective_from < %s "
                           "AND effective_to > %s AND effective_to > effective_from "
                           "ORDER BY valid_from, permit_id, effective_from, version",
                           (supervisee_id, ms_to_dt(to_ms), ms_to_dt(from_ms))).fetchall()


def permits_in_force(conn: psycopg.Connection[Any], supervisee_id: str, from_ms: int,
                     to_ms: int) -> list[PermitVersion]:
    """Every version of the supervisee's permits in force at some instant of [from_ms, to_ms)
    and applying (the revocation rule), with its span: decide a fix at ``ts`` with the versions
    whose span holds it."""
    rows = permit_rows_over(conn, supervisee_id, from_ms, to_ms)
    return [PermitVersion(p, r["effective_from_ms"], r["effective_to_ms"], r["version"],
                          r["changed_by"]) for r in rows if (p := as_permit(r)) is not None]


def permit_history(conn: psycopg.Connection[Any], permit_id: int) -> list[dict[str, Any]]:
    """Every version of one permit, oldest first, with their spans."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(_SPANS + " WHERE permit_id = %s ORDER BY effective_from, version",
                           (permit_id,)).fetchall()


def grant(conn: psycopg.Connection[Any], supervisee_id: str, *, valid_from: datetime,
          valid_to: datetime, reason: str, category: str, destination: dict | None,
          granted_by: str, now: datetime | None = None) -> dict[str, Any] | None:
    """Record a new permit (version 1, in force from ``now``); ``destination`` None means
    anywhere. None when the same permit (supervisee, from, to, reason) exists already. Check it
    against the sentence policy first (``geofence.policy.check_permit`` with ``load_permits``)."""
    now = now or db_now(conn)
    row = conn.execute(
        "INSERT INTO permit_versions (permit_id, version, effective_from, supervisee_id, "
        "valid_from, valid_to, reason, category, destination, anywhere, granted_by, created_at, "
        "changed_by, recorded_at) "
        "VALUES (nextval('permit_ids'), 1, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (supervisee_id, valid_from, valid_to, reason) WHERE version = 1 DO NOTHING "
        "RETURNING permit_id",
        (now, supervisee_id, valid_from, valid_to, reason, category,
         None if destination is None else Jsonb(destination), destination is None, granted_by,
         now, granted_by, now)).fetchone()
    return None if row is None else permit_row(conn, row[0])


def revoke(conn: psycopg.Connection[Any], permit_id: int, *, changed_by: str, reason: str,
           at: datetime | None = None, now: datetime | None = None) -> dict[str, Any]:
    """Revoke the permit from ``at`` (default ``now``; never before it) as a new version. A
    revocation before the permit starts means it never applies. Refused when the permit has
    ended or is revoked already by then."""
    now = now or db_now(conn)
    row = _current_for_change(conn, permit_id)
    at = at or now
    if at < now:
        raise ChangeRefused("effective_in_past", "a revocation cannot take effect in the past: "
                            "decisions already made under the permit stand")
    if row["revoked_at"] is not None and row["revoked_at"] <= at:
        raise ChangeRefused("already_revoked",
                            f"permit {permit_id} is revoked already from "
                            f"{row['revoked_at'].isoformat()}")
    if row["ends_at"] <= at:
        raise ChangeRefused("already_ended", f"permit {permit_id} ended at "
                            f"{row['ends_at'].isoformat()}; nothing is left to revoke")
    return _new_version(conn, row, {"revoked_at": at}, changed_by, reason, now)


def shorten(conn: psycopg.Connection[Any], permit_id: int, *, valid_to: datetime,
            changed_by: str, reason: str, now: datetime | None = None) -> dict[str, Any]:
    """End the permit earlier, at ``valid_to``, as a new version. The new end must be after the
    start, before the current end, and not in the past (decisions made stand)."""
    now = now or db_now(conn)
    row = _current_for_change(conn, permit_id)
    if not row["applies"]:
        raise ChangeRefused("already_revoked", f"permit {permit_id} was revoked before it started")
    if valid_to >= row["ends_at"]:
        raise ChangeRefused("not_shorter", f"the new end must be before the current one "
                            f"({row['ends_at'].isoformat()}); a longer permit is a new permit, "
                            "checked against the sentence policy")
    if valid_to <= row["valid_from"]:
        raise ChangeRefused("not_after_start", "the new end must be after the permit's start "
                            f"({row['valid_from'].isoformat()}); to cancel it, revoke it")
    if valid_to < now:
        raise ChangeRefused("effective_in_past", "a permit cannot be shortened into the past: "
                            "decisions already made under it stand")
    return _new_version(conn, row, {"valid_to": valid_to}, changed_by, reason, now)


def amend(conn: psycopg.Connection[Any], permit_id: int, *, category: str,
          destination: dict | None, changed_by: str, reason: str | None = None,
          now: datetime | None = None) -> dict[str, Any] | None:
    """A new version with another category or destination (``None``: anywhere), in force from
    ``now`` (the importer's changed permits); None when the current version says so already."""
    row = _current_for_change(conn, permit_id)
    if (row["category"], row["anywhere"], row["destination"]) == (
            category, destination is None, destination):
        return None
    return _new_version(conn, row, {"category": category, "anywhere": destination is None,
                                    "destination": destination}, changed_by, reason,
                        now or db_now(conn))


def _current_for_change(conn: psycopg.Connection[Any], permit_id: int) -> dict[str, Any]:
    row = permit_row(conn, permit_id)
    if row is None:
        raise ChangeRefused("no_permit", f"no permit {permit_id}")
    lock_supervisee(conn, row["supervisee_id"])
    return permit_row(conn, permit_id) or row


_VERSION_COLS = ("supervisee_id", "valid_from", "valid_to", "reason", "category", "destination",
                 "anywhere", "granted_by", "created_at", "revoked_at")


def _new_version(conn: psycopg.Connection[Any], row: dict[str, Any], changes: dict[str, Any],
                 changed_by: str, reason: str | None, now: datetime) -> dict[str, Any]:
    values = {**{c: row[c] for c in _VERSION_COLS}, **changes}
    if values["destination"] is not None:
        values["destination"] = Jsonb(values["destination"])
    (version,) = conn.execute("SELECT max(version) + 1 FROM permit_versions WHERE permit_id = %s",
                              (row["id"],)).fetchone() or (1,)
    # versions follow one another: never in force before the one they replace
    since = row["effective_from_ms"]
    effective = now if since is None else max(now, ms_to_dt(since))
    conn.execute(
        "INSERT INTO permit_versions (permit_id, version, effective_from, "
        f"{', '.join(_VERSION_COLS)}, changed_by, change_reason, recorded_at) VALUES (%s, %s, %s, "
        f"{', '.join(['%s'] * len(_VERSION_COLS))}, %s, %s, %s)",
        (row["id"], version, effective, *values.values(), changed_by, reason, now))
    new = permit_row(conn, row["id"])
    assert new is not None
    return new


def find(conn: psycopg.Connection[Any], supervisee_id: str, valid_from: datetime,
         valid_to: datetime, reason: str) -> int | None:
    """The id of the permit first granted as (supervisee, from, to, reason), if any."""
    row = conn.execute("SELECT permit_id FROM permit_versions WHERE version = 1 AND "
                       "supervisee_id = %s AND valid_from = %s AND valid_to = %s AND reason = %s",
                       (supervisee_id, valid_from, valid_to, reason)).fetchone()
    return None if row is None else int(row[0])
