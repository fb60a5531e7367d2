"""Delivery: MQTT to a real broker, signed webhooks to a real local receiver, retries that never
drop, a failing channel that delays no other, and a crash in the middle of delivery."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import orjson
import pytest
from prometheus_client import CollectorRegistry

from alerts import Occurrence, apply
from alerts.delivery import Deliverer
from alerts.delivery.memory import MemoryChannel
from alerts.delivery.mqtt import MqttChannel
from alerts.delivery.stream import change_json, listen, wait
from alerts.delivery.webhook import WebhookChannel, verify
from alerts.metrics import AlertMetrics
from alerts.payload import REQUIRED_FIELDS
from alerts.sweeps import sweep_escalation
from schema import connect
from tests.alerts.helpers import COMMUNE, PROVINCE, AlertSubscriber, Receiver, seed_registry

pytestmark = pytest.mark.services

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _open(db, clock, sid="SV1", type_="strap_tamper"):
    with db.transaction():
        [c] = apply(db, Occurrence(type_, sid, True, clock.now, edge=True), clock.now)
    return c


def _webhook(db, url, unit=COMMUNE, secret="s3cret"):
    wid = db.execute("INSERT INTO unit_webhooks (unit, url, secret) VALUES (%s, %s, %s) "
                     "RETURNING id", (unit, url, secret)).fetchone()[0]
    db.commit()
    return wid


def _wait(pred, timeout_s=20.0, what="condition"):
    deadline = time.monotonic() + timeout_s
    while not pred():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_mqtt_publishes_alert_json_and_parent_after_escalation(db, db_url, registry, clock,
                                                               mqtt_broker, unique_id):
    sub = AlertSubscriber(mqtt_broker.host, mqtt_broker.port, f"t-sub-{unique_id}")
    channel = MqttChannel(mqtt_broker.host, mqtt_broker.port, f"t-alerts-{unique_id}")
    metrics = AlertMetrics(CollectorRegistry())
    d = Deliverer(db_url, [channel], clock_ms=clock, metrics=metrics, poll_s=0.05)
    d.start()
    try:
        opened = _open(db, clock)
        d.wake()
        topic, msg = sub.wait_for(lambda t, m: m["id"] == opened.alert_id)
        assert topic == f"em/v1/alerts/{COMMUNE}"
        assert set(REQUIRED_FIELDS) <= set(msg)
        assert (msg["type"], msg["severity"], msg["status"], msg["change"]) == (
            "strap_tamper", "critical", "open", "opened")
        assert msg["message_vi"].startswith("Cảnh báo tháo/cắt vòng đeo")
        clock.advance(300)
        sweep_escalation(db, clock.now)
        d.wake()
        ptopic, pmsg = sub.wait_for(lambda t, m: t.endswith(PROVINCE))
        assert pmsg["escalated"] is True and pmsg["change"] == "escalated"
        sub.wait_for(lambda t, m: t.endswith(COMMUNE) and m["change"] == "escalated")
        _wait(lambda: db.execute("SELECT count(*) FROM deliveries WHERE delivered_at IS NULL")
              .fetchone()[0] == 0, what="all delivered")
        assert metrics.deliveries.labels("mqtt", "delivered")._value.get() == 3
    finally:
        d.stop()
        sub.close()


def test_webhook_failing_five_times_gets_one_key_and_six_attempts(db, db_url, registry, clock):
    rx = Receiver(fail_first=5)
    wid = _webhook(db, rx.url)
    d = Deliverer(db_url, [WebhookChannel(timeout_s=5)], base_backoff_s=0.02, max_backoff_s=0.2,
                  poll_s=0.02)  # wall clock here: the real retry loop
    d.start()
    try:
        c = _open(db, clock)
        d.wake()
        _wait(lambda: len(rx.processed) == 1, what="webhook delivered")
    finally:
        d.stop()
        rx.close()
    assert len(rx.requests) == 6
    keys = {r["headers"]["Idempotency-Key"] for r in rx.requests}
    assert len(keys) == 1
    for r in rx.requests:
        h = r["headers"]
        assert verify("s3cret", h["X-Giamsat-Timestamp"], r["body"], h["X-Giamsat-Signature"])
        assert r["body"] == rx.requests[0]["body"]
    body = orjson.loads(rx.requests[-1]["body"])
    assert body["id"] == c.alert_id and body["type"] == "strap_tamper"
    rows = db.execute("SELECT a.ok, a.status_code FROM delivery_attempts a JOIN deliveries d "
                      "ON d.id = a.delivery_id WHERE d.target = %s ORDER BY a.id",
                      (str(wid),)).fetchall()
    assert rows == [(False, 503)] * 5 + [(True, 200)]
    attempts, delivered = db.execute(
        "SELECT attempts, delivered_at IS NOT NULL FROM deliveries WHERE target = %s",
        (str(wid),)).fetchone()
    assert (attempts, delivered) == (6, True)


def test_backoff_doubles_up_to_the_cap_and_never_drops(db, db_url, registry, clock):
    ch = MemoryChannel("webhook", batched=False, fail=lambda item: "down")
    d = Deliverer(db_url, [ch], clock_ms=clock, base_backoff_s=1, max_backoff_s=8, listen=False)
    _webhook(db, "http://127.0.0.1:9/unused")
    _open(db, clock)
    waits = []
    for _ in range(7):
        assert d.run_once("webhook") == 1
        due = db.execute("SELECT next_attempt_at FROM deliveries WHERE channel = 'webhook'"
                         ).fetchone()[0]
        waits.append(round((due.timestamp() * 1000 - clock.now) / 1000))
        assert d.run_once("webhook") == 0  # not due yet
        clock.advance(waits[-1])
    assert waits == [1, 2, 4, 8, 8, 8, 8]
    ch.fail = None
    assert d.run_once("webhook") == 1
    assert db.execute("SELECT attempts, delivered_at IS NOT NULL FROM deliveries "
                      "WHERE channel = 'webhook'").fetchone() == (8, True)


def test_a_hanging_webhook_delays_neither_mqtt_nor_other_webhooks(db, db_url, registry, clock):
    gate = threading.Event()
    stuck = Receiver()
    stuck._handle_orig = stuck._handle
    stuck._handle = lambda h, b: (gate.wait(30), stuck._handle_orig(h, b))[1]
    healthy = Receiver()
    _webhook(db, stuck.url)
    _webhook(db, healthy.url)
    mqtt_ch = MemoryChannel("mqtt")
    d = Deliverer(db_url, [mqtt_ch, WebhookChannel(timeout_s=30)], poll_s=0.05, parallel=4)
    d.start()
    try:
        for type_ in ("strap_tamper", "case_tamper", "gnss_jamming"):
            _open(db, clock, type_=type_)
        d.wake()
        mqtt_ch.wait_for(3)
        _wait(lambda: len(healthy.processed) == 3, what="healthy webhook")
        assert stuck.processed == {}  # still hanging while the others were delivered
        gate.set()
        _wait(lambda: len(stuck.processed) == 3, what="stuck webhook released")
    finally:
        gate.set()
        d.stop()
        stuck.close()
        healthy.close()


_CRASHY = """
import sys, time
from alerts.delivery import Deliverer
from alerts.delivery.webhook import WebhookChannel
Deliverer(sys.argv[1], [WebhookChannel(timeout_s=5)], lease_s=2, poll_s=0.05,
          parallel=4).start()
