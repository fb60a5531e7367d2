"""Scheduled rules: each is a query and a call into the same rule path as the live sources.

- ``sweep_offline``: no message for ``offline_after_s`` -> ``device_offline``; ended once the
  device is heard again; a device assigned and never heard from counts from its assignment;
- ``sweep_monitoring_ended``: the sentence ended (the end of its last local day) and a device is
  still assigned -> one ``monitoring_ended`` alert (remove the device); the device sweeps leave
  such a supervisee alone;
- ``sweep_gnss_lost``: still talking, but no usable fix for ``gnss_lost_after_s``;
- ``sweep_escalation``: open past the unit's ``ack_within_s`` -> escalated to the parent unit;
- ``sweep_severity``: a zone alert whose condition has lasted its ``escalate_after_s`` -> high.

Each takes a connection outside any transaction and ``now_ms`` (injected: never the wall clock),
and commits every item in a transaction of its own, so a sweep never holds more than one
alert key and cannot deadlock with the decide stage. It returns the changes made. Run every
``sweep_interval_s`` (a few seconds), a device_offline alert lands within seconds of its
deadline (contract: within 30 s).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import psycopg

from alerts import lifecycle
from alerts.model import ZONE_TYPES, Change, Occurrence, dt_to_ms, ms_to_dt
from alerts.rules import apply
from alerts.sources import Thresholds


def _each(conn: psycopg.Connection, items: Iterable[Any],
          step: Callable[[Any], list[Change] | Change | None]) -> list[Change]:
    out: list[Change] = []
    for item in items:
        with conn.transaction():
            result = step(item)
        if isinstance(result, list):
            out += result
        elif result is not None:
            out.append(result)
    return out


def _query(conn: psycopg.Connection, sql: str, params: dict[str, Any]) -> list[tuple]:
    with conn.transaction():
        return conn.execute(sql, params).fetchall()


def sweep_offline(conn: psycopg.Connection, now_ms: int, th: Thresholds) -> list[Change]:
    """Open ``device_offline`` for assigned devices silent for ``offline_after_s`` (server
    clock: ``device_state.last_seen_at``, or the assignment for a device never heard from);
    end it for those heard since. Supervisees whose sentence has ended are left alone."""
    cutoff = ms_to_dt(now_ms - th.offline_after_s * 1000)
    silent = _query(conn, f"""
        SELECT d.id, d.supervisee_id, coalesce(ds.last_seen_at, {_ASSIGNED}),
               ds.last_fix_lat, ds.last_fix_lon
          FROM devices d JOIN supervisees s ON s.id = d.supervisee_id
          LEFT JOIN device_state ds ON ds.device_id = d.id
         WHERE coalesce(ds.last_seen_at, {_ASSIGNED}) < %(cutoff)s
           AND {_UNDER_SENTENCE}
           AND NOT EXISTS (SELECT 1 FROM alerts a WHERE a.active AND a.type = 'device_offline'
                              AND a.supervisee_id = d.supervisee_id)
        """, {"cutoff": cutoff, "now": ms_to_dt(now_ms), "tz": th.timezone})
    heard = _query(conn, """
        SELECT a.device_id, a.supervisee_id, ds.last_seen_at, NULL, NULL
          FROM alerts a JOIN device_state ds ON ds.device_id = a.device_id
         WHERE a.active AND a.type = 'device_offline' AND ds.last_seen_at >= %(cutoff)s
        """, {"cutoff": cutoff})
    occs = [_silence("device_offline", r, th.offline_after_s, active, "last_seen_at")
            for rows, active in ((silent, True), (heard, False)) for r in rows]
    return _each(conn, occs, lambda o: apply(conn, o, now_ms, th.late_after_ms))


# When a device was given to its wearer: the open assignment, else its registration.
_ASSIGNED = """coalesce((SELECT max(da.assigned_at) FROM device_assignments da
                   WHERE da.device_id = d.id AND da.unassigned_at IS NULL), d.registered_at)"""
# The sentence has not ended: monitoring runs to the end of sentence_end's local day.
_UNDER_SENTENCE = "%(now)s < ((s.sentence_end + 1)::timestamp AT TIME ZONE %(tz)s)"


def sweep_monitoring_ended(conn: psycopg.Connection, now_ms: int,
                           th: Thresholds) -> list[Change]:
    """One ``monitoring_ended`` alert per supervisee whose sentence has ended while a device
    is still assigned: the unit should remove the device. Raised once, ever, per supervisee."""
    due = _query(conn, f"""
        SELECT d.id, s.id, (s.sentence_end + 1)::timestamp AT TIME ZONE %(tz)s,
               ds.last_fix_lat, ds.last_fix_lon, s.sentence_end
          FROM supervisees s JOIN devices d ON d.supervisee_id = s.id
          LEFT JOIN device_state ds ON ds.device_id = d.id
         WHERE NOT ({_UNDER_SENTENCE})
           AND NOT EXISTS (SELECT 1 FROM alerts a WHERE a.type = 'monitoring_ended'
                              AND a.supervisee_id = s.id)
         ORDER BY s.id, d.id
        """, {"now": ms_to_dt(now_ms), "tz": th.timezone})
    occs = {}
    for device, sid, ended, lat, lon, end_date in due:
        ended_ms = dt_to_ms(ended)
        assert ended_ms is not None
        occs.setdefault(sid, Occurrence(
            "monitoring_ended", sid, True, ended_ms, device_id=device, lat=lat, lon=lon,
            since_ms=ended_ms, edge=True,
            explanation={"source": "sweep", "sentence_end": end_date.isoformat()}))
    return _each(conn, occs.values(), lambda o: apply(conn, o, now_ms))


def _silence(alert_type: str, r: tuple, after_s: int, active: bool, since: str) -> Occurrence:
    """A device-silence occurrence from a row (device, supervisee, since, lat, lon): it started
    ``after_s`` after ``since`` (the last message / last usable fix), or ended at ``since``."""
    since_ms = dt_to_ms(r[2])
    assert since_ms is not None
    ts = since_ms + after_s * 1000 if active else since_ms
    return Occurrence(alert_type, r[1], active, ts, device_id=r[0], lat=r[3], lon=r[4],
                      since_ms=since_ms,
                      explanation={"source": "sweep", since: since_ms, "after_s": after_s})


def sweep_gnss_lost(conn: psycopg.Connection, now_ms: int, th: Thresholds) -> list[Change]:
    """Open ``gnss_lost`` for devices still talking (heard within ``offline_after_s``) whose last
    usable fix (``acc`` <= max_accuracy_m; device clock) is older than ``gnss_lost_after_s``
    (counted from registration when there was none); end it once a recent usable fix arrives."""
    params = {"talking": ms_to_dt(now_ms - th.offline_after_s * 1000),
              "cutoff": ms_to_dt(now_ms - th.gnss_lost_after_s * 1000),
              "now": ms_to_dt(now_ms), "tz": th.timezone}
    lost = _query(conn, f"""
        SELECT d.id, d.supervisee_id, coalesce(ds.last_good_fix_ts, d.registered_at),
               ds.last_fix_lat, ds.last_fix_lon
          FROM device_state ds JOIN devices d ON d.id = ds.device_id
          JOIN supervisees s ON s.id = d.supervisee_id
         WHERE {_UNDER_SENTENCE} AND ds.last_seen_at >= %(talking)s
           AND ds.last_hb_ts IS NOT NULL
           AND coalesce(ds.last_good_fix_ts, d.registered_at) < %(cutoff)s
           AND NOT EXISTS (SELECT 1 FROM alerts a WHERE a.active AND a.type = 'gnss_lost'
                              AND a.supervisee_id = d.supervisee_id)
        """, params)
    found = _query(conn, """
        SELECT a.device_id, a.supervisee_id, ds.last_good_fix_ts, ds.last_fix_lat, ds.last_fix_lon
          FROM alerts a JOIN device_state ds ON ds.device_id = a.device_id
         WHERE a.active AND a.type = 'gnss_lost' AND ds.last_good_fix_ts >= %(cutoff)s
        """, params)
    occs = [_silence("gnss_lost", r, th.gnss_lost_after_s, active, "last_good_fix_ts")
            for rows, active in ((lost, True), (found, False)) for r in rows]
    return _each(conn, occs, lambda o: apply(conn, o, now_ms, th.late_after_ms))


def sweep_escalation(conn: psycopg.Connection, now_ms: int) -> list[Change]:
    """Escalate alerts still ``open`` (unacknowledged) past their unit's ``ack_within_s``."""
    due = _query(conn, """
        SELECT a.id FROM alerts a JOIN units u ON u.code = a.unit
         WHERE a.status = 'open' AND NOT a.escalated
           AND a.opened_at + make_interval(secs => u.ack_within_s) <= %(now)s
         ORDER BY a.id
        """, {"now": ms_to_dt(now_ms)})
    return _each(conn, due, lambda r: lifecycle.escalate(conn, r[0], now_ms))


def sweep_severity(conn: psycopg.Connection, now_ms: int) -> list[Change]:
    """Raise to ``high`` the zone alerts whose condition has lasted their ``escalate_after_s``
    (contract §2 policy table: a day away for án treo, 6 h staying for cấm cư trú)."""
    due = _query(conn, """
        SELECT id, escalate_after_s FROM alerts
         WHERE active AND severity = 'medium' AND status <> 'resolved'
           AND type = ANY(%(types)s) AND escalate_after_s IS NOT NULL
           AND condition_since + make_interval(secs => escalate_after_s) <= %(now)s
         ORDER BY id
        """, {"now": ms_to_dt(now_ms), "types": list(ZONE_TYPES)})
    return _each(conn, due, lambda r: lifecycle.raise_severity(
        conn, r[0], "high", now_ms, reason=f"condition lasted {r[1]} s"))
