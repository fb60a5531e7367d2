"""Batched storage of decoded messages: one transaction and a handful of statements per batch.

Each kind is `COPY`-ed (binary) into a TEMP staging table, then moved with
`INSERT ... SELECT ... ON CONFLICT (device_id, ts, seq) DO NOTHING`: a redelivery or repeat is
not a second row (contract §1). Command answers update `device_commands`; dead letters are
`COPY`-ed straight into `dead_letters`; `device_state` is upserted, moving only forward in `ts`.
Statements per batch: at most 2 COPY + 1 INSERT per kind present (fixes: + 1 SAVEPOINT,
and a second INSERT only when some were duplicates), 1 upsert, the commit.

Fixes, the bulk, never become Python objects: a staging row is made fixed-width (the device's
text fields come from the registry snapshot, padded to one width with a dummy `bytea`), so the
whole binary COPY stream is one numpy structured array; each device's latest fix is found by
numpy too (`device_latest`) and staged as one row. Timestamps: a fix's `ts` and `received_at`
are written as PostgreSQL's binary timestamptz (int64 microseconds since 2000-01-01 UTC,
computed exactly from ms); heartbeats, events and answers stage ms and convert in SQL with
`timestamptz 'epoch' + ts_ms * interval '1 millisecond'` (exact: 1 ms is 1000 us, well inside
a double's integer range until the year 2255).

Which fixes were new: the fix `INSERT` runs after a savepoint; when its row count equals the
staged rows (the usual case), all of them were new and nothing more is asked (no `RETURNING` of
thousands of rows). Otherwise (a redelivery or a repeat) the statement is rolled back to the
savepoint and run again with `RETURNING` the keys it inserted. No system column (`xmin`) is
read: TimescaleDB refuses those on compressed chunks ("transparent decompression only supports
tableoid system column", issue 16), which stalled ingest for good once a chunk was compressed.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import numpy as np
import orjson
import psycopg

from ingest.decode import Decoded
from ingest.records import (
    SOURCES,
    CommandAck,
    Event,
    FixColumns,
    Heartbeat,
    Rejected,
    StoredBatch,
)
from ingest.registry import RegistrySnapshot
from schema import check_timescale

PG_EPOCH_MS = 946_684_800_000  # 2000-01-01T00:00:00Z in Unix ms: PostgreSQL's timestamp zero
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags 0, header extension 0
COPY_TRAILER = b"\xff\xff"

STAGING = (
    """CREATE TEMP TABLE IF NOT EXISTS ingest_fix_stage (
        ts timestamptz, seq int8, lat float8, lon float8, acc float4, spd float4, hdg float4,
        alt float4, sats int2, src int2, received_at timestamptz, device_id text,
        supervisee_id text, pad bytea) ON COMMIT DELETE ROWS""",
    """CREATE TEMP TABLE IF NOT EXISTS ingest_hb_stage (
        device_id text, ts_ms int8, seq int8, batt float4, chg bool, strap text, "case" text,
        rssi float4, gnss text, fw text, received_ms int8) ON COMMIT DELETE ROWS""",
    """CREATE TEMP TABLE IF NOT EXISTS ingest_state_stage (
        ts timestamptz, lat float8, lon float8, acc float4, seen_at timestamptz,
        good_ts timestamptz, device_id text, supervisee_id text, pad bytea)
        ON COMMIT DELETE ROWS""",
    """CREATE TEMP TABLE IF NOT EXISTS ingest_ack_stage (
        device_id text, cmd_id text, ts_ms int8, ok bool, received_ms int8)
        ON COMMIT DELETE ROWS""",
    """CREATE TEMP TABLE IF NOT EXISTS ingest_evt_stage (
        device_id text, ts_ms int8, seq int8, type text, detail text, received_ms int8)
        ON COMMIT DELETE ROWS""",
)

# Binary COPY rows are made fixed-width: NaN / -1 / -infinity stand for NULL (see the SQL).
NO_TIMESTAMP = np.iinfo(np.int64).min  # binary timestamptz '-infinity'
_SRC_ARRAY = "ARRAY[" + ", ".join(f"'{s}'" for s in SOURCES) + "]"

INSERT_FIXES = f"""
    INSERT INTO fixes (device_id, ts, seq, lat, lon, acc, spd, hdg, alt, sats, src, received_at,
                       supervisee_id)
    SELECT device_id, ts, seq, lat, lon, acc, nullif(spd, 'NaN'), nullif(hdg, 'NaN'),
           nullif(alt, 'NaN'), nullif(sats, -1), ({_SRC_ARRAY})[src + 1], received_at,
           supervisee_id
    FROM ingest_fix_stage
    ON CONFLICT (device_id, ts, seq) DO NOTHING"""

# Only when some staged fixes were duplicates: the same INSERT, rolled back to the savepoint
# before it and run again, saying which keys it inserted (works on plain tables and on
# compressed hypertable chunks alike).
INSERT_FIXES_RETURNING = INSERT_FIXES + """
    RETURNING device_id, seq, (extract(epoch FROM ts) * 1000)::int8"""
BEFORE_FIXES = "SAVEPOINT ingest_fixes"
UNDO_FIXES = "ROLLBACK TO SAVEPOINT ingest_fixes"

_MS = "timestamptz 'epoch' + {} * interval '1 millisecond'"

INSERT_HEARTBEATS = f"""
    INSERT INTO heartbeats (device_id, ts, seq, batt, chg, strap, "case", rssi, gnss, fw,
                            received_at)
    SELECT device_id, {_MS.format('ts_ms')}, seq, batt, chg, strap, "case", rssi, gnss, fw,
           {_MS.format('received_ms')}
    FROM ingest_hb_stage
    ON CONFLICT (device_id, ts, seq) DO NOTHING
    RETURNING device_id, seq, (extract(epoch FROM ts) * 1000)::int8"""

INSERT_EVENTS = f"""
    INSERT INTO device_events (device_id, ts, seq, type, detail, received_at)
    SELECT device_id, {_MS.format('ts_ms')}, seq, type, detail::jsonb, {_MS.format('received_ms')}
    FROM ingest_evt_stage
    ON CONFLICT (device_id, ts, seq) DO NOTHING
    RETURNING device_id, seq, (extract(epoch FROM ts) * 1000)::int8"""


# A device's answer to a command (contract §1), matched to the command the service recorded
# when it sent it (giamsat.pipeline.send_command): the first answer to a command sent to that
# device counts; a repeat changes nothing.
RECORD_ACKS = f"""
    UPDATE device_commands c
       SET answered_at = {_MS.format('a.received_ms')}, ack_ts = {_MS.format('a.ts_ms')},
           ok = a.ok
      FROM (SELECT DISTINCT ON (device_id, cmd_id) * FROM ingest_ack_stage
            ORDER BY device_id, cmd_id, received_ms) a
     WHERE c.id = a.cmd_id AND c.device_id = a.device_id AND c.answered_at IS NULL
    RETURNING c.device_id, c.id"""

UNKNOWN_ACKS = """
    SELECT DISTINCT a.device_id, a.cmd_id FROM ingest_ack_stage a
    WHERE NOT EXISTS (SELECT 1 FROM device_commands c
                      WHERE c.id = a.cmd_id AND c.device_id = a.device_id)"""


def _newer(column: str, ts: str, keep_known: bool = True) -> str:
    """SET clause: take the batch's value only when its `ts` is newer than the stored one."""
    value = f"coalesce(excluded.{column}, d.{column})" if keep_known else f"excluded.{column}"
    return (f"{column} = CASE WHEN excluded.{ts} > coalesce(d.{ts}, '-infinity') "
            f"THEN {value} ELSE d.{column} END")


