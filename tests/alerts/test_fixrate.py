"""Faster fixes while a zone alert is open: the fix-rate job against a real broker and database.

A device whose wearer has an unresolved zone alert is sent ``set_interval`` with the fast rate
once; once the alert is resolved it is sent the normal rate once; a broker that is down sends
and records nothing, and the next round after it is back sends the change.
"""

from __future__ import annotations

import itertools

import pytest

from alerts import lifecycle, rules
from alerts.delivery.fixrate import FixRateJob
from alerts.delivery.mqtt import MqttChannel
from alerts.model import Occurrence
from tests.alerts.helpers import T0, AlertSubscriber

pytestmark = pytest.mark.services

FAST, NORMAL = 5, 60


def _zone_exit(conn, sid: str, dev: str, now_ms: int) -> int:
    occ = Occurrence(type="zone_exit", supervisee_id=sid, active=True, ts_ms=now_ms,
                     zone_id="residence", device_id=dev, lat=21.19, lon=106.08,
                     since_ms=now_ms, escalate_after_s=86_400, edge=True,
                     explanation={"zone_id": "residence", "distance_m": 500.0})
    with conn.transaction():
        return rules.apply(conn, occ, now_ms)[0].alert_id


def _commands(conn, dev: str) -> list[tuple[str, dict]]:
    return [(r[0], r[1]) for r in conn.execute(
        "SELECT type, payload FROM device_commands WHERE device_id = %s ORDER BY sent_at, id",
        (dev,))]


def test_fast_while_a_zone_alert_is_open_then_normal(db, db_url, registry, mqtt_broker,
                                                     unique_id):
    (sid, dev), = registry
    sub = AlertSubscriber(mqtt_broker.host, mqtt_broker.port, f"sub-{unique_id}",
                          topic=f"em/v1/dev/{dev}/cmd")
    channel = MqttChannel.from_url(mqtt_broker.url, f"fixrate-{unique_id}")
    ticks = itertools.count(T0, 1000)
    job = FixRateJob(db_url, channel, fast_s=FAST, normal_s=NORMAL,
                     clock_ms=lambda: next(ticks))
    try:
        assert job.run_once(db) == []  # nothing open: nothing asked
        alert_id = _zone_exit(db, sid, dev, T0)
        _zone_exit_battery = Occurrence(type="battery_low", supervisee_id=sid, active=True,
                                        ts_ms=T0, device_id=dev, edge=True)
        with db.transaction():  # a non-zone alert changes nothing
            rules.apply(db, _zone_exit_battery, T0)
        changes = job.run_once(db)
        assert [(c.device_id, c.fix_s) for c in changes] == [(dev, FAST)]
        _, msg = sub.wait_for(lambda t, m: m.get("type") == "set_interval")
        assert msg == {"id": changes[0].command_id, "type": "set_interval", "fix_s": FAST}
        assert job.run_once(db) == []  # asked once, not every round
        restarted = FixRateJob(db_url, channel, fast_s=FAST, normal_s=NORMAL,
                               clock_ms=lambda: next(ticks))
        assert restarted.run_once(db) == []  # what was asked is stored: a restart resends nothing
        with db.transaction():
            lifecycle.resolve(db, alert_id, "xa.a", "justified", "đi khám bệnh", T0 + 60_000)
        changes = job.run_once(db)
        assert [(c.device_id, c.fix_s) for c in changes] == [(dev, NORMAL)]
        sub.wait_for(lambda t, m: m.get("fix_s") == NORMAL)
        assert job.run_once(db) == []
        assert [(t, p["fix_s"]) for t, p in _commands(db, dev)] == [
            ("set_interval", FAST), ("set_interval", NORMAL)]
    finally:
        channel.close()
        sub.close()


def test_a_broker_outage_sends_nothing_and_the_next_round_does(db, db_url, registry,
                                                              mqtt_broker, unique_id):
    (sid, dev), = registry
    _zone_exit(db, sid, dev, T0)
    down = MqttChannel("127.0.0.1", 1, f"fixrate-down-{unique_id}", connect_timeout_s=0.2)
    try:
        job = FixRateJob(db_url, down, fast_s=FAST, normal_s=NORMAL, puback_wait_s=0.5,
                         clock_ms=lambda: T0)
        assert job.run_once(db) == []
        assert _commands(db, dev) == []  # not recorded either: the next round retries
        assert db.execute("SELECT count(*) FROM device_fix_rate").fetchone()[0] == 0
    finally:
        down.close()
    up = MqttChannel.from_url(mqtt_broker.url, f"fixrate-up-{unique_id}")
    try:
        job = FixRateJob(db_url, up, fast_s=FAST, normal_s=NORMAL, clock_ms=lambda: T0)
        assert [c.fix_s for c in job.run_once(db)] == [FAST]
    finally:
        up.close()
