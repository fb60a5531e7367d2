"""Retention by receipt time on plain PostgreSQL (migration 0060, issue 16): a row goes when it
was received longer ago than its table keeps rows, whatever the device's clock said."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from schema import apply_retention
from tests.conftest import REPO

pytestmark = pytest.mark.services

NOW = datetime.now(UTC)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def add_rows(db: psycopg.Connection, seq: int, ts: datetime, received_at: datetime) -> None:
    """One fix, heartbeat and event of device 'ret-1' with this (ts, received_at)."""
    db.execute("INSERT INTO fixes (device_id, ts, seq, lat, lon, acc, received_at) "
               "VALUES ('ret-1', %s, %s, 21, 106, 5, %s)", (ts, seq, received_at))
    db.execute("INSERT INTO heartbeats (device_id, ts, seq, batt, received_at) "
               "VALUES ('ret-1', %s, %s, 50, %s)", (ts, seq, received_at))
    db.execute("INSERT INTO device_events (device_id, ts, seq, type, received_at) "
               "VALUES ('ret-1', %s, %s, 'power_on', %s)", (ts, seq, received_at))


def seqs(db: psycopg.Connection, table: str) -> list[int]:
    out = [r[0] for r in db.execute(f"SELECT seq FROM {table} ORDER BY seq")]
    db.commit()
    return out


@pytest.fixture
def telemetry(db: psycopg.Connection) -> psycopg.Connection:
    add_rows(db, 1, EPOCH, NOW)                                      # clock reset, received now
    add_rows(db, 2, NOW - timedelta(days=20), NOW - timedelta(days=20))  # received 20 days ago
    add_rows(db, 3, NOW - timedelta(days=20), NOW - timedelta(hours=1))  # buffered, received now
    add_rows(db, 4, NOW, NOW)
    db.execute("INSERT INTO dead_letters (received_at, topic, reason, detail, payload) "
               "VALUES (%s, 'em/v1/dev/ret-1/fix', 'stale_ts', 'old', 'x')",
               (NOW - timedelta(days=400),))
    db.commit()
    return db


def test_default_keep_times_remove_nothing_recent(telemetry: psycopg.Connection) -> None:
    keep = dict(telemetry.execute("SELECT table_name, keep FROM telemetry_retention").fetchall())
    assert keep == {"fixes": timedelta(days=3650), "heartbeats": timedelta(days=730),
                    "device_events": timedelta(days=3650)}
    assert apply_retention(telemetry) == {"device_events": 0, "fixes": 0, "heartbeats": 0}
    assert seqs(telemetry, "fixes") == [1, 2, 3, 4]


def test_rows_go_by_receipt_not_by_the_devices_clock(telemetry: psycopg.Connection) -> None:
    telemetry.execute("UPDATE telemetry_retention SET keep = interval '10 days'")
    telemetry.commit()
    assert apply_retention(telemetry) == {"device_events": 1, "fixes": 1, "heartbeats": 1}
    for table in ("fixes", "heartbeats", "device_events"):
        assert seqs(telemetry, table) == [1, 3, 4], table  # the 1970 and buffered rows stay
    assert telemetry.execute("SELECT count(*) FROM dead_letters").fetchone()[0] == 1


def test_each_table_keeps_rows_its_own_time(telemetry: psycopg.Connection) -> None:
    telemetry.execute("UPDATE telemetry_retention SET keep = interval '10 days' "
                      "WHERE table_name = 'heartbeats'")
    telemetry.commit()
    telemetry.execute("CALL giamsat_apply_retention()")  # the procedure TimescaleDB schedules
    telemetry.commit()
    assert seqs(telemetry, "heartbeats") == [1, 3, 4]
    assert seqs(telemetry, "fixes") == seqs(telemetry, "device_events") == [1, 2, 3, 4]


def test_keep_times_below_a_day_are_refused(db: psycopg.Connection) -> None:
    with pytest.raises(psycopg.errors.CheckViolation):
        db.execute("UPDATE telemetry_retention SET keep = interval '1 hour'")
    db.rollback()


def test_the_retention_command(telemetry: psycopg.Connection, db_url: str) -> None:
    telemetry.execute("UPDATE telemetry_retention SET keep = interval '10 days'")
    telemetry.commit()
    env = {**os.environ, "GIAMSAT_DATABASE_URL": db_url}
    done = subprocess.run([sys.executable, "-m", "giamsat", "retention"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "1 removed from fixes" in done.stdout
    assert seqs(telemetry, "fixes") == [1, 3, 4]


def test_the_service_runs_retention_itself_on_plain_postgresql(telemetry: psycopg.Connection,
                                                                 db_url: str) -> None:
    """The decide stage's daily job (also once soon after a start) removes what is past its
    keep time by receipt, without anyone running `giamsat retention`."""
    from alerts.decide.jobs import Jobs, run_retention

    telemetry.execute("UPDATE telemetry_retention SET keep = interval '10 days'")
    telemetry.commit()
    jobs = Jobs(db_url)
    try:
        jobs.run("retention", run_retention)
    finally:
        jobs.stop()
    assert seqs(telemetry, "fixes") == [1, 3, 4]
    assert seqs(telemetry, "heartbeats") == [1, 3, 4]
