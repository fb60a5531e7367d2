"""The deliverer: sends the outbox (``deliveries``) and never drops a row.

A worker thread per channel, each with its own database connection, so a failing webhook never
delays MQTT. A worker claims due rows (``FOR UPDATE SKIP LOCKED``) and leases them by moving
``next_attempt_at`` ``lease_s`` ahead in a short transaction, sends outside any transaction,
then records each attempt in ``delivery_attempts`` and marks the row delivered or schedules
its retry with exponential backoff (``base_backoff_s`` doubling, capped at ``max_backoff_s``).

A crash between sending and recording leaves the row leased; it is sent again once the lease
runs out, with the same ``Idempotency-Key``, so a receiver honouring the key sees the change
once. Nothing is dropped: a row stays pending until a send succeeds.

The deliverer's own transactions (claims, attempt records) commit without waiting for the
WAL flush (``synchronous_commit=off``): one lost in a crash only means a row is claimed or sent
again, which the lease and the idempotency key already cover; the alert changes themselves are
committed durably by whoever made them.

Workers wake on ``wake()`` (the decide stage calls it after each commit), on PostgreSQL's
``NOTIFY alert_changes`` (changes made by another process, e.g. the API's acknowledgements),
and every ``poll_s`` for retries.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import dict_row

from alerts.delivery.base import Channel, Outcome, Outgoing
from alerts.metrics import AlertMetrics
from alerts.model import dt_to_ms, ms_to_dt
from alerts.payload import encode
from schema import connect

log = logging.getLogger("giamsat.alerts.delivery")

_CLAIM = """
WITH due AS (
    SELECT id FROM deliveries
     WHERE channel = %(ch)s AND delivered_at IS NULL AND next_attempt_at <= %(now)s
       AND id <> ALL(%(busy)s)
     ORDER BY next_attempt_at, id
     LIMIT %(n)s
       FOR UPDATE SKIP LOCKED),
claimed AS (
    UPDATE deliveries d SET next_attempt_at = %(lease)s FROM due WHERE d.id = due.id
    RETURNING d.id, d.alert_id, d.target, d.idempotency_key, d.payload, d.attempts, d.created_at)
SELECT c.*, w.url, w.secret, w.enabled
  FROM claimed c
  LEFT JOIN unit_webhooks w ON %(ch)s = 'webhook' AND w.id::text = c.target
 ORDER BY c.id
