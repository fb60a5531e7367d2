"""The decide stage's scheduled jobs (apscheduler): each is a query and a call into ``alerts``
(the device sweeps, monitoring end, escalation, severity rise), or an item queued for the
decide worker (the geofence tick, a registry reload), or a wake-up of the deliverer.

Each job has its own database connection, so a job never waits on the decide worker's and a
lost connection is replaced at the next run (an outage is logged once, not every run).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from apscheduler.schedulers.background import BackgroundScheduler

from alerts import rollcall, sweeps
from alerts.delivery.deliverer import DbOutage
from alerts.model import Change
from alerts.sources import Thresholds
from geofence.policy import PolicyTable
from schema import apply_retention, connect

log = logging.getLogger("giamsat.decide")


def run_retention(conn: psycopg.Connection) -> dict[str, int]:
    """Telemetry past its keep time, counted from receipt, removed (``schema.apply_retention``)
    on plain PostgreSQL; with TimescaleDB its own daily job does it and this does nothing."""
    if conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone():
        return {}
    removed = apply_retention(conn)
    if any(removed.values()):
        log.info("retention by receipt time: %s", ", ".join(
            f"{n} removed from {t}" for t, n in removed.items()))
    return removed


def run_sweeps(conn: psycopg.Connection, now_ms: int, th: Thresholds,
               offline: bool = True, policies: PolicyTable | None = None) -> list[Change]:
    """The device sweeps (offline, gnss_lost), monitoring end, missed roll-calls (by the
    sentence ``policies``, the shipped table when None), then escalation and severity rise,
    once. ``offline=False`` skips the silence sweep (right after a start)."""
    return ((sweeps.sweep_offline(conn, now_ms, th) if offline else [])
            + sweeps.sweep_gnss_lost(conn, now_ms, th)
            + sweeps.sweep_monitoring_ended(conn, now_ms, th)
            + rollcall.sweep_checkin_missed(conn, now_ms, th,
                                            policies or PolicyTable.default())
            + sweeps.sweep_severity(conn, now_ms) + sweeps.sweep_escalation(conn, now_ms))


class Jobs:
    """The scheduler and the connections of its jobs."""

    def __init__(self, db_url: str) -> None:
        self.db_url = db_url
        self.scheduler = BackgroundScheduler(timezone="UTC")
        self._conns: dict[str, psycopg.Connection] = {}
        self._lock = threading.Lock()
        self._outages: dict[str, DbOutage] = {}
        self.started = time.monotonic()

    def every(self, seconds: float, name: str, body: Callable[[], Any],
              first_in_s: float | None = None) -> None:
        """Run ``body`` every ``seconds`` (the first time after ``first_in_s``, default one
        interval), never two at once, a missed run coalesced."""
        first = {} if first_in_s is None else {  # (next_run_time=None would pause the job)
            "next_run_time": datetime.now(UTC) + timedelta(seconds=first_in_s)}
        self.scheduler.add_job(body, "interval", seconds=seconds, id=name, max_instances=1,
                               coalesce=True, misfire_grace_time=None, **first)

    def start(self) -> None:
        self.started = time.monotonic()
        self.scheduler.start()

    def stop(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)
        with self._lock:
            for conn in self._conns.values():
                conn.close()
            self._conns.clear()

    def since_start_s(self) -> float:
        return time.monotonic() - self.started

    def conn(self, name: str) -> psycopg.Connection:
        """The job's own connection, opened again when it was lost."""
        with self._lock:
            conn = self._conns.get(name)
            if conn is None or conn.closed or conn.broken:
                conn = connect(self.db_url, autocommit=True, application_name=f"giamsat-{name}")
                self._conns[name] = conn
            return conn

    def run(self, name: str, body: Callable[[psycopg.Connection], Any]) -> None:
        """Run ``body`` on the job's connection; a database error waits for the next run."""
        outage = self._outages.setdefault(name, DbOutage(f"job {name}", log))
        try:
            body(self.conn(name))
            outage.ok()
        except psycopg.Error as exc:
            outage.failed(exc)
            with self._lock:
                conn = self._conns.pop(name, None)
            if conn is not None:
                conn.close()