# Latest state per device from this batch (fixes: one row per device, computed by numpy in
# `device_latest`; heartbeats and events: from their staging tables), merged forward-only: a
# fix or heartbeat older than what is stored changes nothing; a heartbeat without an optional
# field keeps the last known value.
UPSERT_DEVICE_STATE = f"""
    WITH f AS (
        SELECT device_id, ts, lat, lon, acc, seen_at, nullif(good_ts, '-infinity') AS good_ts
        FROM ingest_state_stage
    ), h AS (
        SELECT DISTINCT ON (device_id) device_id, {_MS.format('ts_ms')} AS ts, batt, chg, strap,
               "case", gnss, rssi, fw,
               {_MS.format('max(received_ms) OVER (PARTITION BY device_id)')} AS seen_at
        FROM ingest_hb_stage ORDER BY device_id, ts_ms DESC, seq DESC
    ), e AS (
        SELECT device_id, {_MS.format('max(received_ms)')} AS seen_at
        FROM (SELECT device_id, received_ms FROM ingest_evt_stage
              UNION ALL SELECT device_id, received_ms FROM ingest_ack_stage) AS others
        GROUP BY device_id
    )
    INSERT INTO device_state AS d (device_id, last_seen_at, last_fix_ts, last_fix_lat,
        last_fix_lon, last_fix_acc, last_good_fix_ts, last_hb_ts, battery, charging, strap,
        "case", gnss, rssi, fw, updated_at)
    SELECT device_id, greatest(f.seen_at, h.seen_at, e.seen_at), f.ts, f.lat, f.lon, f.acc,
           f.good_ts, h.ts, h.batt, h.chg, h.strap, h."case", h.gnss, h.rssi, h.fw, now()
    FROM f FULL JOIN h USING (device_id) FULL JOIN e USING (device_id)
    ORDER BY device_id  -- one lock order for concurrent writers
    ON CONFLICT (device_id) DO UPDATE SET
        last_seen_at = greatest(d.last_seen_at, excluded.last_seen_at),
        {_newer('last_fix_lat', 'last_fix_ts', False)},
        {_newer('last_fix_lon', 'last_fix_ts', False)},
        {_newer('last_fix_acc', 'last_fix_ts', False)},
        last_fix_ts = greatest(d.last_fix_ts, excluded.last_fix_ts),
        last_good_fix_ts = greatest(d.last_good_fix_ts, excluded.last_good_fix_ts),
        {_newer('battery', 'last_hb_ts')},
        {_newer('charging', 'last_hb_ts')},
        {_newer('strap', 'last_hb_ts')},
        {_newer('"case"', 'last_hb_ts')},
        {_newer('gnss', 'last_hb_ts')},
        {_newer('rssi', 'last_hb_ts')},
        {_newer('fw', 'last_hb_ts')},
        last_hb_ts = greatest(d.last_hb_ts, excluded.last_hb_ts),
        updated_at = now()"""

