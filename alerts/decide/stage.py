"""The decide stage: a queue and one worker thread in front of the ``Decider``.

    ingest (stored, acknowledged) -> DecideStage.on_stored -> [queue] -> decide worker
        -> Decider (geofence + rules, one transaction per item) -> Deliverer.wake()

Batches, timer ticks, registry reloads, the start-up recovery and the final flush are all
items on one queue, taken by one thread, so decisions follow the order ingest committed them
and the decision state is never touched by two threads. A failed item is retried until it
commits when the database is away; any other error is retried a few times, then left to the
next start's recovery (the progress mark has not moved past it).

Time: decisions follow the fixes' own times (contract §1); ``clock_ms`` (injected) only says
when the service raised an alert. For ``startup_grace_s`` after a start, while the broker is
still handing over what devices sent while the service was down, the scheduled jobs neither
tick the geofence to the wall clock nor call silent devices offline: the backlog's fixes are
decided first, in their own order, and their alerts say they are retrospective.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg

import registry
from alerts.decide.decisions import Decider
from alerts.decide.jobs import Jobs, run_retention, run_sweeps
from alerts.delivery.deliverer import Deliverer, wall_ms
from alerts.metrics import AlertMetrics
from alerts.model import Change
from geofence.fence import Fence
from geofence.policy import PolicyTable
from ingest.records import StoredBatch

log = logging.getLogger("giamsat.decide")

_STOP = object()
RETENTION_EVERY_S = 86_400.0  # telemetry retention (plain PostgreSQL): daily, and once at start


@dataclass(frozen=True)
class _Item:
    kind: str  # batch | tick | reload | recover | flush | takeover
    value: Any = None


class DecideStage:
    """Decides stored telemetry and turns it into alert changes (see the module docstring).

    ``settings``: a ``config.Settings`` (offline_after_s, gnss_lost_after_s, battery_*_pct,
    late_alert_after_s, sweep_interval_s, max_accuracy_m, margin_m, confirm_fixes, timezone).
    ``clock_ms``: UTC epoch ms, injected (tests move it by hand). ``deliverer`` is woken after
    each commit. ``scheduler=False`` runs no background jobs (tests call ``run_sweeps`` and
    ``tick``).
    """

    def __init__(self, db_url: str, settings: Any, *, clock_ms: Callable[[], int] = wall_ms,
                 metrics: AlertMetrics | None = None, deliverer: Deliverer | None = None,
                 policies: PolicyTable | None = None, queue_max: int = 1000,
                 recovery_slack_s: float = 5.0, scheduler: bool = True,
                 startup_grace_s: float = 30.0, registry_poll_s: float = 2.0,
                 state_flush_s: float = 5.0) -> None:
        self.settings = settings
        self.clock_ms = clock_ms
        self.metrics = metrics
        self.deliverer = deliverer
        self.decider = Decider(db_url, settings, clock_ms, policies or PolicyTable.default(),
                               metrics, self._committed, state_flush_s, recovery_slack_s)
        self.startup_grace_s = startup_grace_s
        self.registry_poll_s = registry_poll_s
        self.round_ms: deque[float] = deque(maxlen=20_000)  # recent batch rounds, diagnostics
        self._queue: queue.Queue[Any] = queue.Queue(queue_max)
        if metrics is not None:
            metrics.decide_queue.set_function(self._queue.qsize)
        self._pending = 0
        self._idle = threading.Condition()
        self._worker: threading.Thread | None = None
        self._jobs = Jobs(db_url)  # their connections serve run_sweeps without a scheduler too
        self._scheduler = scheduler

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Load the zones, permits and decision states, queue the startup recovery, start the
        worker and the scheduled jobs. Batches handed over meanwhile wait their turn."""
        self.decider.open()
        self._enqueue(_Item("recover"))
        self._worker = threading.Thread(target=self._run, name="decide", daemon=True)
        self._worker.start()
        if self._scheduler:
            self._schedule_jobs(self._jobs)
            self._jobs.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop the jobs, decide what is queued, stop the worker."""
        self._jobs.stop()
        if self._worker is not None:
            self._queue.put(_STOP)
            self._worker.join(timeout_s)
            self._worker = None
        self.decider.close()

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
        """ingest's ``on_activate``: this worker just became the reader of ``shard``. Queued
        before that shard's first batch (see ``Decider.take_over``)."""
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

    @property
    def fence(self) -> Fence:
        return self.decider.fence

    @property
    def decided_batches(self) -> int:
        return self.decider.decided_batches

    @property
    def registry_version(self) -> int | None:
        return self.decider.registry_version

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
        d = self.decider
        handler: Callable[[], None] = {
            "batch": lambda: d.decide_batch(value), "tick": lambda: d.tick(value),
            "reload": d.reload, "recover": d.recover, "flush": d.flush,
            "takeover": lambda: d.take_over(value)}[kind]
        delay, bugs = 0.1, 0
        while True:
            try:
                t0 = time.perf_counter()
                handler()
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
            self.decider.open()
        except psycopg.Error as exc:
            log.warning("decide: database unavailable (%s)", exc)

    def _committed(self, changes: list[Change]) -> None:
        if self.metrics is not None:
            self.metrics.observe_changes(changes)
        if changes and self.deliverer is not None:
            self.deliverer.wake()

    # --- scheduled jobs ---------------------------------------------------------------------------

    def run_sweeps(self, now_ms: int | None = None, conn: psycopg.Connection | None = None,
                   offline: bool = True) -> list[Change]:
        """The scheduled rules once (see ``alerts.decide.jobs.run_sweeps``)."""
        now = self.clock_ms() if now_ms is None else now_ms
        if conn is None:
            conn = self._jobs.conn("sweeps")
        changes = run_sweeps(conn, now, self.decider.thresholds, offline, self.decider.policies)
        self._committed(changes)
        return changes

    def _schedule_jobs(self, jobs: Jobs) -> None:
        every = float(self.settings.sweep_interval_s)

        def settled() -> bool:
            return jobs.since_start_s() >= self.startup_grace_s

        def sweeps_job() -> None:
            if not self.decider.is_leader:
                return  # another worker runs them (see Decider.leads)
            jobs.run("sweeps", lambda c: self.run_sweeps(conn=c, offline=settled()))

        def tick_job() -> None:
            if settled():
                self.tick()

        def registry_job() -> None:
            jobs.run("registry", lambda c: registry.stamp(c) != self.registry_version
                     and self.reload_registry())

        jobs.every(every, "sweeps", sweeps_job)
        jobs.every(every, "geofence_tick", tick_job)
        jobs.every(self.registry_poll_s, "registry", registry_job)
        jobs.every(RETENTION_EVERY_S, "retention", lambda: jobs.run("retention", run_retention),
                   first_in_s=self.startup_grace_s * 2)
        if self.deliverer is not None:
            jobs.every(1.0, "delivery_retry", self.deliverer.wake)
