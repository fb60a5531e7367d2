"""The ingest service through a real Mosquitto and PostgreSQL: dead letters for every rejection
reason, duplicates and redeliveries stored once, out-of-order fixes, batches with a bad element,
device state, database failures, and acknowledgement only after commit."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
from prometheus_client import CollectorRegistry

from ingest.records import StoredBatch
from ingest.service import IngestService
from ingest.store import Store
from simulators import messages as m
from tests.ingest.helpers import (
    Publisher,
    count,
    forget_session,
    ingest_settings,
    register_devices,
    wait_for,
)

pytestmark = pytest.mark.services
PAYLOADS = Path(__file__).parent / "payloads"


@dataclass
class Harness:
    """A running service of this test, its devices and a publisher."""

    db_url: str
    broker: object
    uid: str
    devices: list[str]
    publisher: Publisher
    db: psycopg.Connection
    services: list[IngestService] = field(default_factory=list)
    batches: list[StoredBatch] = field(default_factory=list)

    @property
    def client_id(self) -> str:
        return f"ingest-{self.uid}"

    def start(self, **overrides) -> IngestService:
        """Start (again) the service with this test's client id: a persistent session."""
        svc = IngestService(ingest_settings(self.client_id, ingest_batch_wait_ms=5, **overrides),
                            self.db_url, self.broker.url, registry=CollectorRegistry(),
                            on_stored=self.batches.append)
        svc.start()
        self.services.append(svc)
        assert wait_for(lambda: svc.healthy, 15), "the service did not connect"
        return svc

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        mid = self.publisher.publish(topic, payload, qos)
        if qos:
            assert self.publisher.wait_acked([mid], 10)

    def count(self, sql: str, *params: object) -> int:
        return count(self.db, sql, *params)


@pytest.fixture
def h(db_url: str, db: psycopg.Connection, mqtt_broker, unique_id: str) -> Iterator[Harness]:
    devices = [f"sv{unique_id}-{i}" for i in range(3)]
    register_devices(db, devices, supervisee_id=f"sup-{unique_id}")
    publisher = Publisher(mqtt_broker.host, mqtt_broker.port, f"pub-{unique_id}")
    harness = Harness(db_url, mqtt_broker, unique_id, devices, publisher, db)
    yield harness
    for svc in harness.services:
        svc.stop(timeout_s=10)
    publisher.close()
    forget_session(mqtt_broker.host, mqtt_broker.port, harness.client_id)


def _sample(svc: IngestService, name: str, labels: dict[str, str]) -> float:
    return svc.metrics.registry.get_sample_value(name, labels) or 0.0


def test_every_rejection_reason_is_dead_lettered_and_counted(h: Harness) -> None:
    register_devices(h.db, [f"ot{h.uid}-x"], supervisee_id=f"sup-{h.uid}")
    svc = h.start(max_batch_fixes=3)
    dev = h.devices[0]
    now = m.now_ms()
    sim = m.invalid_payloads(now=now)
    cases = {  # reason -> (topic, raw payload)
        "not_json": (m.topic(dev, "fix"), sim["not_json"]),
        "not_object": (m.topic(dev, "fix"), sim["not_object"]),
        "missing_field": (m.topic(dev, "fix"), sim["missing_field"]),
        "bad_type": (m.topic(dev, "fix"), sim["mistyped_field"]),
        "out_of_range": (m.topic(dev, "fix"), sim["nan"]),
        "future_ts": (m.topic(dev, "fix"), sim["future_ts"]),
        "stale_ts": (m.topic(dev, "fix"), sim["stale_ts"]),
        "too_large": (m.topic(dev, "fix"), sim["oversized"]),
        "unknown_device": (f"em/v1/dev/nobody-{h.uid}/fix", m.encode(m.fix(seq=1, ts=now))),
        "bad_topic": (f"em/v1/dev/bad.{h.uid}/fix", m.encode(m.fix(seq=1, ts=now))),
        "too_many_fixes": (m.topic(dev, "fix"), m.encode(m.fix_batch(
            [m.fix(seq=i, ts=now) for i in range(4)]))),
        "unsupported": (m.owntracks_topic(f"ot{h.uid}", "x"),
                        (PAYLOADS / "owntracks_lwt.json").read_bytes()),
        "unknown_command": (m.topic(dev, "ack"), (PAYLOADS / "ack_locate.json").read_bytes()),
    }
    for topic, payload in cases.values():
        h.publish(topic, payload)
    h.publish(m.topic(dev, "fix"), sim["infinity"])  # a second out_of_range
    h.publish(m.topic(dev, "fix"), m.encode(m.fix(seq=99, ts=now)))  # the service runs on
    assert wait_for(lambda: h.count("SELECT count(*) FROM fixes WHERE seq = 99") == 1)
    assert wait_for(lambda: h.count("SELECT count(*) FROM dead_letters") == len(cases) + 1)
    stored = dict(h.db.execute("SELECT reason, payload FROM dead_letters WHERE reason <> "
                               "'out_of_range' OR payload = %s", (sim["nan"],)).fetchall())
    assert stored == {reason: payload for reason, (_, payload) in cases.items()}
    assert h.db.execute("SELECT device_id FROM dead_letters WHERE reason = 'bad_topic'"
                        ).fetchone() == (None,)
    for reason in cases:
        expected = 2.0 if reason == "out_of_range" else 1.0
        assert _sample(svc, "giamsat_ingest_rejected_total", {"reason": reason}) == expected
    assert svc.healthy


