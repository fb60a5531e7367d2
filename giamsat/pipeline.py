"""The decide stage of the ingest process: stored telemetry -> geofence -> alert rules -> outbox.

Pipeline order (the composition root wires it; see ``AlertPipeline``):

    MQTT -> ingest (decode, store, ack) -> DecideStage.on_stored -> [queue] -> decide worker
         -> geofence decisions + heartbeat/event rules -> ONE transaction (alert changes,
            history, outbox rows, geofence decision state, progress) -> Deliverer.wake()
         -> Deliverer workers (MQTT, webhooks) send the outbox.

The worker thread is the only owner of the ``geofence.fence.Fence``: batches, timer ticks
(schedule windows and permit ends) and registry reloads are all items on its queue, so the
decision state is never touched by two threads. The scheduler's other jobs (offline and
gnss_lost sweeps, escalation, severity rise, delivery retry) are a query and a call into
``alerts``; they use their own connections.

Startup recovery: the stage records, in the same transaction as each batch's decisions, the
earliest receipt time of that batch (``decide_progress``). At start it re-reads telemetry
received since then (less ``recovery_slack_s``) and decides it again; the persisted geofence
state (``decided_ms``) and the alert source marks skip whatever had already been decided, so
fixes stored but not decided before a crash are decided and nothing fires twice.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import orjson
import psycopg
from apscheduler.schedulers.background import BackgroundScheduler

from alerts import sweeps
from alerts.delivery.deliverer import DbOutage, Deliverer, wall_ms
from alerts.delivery.mqtt import MqttChannel
from alerts.delivery.webhook import WebhookChannel
from alerts.metrics import AlertMetrics
from alerts.model import Change, dt_to_ms, ms_to_dt
from alerts.rules import apply_all
from alerts.sources import Thresholds, from_transition
from alerts.telemetry import apply_device_messages
from geofence import store as fence_store
from geofence.fence import Fence
from geofence.policy import PolicyTable
from ingest.records import Event, Heartbeat, StoredBatch
from schema import connect

log = logging.getLogger("giamsat.pipeline")

_STOP = object()
RECOVERY_CHUNK = 100_000  # fixes per recovery batch
LEADER_LOCK = 0x6769616D73617401  # pg advisory lock key of the worker running the timed jobs

# Registry fingerprint per supervisee: what the geofence needs reloading for when it changes.
_REGISTRY_FINGERPRINTS = """
SELECT s.id, md5(concat_ws('|', s.sentence_type, s.sentence_start, s.sentence_end,
    (SELECT string_agg(concat_ws(':', z.id, z.version, z.updated_at), ',' ORDER BY z.id)
       FROM zones z WHERE z.supervisee_id = s.id),
    (SELECT string_agg(concat_ws(':', p.id, p.valid_from, p.valid_to, p.revoked_at,
                                 md5(coalesce(p.destination::text, ''))), ',' ORDER BY p.id)
       FROM permits p WHERE p.supervisee_id = s.id)))
  FROM supervisees s