COPY_FIXES = "COPY ingest_fix_stage FROM STDIN (FORMAT BINARY)"
COPY_STATE = "COPY ingest_state_stage FROM STDIN (FORMAT BINARY)"
COPY_HEARTBEATS = "COPY ingest_hb_stage FROM STDIN (FORMAT BINARY)"
COPY_EVENTS = "COPY ingest_evt_stage FROM STDIN (FORMAT BINARY)"
COPY_ACKS = "COPY ingest_ack_stage FROM STDIN (FORMAT BINARY)"
COPY_DEAD_LETTERS = ("COPY dead_letters (received_at, topic, device_id, reason, detail, element, "
                     "payload) FROM STDIN (FORMAT BINARY)")
HB_TYPES = ("text", "int8", "int8", "float4", "bool", "text", "text", "float4", "text", "text",
            "int8")
EVT_TYPES = ("text", "int8", "int8", "text", "text", "int8")
ACK_TYPES = ("text", "text", "int8", "bool", "int8")
DEAD_LETTER_TYPES = ("timestamptz", "text", "text", "text", "text", "int4", "bytea")


def binary_copy(columns: list[np.ndarray], tail: np.ndarray) -> bytes:
    """A binary COPY stream of fixed-width rows, built column-wise by numpy.

    `columns`: one array per leading field, each of the exact PostgreSQL width (int2/int4/int8,
    float4/float8, timestamptz as int64 us since 2000); `tail`: per row, the registry chunk
    (device_id, supervisee_id, pad). Values are written big-endian, as the format wants.
    """
    template = _row_template(tuple(c.dtype.str for c in columns), tail.dtype.itemsize)
    out = np.repeat(template, len(tail))  # field count and widths already in place
    for i, col in enumerate(columns):
        out[f"col{i}"] = col
    out["tail"] = tail
    return COPY_HEADER + out.tobytes() + COPY_TRAILER


@lru_cache(maxsize=64)
def _row_template(kinds: tuple[str, ...], tail_width: int) -> np.ndarray:
    """One binary COPY row with the field count and each field's length filled in."""
    fields: list[tuple[str, Any]] = [("nfields", ">i2")]
    for i, kind in enumerate(kinds):
        fields += [(f"len{i}", ">i4"), (f"col{i}", np.dtype(kind).newbyteorder(">"))]
    row = np.zeros(1, dtype=[*fields, ("tail", f"V{tail_width}")])
    row["nfields"] = len(kinds) + 3
    for i, kind in enumerate(kinds):
        row[f"len{i}"] = np.dtype(kind).itemsize
    return row


def pg_timestamp(ms: np.ndarray) -> np.ndarray:
    """UTC epoch ms -> PostgreSQL binary timestamptz (int64 us since 2000-01-01), exactly."""
    return (ms - PG_EPOCH_MS) * 1000


def fix_copy_data(fixes: FixColumns, rows: np.ndarray, registry: RegistrySnapshot) -> bytes:
    """The binary COPY stream of `ingest_fix_stage` for these fixes.

    `rows`: each fix's row in the registry snapshot (its device's text fields).
    """
    f32 = np.float32
    return binary_copy(
        [pg_timestamp(fixes.ts), fixes.seq, fixes.lat, fixes.lon, fixes.acc.astype(f32),
         fixes.spd.astype(f32), fixes.hdg.astype(f32), fixes.alt.astype(f32), fixes.sats,
         fixes.src, pg_timestamp(fixes.received_ms)],
        registry.chunks[rows])


