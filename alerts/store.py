"""Persisting alert changes: the alert row, its history row and its outbox rows, in the
caller's transaction ("persist, then deliver": the deliverer sends after the commit).

Every change of every alert goes through ``record_change``: one history row (append-only,
contract §3: who, when, what, note) and one delivery row per channel target:
- MQTT ``em/v1/alerts/{unit}`` of the responsible unit, and of its parent once escalated;
- each enabled webhook of those units.
The live stream needs no outbox row: inserting the history row fires ``NOTIFY alert_changes``
(migration 0020), delivered by PostgreSQL on commit; see ``alerts.delivery.stream``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from alerts.model import Change, ms_to_dt
from alerts.payload import alert_json
from protocol import alert_topic


def lock_key(conn: psycopg.Connection, key: tuple[str, str, str]) -> None:
    """Serialise rule decisions on one (supervisee, type, zone) until the transaction ends,
    so two writers (the decide stage and a sweep) never both open an alert for it."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 7))", ("\x1f".join(key),))


def fetch(conn: psycopg.Connection, alert_id: int, lock: bool = False) -> dict[str, Any] | None:
    """The alert row as a dict, optionally locked for update; None when it does not exist."""
    sql = "SELECT * FROM alerts WHERE id = %s" + (" FOR UPDATE" if lock else "")
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(sql, (alert_id,)).fetchone()


def update(conn: psycopg.Connection, alert_id: int, fields: Mapping[str, Any]) -> dict[str, Any]:
    """Set ``fields`` on an alert and return the new row."""
    cols = ", ".join(f"{name} = %({name})s" for name in fields)
    params = {k: (Jsonb(v) if k == "explanation" else v) for k, v in fields.items()}
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(f"UPDATE alerts SET {cols} WHERE id = %(_id)s RETURNING *",
                          {**params, "_id": alert_id}).fetchone()
    assert row is not None, f"alert {alert_id} vanished"
    return row


def insert(conn: psycopg.Connection, fields: Mapping[str, Any]) -> dict[str, Any]:
    """Insert an alert row and return it."""
    names = list(fields)
    params = {k: (Jsonb(v) if k == "explanation" else v) for k, v in fields.items()}
    sql = (f"INSERT INTO alerts ({', '.join(names)}) "
           f"VALUES ({', '.join(f'%({n})s' for n in names)}) RETURNING *")
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(sql, params).fetchone()
    assert row is not None
    return row


def parent_unit(conn: psycopg.Connection, unit: str) -> str | None:
    """The parent (province) unit of a unit, or None at the top."""
    row = conn.execute("SELECT parent FROM units WHERE code = %s", (unit,)).fetchone()
    return row[0] if row else None


def record_change(conn: psycopg.Connection, row: Mapping[str, Any], action: str, now_ms: int,
                  actor: str = "system", note: str | None = None,
                  data: Mapping[str, Any] | None = None,
                  extra: Mapping[str, Any] | None = None) -> Change:
    """Write the history row and the outbox rows of a change already applied to ``row``;
    ``extra`` adds fields to the published JSON (e.g. the violation count on a resolution)."""
    at = ms_to_dt(now_ms)
    history_id = conn.execute(
        "INSERT INTO alert_history (alert_id, at, actor, action, note, data) "
        "VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
        (row["id"], at, actor, action, note, Jsonb(dict(data or {}))),
    ).fetchone()[0]
    parent = parent_unit(conn, row["unit"])
    payload = {**alert_json(row, history_id, action, parent), **(extra or {})}
    units = [row["unit"]] + ([parent] if row["escalated"] and parent else [])
    _enqueue(conn, row["id"], history_id, units, payload, at)
    return Change(row["id"], history_id, action, row["type"], row["unit"], payload)


def _enqueue(conn: psycopg.Connection, alert_id: int, history_id: int, units: list[str],
             payload: Mapping[str, Any], at: Any) -> None:
    # The idempotency key is fixed when the row is written, so it is the same on every retry.
    conn.execute(
        """
        INSERT INTO deliveries (alert_id, history_id, channel, target, idempotency_key, payload,
                                created_at, next_attempt_at)
        SELECT %(a)s, %(h)s, 'mqtt', t, 'gs-' || %(h)s || '-mqtt-' || u, %(p)s, %(at)s, %(at)s
          FROM unnest(%(units)s::text[], %(topics)s::text[]) AS x(u, t)
        UNION ALL
        SELECT %(a)s, %(h)s, 'webhook', w.id::text, 'gs-' || %(h)s || '-webhook-' || w.id,
               %(p)s, %(at)s, %(at)s
          FROM unit_webhooks w
         WHERE w.enabled AND w.unit = ANY(%(units)s::text[])
        """,
        {"a": alert_id, "h": history_id, "units": units, "topics": [alert_topic(u) for u in units],
         "p": Jsonb(dict(payload)), "at": at},
    )
