"""Roll-call (điểm danh, kiểm diện): windows, check-ins, and the missed-check-in sweep.

A supervisee reports for roll-call in windows: the monthly one of the sentence policy in force
(the implementing decree in force 2026-07-01: the first 5 local days of each month, cited by
``SentencePolicy.citation("roll_call")``) and ad-hoc ones an officer calls
(``rollcall_windows``). Both are cut to the sentence (its first to its last local day).

A window that closed before the supervisee was registered is not owed. A check-in counts for
a window when it lies inside it and was made at the commune police
station: in person (recorded by an officer) or a device's ``checkin`` event (contract §1
extension) whose place (the event's ``detail.lat``/``detail.lon``, else the device's last fix)
lies inside the station zone of the supervisee's unit (``units.station``).

``sweep_checkin_missed`` is a scheduled rule like the others (alerts.sweeps): a query, then for
each window closed without a counting check-in, one transaction that records the miss
(``rollcall_misses``, so a window is reported once) and applies a ``checkin_missed``
occurrence. A check-in that arrives late (a buffered device event) but lies inside a missed
window ends that alert's condition (``active`` false); the officer still resolves it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from shapely.geometry import Point

from alerts.model import Change, Occurrence, dt_to_ms, ms_to_dt
from alerts.rules import apply
from alerts.sources import Thresholds, field
from geofence.geodesy import vincenty
from geofence.policy import PolicyTable, SentencePolicy
from geofence.zones import Zone, ZoneError, parse_station

log = logging.getLogger("giamsat.alerts")

LOOKBACK_DAYS = 62  # windows closed longer ago than this are not swept again (two months)


@dataclass(frozen=True)
class Window:
    """One roll-call window [opens, closes) of a supervisee (UTC instants), with its local
    first and last days for the officer."""

    supervisee_id: str
    kind: str  # monthly | ad_hoc
    opens: datetime
    closes: datetime
    first_day: date
    last_day: date

    def holds(self, at: datetime) -> bool:
        return self.opens <= at < self.closes

    def as_json(self) -> dict[str, Any]:
        return {"supervisee_id": self.supervisee_id, "kind": self.kind,
                "opens_at": dt_to_ms(self.opens), "closes_at": dt_to_ms(self.closes),
                "first_day": self.first_day.isoformat(), "last_day": self.last_day.isoformat()}


def _local_midnight(day: date, tz: str) -> datetime:
    return datetime.combine(day, time(0), ZoneInfo(tz))


def _month_start(day: date, back: int = 0) -> date:
    m = day.year * 12 + day.month - 1 - back
    return date(m // 12, m % 12 + 1, 1)


def monthly_windows(policies: PolicyTable, sentence_type: str, sentence_start: date,
                    sentence_end: date, months: Iterable[date], tz: str,
                    supervisee_id: str = "") -> list[Window]:
    """The monthly windows of the given months (first days), cut to the sentence; none for a
    month whose policy has no roll-call."""
    out = []
    for first in months:
        policy = _policy(policies, sentence_type, first)
        if policy is None or policy.roll_call is None:
            continue
        last = first + timedelta(days=policy.roll_call.first_days - 1)
        lo, hi = max(first, sentence_start), min(last, sentence_end)
        if lo > hi:
            continue
        out.append(Window(supervisee_id, "monthly", _local_midnight(lo, tz),
                          _local_midnight(hi + timedelta(days=1), tz), lo, hi))
    return out


def _policy(policies: PolicyTable, sentence_type: str, on: date) -> SentencePolicy | None:
    try:
        return policies.for_sentence(sentence_type, on)
    except LookupError:
        return None


def station_zone(station: Any) -> Zone | None:
    """The station zone of a unit (None when none is registered or it is malformed)."""
    if not station:
        return None
    try:
        return parse_station(station)
    except ZoneError:
        return None


def at_station(zone: Zone | None, lat: float | None, lon: float | None) -> bool:
    """Whether a place lies inside a station zone (metres on the ellipsoid for a circle)."""
    if zone is None or lat is None or lon is None:
        return False
    if zone.circle is not None:
        c = zone.circle
        return float(vincenty(c.lon, c.lat, lon, lat)) <= c.radius_m
    return bool(zone.geometry.covers(Point(lon, lat)))


# --- check-ins ---------------------------------------------------------------------------

def record_checkin(conn: psycopg.Connection, supervisee_id: str, at: datetime, *,
                   method: str, placed_at_station: bool, recorded_by: str | None = None,
                   device_id: str | None = None, device_seq: int | None = None,
                   lat: float | None = None, lon: float | None = None,
                   note: str | None = None, now_ms: int) -> tuple[int | None, list[Change]]:
    """Store a check-in (a device event read twice is one row) in the caller's transaction;
    end the ``checkin_missed`` condition of a missed window it falls in. Returns (id or None
    when already stored, changes)."""
    row = conn.execute(
        "INSERT INTO checkins (supervisee_id, at, method, device_id, device_seq, lat, lon, "
        "at_station, recorded_by, note) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT DO NOTHING RETURNING id",
        (supervisee_id, at, method, device_id, device_seq, lat, lon, placed_at_station, recorded_by,
         note)).fetchone()
    if row is None or not placed_at_station:
        return (row[0] if row else None), []
    missed = conn.execute(
        "SELECT opens_at, closes_at, kind FROM rollcall_misses WHERE supervisee_id = %s "
        "AND opens_at <= %s AND closes_at > %s", (supervisee_id, at, at)).fetchone()
    if missed is None:
        return row[0], []
    at_ms = dt_to_ms(at)
    assert at_ms is not None
    occ = Occurrence("checkin_missed", supervisee_id, False, at_ms, device_id=device_id,
                     explanation={"source": "checkin", "checkin_id": row[0], "method": method,
                                  "late_checkin_at": at_ms})
    return row[0], apply(conn, occ, now_ms)


def record_device_checkins(conn: psycopg.Connection, events: Sequence[Any],
                           owners: Mapping[str, str], now_ms: int) -> list[Change]:
    """The ``checkin`` events of a stored batch as check-ins (caller's transaction)."""
    mine = [e for e in events if field(e, "type") == "checkin"
            and owners.get(field(e, "device_id")) is not None]
    if not mine:
        return []
    places = _device_places(conn, {field(e, "device_id") for e in mine})
    changes: list[Change] = []
    for ev in mine:
        device = field(ev, "device_id")
        sid = owners[device]
        lat, lon = _event_place(ev, places.get(device))
        zone = station_zone(places.get(device, {}).get("station"))
        _, ch = record_checkin(conn, sid, ms_to_dt(int(field(ev, "ts"))), method="device",
                               placed_at_station=at_station(zone, lat, lon), device_id=device,
                               device_seq=int(field(ev, "seq")), lat=lat, lon=lon,
                               now_ms=now_ms)
        changes += ch
    return changes


def _device_places(conn: psycopg.Connection, devices: set[str]) -> dict[str, dict[str, Any]]:
    rows = conn.execute(
        "SELECT d.id, ds.last_fix_lat, ds.last_fix_lon, u.station FROM devices d "
        "JOIN supervisees s ON s.id = d.supervisee_id JOIN units u ON u.code = s.unit "
        "LEFT JOIN device_state ds ON ds.device_id = d.id WHERE d.id = ANY(%s)",
        (sorted(devices),)).fetchall()
    return {r[0]: {"lat": r[1], "lon": r[2], "station": r[3]} for r in rows}


def _event_place(ev: Any, known: Mapping[str, Any] | None) -> tuple[float | None, float | None]:
    """The event's own fix (``detail.lat``/``detail.lon``), else the device's last fix."""
    detail = field(ev, "detail") or {}
    lat, lon = detail.get("lat"), detail.get("lon")
    if _coord(lat, 90) and _coord(lon, 180):
        return float(lat), float(lon)
    if known is None:
        return None, None
    return known.get("lat"), known.get("lon")


def _coord(v: Any, limit: float) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and -limit <= v <= limit


# --- the sweep ---------------------------------------------------------------------------

def windows_closed(conn: psycopg.Connection, now_ms: int, policies: PolicyTable,
                   tz: str, supervisee_ids: list[str] | None = None) -> list[Window]:
    """Every window (monthly and ad hoc) closed at ``now_ms`` within the lookback, of the given
    supervisees (all when None)."""
    now = ms_to_dt(now_ms)
    today = now.astimezone(ZoneInfo(tz)).date()
    since = today - timedelta(days=LOOKBACK_DAYS)
    people = conn.execute(
        "SELECT id, sentence_type, sentence_start, sentence_end, created_at FROM supervisees "
        "WHERE sentence_start <= %s AND sentence_end >= %s "
        "AND (%s::text[] IS NULL OR id = ANY(%s)) ORDER BY id",
        (today, since, supervisee_ids, supervisee_ids)).fetchall()
    months = [_month_start(today, 2), _month_start(today, 1), _month_start(today)]
    # a window that closed before the person was registered is not owed: the service could
    # not have recorded the check-in (a case imported mid-month starts with the next window)
    out = [w for sid, stype, start, end, registered in people
           for w in monthly_windows(policies, stype, start, end, months, tz, sid)
           if registered < w.closes <= now and w.last_day >= since]
    out += ad_hoc_windows(conn, tz, supervisee_ids, ms_to_dt(now_ms - LOOKBACK_DAYS * 86_400_000),
                          now)
    return out


def ad_hoc_windows(conn: psycopg.Connection, tz: str, supervisee_ids: list[str] | None,
                   closes_from: datetime, closes_to: datetime) -> list[Window]:
    """Ad-hoc windows closing in [closes_from, closes_to]."""
    zone = ZoneInfo(tz)
    rows = conn.execute(
        "SELECT supervisee_id, opens_at, closes_at FROM rollcall_windows "
        "WHERE closes_at >= %s AND closes_at <= %s "
        "AND (%s::text[] IS NULL OR supervisee_id = ANY(%s)) ORDER BY id",
        (closes_from, closes_to, supervisee_ids, supervisee_ids)).fetchall()
    return [Window(sid, "ad_hoc", o, c, o.astimezone(zone).date(),
                   (c - timedelta(microseconds=1)).astimezone(zone).date())
            for sid, o, c in rows]


def counted_checkins(conn: psycopg.Connection, supervisee_ids: list[str],
                     since: datetime) -> dict[str, list[datetime]]:
    """The times of the check-ins made at the station since ``since``, per supervisee."""
    out: dict[str, list[datetime]] = {}
    for sid, at in conn.execute(
            "SELECT supervisee_id, at FROM checkins WHERE at_station AND at >= %s "
            "AND supervisee_id = ANY(%s)", (since, supervisee_ids)):
        out.setdefault(sid, []).append(at)
    return out


def missed(windows: list[Window], checkins: Mapping[str, list[datetime]]) -> list[Window]:
    """The windows no counted check-in falls in (pure)."""
    return [w for w in windows if not any(w.holds(at) for at in checkins.get(w.supervisee_id, []))]


def sweep_checkin_missed(conn: psycopg.Connection, now_ms: int, th: Thresholds,
                         policies: PolicyTable) -> list[Change]:
    """Open (or fold into) a ``checkin_missed`` alert for each roll-call window closed without
    a check-in at the station, once per window."""
    with conn.transaction():
        windows = windows_closed(conn, now_ms, policies, th.timezone)
        if not windows:
            return []
        sids = sorted({w.supervisee_id for w in windows})
        done = {(r[0], r[1]) for r in conn.execute(
            "SELECT supervisee_id, opens_at FROM rollcall_misses WHERE supervisee_id = ANY(%s)",
            (sids,))}
        windows = [w for w in windows if (w.supervisee_id, w.opens) not in done]
        earliest = min((w.opens for w in windows), default=ms_to_dt(now_ms))
        checkins = counted_checkins(conn, sids, earliest)
    changes: list[Change] = []
    for w in missed(windows, checkins):
        with conn.transaction():
            changes += _report_miss(conn, w, now_ms, policies)
    return changes


def _report_miss(conn: psycopg.Connection, w: Window, now_ms: int,
                 policies: PolicyTable) -> list[Change]:
    row = conn.execute(
        "INSERT INTO rollcall_misses (supervisee_id, opens_at, closes_at, kind, found_at) "
        "VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING supervisee_id",
        (w.supervisee_id, w.opens, w.closes, w.kind, ms_to_dt(now_ms))).fetchone()
    if row is None:  # another sweep got there first
        return []
    closes_ms = dt_to_ms(w.closes)
    assert closes_ms is not None
    occ = Occurrence("checkin_missed", w.supervisee_id, True, closes_ms, since_ms=closes_ms,
                     edge=True, explanation=_explanation(conn, w, policies))
    changes = apply(conn, occ, now_ms)
    if changes:
        conn.execute("UPDATE rollcall_misses SET alert_id = %s WHERE supervisee_id = %s "
                     "AND opens_at = %s", (changes[-1].alert_id, w.supervisee_id, w.opens))
        log.info("roll-call window %s..%s of %s missed", w.first_day, w.last_day,
                 w.supervisee_id)
    return changes


def _explanation(conn: psycopg.Connection, w: Window,
                 policies: PolicyTable) -> dict[str, Any]:
    stype = conn.execute("SELECT sentence_type FROM supervisees WHERE id = %s",
                         (w.supervisee_id,)).fetchone()
    policy = _policy(policies, stype[0], w.first_day) if stype else None
    cite = policy.citation("roll_call") if policy else None
    return {"source": "sweep", "rule": "roll_call", "kind": w.kind,
            "window_from": dt_to_ms(w.opens), "window_to": dt_to_ms(w.closes),
            "window_first_day": w.first_day.isoformat(),
            "window_last_day": w.last_day.isoformat(),
            "citation": cite.as_json() if cite else None}
