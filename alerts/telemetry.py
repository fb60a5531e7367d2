"""Heartbeats and device events of a stored batch, through the rules (one transaction).

A ``checkin`` event is recorded as a roll-call check-in (``alerts.rollcall``).
Per device the messages are applied in ``ts`` order (events before a heartbeat of the same
``ts``: the event is the edge, the heartbeat the level). A message at or before the device's
mark of its kind (``alert_source_marks``: the newest (ts, seq) applied) changes nothing: a stale
heartbeat does not undo a newer state, and telemetry read again by the startup recovery is not
applied twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import psycopg

from alerts.model import Change, Occurrence, dt_to_ms, ms_to_dt
from alerts.rollcall import record_device_checkins
from alerts.rules import apply_all
from alerts.sources import Thresholds, field, from_event, from_heartbeat

Mark = tuple[int, int]  # (ts ms, seq)


def apply_device_messages(conn: psycopg.Connection, heartbeats: Sequence[Any],
                          events: Sequence[Any], now_ms: int, th: Thresholds,
                          supervisee_of: Mapping[str, str] | None = None) -> list[Change]:
    """Apply a batch's heartbeats and events in the caller's transaction; return the changes.

    ``supervisee_of`` maps device id -> supervisee id (looked up when not given); messages of
    devices assigned to nobody change no alert.
    """
    if not heartbeats and not events:
        return []
    devices = {field(m, "device_id") for m in (*heartbeats, *events)}
    owners = dict(supervisee_of) if supervisee_of is not None else {}
    missing = [d for d in devices if d not in owners]
    if missing:
        owners.update(_owners(conn, missing))
    marks = _marks(conn, devices)
    occurrences, new_marks = _occurrences(heartbeats, events, owners, marks, th)
    changes = apply_all(conn, occurrences, now_ms, th.late_after_ms)
    changes += record_device_checkins(conn, events, owners, now_ms)  # roll-call (contract §1)
    _save_marks(conn, new_marks)
    return changes


def _occurrences(heartbeats: Sequence[Any], events: Sequence[Any], owners: Mapping[str, str],
                 marks: dict[tuple[str, str], Mark],
                 th: Thresholds) -> tuple[list[Occurrence], dict[tuple[str, str], Mark]]:
    tagged = [("evt", e) for e in events] + [("hb", h) for h in heartbeats]
    tagged.sort(key=lambda km: (int(field(km[1], "ts")), km[0] != "evt", int(field(km[1], "seq"))))
    out: list[Occurrence] = []
    new_marks: dict[tuple[str, str], Mark] = {}
    for kind, msg in tagged:
        device = field(msg, "device_id")
        position = (int(field(msg, "ts")), int(field(msg, "seq")))
        key = (device, kind)
        if key in marks and position <= marks[key]:
            continue
        marks[key] = new_marks[key] = position
        owner = owners.get(device)
        if owner is None:
            continue
        out += from_event(msg, owner) if kind == "evt" else from_heartbeat(msg, owner, th)
    return out, new_marks


def _owners(conn: psycopg.Connection, devices: Iterable[str]) -> dict[str, str]:
    rows = conn.execute("SELECT id, supervisee_id FROM devices WHERE id = ANY(%s) "
                        "AND supervisee_id IS NOT NULL", (list(devices),)).fetchall()
    return {r[0]: r[1] for r in rows}


def _marks(conn: psycopg.Connection, devices: Iterable[str]) -> dict[tuple[str, str], Mark]:
    rows = conn.execute("SELECT device_id, kind, last_ts, last_seq FROM alert_source_marks "
                        "WHERE device_id = ANY(%s)", (list(devices),)).fetchall()
    return {(r[0], r[1]): (_ms(r[2]), r[3]) for r in rows}


def _ms(dt: datetime) -> int:
    ms = dt_to_ms(dt)
    assert ms is not None
    return ms


def _save_marks(conn: psycopg.Connection, marks: Mapping[tuple[str, str], Mark]) -> None:
    if not marks:
        return
    with conn.cursor() as cur:
        cur.executemany(
            """
            INSERT INTO alert_source_marks (device_id, kind, last_ts, last_seq)
            VALUES (%s, %s, %s, %s)
            ON CONFLICT (device_id, kind) DO UPDATE
               SET last_ts = excluded.last_ts, last_seq = excluded.last_seq
             WHERE (alert_source_marks.last_ts, alert_source_marks.last_seq)
                   < (excluded.last_ts, excluded.last_seq)
            """,
            [(d, k, ms_to_dt(ts), seq) for (d, k), (ts, seq) in marks.items()])