time.sleep(120)
"""


def test_restart_in_the_middle_of_delivery_loses_nothing_sends_nothing_twice(
        db, db_url, clock):
    seed_registry(db, supervisees=30)
    rx = Receiver(delay_s=0.05)
    _webhook(db, rx.url)
    for i in range(1, 31):
        _open(db, clock, sid=f"SV{i}")
    total = 30
    proc = subprocess.Popen([sys.executable, "-c", _CRASHY, db_url], cwd=REPO)
    try:
        _wait(lambda: len(rx.requests) >= 10, what="first deliveries")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert len(rx.processed) < total  # killed midway
    d = Deliverer(db_url, [WebhookChannel(timeout_s=5)], lease_s=2, poll_s=0.05)
    d.start()
    try:
        _wait(lambda: len(rx.processed) == total, what="all delivered after restart")
        _wait(lambda: db.execute("SELECT count(*) FROM deliveries WHERE delivered_at IS NULL "
                                 "AND channel = 'webhook'").fetchone()[0] == 0,
              what="all marked delivered")
    finally:
        d.stop()
        rx.close()
    keys = {k for (k,) in db.execute("SELECT idempotency_key FROM deliveries "
                                     "WHERE channel = 'webhook'")}
    assert set(rx.processed) == keys and len(keys) == total
    assert all(n == 1 for n in rx.processed.values())
    # repeats, if any, are only of rows in flight at the kill, each with its own key again
    assert len(rx.requests) - total <= 4


def test_stream_notifies_each_committed_change(db, db_url, registry, clock):
    with connect(db_url, autocommit=True) as listener:
        listen(listener)
        c = _open(db, clock)
        [(alert_id, history_id)] = wait(listener, 5)
        assert (alert_id, history_id) == (c.alert_id, c.history_id)
        assert change_json(listener, alert_id, history_id) == c.payload
        assert wait(listener, 0.1) == []