def test_a_repeated_message_is_stored_once(h: Harness) -> None:
    svc = h.start()
    payload = m.encode(m.fix(seq=7, ts=m.now_ms()))
    for _ in range(3):
        h.publish(m.topic(h.devices[0], "fix"), payload)
    assert wait_for(lambda: _sample(svc, "giamsat_ingest_received_messages_total",
                                    {"kind": "fix"}) == 3)
    assert wait_for(lambda: _sample(svc, "giamsat_ingest_duplicate_records_total",
                                    {"kind": "fix"}) == 2)
    assert h.count("SELECT count(*) FROM fixes") == 1
    assert sum(len(b) for b in h.batches) == 1  # duplicates are not handed on


def test_a_redelivery_after_a_crash_before_the_ack_is_stored_once(h: Harness) -> None:
    first = h.start()
    first.consumer.ack = lambda items: 0  # stored and committed, but "crashes" before acking
    now = m.now_ms()
    for i in range(20):
        h.publish(m.topic(h.devices[i % 3], "fix"), m.encode(m.fix(seq=i, ts=now + i)))
    assert wait_for(lambda: first.totals["fixes"] == 20)
    first.stop()
    second = h.start()  # same client id: the broker redelivers the 20 unacknowledged messages
    assert wait_for(lambda: second.totals["duplicates"] == 20)
    assert second.totals["fixes"] == 0
    assert h.count("SELECT count(*) FROM fixes") == 20
    second.stop()
    third = h.start()  # the second acknowledged them: nothing comes back
    time.sleep(0.5)
    assert third.totals["messages"] == 0


def test_out_of_order_fixes_are_stored(h: Harness) -> None:
    h.start()
    dev, now = h.devices[1], m.now_ms()
    for seq in (5, 3, 4, 1, 2):
        h.publish(m.topic(dev, "fix"), m.encode(m.fix(seq=seq, ts=now - 10_000 + seq * 1000,
                                                      lat=21.0 + seq / 1000)))
    assert wait_for(lambda: h.count("SELECT count(*) FROM fixes") == 5)
    row = h.db.execute("SELECT (extract(epoch FROM last_fix_ts) * 1000)::int8, last_fix_lat "
                       "FROM device_state WHERE device_id = %s", (dev,)).fetchone()
    assert row == (now - 5000, 21.005)


def test_a_batch_with_one_bad_element_stores_its_neighbours(h: Harness) -> None:
    h.start(max_fix_age_days=36_500)  # the recorded batch dates from November 2024
    dev = h.devices[2]
    payload = (PAYLOADS / "fix_batch_buffered.json").read_bytes()
    h.publish(m.topic(dev, "fix"), payload)
    assert wait_for(lambda: h.count("SELECT count(*) FROM fixes") == 2)
    assert [r[0] for r in h.db.execute("SELECT seq FROM fixes ORDER BY seq")] == [1201, 1203]
    assert h.db.execute("SELECT reason, element, device_id FROM dead_letters").fetchall() == [
        ("bad_type", 1, dev)]


def test_heartbeats_at_qos0_events_and_device_state(h: Harness) -> None:
    h.start()
    dev, now = h.devices[0], m.now_ms()
    h.publish(m.topic(dev, "hb"), m.encode(m.heartbeat(seq=1, ts=now, batt=17, strap="open")),
              qos=0)
    h.publish(m.topic(dev, "evt"), m.encode(m.event("strap_open", 1, now, detail={"n": 1})))
    h.publish(m.topic(dev, "fix"), m.encode(m.fix(seq=1, ts=now, acc=12.0)))
    assert wait_for(lambda: h.count("SELECT count(*) FROM device_state WHERE battery = 17 AND "
                                    "last_fix_ts IS NOT NULL") == 1)
    assert h.count("SELECT count(*) FROM heartbeats") == 1
    assert h.count("SELECT count(*) FROM device_events WHERE type = 'strap_open'") == 1
    assert h.db.execute("SELECT strap, last_fix_acc FROM device_state").fetchone() == ("open", 12.0)
    events = [e for b in h.batches for e in b.events]
    assert [e.type for e in events] == ["strap_open"]
    assert all(b.supervisees.get(dev) == f"sup-{h.uid}" for b in h.batches)


