"""The live stream of alert changes for the API (officers' dashboards, server-sent events).

Decision: the stream has no outbox rows. Every change inserts an ``alert_history`` row, whose
trigger sends ``NOTIFY alert_changes, '<alert id>:<history id>'`` in the same transaction;
PostgreSQL delivers it to listeners on commit, never for a rolled-back change. The API process
LISTENs (``listen``, then ``wait`` in a loop), reads each change's JSON (``change_json``: the exact JSON published for
that change) and pushes it to the connected officers. A listener that was down catches up with
``changes_since`` (history ids are increasing), so nothing needs retrying here.
"""

from __future__ import annotations

from typing import Any

import psycopg

from alerts.payload import alert_json
from alerts.store import fetch, parent_unit
from protocol import alert_topic

CHANNEL = "alert_changes"


def parse(payload: str) -> tuple[int, int]:
    """``'<alert id>:<history id>'`` -> (alert id, history id)."""
    alert_id, _, history_id = payload.partition(":")
    return int(alert_id), int(history_id)


def listen(conn: psycopg.Connection) -> None:
    """Subscribe ``conn`` (autocommit, kept for listening) to alert changes."""
    conn.execute(f"LISTEN {CHANNEL}")


def wait(conn: psycopg.Connection, timeout_s: float) -> list[tuple[int, int]]:
    """(alert id, history id) of the changes committed since the last call, waiting up to
    ``timeout_s`` for the first; [] on timeout. Returns between notifications, so the
    connection is free again (psycopg holds it while iterating ``notifies``)."""
    return [parse(n.payload) for n in conn.notifies(timeout=timeout_s, stop_after=1)]


def change_json(conn: psycopg.Connection, alert_id: int, history_id: int) -> dict[str, Any] | None:
    """The alert JSON published for one change (its outbox snapshot), or the alert's current
    JSON when the snapshot is gone; None when the alert does not exist."""
    row = conn.execute("SELECT payload FROM deliveries WHERE history_id = %s AND channel = 'mqtt' "
                       "ORDER BY id LIMIT 1", (history_id,)).fetchone()
    if row is not None:
        return row[0]
    alert = fetch(conn, alert_id)
    if alert is None:
        return None
    action = conn.execute("SELECT action FROM alert_history WHERE id = %s",
                          (history_id,)).fetchone()
    return alert_json(alert, history_id, action[0] if action else None,
                      parent_unit(conn, alert["unit"]))


def changes_since(conn: psycopg.Connection, history_id: int, units: list[str] | None = None,
                  limit: int = 500) -> list[dict[str, Any]]:
    """The JSON of changes after ``history_id`` (oldest first), optionally only of alerts
    routed to ``units`` (the responsible unit, or the parent once escalated): for a listener
    catching up after a reconnect."""
    rows = conn.execute(
        """
        SELECT DISTINCT ON (d.history_id) d.payload
          FROM deliveries d
         WHERE d.history_id > %(h)s AND d.channel = 'mqtt'
           AND (%(units)s::text[] IS NULL
                OR substr(d.target, %(unit_at)s) = ANY(%(units)s::text[]))
         ORDER BY d.history_id, d.id
         LIMIT %(limit)s
        """, {"h": history_id, "units": units, "limit": limit,
              "unit_at": len(alert_topic("")) + 1}).fetchall()
    return [r[0] for r in rows]
