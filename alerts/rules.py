"""The one rule path: an occurrence in, alert changes out (contract §3).

``apply(conn, occurrence, now_ms)`` runs inside the caller's transaction and decides, for the
occurrence's key (supervisee, type, zone):

====================  =========================================  ==============================
latest alert of key   condition started (``active``)             condition ended
====================  =========================================  ==============================
none / all ended      open a new alert                           nothing
unresolved, ended     fold in: active again, occurrences + 1     nothing
active                edge: fold in (occurrences + 1);           mark inactive
                      level: nothing (still the same condition)
resolved, active      edge: new alert (old one marked ended);    mark inactive
                      level: nothing (the officer dealt with it)
====================  =========================================  ==============================

An occurrence older than ``late_after_ms`` when it is applied (fixes that arrived after a
restart, a backlog or a buffered batch) opens an alert that says so: ``occurred_at`` holds when
the condition began by the devices' own times, ``opened_at`` when the service raised it.

"Latest alert" is the unresolved one, or a resolved one whose condition still holds: an officer
who resolves a low-battery alert while the battery is still low gets no second alert for the
same condition, but does get one when it ends and comes back.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

import psycopg
from psycopg.rows import dict_row

from alerts import store, texts
from alerts.model import Change, Occurrence, max_severity, ms_to_dt

log = logging.getLogger("giamsat.alerts")


def apply(conn: psycopg.Connection, occ: Occurrence, now_ms: int,
          late_after_ms: int | None = None) -> list[Change]:
    """Apply one occurrence in the caller's transaction; return the changes it made (0 to 2).
    ``late_after_ms``: an occurrence older than this opens a retrospective alert (None: never)."""
    store.lock_key(conn, occ.key)
    row = _latest(conn, occ)
    if not occ.active:
        return [] if row is None or not row["active"] else [_end(conn, row, occ, now_ms)]
    late = late_after_ms is not None and now_ms - occ.ts_ms > late_after_ms
    if row is None:
        return _open(conn, occ, now_ms, late)
    if row["status"] != "resolved":
        if not row["active"] or occ.edge:
            return [_fold(conn, row, occ, now_ms)]
        return []
    if not occ.edge:  # resolved while the condition holds: the same condition goes on
        return []
    return [_end(conn, row, occ, now_ms, note="superseded by a new occurrence"),
            *_open(conn, occ, now_ms, late)]


def apply_all(conn: psycopg.Connection, occurrences: Iterable[Occurrence],
              now_ms: int, late_after_ms: int | None = None) -> list[Change]:
    """Apply occurrences in order in the caller's transaction, skipping with one query per
    call those that cannot change anything (a heartbeat saying all is still well)."""
    occs = list(occurrences)
    if not occs:
        return []
    keys = ActiveKeys.load(conn, {o.supervisee_id for o in occs})
    changes: list[Change] = []
    for occ in occs:
        if keys.may_change(occ):
            changes += apply(conn, occ, now_ms, late_after_ms)
            keys.note(occ)
    return changes


class ActiveKeys:
    """The keys whose latest alert is active, for skipping occurrences that change nothing."""

    def __init__(self, keys: set[tuple[str, str, str]]) -> None:
        self._keys = keys

    @classmethod
    def load(cls, conn: psycopg.Connection, supervisee_ids: Iterable[str]) -> ActiveKeys:
        rows = conn.execute(
            "SELECT supervisee_id, type, coalesce(zone_id, '') FROM alerts "
            "WHERE active AND supervisee_id = ANY(%s)", (list(supervisee_ids),)).fetchall()
        return cls({(r[0], r[1], r[2]) for r in rows})

    def may_change(self, occ: Occurrence) -> bool:
        if not occ.active:
            return occ.key in self._keys
        return occ.edge or occ.key not in self._keys

    def note(self, occ: Occurrence) -> None:
        (self._keys.add if occ.active else self._keys.discard)(occ.key)


def _latest(conn: psycopg.Connection, occ: Occurrence) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT * FROM alerts WHERE supervisee_id = %s AND type = %s "
            "AND coalesce(zone_id, '') = %s AND (status <> 'resolved' OR active) "
            "ORDER BY id DESC LIMIT 1 FOR UPDATE", occ.key).fetchone()


def _context(conn: psycopg.Connection, occ: Occurrence) -> dict[str, Any] | None:
    """Unit, device and last position of the occurrence's supervisee."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            """
            SELECT s.unit, coalesce(%(dev)s, d.id) AS device_id,
                   ds.last_fix_lat AS lat, ds.last_fix_lon AS lon
              FROM supervisees s
              LEFT JOIN LATERAL (SELECT id FROM devices WHERE supervisee_id = s.id
                                  ORDER BY registered_at DESC LIMIT 1) d ON true
              LEFT JOIN device_state ds ON ds.device_id = coalesce(%(dev)s, d.id)
             WHERE s.id = %(sid)s
            """, {"dev": occ.device_id, "sid": occ.supervisee_id}).fetchone()


def _messages(occ: Occurrence, device_id: str | None) -> tuple[str, str]:
    ctx = {**occ.explanation, "supervisee_id": occ.supervisee_id, "device_id": device_id,
           "zone_id": occ.zone_id}
    return texts.render(occ.type, ctx)


def _history_data(occ: Occurrence) -> dict[str, Any]:
    return {"ts": occ.ts_ms, "explanation": dict(occ.explanation)}


def _open(conn: psycopg.Connection, occ: Occurrence, now_ms: int,
          late: bool = False) -> list[Change]:
    ctx = _context(conn, occ)
    if ctx is None:
        log.warning("occurrence %s for unknown supervisee %s ignored", occ.type, occ.supervisee_id)
        return []
    vi, en = _messages(occ, ctx["device_id"])
    now = ms_to_dt(now_ms)
    since = ms_to_dt(occ.since_ms if occ.since_ms is not None else occ.ts_ms)
    row = store.insert(conn, {
        "type": occ.type, "severity": occ.opening_severity, "active": True,
        "supervisee_id": occ.supervisee_id, "device_id": ctx["device_id"], "unit": ctx["unit"],
        "zone_id": occ.zone_id,
        "lat": occ.lat if occ.lat is not None else ctx["lat"],
        "lon": occ.lon if occ.lon is not None else ctx["lon"],
        "opened_at": now, "updated_at": now,
        "condition_since": since, "occurred_at": since if late else None,
        "escalate_after_s": occ.escalate_after_s, "explanation": dict(occ.explanation),
        "message_vi": vi, "message_en": en,
    })
    log.info("alert %s opened%s: %s of %s", row["id"], " (retrospective)" if late else "",
             occ.type, occ.supervisee_id)
    return [store.record_change(conn, row, "opened", now_ms, data=_history_data(occ))]


def _fold(conn: psycopg.Connection, row: Mapping[str, Any], occ: Occurrence,
          now_ms: int) -> Change:
    """A repeated occurrence updates the unresolved alert rather than opening another."""
    reactivated = not row["active"]
    fields: dict[str, Any] = {
        "active": True, "occurrences": row["occurrences"] + 1, "updated_at": ms_to_dt(now_ms),
        "severity": max_severity(row["severity"], occ.opening_severity),
        "explanation": dict(occ.explanation),
    }
    if reactivated:
        since = occ.since_ms if occ.since_ms is not None else occ.ts_ms
        fields["condition_since"] = ms_to_dt(since)
    if occ.lat is not None:
        fields.update(lat=occ.lat, lon=occ.lon)
    if occ.escalate_after_s is not None:
        fields["escalate_after_s"] = occ.escalate_after_s
    fields["message_vi"], fields["message_en"] = _messages(occ, row["device_id"])
    new = store.update(conn, row["id"], fields)
    action = "active" if reactivated else "updated"
    return store.record_change(conn, new, action, now_ms, note="repeated occurrence folded in",
                               data={**_history_data(occ), "occurrences": new["occurrences"]})


def _end(conn: psycopg.Connection, row: Mapping[str, Any], occ: Occurrence, now_ms: int,
         note: str | None = None) -> Change:
    """The condition no longer holds: ``active`` false, status unchanged."""
    fields: dict[str, Any] = {"active": False, "updated_at": ms_to_dt(now_ms)}
    if occ.lat is not None and not occ.active:
        fields.update(lat=occ.lat, lon=occ.lon)
    new = store.update(conn, row["id"], fields)
    return store.record_change(conn, new, "inactive", now_ms, note=note, data=_history_data(occ))