def test_owntracks_through_the_broker(h: Harness) -> None:
    register_devices(h.db, [f"ot{h.uid}-phone"], supervisee_id=f"sup-{h.uid}")
    h.start()
    loc = m.owntracks_location(tst=m.now_ms() // 1000, acc=9, vel=36)
    h.publish(m.owntracks_topic(f"ot{h.uid}", "phone"), m.encode(loc))
    h.publish(m.owntracks_topic(f"ot{h.uid}", "phone"), m.encode(loc))  # a repeat
    assert wait_for(lambda: h.count("SELECT count(*) FROM fixes WHERE device_id = %s",
                                    f"ot{h.uid}-phone") == 1)
    assert wait_for(lambda: h.services[0].totals["duplicates"] == 1)
    assert h.db.execute("SELECT spd FROM fixes").fetchone() == (pytest.approx(10.0),)


def test_on_stored_gets_new_fixes_with_their_supervisee(h: Harness) -> None:
    h.start()
    now = m.now_ms()
    h.publish(m.topic(h.devices[0], "fix"), m.encode(m.fix_batch(
        [m.fix(seq=i, ts=now + i) for i in range(4)])))
    assert wait_for(lambda: sum(len(b) for b in h.batches) == 4)
    fixes = [(d, s, sup) for b in h.batches for d, s, sup in
             zip(b.device_id.tolist(), b.seq.tolist(), b.supervisee_id.tolist(), strict=True)]
    assert fixes == [(h.devices[0], i, f"sup-{h.uid}") for i in range(4)]


def test_database_errors_are_retried_and_the_service_runs_on(h: Harness, monkeypatch) -> None:
    failures = [2]
    real_write = Store.write

    def flaky(self, *args, **kwargs):
        if failures[0] > 0:
            failures[0] -= 1
            raise psycopg.OperationalError("simulated: server closed the connection")
        return real_write(self, *args, **kwargs)

    monkeypatch.setattr(Store, "write", flaky)
    svc = h.start()
    h.publish(m.topic(h.devices[0], "fix"), m.encode(m.fix(seq=1, ts=m.now_ms())))
    assert wait_for(lambda: h.count("SELECT count(*) FROM fixes") == 1, 20)
    assert _sample(svc, "giamsat_ingest_db_errors_total", {}) == 2
    assert wait_for(lambda: svc.healthy)


def test_nothing_is_acknowledged_before_it_is_committed(h: Harness, monkeypatch) -> None:
    def down(self, *args, **kwargs):
        raise psycopg.OperationalError("simulated: the database is down")

    with monkeypatch.context() as patch:
        patch.setattr(Store, "write", down)
        broken = h.start()
        h.publish(m.topic(h.devices[0], "fix"), m.encode(m.fix(seq=1, ts=m.now_ms())))
        assert wait_for(lambda: not broken.healthy)
        broken.stop(timeout_s=1)  # gives up: the batch stays unacknowledged
    assert h.count("SELECT count(*) FROM fixes") == 0
    h.start()  # the broker redelivers it
    assert wait_for(lambda: h.count("SELECT count(*) FROM fixes") == 1)


def test_a_device_answer_is_recorded_with_its_command(h: Harness) -> None:
    svc = h.start()
    dev = h.devices[1]
    h.db.execute("INSERT INTO device_commands (id, device_id, type, payload, sent_at) "
                 "VALUES (%s, %s, 'locate', '{}', now())", (f"cmd-{h.uid}", dev))
    h.db.commit()
    answer = m.encode(m.ack(f"cmd-{h.uid}", ok=True))
    h.publish(m.topic(dev, "ack"), answer)
    h.publish(m.topic(dev, "ack"), answer)
    assert wait_for(lambda: h.count("SELECT count(*) FROM device_commands WHERE ok AND "
                                    "answered_at IS NOT NULL") == 1)
    assert wait_for(lambda: _sample(svc, "giamsat_ingest_duplicate_records_total",
                                    {"kind": "ack"}) == 1)
    assert [a.id for b in h.batches for a in b.acks] == [f"cmd-{h.uid}"]
    assert h.count("SELECT count(*) FROM dead_letters") == 0


def test_a_device_registered_since_the_last_registry_check_is_stored(h: Harness) -> None:
    svc = h.start()
    now = m.now_ms()
    h.publish(m.topic(h.devices[0], "fix"), m.encode(m.fix(seq=1, ts=now)))
    assert wait_for(lambda: h.count("SELECT count(*) FROM fixes WHERE device_id = %s",
                                    h.devices[0]) == 1)
    svc.registry_cache.check_every_s = 3600.0  # the snapshot now counts as fresh for an hour
    new = f"nw{h.uid}"
    register_devices(h.db, [new], supervisee_id=f"sup-{h.uid}")  # committed before it publishes
    h.publish(m.topic(new, "fix"), m.encode(m.fix(seq=1, ts=now + 1000)))
    h.publish(f"em/v1/dev/nobody-{h.uid}/fix", m.encode(m.fix(seq=1, ts=now)))
    assert wait_for(lambda: h.count("SELECT count(*) FROM dead_letters WHERE topic LIKE %s",
                                    f"%nobody-{h.uid}%") == 1)
    assert h.count("SELECT count(*) FROM fixes WHERE device_id = %s", new) == 1
    assert h.count("SELECT count(*) FROM dead_letters WHERE topic LIKE %s", f"%{new}%") == 0
