"""Faster fixes while a zone alert is open (contract §1 downlink, ``set_interval``).

While a device's wearer has an unresolved zone alert (``zone_exit``, ``zone_enter``,
``curfew``, ``permit_overrun``) the device is asked for a fix every ``fast_s``; once every such
alert is resolved it is asked for ``normal_s`` again. What was last asked is kept per device
(``device_fix_rate``), so a restart sends nothing twice and a failed send (broker down, no
PUBACK) is tried again at the next round.

Why a polling job and not the decide stage's commit hook: alerts are resolved by officers in
the API process, which the stage never sees; comparing the stored alerts with the stored
rates every few seconds covers both, and any crash in between, with one query.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

import psycopg

from alerts.delivery.commands import forget_command, new_command, publish_command, record_command
from alerts.delivery.deliverer import DbOutage, wall_ms
from alerts.model import ms_to_dt
from schema import connect

log = logging.getLogger("giamsat.alerts.fixrate")

ZONE_ALERT_TYPES = ("zone_exit", "zone_enter", "curfew", "permit_overrun")

_DUE = """
WITH wanted AS (
    SELECT DISTINCT a.device_id FROM alerts a
     WHERE a.status <> 'resolved' AND a.type = ANY(%(types)s) AND a.device_id IS NOT NULL)
SELECT w.device_id, %(fast)s AS fix_s FROM wanted w
  LEFT JOIN device_fix_rate r ON r.device_id = w.device_id
 WHERE r.fix_s IS DISTINCT FROM %(fast)s
UNION ALL
SELECT r.device_id, %(normal)s FROM device_fix_rate r
 WHERE r.fix_s <> %(normal)s AND r.device_id NOT IN (SELECT device_id FROM wanted)
 ORDER BY 1
"""

_KEEP = """
INSERT INTO device_fix_rate (device_id, fix_s, command_id, sent_at) VALUES (%s, %s, %s, %s)
ON CONFLICT (device_id) DO UPDATE SET fix_s = EXCLUDED.fix_s, command_id = EXCLUDED.command_id,
                                      sent_at = EXCLUDED.sent_at
"""


@dataclass(frozen=True)
class RateChange:
    """One ``set_interval`` the job sent: to which device, which interval (s), command id."""

    device_id: str
    fix_s: int
    command_id: str


class FixRateJob:
    """Sends ``set_interval`` where the stored alerts want another rate than the one asked.

    ``client``: the ``MqttChannel`` ``publish_command`` publishes on (the pipeline's).
    """

    def __init__(self, db_url: str, client: Any, *, fast_s: int, normal_s: int,
                 poll_s: float = 5.0, puback_wait_s: float = 5.0,
                 clock_ms: Any = wall_ms) -> None:
        self.db_url, self.client = db_url, client
        self.fast_s, self.normal_s = fast_s, normal_s
        self.poll_s, self.puback_wait_s, self.clock_ms = poll_s, puback_wait_s, clock_ms
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self, conn: psycopg.Connection) -> list[RateChange]:
        """One round: every due change sent and recorded, each in its own transaction."""
        due = conn.execute(_DUE, {"types": list(ZONE_ALERT_TYPES), "fast": self.fast_s,
                                  "normal": self.normal_s}).fetchall()
        conn.commit()
        return [c for c in (self._change(conn, dev, fix_s) for dev, fix_s in due) if c]

    def _change(self, conn: psycopg.Connection, device_id: str, fix_s: int) -> RateChange | None:
        now = self.clock_ms()
        payload = new_command("set_interval", fix_s=fix_s)
        cid = payload["id"]
        with conn.transaction():  # committed before the device can answer
            record_command(conn, device_id, payload, now_ms=now)
        try:
            publish_command(self.client, device_id, payload, self.puback_wait_s)
        except (TimeoutError, RuntimeError, ValueError) as exc:
            with conn.transaction():
                forget_command(conn, cid)
            log.warning("set_interval %d s to %s not sent, retried next round: %s", fix_s,
                        device_id, exc)
            return None
        with conn.transaction():
            conn.execute(_KEEP, (device_id, fix_s, cid, ms_to_dt(now)))
        log.info("asked %s for a fix every %d s (command %s)", device_id, fix_s, cid)
        return RateChange(device_id, fix_s, cid)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="fix-rate", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _loop(self) -> None:
        outage = DbOutage("fix-rate job", log)
        conn: psycopg.Connection | None = None
        while not self._stop.wait(self.poll_s):
            try:
                conn = conn if conn is not None and not conn.closed else connect(self.db_url)
                self.run_once(conn)
                outage.ok()
            except psycopg.Error as exc:
                outage.failed(exc, self._stop)
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()