"""


def wall_ms() -> int:
    """The wall clock, UTC epoch ms (the composition root's default clock)."""
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class _Claimed:
    id: int
    attempts: int  # before this attempt
    created_ms: int
    item: Outgoing



class DbOutage:
    """Error handling for a loop that needs the database: a lost database is expected and
    retried with backoff (one warning, then one every 60th failure, not a traceback a second);
    any other database error keeps its traceback."""

    def __init__(self, what: str, logger: logging.Logger | None = None) -> None:
        self.what = what
        self.log = logger or log
        self.failures = 0

    def ok(self) -> None:
        """The database answered: the next failure is a new outage."""
        self.failures = 0

    def failed(self, exc: psycopg.Error, stop: threading.Event | None = None) -> None:
        """Log ``exc`` and wait before the next try (returns early when ``stop`` is set)."""
        self.failures += 1
        if isinstance(exc, psycopg.OperationalError):
            if self.failures == 1 or self.failures % 60 == 0:
                self.log.warning("%s: database unavailable (attempt %d, retrying): %s",
                                 self.what, self.failures, str(exc).strip()[:200])
        else:
            self.log.exception("%s: database error, reconnecting", self.what)
        if stop is not None:
            stop.wait(min(float(self.failures), 10.0))

class Deliverer:
    """Delivers pending outbox rows through ``channels`` (at most one per channel name)."""

    def __init__(self, db_url: str, channels: Sequence[Channel], *,
                 clock_ms: Callable[[], int] = wall_ms, metrics: AlertMetrics | None = None,
                 base_backoff_s: float = 1.0, max_backoff_s: float = 300.0,
                 lease_s: float = 30.0, poll_s: float = 1.0, batch_size: int = 200,
                 parallel: int = 8, listen: bool = True) -> None:
        self.db_url = db_url
        self.channels = {c.name: c for c in channels}
        self.clock_ms = clock_ms
        self.metrics = metrics
        self.base_backoff_s = base_backoff_s
        self.max_backoff_s = max_backoff_s
        self.lease_s = lease_s
        self.poll_s = poll_s
        self.batch_size = batch_size
        self.parallel = parallel
        self.listen = listen
        self._stop = threading.Event()
        self._wake = {name: threading.Event() for name in self.channels}
        self._threads: list[threading.Thread] = []

    # --- control ------------------------------------------------------------------------------

    def start(self) -> None:
        """Start one worker per channel (and the LISTEN thread)."""
        self._stop.clear()
        for name, ch in self.channels.items():
            target = self._run_batched if ch.batched else self._run_parallel
            self._spawn(target, f"deliver-{name}", ch)
        if self.listen:
            self._spawn(self._run_listener, "deliver-listen")

    def _spawn(self, target: Callable[..., None], name: str, *args: Any) -> None:
        t = threading.Thread(target=target, args=args, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def wake(self) -> None:
        """New rows were committed: look now rather than at the next poll."""
        for ev in self._wake.values():
            ev.set()

    def stop(self, timeout_s: float = 10.0, close_channels: bool = True) -> None:
        """Stop the workers (in-flight sends finish and are recorded), then the channels."""
        self._stop.set()
        self.wake()
        for t in self._threads:
            t.join(timeout_s)
        self._threads.clear()
        if close_channels:
            for ch in self.channels.values():
                ch.close()

    def _connect(self) -> psycopg.Connection:
        return connect(self.db_url, autocommit=True, application_name="giamsat-deliver",
                       options="-c synchronous_commit=off")

    def run_once(self, channel: str, conn: psycopg.Connection | None = None) -> int:
        """Claim, send and record one round of due rows of ``channel`` in this thread; return
        how many were attempted (for tests and tools; the workers do the same)."""
        if conn is None:
            with self._connect() as own:
                return self.run_once(channel, own)
        ch = self.channels[channel]
        claimed = self._claim(conn, channel, self.batch_size, [])
        if claimed:
            outcomes = _send(ch, [c.item for c in claimed])
            self._record(conn, channel, list(zip(claimed, outcomes, strict=True)))
        return len(claimed)

    # --- one round ------------------------------------------------------------------------------

    def _claim(self, conn: psycopg.Connection, channel: str, n: int,
               busy: list[int]) -> list[_Claimed]:
        now = self.clock_ms()
        params = {"ch": channel, "now": ms_to_dt(now), "busy": busy, "n": n,
                  "lease": ms_to_dt(now + self.lease_s * 1000)}
        with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(_CLAIM, params).fetchall()
        return [self._claimed(r) for r in rows]

    @staticmethod
    def _claimed(r: dict[str, Any]) -> _Claimed:
        enabled = bool(r["enabled"])
        item = Outgoing(r["id"], r["alert_id"], r["target"], r["idempotency_key"],
                        encode(r["payload"]), r["attempts"] + 1,
                        url=r["url"] if enabled else None,
                        secret=r["secret"] if enabled else None)
        return _Claimed(r["id"], r["attempts"], dt_to_ms(r["created_at"]) or 0, item)

    def backoff_s(self, attempts: int) -> float:
        """Wait before the next attempt after ``attempts`` failed ones (1, 2, 4, ... capped)."""
        return min(self.base_backoff_s * 2 ** (attempts - 1), self.max_backoff_s)

    def _record(self, conn: psycopg.Connection, channel: str,
                results: list[tuple[_Claimed, Outcome]]) -> None:
        now = self.clock_ms()
        at = ms_to_dt(now)
        attempts, updates = [], []
        for c, o in results:
            attempts.append((c.id, at, o.ok, o.status_code, o.error, o.duration_ms))
            n = c.attempts + 1
            retry_at = at if o.ok else ms_to_dt(now + self.backoff_s(n) * 1000)
            updates.append((at if o.ok else None, retry_at, o.error, c.id))
            if not o.ok:
                log.info("delivery %d (%s %s) attempt %d failed: %s; retry in %.1f s",
                         c.id, channel, c.item.target, n, o.error, self.backoff_s(n))
        with conn.transaction(), conn.cursor() as cur:
            cur.executemany("INSERT INTO delivery_attempts (delivery_id, at, ok, status_code, "
                            "error, duration_ms) VALUES (%s, %s, %s, %s, %s, %s)", attempts)
            cur.executemany("UPDATE deliveries SET attempts = attempts + 1, delivered_at = %s, "
                            "next_attempt_at = %s, last_error = %s "
                            "WHERE id = %s AND delivered_at IS NULL", updates)
        self._observe(channel, results, now)

    def _observe(self, channel: str, results: list[tuple[_Claimed, Outcome]], now: int) -> None:
        if self.metrics is None:
            return
        for c, o in results:
            self.metrics.deliveries.labels(channel, "delivered" if o.ok else "failed").inc()
            if o.ok:
                self.metrics.lag.labels(channel).observe(max(0.0, (now - c.created_ms) / 1000))

    # --- workers --------------------------------------------------------------------------------

    def _run_batched(self, ch: Channel) -> None:
        """MQTT: claim a batch, send it all, record it all."""
        outage = DbOutage(f"deliverer {ch.name}")
        while not self._stop.is_set():
            try:
                with self._connect() as conn:
                    outage.ok()
                    while not self._stop.is_set():
                        if self.run_once(ch.name, conn) == 0:
                            self._idle(ch.name)
            except psycopg.Error as exc:
                outage.failed(exc, self._stop)

    def _run_parallel(self, ch: Channel) -> None:
        """Webhooks: up to ``parallel`` sends at once, each recorded as it completes, so a slow
        or dead receiver holds one slot, not the others."""
        pool = ThreadPoolExecutor(self.parallel, thread_name_prefix=f"deliver-{ch.name}")
        inflight: dict[Future, _Claimed] = {}
        outage = DbOutage(f"deliverer {ch.name}")
        try:
            while not self._stop.is_set():
                try:
                    with self._connect() as conn:
                        outage.ok()
                        self._parallel_loop(conn, ch, pool, inflight)
                except psycopg.Error as exc:
                    outage.failed(exc, self._stop)
        finally:
            pool.shutdown(wait=True)
            if inflight:
                with self._connect() as conn:
                    self._record(conn, ch.name, [(c, f.result()) for f, c in inflight.items()])

    def _parallel_loop(self, conn: psycopg.Connection, ch: Channel, pool: ThreadPoolExecutor,
                       inflight: dict[Future, _Claimed]) -> None:
        wake = self._wake[ch.name]
        while not self._stop.is_set():
            done = [f for f in inflight if f.done()]
            if done:
                self._record(conn, ch.name, [(inflight.pop(f), f.result()) for f in done])
            free = self.parallel - len(inflight)
            claimed = self._claim(conn, ch.name, free, [c.id for c in inflight.values()]) \
                if free > 0 else []
            for c in claimed:
                fut = pool.submit(lambda item=c.item: _send(ch, [item])[0])
                fut.add_done_callback(lambda _f: wake.set())
                inflight[fut] = c
            if not done and not claimed:
                self._idle(ch.name)

    def _idle(self, channel: str) -> None:
        ev = self._wake[channel]
        ev.wait(self.poll_s)
        ev.clear()

    def _run_listener(self) -> None:
        """Wake the workers on ``NOTIFY alert_changes`` (commits of any process)."""
        outage = DbOutage("deliverer listener")
        while not self._stop.is_set():
            try:
                with self._connect() as conn:
                    conn.execute("LISTEN alert_changes")
                    outage.ok()
                    while not self._stop.is_set():
                        if any(True for _ in conn.notifies(timeout=0.5, stop_after=1)):
                            self.wake()
            except psycopg.Error as exc:
                outage.failed(exc, self._stop)


def _send(ch: Channel, items: list[Outgoing]) -> list[Outcome]:
    """A channel's send, with a crash of the channel itself counted as a failed attempt."""
    try:
        outcomes = ch.send(items)
    except Exception as exc:  # a bug in a channel must not kill the worker or drop the rows
        log.exception("channel %s raised", ch.name)
        return [Outcome(False, error=f"{type(exc).__name__}: {exc}"[:500]) for _ in items]
    if len(outcomes) != len(items):
        return [Outcome(False, error="channel returned a wrong number of outcomes")] * len(items)
    return outcomes