def device_latest(fixes: FixColumns, rows: np.ndarray, max_accuracy_m: float
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per device of the batch: (registry row, index of its latest fix by (ts, seq), latest
    received_ms, latest ts of a fix with acc <= max_accuracy_m or NO_TIMESTAMP)."""
    order = np.lexsort((fixes.seq, fixes.ts, rows))
    grouped = rows[order]
    ends = np.flatnonzero(np.r_[grouped[1:] != grouped[:-1], True])
    starts = np.r_[0, ends[:-1] + 1]
    seen = np.maximum.reduceat(fixes.received_ms[order], starts)
    good = np.where(fixes.acc[order] <= max_accuracy_m, fixes.ts[order], NO_TIMESTAMP)
    return grouped[ends], order[ends], seen, np.maximum.reduceat(good, starts)


def state_copy_data(fixes: FixColumns, rows: np.ndarray, registry: RegistrySnapshot,
                    max_accuracy_m: float) -> bytes:
    """The binary COPY stream of `ingest_state_stage`: each device's latest fix."""
    devices, last, seen, good = device_latest(fixes, rows, max_accuracy_m)
    good_ts = np.where(good == NO_TIMESTAMP, NO_TIMESTAMP, pg_timestamp(good))
    return binary_copy(
        [pg_timestamp(fixes.ts[last]), fixes.lat[last], fixes.lon[last],
         fixes.acc[last].astype(np.float32), pg_timestamp(seen), good_ts],
        registry.chunks[devices])


def _ms_datetime(ms: int) -> datetime:
    return EPOCH + timedelta(milliseconds=ms)


def _clean(text: str) -> str:
    """PostgreSQL text holds no NUL (a bad topic or device-supplied value could carry one)."""
    return text.replace("\x00", "\ufffd")


class Store:
    """Writes decoded batches through one psycopg connection (not thread-safe: the writer's)."""

    def __init__(self, conn: psycopg.Connection, max_accuracy_m: float = 100.0) -> None:
        """Raises `schema.UnsafeTimescale` on a TimescaleDB release known to lose rows."""
        self.conn = conn
        self.max_accuracy_m = max_accuracy_m
        check_timescale(conn)
        for ddl in STAGING:
            conn.execute(ddl)
        conn.execute("SET jit = off")
        conn.commit()

    def write(self, decoded: Decoded, registry: RegistrySnapshot, received_ms: int,
              committed_ms: int = 0) -> StoredBatch:
        """Store a batch in one transaction and commit; return what was newly stored.

        On any error the transaction is rolled back and the error raised (the caller keeps the
        batch and retries).
        """
        try:
            with self.conn.cursor() as cur:
                fixes, rows = self._write_fixes(cur, decoded.fixes, registry)
                heartbeats = self._write_heartbeats(cur, decoded.heartbeats)
                events = self._write_events(cur, decoded.events)
                acks, unknown = self._write_acks(cur, decoded.acks)
                rejected = [*decoded.rejected, *unknown]
                self._write_dead_letters(cur, rejected)
                if len(decoded.fixes) or decoded.heartbeats or decoded.events or decoded.acks:
                    cur.execute(UPSERT_DEVICE_STATE)
            self.conn.commit()
        except BaseException:
            with contextlib.suppress(Exception):
                self.conn.rollback()
            raise
        stored = self._stored(fixes, rows, heartbeats, events, decoded, registry, received_ms,
                              committed_ms)
        stored.acks, stored.rejected = acks, len(rejected)
        return stored

    @staticmethod
    def _stored(fixes: FixColumns, rows: np.ndarray, heartbeats: list[Heartbeat],
                events: list[Event], decoded: Decoded, registry: RegistrySnapshot,
                received_ms: int, committed_ms: int) -> StoredBatch:
        devices: set[str] = {h.device_id for h in decoded.heartbeats}
        devices.update(e.device_id for e in decoded.events)
        devices.update(a.device_id for a in decoded.acks)
        devices.update(registry.device_ids[np.unique(rows)].tolist())
        return StoredBatch(
            registry.device_ids[rows], registry.supervisee_ids[rows], fixes.seq, fixes.ts,
            fixes.lat, fixes.lon, fixes.acc, heartbeats, events,
            {d: registry.supervisee(d) for d in devices if d in registry}, received_ms,
            committed_ms, len(decoded.rejected))

    def _write_fixes(self, cur: psycopg.Cursor, fixes: FixColumns, registry: RegistrySnapshot
                     ) -> tuple[FixColumns, np.ndarray]:
        """Stage and insert the fixes; return the new ones and their registry rows."""
        if not len(fixes):
            return fixes, np.empty(0, dtype=np.intp)
        index = registry.index
        rows = np.fromiter(map(index.__getitem__, fixes.device_id), np.intp, len(fixes))
        with cur.copy(COPY_FIXES) as copy:
            copy.write(fix_copy_data(fixes, rows, registry))
        with cur.copy(COPY_STATE) as copy:
            copy.write(state_copy_data(fixes, rows, registry, self.max_accuracy_m))
        cur.execute(BEFORE_FIXES)
        cur.execute(INSERT_FIXES)
        if cur.rowcount == len(fixes):
            return fixes, rows
        cur.execute(UNDO_FIXES)
        new = self._new_fix_rows(cur.execute(INSERT_FIXES_RETURNING).fetchall(), fixes)
        return fixes.take(new), rows[new]

    @staticmethod
    def _new_fix_rows(inserted: list[tuple[str, int, int]], fixes: FixColumns) -> np.ndarray:
        """Rows of `fixes` whose key the INSERT returned (the first of any repeated key)."""
        new_keys = set(inserted)
        keep = np.zeros(len(fixes), dtype=bool)
        for i, key in enumerate(zip(fixes.device_id.tolist(), fixes.seq.tolist(),
                                    fixes.ts.tolist(), strict=True)):
            if key in new_keys:
                keep[i] = True
                new_keys.discard(key)
        return keep

    @staticmethod
    def _write_heartbeats(cur: psycopg.Cursor, heartbeats: list[Heartbeat]) -> list[Heartbeat]:
        if not heartbeats:
            return []
        with cur.copy(COPY_HEARTBEATS) as copy:
            copy.set_types(HB_TYPES)
            for h in heartbeats:
                copy.write_row((h.device_id, h.ts, h.seq, h.batt, h.chg, h.strap, h.case, h.rssi,
                                h.gnss, h.fw, h.received_ms))
        return _only_new(heartbeats, cur.execute(INSERT_HEARTBEATS).fetchall())

    @staticmethod
    def _write_events(cur: psycopg.Cursor, events: list[Event]) -> list[Event]:
        if not events:
            return []
        with cur.copy(COPY_EVENTS) as copy:
            copy.set_types(EVT_TYPES)
            for e in events:
                detail = None if e.detail is None else orjson.dumps(e.detail).decode()
                copy.write_row((e.device_id, e.ts, e.seq, e.type, detail, e.received_ms))
        return _only_new(events, cur.execute(INSERT_EVENTS).fetchall())

    @staticmethod
    def _write_acks(cur: psycopg.Cursor, acks: list[CommandAck]
                    ) -> tuple[list[CommandAck], list[Rejected]]:
        """Record command answers; return the new ones and dead letters for unknown commands."""
        if not acks:
            return [], []
        with cur.copy(COPY_ACKS) as copy:
            copy.set_types(ACK_TYPES)
            for a in acks:
                copy.write_row((a.device_id, a.id, a.ts, a.ok, a.received_ms))
        recorded = set(cur.execute(RECORD_ACKS).fetchall())
        unknown = set(cur.execute(UNKNOWN_ACKS).fetchall())
        new, dead = [], []
        for a in acks:
            key = (a.device_id, a.id)
            if key in recorded:
                new.append(a)
                recorded.discard(key)
            elif key in unknown:
                dead.append(Rejected("unknown_command", f"no command {a.id!r} was sent to "
                                     f"{a.device_id}"[:300], None, a.device_id, a.topic,
                                     a.payload, a.received_ms))
        return new, dead

    @staticmethod
    def _write_dead_letters(cur: psycopg.Cursor, rejected: list[Rejected]) -> None:
        if not rejected:
            return
        with cur.copy(COPY_DEAD_LETTERS) as copy:
            copy.set_types(DEAD_LETTER_TYPES)
            for r in rejected:
                copy.write_row((_ms_datetime(r.received_ms), _clean(r.topic),
                                None if r.device_id is None else _clean(r.device_id), r.reason,
                                _clean(r.detail), r.element, r.payload))


def _only_new(records: list[Any], returned: list[tuple[str, int, int]]) -> list[Any]:
    """The records whose (device_id, seq, ts) the INSERT returned, first occurrence only."""
    keys = set(returned)
    out = []
    for r in records:
        key = (r.device_id, r.seq, r.ts)
        if key in keys:
            out.append(r)
            keys.discard(key)
    return out