"""


@dataclass(frozen=True)
class _Item:
    kind: str  # batch | tick | reload | recover | flush | ack
    value: Any = None


class DecideStage:
    """Decides stored telemetry and turns it into alert changes (see the module docstring).

    ``settings``: a ``config.Settings`` (offline_after_s, gnss_lost_after_s, battery_*_pct,
    sweep_interval_s, max_accuracy_m, margin_m, confirm_fixes, timezone). ``clock_ms``: UTC
    epoch ms, injected (tests move it by hand). ``deliverer`` is woken after each commit.
    ``scheduler=False`` runs no background jobs (tests call ``run_sweeps`` and ``tick``).
    """

    def __init__(self, db_url: str, settings: Any, *, clock_ms: Callable[[], int] = wall_ms,
                 metrics: AlertMetrics | None = None, deliverer: Deliverer | None = None,
                 policies: PolicyTable | None = None, queue_max: int = 1000,
                 recovery_slack_s: float = 60.0, scheduler: bool = True,
                 offline_grace_s: float = 30.0, registry_poll_s: float = 2.0,
                 state_flush_s: float = 5.0) -> None:
        self.db_url = db_url
        self.settings = settings
        self.clock_ms = clock_ms
        self.metrics = metrics
        self.deliverer = deliverer
        self.policies = policies or PolicyTable.default()
        self.thresholds = Thresholds.from_settings(settings)
        self.recovery_slack_s = recovery_slack_s
        self.offline_grace_s = offline_grace_s
        self.registry_poll_s = registry_poll_s
        # Quiet decision states (nothing in progress: only the decided instant moved) are
        # saved at most this often, not with every batch; the recovery window
        # (recovery_slack_s, much longer) re-decides their fixes after a crash, which changes
        # nothing since they were quiet. Saves most of the state writes under steady load.
        self.state_flush_s = min(state_flush_s, recovery_slack_s / 2)
        self._deferred: dict[str, bytes] = {}
        self._flushed_at = time.monotonic()
        self.round_ms: deque[float] = deque(maxlen=20_000)  # recent batch rounds, diagnostics
        self._queue: queue.Queue[Any] = queue.Queue(queue_max)
        if metrics is not None:
            metrics.decide_queue.set_function(self._queue.qsize)
        self._pending = 0
        self._idle = threading.Condition()
        self._conn: psycopg.Connection | None = None
        self._fence: Fence | None = None
        self._fingerprints: dict[str, str] = {}
        self._registry_version: int | None = None
        self._worker: threading.Thread | None = None
        self._scheduler = BackgroundScheduler(timezone="UTC") if scheduler else None
        self._job_conns: dict[str, psycopg.Connection] = {}
        self._job_lock = threading.Lock()
        self._job_outages: dict[str, DbOutage] = {}
        self.decided_batches = 0
        self._leader_conn: psycopg.Connection | None = None

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Load the zones, permits and decision states, queue the startup recovery and a tick,
        start the worker and the scheduled jobs. Batches handed over meanwhile wait their turn."""
        self._conn = connect(self.db_url, autocommit=True, application_name="giamsat-decide")
        self._load_fence()
        self._enqueue(_Item("recover"))
        self._enqueue(_Item("tick", None))
        self._worker = threading.Thread(target=self._run, name="decide", daemon=True)
        self._worker.start()
        if self._scheduler is not None:
            self._schedule_jobs()
            self._scheduler.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop the jobs, decide what is queued, stop the worker."""
        if self._scheduler is not None and self._scheduler.running:
            self._scheduler.shutdown(wait=True)
        if self._worker is not None:
            self._queue.put(_STOP)
            self._worker.join(timeout_s)
            self._worker = None
        for conn in [*self._job_conns.values(), self._conn]:
            if conn is not None:
                conn.close()
        self._job_conns.clear()

    def on_stored(self, batch: StoredBatch) -> None:
        """The ingest callback: queue a committed batch for decision and return (it blocks only
        when ``queue_max`` batches are waiting: back-pressure, never a drop)."""
        if not batch.empty:
            self._enqueue(_Item("batch", batch))

    def tick(self, now_ms: int | None = None) -> None:
        """Queue a geofence tick: windows and permits that started or ended (permit_overrun,
        someone already out when a curfew starts)."""
        self._enqueue(_Item("tick", now_ms))

    def take_over(self, shard: int) -> None:
        """ingest's ``on_activate``: this worker just became the reader of ``shard`` (another
        worker died, or this one started). Queued before that shard's first batch: save our
        own states, reload every decision state from the database (the previous owner's
        included), then decide what the shard's devices have stored since the last decided
        batch, less ``recovery_slack_s`` (the previous owner may have stored without deciding);
        ``decided_ms`` skips what it had decided, so nothing fires twice."""
        self._enqueue(_Item("takeover", shard))

    def reload_registry(self) -> None:
        """Queue a reload of the zones and permits of supervisees whose registry rows changed."""
        self._enqueue(_Item("reload"))

    def wait_idle(self, timeout_s: float = 30.0) -> bool:
        """Wait until everything queued so far is decided and committed (tests, benchmarks)."""
        deadline = time.monotonic() + timeout_s
        with self._idle:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def _enqueue(self, item: _Item) -> None:
        with self._idle:
            self._pending += 1
        self._queue.put(item)

    def _done(self, n: int) -> None:
        with self._idle:
            self._pending -= n
            self._idle.notify_all()

    # --- the worker -----------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                self._with_retry("flush", None)
                return
            items = [item]
            while len(items) < 50:  # take what else is waiting: consecutive batches decide as one
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    self._process(items)
                    self._with_retry("flush", None)
                    return
                items.append(nxt)
            self._process(items)

    def _process(self, items: list[_Item]) -> None:
        batches: list[StoredBatch] = []
        for item in items:
            if item.kind == "batch":
                batches.append(item.value)
                continue
            if batches:
                self._with_retry("batch", StoredBatch.merge(batches))
                batches = []
            self._with_retry(item.kind, item.value)
        if batches:
            self._with_retry("batch", StoredBatch.merge(batches) if len(batches) > 1 else batches[0])
        self._done(len(items))

    def _with_retry(self, kind: str, value: Any) -> None:
        """Run one item; when it fails, reset the in-memory decision state from the database
        (the transaction rolled back) and run it again: until it commits when the database was
        unavailable, at most three times for any other error."""
        handler = {"batch": self._decide_batch, "tick": self._tick, "reload": self._reload,
                   "recover": self._recover, "flush": self._flush,
                   "takeover": self._take_over}[kind]
        delay, bugs = 0.1, 0
        while True:
            try:
                t0 = time.perf_counter()
                handler(value)
                elapsed = time.perf_counter() - t0
                if self.metrics is not None:
                    self.metrics.decide.labels(kind).observe(elapsed)
                if kind == "batch":
                    self.round_ms.append(elapsed * 1000)
                return
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                # the database is away, or a deadlock/serialisation failure: retry until done
                log.warning("decide %s failed, retrying in %.1f s: %s", kind, delay, exc)
            except Exception:  # the same input would fail again (a bug, a constraint): retried
                bugs += 1       # a few times, then left to the startup recovery
                log.exception("decide %s raised (attempt %d)", kind, bugs)
                if bugs >= 3:
                    self._reset()
                    return
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
            self._reset()

    def _reset(self) -> None:
        try:
            if self._conn is None or self._conn.closed or self._conn.broken:
                self._conn = connect(self.db_url, autocommit=True,
                                     application_name="giamsat-decide")
            self._deferred.clear()  # the states are read back from the database
            self._load_fence()
        except psycopg.Error as exc:
            log.warning("decide: database unavailable (%s)", exc)

    @property
    def conn(self) -> psycopg.Connection:
        assert self._conn is not None, "DecideStage.start() first"
        return self._conn

    @property
    def fence(self) -> Fence:
        assert self._fence is not None, "DecideStage.start() first"
        return self._fence

    def _load_fence(self) -> None:
        row = self.conn.execute("SELECT now()").fetchone()
        self._fence_loaded_at = row[0] if row else datetime.now(UTC)
        self._saved_since_load: set[str] = set()
        s = self.settings
        fence = Fence(policies=self.policies, margin_m=s.margin_m, confirm_fixes=s.confirm_fixes,
                      max_accuracy_m=s.max_accuracy_m, tz=s.timezone)
        fence_store.load_fence(self.conn, fence, now_ms=self.clock_ms())
        self._fence = fence
        self._registry_version = self._read_registry_version(self.conn)
        self._fingerprints = dict(self.conn.execute(_REGISTRY_FINGERPRINTS).fetchall())

    # --- decisions --------------------------------------------------------------------------------

    def _decide_batch(self, batch: StoredBatch) -> None:
        """Geofence the batch's fixes (vectorised), then persist every consequence at once."""
        now = self.clock_ms()
        transitions = self.fence.decide(batch.supervisee_id, batch.ts, batch.lon, batch.lat,
                                        batch.acc) if len(batch) else []
        devices = _device_of(batch) if transitions else {}
        occurrences = [from_transition(t, devices.get(t.supervisee_id)) for t in transitions]
        owners = {d: s for d, s in batch.supervisees.items() if s is not None}
        states = self._states_to_save({t.supervisee_id for t in transitions})
        conn = self.conn
        with conn.transaction():
            changes = apply_all(conn, occurrences, now)
            changes += apply_device_messages(conn, batch.heartbeats, batch.events, now,
                                             self.thresholds, owners)
            self._save_states(conn, states)
            _save_progress(conn, batch.received_ms, now)
        self.decided_batches += 1
        if self.metrics is not None:
            self.metrics.decided_fixes.inc(len(batch))
        self._committed(changes)

    def _states_to_save(self, busy: set[str]) -> dict[str, bytes]:
        """The decision states to write with this batch: those with a transition or anything in
        progress; quiet ones wait in ``_deferred`` until ``state_flush_s`` has passed."""
        states, out = self.fence.states, {}
        for sid, blob in self.fence.drain_changed().items():
            if sid in busy or not all(z.quiet for _, z in states[sid].zones):
                out[sid] = blob
                self._deferred.pop(sid, None)
            else:
                self._deferred[sid] = blob
        if self._deferred and time.monotonic() - self._flushed_at >= self.state_flush_s:
            out.update(self._deferred)
            self._deferred, self._flushed_at = {}, time.monotonic()
        return out

    def _drain_all(self) -> dict[str, bytes]:
        """Every changed state, the deferred quiet ones included (newest wins)."""
        out = {**self._deferred, **self.fence.drain_changed()}
        self._deferred, self._flushed_at = {}, time.monotonic()
        return out

    def _flush(self, _: Any = None) -> None:
        states = self._drain_all()
        if states:
            with self.conn.transaction():
                self._save_states(self.conn, states)

    def _leads(self) -> bool:
        """With several workers, one (the holder of a PostgreSQL advisory lock on its decide
        connection, released when that worker dies) runs the timed jobs: the ticks and the
        sweeps. Always True with one worker."""
        if self.shards <= 1:
            return True
        conn = self.conn
        if self._leader_conn is not conn:
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (LEADER_LOCK,)).fetchone()
            if not (row and row[0]):
                return False
            self._leader_conn = conn
            log.info("this worker now runs the timed jobs (ticks, sweeps)")
        return True

    def _tick(self, now_ms: int | None) -> None:
        if not self._leads():
            return
        if self.shards > 1:  # other workers decide most supervisees: their saved states
            self._flush()
            self._load_fence()
        now = self.clock_ms() if now_ms is None else now_ms
        transitions = self.fence.tick(now)
        states = self._states_to_save({t.supervisee_id for t in transitions})
        if not transitions and not states:
            return
        with self.conn.transaction():
            changes = apply_all(self.conn, [from_transition(t) for t in transitions], now)
            self._save_states(self.conn, states)
        self._committed(changes)

    def _reload(self, _: Any = None) -> None:
        """Reload the supervisees whose zones, permits or sentence changed (incremental)."""
        conn, now = self.conn, self.clock_ms()
        version = self._read_registry_version(conn)
        fingerprints = dict(conn.execute(_REGISTRY_FINGERPRINTS).fetchall())
        changed = sorted(sid for sid in set(fingerprints) | set(self._fingerprints)
                         if fingerprints.get(sid) != self._fingerprints.get(sid))
        transitions = []
        for sid in changed:
            transitions += fence_store.reload_supervisee(conn, self.fence, sid, now_ms=now)
        transitions += self.fence.tick(now)  # new or changed zones against the last fix
        with conn.transaction():
            changes = apply_all(conn, [from_transition(t) for t in transitions], now)
            self._save_states(conn, self._drain_all())
        self._fingerprints, self._registry_version = fingerprints, version
        if changed:
            log.info("registry version %s: reloaded %d supervisees", version, len(changed))
        self._committed(changes)

    @property
    def shards(self) -> int:
        return max(1, int(getattr(self.settings, "workers", 1) or 1))

    def _recover(self, shard: int | None = None) -> None:
        """Decide telemetry stored after the last decided batch (a crash, a kill): of every
        device (``shard`` None, one worker), or of the devices one shard carries. With several
        workers the startup recovery waits for the shards this worker is given (take_over):
        another worker may be deciding the rest."""
        row = self.conn.execute("SELECT received_at FROM decide_progress").fetchone()
        if row is None:
            with self.conn.transaction():
                _save_progress(self.conn, self.clock_ms(), self.clock_ms())
            return
        if shard is None and self.shards > 1:
            return
        since = ms_to_dt(min(dt_to_ms(row[0]) or 0, self.clock_ms())
                         - int(self.recovery_slack_s * 1000))
        routes = None if shard is None or self.shards <= 1 else _shard_routes(self.conn, shard)
        heartbeats, events = _read_device_messages(self.conn, since, routes)
        n_fixes = 0
        for batch in _read_fix_batches(self.conn, since, heartbeats, events, routes):
            self._decide_batch(batch)
            n_fixes += len(batch)
        log.info("recovery%s: re-read %d fixes, %d heartbeats, %d events received since %s",
                 "" if shard is None else f" of shard {shard}", n_fixes, len(heartbeats),
                 len(events), since.isoformat())

    def _take_over(self, shard: int) -> None:
        # Reloading every state is as slow as a start (seconds per thousand supervisees): skip
        # it when no state was saved since this worker loaded them (a worker taking its own
        # shard right after its start), by anyone. A save from a transaction that began before
        # the load but committed after it is covered by the margin.
        # (A reconnect of the only worker finds only its own saves.)
        changed = {r[0] for r in self.conn.execute(
            "SELECT supervisee_id FROM geofence_state WHERE updated_at >= %s",
            (self._fence_loaded_at - timedelta(seconds=10),))}
        if changed - self._saved_since_load:
            self._flush()
            self._load_fence()
        self._recover(shard)

    def _save_states(self, conn: psycopg.Connection, states: Mapping[str, bytes]) -> None:
        fence_store.save_states(conn, states)
        self._saved_since_load.update(states)

    def _committed(self, changes: list[Change]) -> None:
        if self.metrics is not None:
            self.metrics.observe_changes(changes)
        if changes and self.deliverer is not None:
            self.deliverer.wake()

    # --- scheduled jobs: a query and a call into the rules ----------------------------------------

    def run_sweeps(self, now_ms: int | None = None, conn: psycopg.Connection | None = None,
                   offline: bool = True) -> list[Change]:
        """The device sweeps (offline, gnss_lost), then escalation and severity rise, once."""
        now = self.clock_ms() if now_ms is None else now_ms
        c = conn or self._job_conn("sweeps")
        th = self.thresholds
        changes = (sweeps.sweep_offline(c, now, th) if offline else []) \
            + sweeps.sweep_gnss_lost(c, now, th) + sweeps.sweep_severity(c, now) \
            + sweeps.sweep_escalation(c, now)
        self._committed(changes)
        return changes

    def _schedule_jobs(self) -> None:
        assert self._scheduler is not None
        every = float(self.settings.sweep_interval_s)
        started = time.monotonic()
        opts = {"max_instances": 1, "coalesce": True, "misfire_grace_time": None}

        def sweeps_job() -> None:
            if self._leader_conn is None and self.shards > 1:
                return  # another worker runs them (see _leads)
            # Right after a start the broker is still handing over what devices sent while we
            # were down: do not call them offline for that.
            self._job("sweeps", lambda c: self.run_sweeps(
                conn=c, offline=time.monotonic() - started >= self.offline_grace_s))

        sched = self._scheduler
        sched.add_job(sweeps_job, "interval", seconds=every, id="sweeps", **opts)
        sched.add_job(self.tick, "interval", seconds=every, id="geofence_tick", **opts)
        sched.add_job(lambda: self._job("registry", self._check_registry), "interval",
                      seconds=self.registry_poll_s, id="registry", **opts)
        if self.deliverer is not None:
            sched.add_job(self.deliverer.wake, "interval", seconds=1.0, id="delivery_retry",
                          **opts)

    def _check_registry(self, conn: psycopg.Connection) -> None:
        if self._read_registry_version(conn) != self._registry_version:
            self.reload_registry()

    @staticmethod
    def _read_registry_version(conn: psycopg.Connection) -> int | None:
        row = conn.execute("SELECT version FROM registry_version").fetchone()
        return None if row is None else int(row[0])

    def _job_conn(self, name: str) -> psycopg.Connection:
        with self._job_lock:
            conn = self._job_conns.get(name)
            if conn is None or conn.closed or conn.broken:
                conn = connect(self.db_url, autocommit=True, application_name=f"giamsat-{name}")
                self._job_conns[name] = conn
            return conn

    def _job(self, name: str, body: Callable[[psycopg.Connection], Any]) -> None:
        outage = self._job_outages.setdefault(name, DbOutage(f"job {name}", log))
        try:
            body(self._job_conn(name))
            outage.ok()
        except psycopg.Error as exc:
            outage.failed(exc)  # the next scheduled run retries
            with self._job_lock:
                conn = self._job_conns.pop(name, None)
            if conn is not None:
                conn.close()


