"""The TimescaleDB path (issue 16), through the real ingest service, a real broker and a real
TimescaleDB: hypertables made by `giamsat migrate`, a compressed chunk, then redeliveries from it
and from today; messages stamped long ago; retention by receipt time; and the refusal of a
release known to lose rows.

These run when a server with the extension is configured (tests/conftest.py: a private build,
deploy/timescaledb/build-private.sh, via GIAMSAT_TEST_PG_BINDIR) and skip, saying why, otherwise.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field

import psycopg
import pytest
from prometheus_client import CollectorRegistry

from ingest.records import StoredBatch
from ingest.service import IngestService
from ingest.store import Store
from schema import UnsafeTimescale, connect
from simulators import messages as m
from tests.conftest import REPO, scratch_database
from tests.ingest.helpers import (
    Publisher,
    count,
    forget_session,
    ingest_settings,
    register_devices,
    wait_for,
)

pytestmark = pytest.mark.services
DAY_MS = 86_400_000


def giamsat_migrate(db_url: str) -> subprocess.CompletedProcess:
    """`giamsat migrate` against ``db_url``, as an operator runs it."""
    env = {**os.environ, "GIAMSAT_DATABASE_URL": db_url}
    return subprocess.run([sys.executable, "-m", "giamsat", "migrate"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def ts_url(timescale_server: str) -> Iterator[str]:
    """A database of this test's own, migrated by `giamsat migrate` on TimescaleDB."""
    with scratch_database(timescale_server, "giamsat_ts") as url:
        done = giamsat_migrate(url)
        assert done.returncode == 0, done.stderr
        yield url


@dataclass
class Service:
    """The ingest service of one test (restartable: a persistent session), and what it handed on."""

    db_url: str
    broker: object
    uid: str
    running: IngestService | None = None
    batches: list[StoredBatch] = field(default_factory=list)

    def start(self) -> IngestService:
        settings = ingest_settings(f"ingest-{self.uid}", ingest_batch_wait_ms=200)
        self.running = IngestService(settings, self.db_url, self.broker.url,
                                     registry=CollectorRegistry(), on_stored=self.batches.append)
        self.running.start()
        assert wait_for(lambda: self.running.healthy, 15), "the service did not connect"
        return self.running

    def stop(self) -> None:
        if self.running is not None:
            self.running.stop(timeout_s=15)
            self.running = None

    def handed_on(self) -> list[int]:
        """The fix seqs handed on to the next stage (new fixes only), in order."""
        return [int(s) for b in self.batches for s in b.seq.tolist()]


@pytest.fixture
def service(ts_url: str, mqtt_broker, unique_id: str) -> Iterator[Service]:
    svc = Service(ts_url, mqtt_broker, unique_id)
    yield svc
    svc.stop()
    forget_session(mqtt_broker.host, mqtt_broker.port, f"ingest-{unique_id}")


@pytest.fixture
def publisher(mqtt_broker, unique_id: str) -> Iterator[Publisher]:
    pub = Publisher(mqtt_broker.host, mqtt_broker.port, f"pub-{unique_id}")
    yield pub
    pub.close()


def send(publisher: Publisher, *messages: tuple[str, dict]) -> None:
    """Publish QoS 1 and wait for the broker's acknowledgements (stored in its queue)."""
    mids = [publisher.publish(topic, m.encode(obj)) for topic, obj in messages]
    assert publisher.wait_acked(mids, 15)


def compressed_chunks(conn: psycopg.Connection, table: str) -> int:
    return count(conn, "SELECT count(*) FROM timescaledb_information.chunks "
                       "WHERE hypertable_name = %s AND is_compressed", table)


def test_migrate_makes_hypertables_and_schedules_retention_by_receipt(ts_url: str) -> None:
    with connect(ts_url) as conn:
        hypertables = {r[0] for r in conn.execute(
            "SELECT hypertable_name FROM timescaledb_information.hypertables")}
        jobs = [r[0] for r in conn.execute(
            "SELECT proc_name FROM timescaledb_information.jobs WHERE hypertable_name IS NULL "
            "OR hypertable_name IN ('fixes', 'heartbeats', 'device_events')")]
    assert {"fixes", "heartbeats", "device_events"} <= hypertables
    assert "giamsat_apply_retention" in jobs
    assert "policy_retention" not in jobs  # the policies that dropped chunks by the device's ts
    assert jobs.count("policy_compression") == 3


