"""The crash test (issue 2): 20,000 QoS 1 fixes, `kill -9` of the ingest process midway, a
restart, then every fix whose publish the broker acknowledged is stored exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import psycopg
import pytest

from embedded.services import free_port
from simulators import messages as m
from tests.ingest.helpers import Publisher, count, forget_session, register_devices, wait_for

pytestmark = pytest.mark.services
REPO = Path(__file__).resolve().parents[2]
FIXES = 20_000
KILL_AFTER = 4_000  # stored rows: the process is killed while it is busy


class IngestProcess:
    """`python -m ingest` as a child process, as the composition root runs it."""

    def __init__(self, db_url: str, mqtt_url: str, client_id: str, log: Path) -> None:
        self.metrics_port = free_port()
        env = dict(os.environ, GIAMSAT_DATABASE_URL=db_url, GIAMSAT_MQTT_URL=mqtt_url,
                   GIAMSAT_MQTT_CLIENT_ID=client_id, GIAMSAT_INGEST_BATCH_MAX="500",
                   PYTHONPATH=str(REPO))
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ingest", "--metrics-port", str(self.metrics_port)],
                env=env, cwd=REPO, stdout=out, stderr=out)

    def ready(self) -> bool:
        try:
            url = f"http://127.0.0.1:{self.metrics_port}/metrics"
            with urllib.request.urlopen(url, timeout=1) as r:
                return b"giamsat_ingest_healthy 1.0" in r.read()
        except OSError:
            return False

    def kill9(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait(10)


def test_kill_9_midway_loses_no_acknowledged_fix(db_url: str, db: psycopg.Connection,
                                                 mqtt_broker, unique_id: str,
                                                 tmp_path: Path) -> None:
    devices = [f"cr{unique_id}-{i:02d}" for i in range(40)]
    register_devices(db, devices, supervisee_id=f"sup-{unique_id}")
    client_id, log = f"crash-{unique_id}", tmp_path / "ingest.log"
    ingest = IngestProcess(db_url, mqtt_broker.url, client_id, log)
    publisher = Publisher(mqtt_broker.host, mqtt_broker.port, f"crash-pub-{unique_id}")
    try:
        assert wait_for(ingest.ready, 30), log.read_text()
        stored_at_kill = _publish_and_kill(ingest, publisher, db, devices)
        print(f"stored at the kill: {stored_at_kill} of {FIXES}")
        assert 0 < stored_at_kill < FIXES, "the kill did not happen midway"
        assert publisher.wait_acked(publisher.sent, 60), "the broker did not acknowledge all"
        ingest = IngestProcess(db_url, mqtt_broker.url, client_id, log)  # the restart
        acked = {publisher.sent[mid] for mid in publisher.acked}
        assert len(acked) == FIXES
        assert wait_for(lambda: count(db, "SELECT count(*) FROM fixes") >= len(acked), 60), \
            log.read_text()[-3000:]
        rows = db.execute("SELECT device_id, seq, (extract(epoch FROM ts) * 1000)::int8 "
                          "FROM fixes").fetchall()
        assert len(rows) == len(set(rows)) == FIXES  # exactly once, no duplicates
        assert set(rows) >= acked
        assert ingest.terminate() == 0  # and a clean stop on SIGTERM
    finally:
        ingest.terminate()
        publisher.close()
        forget_session(mqtt_broker.host, mqtt_broker.port, client_id)


def _publish_and_kill(ingest: IngestProcess, publisher: Publisher, db: psycopg.Connection,
                      devices: list[str]) -> int:
    """Publish every fix (QoS 1) while a watcher kills -9 the ingest process once it has stored
    KILL_AFTER of them; return how many were stored at the kill."""
    stored_at_kill = [0]

    def killer() -> None:
        with psycopg.connect(db.info.dsn) as conn:
            wait_for(lambda: count(conn, "SELECT count(*) FROM fixes") >= KILL_AFTER, 60, 0.01)
            ingest.kill9()
            stored_at_kill[0] = count(conn, "SELECT count(*) FROM fixes")

    watcher = threading.Thread(target=killer, daemon=True)
    watcher.start()
    now = m.now_ms() - 120_000
    for i in range(FIXES):
        dev, seq = devices[i % len(devices)], i // len(devices)
        key = (dev, seq, now + seq)
        publisher.publish_tracked(m.topic(dev, "fix"),
                                  m.encode(m.fix(seq=seq, ts=now + seq, acc=7.5)), key)
    watcher.join(60)
    assert not watcher.is_alive()
    return stored_at_kill[0]