def _device_of(batch: StoredBatch) -> dict[str, str]:
    """Supervisee -> the device whose fix is latest in the batch."""
    order = np.argsort(batch.ts, kind="stable")
    return {s: d for s, d in zip(batch.supervisee_id[order].tolist(),
                                 batch.device_id[order].tolist(), strict=True) if s is not None}


def _save_progress(conn: psycopg.Connection, received_ms: int, now_ms: int) -> None:
    conn.execute(
        "INSERT INTO decide_progress (singleton, received_at, updated_at) VALUES (true, %s, %s) "
        "ON CONFLICT (singleton) DO UPDATE SET received_at = excluded.received_at, "
        "updated_at = excluded.updated_at", (ms_to_dt(received_ms), ms_to_dt(now_ms)))


def _ms_sql(column: str) -> str:
    return f"(extract(epoch FROM {column}) * 1000)::int8"


Routes = dict[str, list[str]]  # kind -> the devices whose messages of that kind a shard carries


def _shard_routes(conn: psycopg.Connection, shard: int) -> Routes:
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


def _read_device_messages(conn: psycopg.Connection, since: datetime, routes: Routes | None = None
                          ) -> tuple[list[Heartbeat], list[Event]]:
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


def _read_fix_batches(conn: psycopg.Connection, since: datetime, heartbeats: list[Heartbeat],
                      events: list[Event], routes: Routes | None = None):
    """Stored fixes received since ``since`` as StoredBatches of ``RECOVERY_CHUNK`` fixes (the
    device messages ride with the first), in receipt order."""
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