def test_redeliveries_into_a_compressed_chunk_lose_nothing(
        service: Service, publisher: Publisher, unique_id: str) -> None:
    dev = f"ts{unique_id}"
    with connect(service.db_url) as db:
        register_devices(db, [dev], supervisee_id=f"sup-{unique_id}")
        fix_t, hb_t, evt_t = m.topic(dev, "fix"), m.topic(dev, "hb"), m.topic(dev, "evt")
        now = m.now_ms()
        old = now - 3 * DAY_MS  # in a 1-day chunk that gets compressed
        f1, f2 = m.fix(seq=1, ts=old), m.fix(seq=2, ts=now - 1000)
        h1, h2 = m.heartbeat(seq=1, ts=old), m.heartbeat(seq=2, ts=now - 1000)
        e1 = m.event("strap_open", seq=1, ts=old)

        service.start()
        send(publisher, (fix_t, f1), (fix_t, f2), (hb_t, h1), (hb_t, h2), (evt_t, e1))
        assert wait_for(lambda: count(db, "SELECT count(*) FROM fixes") == 2
                        and count(db, "SELECT count(*) FROM heartbeats") == 2
                        and count(db, "SELECT count(*) FROM device_events") == 1)
        db.execute("SELECT compress_chunk(c) FROM show_chunks('fixes', "
                   "older_than => now() - interval '1 day') c")
        db.execute("SELECT compress_chunk(c) FROM show_chunks('heartbeats', "
                   "older_than => now() - interval '1 day') c")
        db.execute("SELECT compress_chunk(c) FROM show_chunks('device_events') c")
        db.commit()
        assert compressed_chunks(db, "fixes") == compressed_chunks(db, "heartbeats") == 1
        assert compressed_chunks(db, "device_events") >= 1
        service.stop()

        # While the service is away its session queues the lot; on restart they come as one
        # batch, each repeat ahead of new messages of its kind (the order in which TimescaleDB
        # 2.16-2.18.0 dropped the rest of the statement).
        send(publisher,
             (fix_t, f1), (hb_t, h1), (evt_t, e1),                 # repeats, compressed chunk
             (fix_t, f2), (hb_t, h2),                              # repeats, today
             (fix_t, m.fix(seq=3, ts=old + 1000)),                 # new, into the compressed chunk
             (fix_t, m.fix(seq=4, ts=now - 500)),                  # new, today
             (fix_t, m.fix_batch([f1, m.fix(seq=5, ts=old + 2000), m.fix(seq=6, ts=now - 400)])),
             (hb_t, m.heartbeat(seq=3, ts=old + 1000)), (hb_t, m.heartbeat(seq=4, ts=now - 500)),
             (evt_t, m.event("strap_closed", seq=2, ts=now - 500)))
        handed_before = len(service.handed_on())
        svc = service.start()
        assert wait_for(lambda: svc.totals["messages"] == 11), svc.totals
        send(publisher, (fix_t, m.fix(seq=7, ts=now)))  # a later message is still decided
        assert wait_for(lambda: 7 in service.handed_on()), service.handed_on()

        assert svc.totals["duplicates"] == 3 and svc.healthy
        assert sorted(service.handed_on()[handed_before:]) == [3, 4, 5, 6, 7]
        for table, seqs in (("fixes", [1, 2, 3, 4, 5, 6, 7]), ("heartbeats", [1, 2, 3, 4]),
                            ("device_events", [1, 2])):
            stored = [r[0] for r in db.execute(f"SELECT seq FROM {table} ORDER BY seq")]
            db.commit()
            assert stored == seqs, table  # every new one, and no key twice
        assert count(db, "SELECT count(*) FROM dead_letters") == 0

        # Everything was acknowledged: a restarted service gets nothing again but what is new.
        service.stop()
        svc = service.start()
        send(publisher, (fix_t, m.fix(seq=8, ts=now + 1)))
        assert wait_for(lambda: count(db, "SELECT count(*) FROM fixes WHERE seq = 8") == 1)
        assert wait_for(lambda: svc.totals["messages"] == 1)
        assert svc.totals == {"messages": 1, "fixes": 1, "duplicates": 0, "rejected": 0}


