"""What the decide stage reads back from the database: the telemetry stored but not yet decided
(after a crash, a kill or a database outage), and the progress mark that bounds it.

The mark (``decide_progress.received_at``) is written in the same transaction as each batch's
decisions: the earliest receipt time of everything whose decisions are not yet all persisted
(the batch itself, and the quiet decision states still waiting to be flushed). Every message
received before it is decided and persisted, so start-up reads exactly what may be undecided:
what was received since the mark (less a small slack for a stepped wall clock). Fixes already
decided are skipped by the persisted decision states, heartbeats and events by the alert
source marks, so reading a little more than needed decides nothing twice.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime

import numpy as np
import psycopg

from alerts.model import dt_to_ms, ms_to_dt
from ingest.records import Event, Heartbeat, StoredBatch

RECOVERY_CHUNK = 100_000  # fixes per recovery batch


def save_progress(conn: psycopg.Connection, received_ms: int, now_ms: int) -> None:
    """Record that everything received before ``received_ms`` is decided and persisted."""
    conn.execute(
        "INSERT INTO decide_progress (singleton, received_at, updated_at) VALUES (true, %s, %s) "
        "ON CONFLICT (singleton) DO UPDATE SET received_at = excluded.received_at, "
        "updated_at = excluded.updated_at", (ms_to_dt(received_ms), ms_to_dt(now_ms)))


def read_progress(conn: psycopg.Connection) -> int | None:
    """The progress mark (UTC ms), or None on a database the stage never ran on."""
    row = conn.execute("SELECT received_at FROM decide_progress").fetchone()
    return None if row is None else dt_to_ms(row[0])


def _ms_sql(column: str) -> str:
    return f"(extract(epoch FROM {column}) * 1000)::int8"


Routes = dict[str, list[str]]  # kind -> the devices whose messages of that kind a shard carries


def shard_routes(conn: psycopg.Connection, shard: int) -> Routes:
    """The devices whose fixes, heartbeats and events the ingest shard carries (several
    workers: ``ingest_routes``, recorded by ingest)."""
    routes: Routes = {"fix": [], "hb": [], "evt": []}
    for device_id, kind in conn.execute(
            "SELECT device_id, kind FROM ingest_routes WHERE shard = %s", (shard,)):
        routes.setdefault(kind, []).append(device_id)
    return routes


def _only(routes: Routes | None, kind: str) -> tuple[str, tuple]:
    """A ``device_id`` filter for a shard's recovery (none when every device is ours)."""
    if routes is None:
        return "", ()
    return " AND device_id = ANY(%s)", (routes.get(kind, []),)


def read_device_messages(conn: psycopg.Connection, since: datetime,
                         routes: Routes | None = None) -> tuple[list[Heartbeat], list[Event]]:
    """Heartbeats and device events received since ``since`` (of a shard's devices when
    ``routes`` is given), in receipt order."""
    only, args = _only(routes, "hb")
    hbs = [Heartbeat(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10])
           for r in conn.execute(
               f"""SELECT device_id, seq, {_ms_sql('ts')}, batt, chg, strap, "case", rssi, gnss,
                          fw, {_ms_sql('received_at')}
                     FROM heartbeats WHERE received_at >= %s{only} ORDER BY received_at""",
               (since, *args))]
    only, args = _only(routes, "evt")
    evts = [Event(r[0], r[1], r[2], r[3], r[4], r[5]) for r in conn.execute(
        f"""SELECT device_id, seq, {_ms_sql('ts')}, type, detail, {_ms_sql('received_at')}
              FROM device_events WHERE received_at >= %s{only} ORDER BY received_at""",
        (since, *args))]
    return hbs, evts


def read_fix_batches(conn: psycopg.Connection, since: datetime, heartbeats: list[Heartbeat],
                     events: list[Event], routes: Routes | None = None) -> Iterator[StoredBatch]:
    """Stored fixes received since ``since`` (of a shard's devices when ``routes`` is given)
    as StoredBatches of ``RECOVERY_CHUNK`` fixes (the device messages ride with the first), in
    receipt order."""
    owners = dict(conn.execute("SELECT id, supervisee_id FROM devices").fetchall())
    only, args = _only(routes, "fix")
    after: tuple = (since, "", 0, 0)
    first = True
    while True:
        rows = conn.execute(
            f"""SELECT received_at, device_id, seq, {_ms_sql('ts')}, lat, lon, acc, supervisee_id
                  FROM fixes
                 WHERE received_at >= %s AND (received_at, device_id, seq, ts) > (%s, %s, %s, %s)
                       {only}
                 ORDER BY received_at, device_id, seq, ts LIMIT %s""",
            (since, after[0], after[1], after[2], ms_to_dt(after[3]), *args,
             RECOVERY_CHUNK)).fetchall()
        if not rows and not first:
            return
        yield _batch(rows, heartbeats if first else [], events if first else [], owners, since)
        first = False
        if len(rows) < RECOVERY_CHUNK:
            return
        last = rows[-1]
        after = (last[0], last[1], last[2], last[3])


def _batch(rows: Sequence[tuple], heartbeats: list[Heartbeat], events: list[Event],
           owners: Mapping[str, str | None], since: datetime) -> StoredBatch:
    cols = list(zip(*rows, strict=True)) if rows else [()] * 8
    received = min((dt_to_ms(r[0]) or 0 for r in rows), default=dt_to_ms(since) or 0)
    return StoredBatch(
        device_id=np.array(cols[1], dtype=object), supervisee_id=np.array(cols[7], dtype=object),
        seq=np.array(cols[2], dtype=np.int64), ts=np.array(cols[3], dtype=np.int64),
        lat=np.array(cols[4], dtype=np.float64), lon=np.array(cols[5], dtype=np.float64),
        acc=np.array(cols[6], dtype=np.float64), heartbeats=heartbeats, events=events,
        supervisees={d: owners.get(d) for d in {*cols[1], *(m.device_id for m in
                                                            (*heartbeats, *events))}},
        received_ms=received)