# --- downlink (contract §1) -----------------------------------------------------------------------

COMMAND_TYPES = ("locate", "set_interval", "notify_wearer")
MAX_WEARER_TEXT = 160  # characters shown on the device


def command_topic(device_id: str) -> str:
    """``em/v1/dev/{device_id}/cmd``."""
    return f"em/v1/dev/{device_id}/cmd"


def send_command(client: Any, device_id: str, type: str, *, conn: psycopg.Connection | None = None,
                 sent_by: str = "system", now_ms: int | None = None, wait_s: float | None = 5.0,
                 **fields: Any) -> str:
    """Publish a downlink command (QoS 1) to ``em/v1/dev/{device_id}/cmd``; return its id.

    ``client``: a paho client or an ``MqttChannel`` (anything with ``publish(topic, payload,
    qos)``). ``set_interval`` needs ``fix_s`` (int s > 0), ``notify_wearer`` a short ``text``.
    With ``conn`` the command is recorded in ``device_commands`` (committed by the caller) so
    ingest can match the device's ``ack`` to it. With ``wait_s`` it waits for the
    broker's PUBACK and raises ``TimeoutError`` without one.
    """
    payload = {"id": uuid.uuid4().hex, "type": type, **_command_fields(type, fields)}
    if conn is not None:
        conn.execute("INSERT INTO device_commands (id, device_id, type, payload, sent_at, sent_by) "
                     "VALUES (%s, %s, %s, %s, %s, %s)",
                     (payload["id"], device_id, type, orjson.dumps(payload).decode(),
                      ms_to_dt(wall_ms() if now_ms is None else now_ms), sent_by))
    info = client.publish(command_topic(device_id), orjson.dumps(payload), qos=1)
    if wait_s is not None:
        info.wait_for_publish(wait_s)
        if not info.is_published():
            raise TimeoutError(f"command {payload['id']} to {device_id}: no PUBACK in {wait_s} s")
    return payload["id"]