def test_clock_reset_messages_are_dead_lettered_and_retention_goes_by_receipt(
        service: Service, publisher: Publisher, unique_id: str) -> None:
    dev = f"ts{unique_id}"
    with connect(service.db_url) as db:
        register_devices(db, [dev], supervisee_id=f"sup-{unique_id}")
        now = m.now_ms()
        svc = service.start()
        epoch = [(m.topic(dev, "fix"), m.fix(seq=1, ts=0)),
                 (m.topic(dev, "hb"), m.heartbeat(seq=1, ts=0)),
                 (m.topic(dev, "evt"), m.event("strap_open", seq=1, ts=0))]
        late = now - 20 * DAY_MS  # within the 30-day bound: a device that buffered for 20 days
        buffered = [(m.topic(dev, "fix"), m.fix(seq=2, ts=late)),
                    (m.topic(dev, "hb"), m.heartbeat(seq=2, ts=late)),
                    (m.topic(dev, "evt"), m.event("strap_open", seq=2, ts=late))]
        send(publisher, *epoch, *buffered)
        assert wait_for(lambda: svc.totals["messages"] == 6)
        stale = db.execute("SELECT reason, payload FROM dead_letters ORDER BY topic").fetchall()
        assert [r for r, _ in stale] == ["stale_ts"] * 3
        assert sorted(bytes(p) for _, p in stale) == sorted(m.encode(o) for _, o in epoch)

        # Rows received 40 days ago (ts then too), and a 1970-stamped row received now (stored
        # before this bound existed): keep 10 days after receipt.
        for table, extra in (("fixes", ", lat, lon, acc) VALUES (%s, %s, 3, %s, 21, 106, 5)"),
                             ("heartbeats", ", batt) VALUES (%s, %s, 3, %s, 50)"),
                             ("device_events", ", type) VALUES (%s, %s, 3, %s, 'power_on')")):
            sql = f"INSERT INTO {table} (device_id, ts, seq, received_at{extra}"
            db.execute(sql, (dev, ms(now - 40 * DAY_MS), ms(now - 40 * DAY_MS)))
            db.execute(sql.replace(", 3,", ", 4,"), (dev, ms(0), ms(now)))
        db.execute("UPDATE telemetry_retention SET keep = interval '10 days'")
        db.commit()
        job = db.execute("SELECT job_id FROM timescaledb_information.jobs "
                         "WHERE proc_name = 'giamsat_apply_retention'").fetchone()[0]
        db.execute("CALL run_job(%s)", (job,))  # what the scheduler runs daily
        db.commit()
        for table in ("fixes", "heartbeats", "device_events"):
            seqs = [r[0] for r in db.execute(f"SELECT seq FROM {table} ORDER BY seq")]
            db.commit()
            assert seqs == [2, 4], table  # the 40-day-old receipt went, the recent ones stayed
        assert count(db, "SELECT count(*) FROM dead_letters") == 3  # dead letters are kept


def ms(value: int):
    from datetime import UTC, datetime, timedelta

    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=value)


# --- a release known to lose rows -----------------------------------------------------------

LOSS_PROBE = [
    "CREATE TABLE probe (ts timestamptz NOT NULL, device text NOT NULL)",
    "CREATE UNIQUE INDEX ON probe (device, ts)",
    "SELECT create_hypertable('probe', by_range('ts', interval '1 day'))",
    "ALTER TABLE probe SET (timescaledb.compress, timescaledb.compress_segmentby = 'device', "
    "timescaledb.compress_orderby = 'ts')",
    "INSERT INTO probe VALUES ('2025-01-01', 'd1')",
    "SELECT compress_chunk(c) FROM show_chunks('probe') c",
    "INSERT INTO probe VALUES ('2025-01-01', 'd1'), ('2025-01-01', 'd2'), ('2025-01-02', 'd2') "
    "ON CONFLICT DO NOTHING",
]


def rows_after_a_conflict_in_a_compressed_chunk(server: str) -> int:
    """timescale/timescaledb#7672's case: how many of the two new rows the server kept."""
    with scratch_database(server, "giamsat_probe") as url, \
            psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION timescaledb")
        for sql in LOSS_PROBE:
            conn.execute(sql)
        return conn.execute("SELECT count(*) FROM probe WHERE device = 'd2'").fetchone()[0]


def test_the_pinned_kind_of_release_keeps_rows_after_a_conflict(timescale_server: str) -> None:
    assert rows_after_a_conflict_in_a_compressed_chunk(timescale_server) == 2


def test_a_release_known_to_lose_rows_is_refused(row_losing_timescale_server: str) -> None:
    server = row_losing_timescale_server
    # the defect is real on this server...
    assert rows_after_a_conflict_in_a_compressed_chunk(server) < 2
    # ...so `giamsat migrate` (and with it every start) refuses it, naming version and reason
    with scratch_database(server, "giamsat_unsafe") as url:
        done = giamsat_migrate(url)
        assert done.returncode == 2
        assert "TimescaleDB 2.1" in done.stderr and "#7672" in done.stderr
        assert "Traceback" not in done.stderr
        with connect(url) as conn:
            assert conn.execute("SELECT count(*) FROM pg_extension "
                                "WHERE extname = 'timescaledb'").fetchone()[0] == 0
            conn.execute("CREATE EXTENSION timescaledb")  # installed by hand: the store refuses
            conn.commit()
            with pytest.raises(UnsafeTimescale, match="fixed in 2.18.1"):
                Store(conn)
