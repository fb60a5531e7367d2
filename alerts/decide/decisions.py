"""The decisions themselves: stored telemetry -> geofence -> alert rules, persisted in ONE
transaction (alert changes, history, outbox rows, geofence decision states, progress mark).

``Decider`` is used by the decide worker thread only: it owns the ``geofence.fence.Fence`` and
its database connection, so the decision state is never touched by two threads.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import psycopg

import registry
from alerts.decide import recovery
from alerts.metrics import AlertMetrics
from alerts.model import Change, ms_to_dt
from alerts.rules import apply_all
from alerts.sources import Thresholds, from_transition
from alerts.telemetry import apply_device_messages
from geofence import store as fence_store
from geofence.fence import MONITORING_ENDED, Fence
from geofence.policy import PolicyTable
from geofence.transitions import Transition
from ingest.records import StoredBatch
from schema import connect

log = logging.getLogger("giamsat.decide")

LEADER_LOCK = 0x6769616D73617401  # pg advisory lock key of the worker running the timed jobs
# On taking a shard over, telemetry is read back from this far behind the shared progress mark:
# the mark moves with every worker's batches, and the worker that died may have lagged.
TAKEOVER_SLACK_S = 600.0


class Decider:
    """Decides batches, ticks and registry reloads against the fence, and persists them.

    ``state_flush_s``: quiet decision states (nothing in progress: only the decided fix moved)
    are saved at most this often rather than with every batch, which saves most state writes
    under steady load; the progress mark stays at the oldest receipt they cover, so after a
    crash the recovery re-decides their fixes (which changes nothing: they were quiet).
    """

    def __init__(self, db_url: str, settings: Any, clock_ms: Callable[[], int],
                 policies: PolicyTable, metrics: AlertMetrics | None,
                 on_committed: Callable[[list[Change]], None], state_flush_s: float,
                 recovery_slack_s: float) -> None:
        self.db_url = db_url
        self.settings = settings
        self.clock_ms = clock_ms
        self.policies = policies
        self.metrics = metrics
        self.thresholds = Thresholds.from_settings(settings)
        self.on_committed = on_committed
        self.state_flush_s = state_flush_s
        self.recovery_slack_s = recovery_slack_s
        self._deferred: dict[str, bytes] = {}
        self._deferred_since: int | None = None  # oldest receipt the deferred states cover
        self._last_received: int | None = None  # receipt of the last batch decided
        self._saved_progress: int | None = None
        self._flushed_at = time.monotonic()
        self._conn: psycopg.Connection | None = None
        self._fence: Fence | None = None
        self.fingerprints: dict[str, str] = {}
        self._absent: dict[str, int | None] = {}  # not in the registry at this stamp
        self.registry_version: int | None = None
        self.decided_batches = 0
        self.shards = max(1, int(getattr(settings, "workers", 1) or 1))
        self._leader_conn: psycopg.Connection | None = None
        self._loaded_at: datetime | None = None  # database time of the last load
        self._saved_since_load: set[str] = set()

    @property
    def conn(self) -> psycopg.Connection:
        assert self._conn is not None, "Decider.open() first"
        return self._conn

    @property
    def fence(self) -> Fence:
        assert self._fence is not None, "Decider.open() first"
        return self._fence

    def open(self) -> None:
        """(Re)connect when needed and load the zones, permits and persisted decision states.
        States not yet flushed are dropped: they are read back (older) and re-decided."""
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = connect(self.db_url, autocommit=True, application_name="giamsat-decide")
        self._deferred.clear()
        self._deferred_since = self._last_received = self._saved_progress = None
        row = self.conn.execute("SELECT now()").fetchone()
        self._loaded_at = row[0] if row else None
        self._saved_since_load = set()
        s = self.settings
        fence = Fence(policies=self.policies, margin_m=s.margin_m, confirm_fixes=s.confirm_fixes,
                      max_accuracy_m=s.max_accuracy_m, tz=s.timezone)
        registry.load_fence(self.conn, fence, now_ms=self.clock_ms())
        self._fence = fence
        self.registry_version = registry.stamp(self.conn)
        self.fingerprints = registry.fingerprints(self.conn)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()

    # --- items --------------------------------------------------------------------------------

    def decide_batch(self, batch: StoredBatch) -> None:
        """Geofence the batch's fixes (vectorised), then persist every consequence at once."""
        now = self.clock_ms()
        transitions: list[Transition] = []
        if len(batch):
            self._reload_for_newcomers(batch)
            transitions = _zone_transitions(self.fence.decide(
                batch.supervisee_id, batch.ts, batch.lon, batch.lat, batch.acc))
            if self.fence.late and self.metrics is not None:
                self.metrics.late_fixes.inc(self.fence.late)
        devices = _device_of(batch) if transitions else {}
        occurrences = [from_transition(t, devices.get(t.supervisee_id)) for t in transitions]
        owners = {d: s for d, s in batch.supervisees.items() if s is not None}
        states, progress = self._states_to_save({t.supervisee_id for t in transitions},
                                                batch.received_ms)
        conn, late = self.conn, self.thresholds.late_after_ms
        with conn.transaction():
            changes = apply_all(conn, occurrences, now, late)
            changes += apply_device_messages(conn, batch.heartbeats, batch.events, now,
                                             self.thresholds, owners)
            self._save_states(conn, states)
            recovery.save_progress(conn, progress, now)
        self._last_received, self._saved_progress = batch.received_ms, progress
        self.decided_batches += 1
        if self.metrics is not None:
            self.metrics.decided_fixes.inc(len(batch))
        self.on_committed(changes)

    def tick(self, now_ms: int | None) -> None:
        """Apply the passage of time (windows and permits that started or ended); save the
        quiet states whose flush is due, so that the progress mark moves on when idle. With
        several workers only the leader ticks, on every supervisee's saved state."""
        if not self.leads():
            return
        if self.shards > 1:  # other workers decide most supervisees: their saved states
            self.flush()
            self.open()
        now = self.clock_ms() if now_ms is None else now_ms
        transitions = _zone_transitions(self.fence.tick(now))
        states, progress = self._states_to_save({t.supervisee_id for t in transitions},
                                                self._last_received)
        moved = self._last_received is not None and progress != self._saved_progress
        if not transitions and not states and not moved:
            return
        with self.conn.transaction():
            changes = apply_all(self.conn, [from_transition(t) for t in transitions], now,
                                self.thresholds.late_after_ms)
            self._save_states(self.conn, states)
            if moved:
                recovery.save_progress(self.conn, progress, now)
                self._saved_progress = progress
        self.on_committed(changes)

    def _reload_for_newcomers(self, batch: StoredBatch) -> None:
        """A batch may carry the first fixes of supervisees registered since the last registry
        poll: reload before deciding it, or those fixes would pass the fence undecided. Ids that
        the registry did not hold at a reload wait for its stamp to move."""
        fence, version = self.fence, self.registry_version
        new = [s for s in set(batch.supervisees.values())
               if s is not None and s not in fence.index and self._absent.get(s, -1) != version]
        if not new:
            return
        self.reload()
        self._absent.update((s, self.registry_version) for s in new if s not in fence.index)

    def reload(self) -> None:
        """Reload the supervisees whose zones, permits or sentence changed (incremental)."""
        conn, now = self.conn, self.clock_ms()
        version = registry.stamp(conn)
        fingerprints, changed = registry.changes(conn, self.fingerprints)
        transitions = []
        for sid in changed:
            transitions += registry.reload_supervisee(conn, self.fence, sid, now_ms=now)
        transitions += self.fence.tick(now)  # new or changed zones against the last fix
        transitions = _zone_transitions(transitions)
        with conn.transaction():
            changes = apply_all(conn, [from_transition(t) for t in transitions], now,
                                self.thresholds.late_after_ms)
            self._save_states(conn, self._drain_all())
        self.fingerprints, self.registry_version = fingerprints, version
        if changed:
            log.info("registry version %s: reloaded %d supervisees", version, len(changed))
        self.on_committed(changes)

    def recover(self, shard: int | None = None) -> None:
        """Decide the telemetry stored after the progress mark (a crash, a kill, an outage): of
        every device (``shard`` None, one worker), or of the devices one shard carries. With
        several workers the start-up recovery waits for the shards this worker is given
        (``take_over``): another worker may be deciding the rest."""
        mark = recovery.read_progress(self.conn)
        if mark is None:
            with self.conn.transaction():
                recovery.save_progress(self.conn, self.clock_ms(), self.clock_ms())
            return
        if shard is None and self.shards > 1:
            return
        slack = self.recovery_slack_s if shard is None else TAKEOVER_SLACK_S
        since = ms_to_dt(min(mark, self.clock_ms()) - int(slack * 1000))
        routes = None if shard is None else recovery.shard_routes(self.conn, shard)
        heartbeats, events = recovery.read_device_messages(self.conn, since, routes)
        n_fixes = 0
        for batch in recovery.read_fix_batches(self.conn, since, heartbeats, events, routes):
            self.decide_batch(batch)
            n_fixes += len(batch)
        log.info("recovery%s: re-read %d fixes, %d heartbeats, %d events received since %s",
                 "" if shard is None else f" of shard {shard}", n_fixes, len(heartbeats),
                 len(events), since.isoformat())

    def take_over(self, shard: int) -> None:
        """This worker just became the reader of ``shard`` (another worker died, or this one
        started): reload every decision state when someone else saved any since this worker
        loaded them (the previous owner's), then decide what the shard's devices stored that
        may not be decided. The persisted states skip what was decided, so nothing fires
        twice. Reloading is as slow as a start, so it is skipped when only this worker saved
        (a worker taking its own shard right after its start)."""
        assert self._loaded_at is not None
        changed = {r[0] for r in self.conn.execute(
            "SELECT supervisee_id FROM geofence_state WHERE updated_at >= %s",
            (self._loaded_at - timedelta(seconds=10),))}  # a transaction begun before the load
        if changed - self._saved_since_load:
            self.flush()
            self.open()
        self.recover(shard)

    def leads(self) -> bool:
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

    @property
    def is_leader(self) -> bool:
        """Whether this worker runs the timed jobs (last known; see ``leads``)."""
        return self.shards <= 1 or self._leader_conn is not None

    def flush(self) -> None:
        """Save every decision state not yet saved (before stopping)."""
        states = self._drain_all()
        if states:
            with self.conn.transaction():
                self._save_states(self.conn, states)

    # --- what to save ---------------------------------------------------------------------------

    def _save_states(self, conn: psycopg.Connection, states: dict[str, bytes]) -> None:
        fence_store.save_states(conn, states)
        self._saved_since_load.update(states)

    def _states_to_save(self, busy: set[str],
                        received_ms: int | None) -> tuple[dict[str, bytes], int]:
        """The decision states to write now: those with a transition or anything in progress;
        quiet ones wait in ``_deferred`` until ``state_flush_s`` has passed. Also the progress
        mark to write with them: the oldest receipt whose decisions are not all saved."""
        out = {}
        for sid, blob in self.fence.drain_changed().items():
            if sid in busy or self.fence.in_progress(sid):
                out[sid] = blob
                self._deferred.pop(sid, None)
            else:
                self._deferred[sid] = blob
        if self._deferred and time.monotonic() - self._flushed_at >= self.state_flush_s:
            out.update(self._deferred)
            self._deferred, self._deferred_since = {}, None
            self._flushed_at = time.monotonic()
        progress = self.clock_ms() if received_ms is None else received_ms
        if self._deferred:
            if self._deferred_since is None or progress < self._deferred_since:
                self._deferred_since = progress
            progress = self._deferred_since
        return out, progress

    def _drain_all(self) -> dict[str, bytes]:
        """Every changed state, the deferred quiet ones included (newest wins)."""
        out = {**self._deferred, **self.fence.drain_changed()}
        self._deferred, self._deferred_since = {}, None
        self._flushed_at = time.monotonic()
        return out


def _zone_transitions(transitions: list[Transition]) -> list[Transition]:
    """The zone transitions; the fence's end-of-sentence markers are left out because the
    ``monitoring_ended`` alert comes from its sweep (``alerts.sweeps``), which also knows
    whether a device is still to be removed, and raises it once."""
    return [t for t in transitions if t.alert_type != MONITORING_ENDED]


def _device_of(batch: StoredBatch) -> dict[str, str]:
    """Supervisee -> the device whose fix is latest in the batch."""
    order = np.argsort(batch.ts, kind="stable")
    return {s: d for s, d in zip(batch.supervisee_id[order].tolist(),
                                 batch.device_id[order].tolist(), strict=True) if s is not None}