def _command_fields(type: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    if type not in COMMAND_TYPES:
        raise ValueError(f"command type must be one of {', '.join(COMMAND_TYPES)}, not {type!r}")
    if type == "set_interval":
        fix_s = fields.get("fix_s")
        if not isinstance(fix_s, int) or isinstance(fix_s, bool) or fix_s <= 0:
            raise ValueError("set_interval needs fix_s, a positive integer (seconds)")
    if type == "notify_wearer":
        text = fields.get("text")
        if not isinstance(text, str) or not text or len(text) > MAX_WEARER_TEXT:
            raise ValueError(f"notify_wearer needs a text of 1 to {MAX_WEARER_TEXT} characters")
    return dict(fields)


# --- composition --------------------------------------------------------------------------------


class AlertPipeline:
    """ingest -> decide -> deliver, wired for one process (what ``giamsat up`` runs).

    ``start()`` starts the deliverer, then the decide stage (loads zones, recovers), then ingest
    (so nothing stored is handed to a stage that is not ready); ``stop()`` in reverse.
    """

    def __init__(self, settings: Any, db_url: str, mqtt_url: str, *, registry: Any = None,
                 clock_ms: Callable[[], int] = wall_ms, client_id: str | None = None,
                 amqp_url: str | None = None, **stage_kwargs: Any) -> None:
        from ingest.service import IngestService

        self.metrics = AlertMetrics(registry)
        cid = client_id or settings.mqtt_client_id
        self.mqtt = MqttChannel.from_url(mqtt_url, f"{cid}-alerts")
        self.webhooks = WebhookChannel(timeout_s=settings.webhook_timeout_s)
        self.deliverer = Deliverer(db_url, [self.mqtt, self.webhooks], clock_ms=clock_ms,
                                   metrics=self.metrics,
                                   max_backoff_s=settings.webhook_max_backoff_s)
        self.stage = DecideStage(db_url, settings, clock_ms=clock_ms, metrics=self.metrics,
                                 deliverer=self.deliverer, **stage_kwargs)
        self.ingest = IngestService(settings, db_url, mqtt_url, registry=registry,
                                    on_stored=self.stage.on_stored, amqp_url=amqp_url,
                                    on_activate=self.stage.take_over)

    def start(self) -> None:
        self.deliverer.start()
        self.stage.start()
        self.ingest.start()

    def stop(self) -> None:
        self.ingest.stop()
        self.stage.stop()
        self.deliverer.stop()

    def send_command(self, device_id: str, type: str, **fields: Any) -> str:
        """Downlink through the alerts MQTT connection (see ``send_command``)."""
        return send_command(self.mqtt, device_id, type, **fields)
