"""The decide stage on its own: batches, persisted decision state, startup recovery, registry
reloads, ticks, downlink commands."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from zoneinfo import ZoneInfo

import numpy as np
import orjson
import paho.mqtt.client as mqtt
import pytest
from prometheus_client import CollectorRegistry

from alerts.decide import DecideStage
from alerts.delivery.commands import send_command
from alerts.delivery.mqtt import MqttChannel
from alerts.metrics import AlertMetrics
from alerts.model import ms_to_dt
from config import Settings
from giamsat.pipeline import AlertPipeline
from ingest.records import Event, Heartbeat, StoredBatch
from ingest.service import IngestService
from simulators import messages as sim
from tests.alerts.helpers import Publisher, history, offset, seed_registry
from tests.pipeline.conftest import HOME, WallClock, add_zones

pytestmark = pytest.mark.services


def _batch(points, ts0, events=(), heartbeats=(), received_ms=None):
    n = len(points)
    return StoredBatch(
        device_id=np.array(["DEV1"] * n, dtype=object),
        supervisee_id=np.array(["SV1"] * n, dtype=object),
        seq=np.arange(n, dtype=np.int64), ts=ts0 + 1000 * np.arange(n, dtype=np.int64),
        lat=np.array([p[1] for p in points]), lon=np.array([p[0] for p in points]),
        acc=np.full(n, 10.0), heartbeats=list(heartbeats), events=list(events),
        supervisees={"DEV1": "SV1"}, received_ms=received_ms or ts0)


def _stage(db_url, settings, clock, **kw):
    kw.setdefault("scheduler", False)
    s = DecideStage(db_url, settings, clock_ms=clock, metrics=AlertMetrics(CollectorRegistry()),
                    **kw)
    s.start()
    assert s.wait_idle(20)
    return s


def _count(db, sql, *args):
    db.commit()
    return db.execute(sql, args).fetchone()[0]


OUT = offset(HOME[0], HOME[1], 0, 5000)
IN = offset(HOME[0], HOME[1], 0, 200)


def test_batch_decisions_and_state_commit_together(world, db_url, settings):
    clock = WallClock()
    stage = _stage(db_url, settings, clock)
    try:
        now = clock()
        stage.on_stored(_batch([IN, OUT, OUT], now - 10_000,
                               events=[Event("DEV1", 1, now - 5000, "case_open")]))
        assert stage.wait_idle(10)
        types = {r[0] for r in world.execute("SELECT type FROM alerts")}
        assert types == {"zone_exit", "case_tamper"}
        assert _count(world, "SELECT count(*) FROM geofence_state WHERE supervisee_id = 'SV1'") == 1
        assert stage.metrics.opened.labels("zone_exit")._value.get() == 1
    finally:
        stage.stop()


def test_a_lost_database_connection_loses_no_decision(world, db_url, settings):
    clock = WallClock()
    stage = _stage(db_url, settings, clock)
    try:
        stage.on_stored(_batch([IN], clock() - 10_000))
        assert stage.wait_idle(10)
        world.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      "WHERE application_name = 'giamsat-decide'")
        world.commit()
        stage.on_stored(_batch([OUT, OUT], clock() - 5000))
        assert stage.wait_idle(20)
        assert [r[0] for r in world.execute("SELECT type FROM alerts")] == ["zone_exit"]
        assert _count(world, "SELECT count(*) FROM alert_history") == 1
    finally:
        stage.stop()


def test_stored_but_undecided_fixes_are_decided_after_restart_once(world, db_url, settings):
    clock = WallClock()
    _stage(db_url, settings, clock).stop()  # a previous run: it left its progress mark
    # stored by ingest, then the process died before deciding them
    now = clock()
    for seq, (lon, lat) in enumerate([IN, OUT, OUT]):
        world.execute("INSERT INTO fixes (device_id, ts, seq, lat, lon, acc, received_at, "
                      "supervisee_id) VALUES ('DEV1', %s, %s, %s, %s, 10, %s, 'SV1')",
                      (ms_to_dt(now - 3000 + seq * 1000), seq, lat, lon, ms_to_dt(now)))
    world.execute("INSERT INTO device_events (device_id, ts, seq, type, received_at) VALUES "
                  "('DEV1', %s, 1, 'strap_open', %s)", (ms_to_dt(now), ms_to_dt(now)))
    world.commit()
    stage = _stage(db_url, settings, clock)
    stage.stop()
    rows = world.execute("SELECT id, type FROM alerts ORDER BY type").fetchall()
    assert [t for _, t in rows] == ["strap_tamper", "zone_exit"]
    before = _count(world, "SELECT count(*) FROM alert_history")
    deliveries = _count(world, "SELECT count(*) FROM deliveries")
    clock.advance(5)
    _stage(db_url, settings, clock).stop()  # restart again: the same telemetry is re-read
    assert _count(world, "SELECT count(*) FROM alert_history") == before
    assert _count(world, "SELECT count(*) FROM deliveries") == deliveries


def test_crash_of_the_stage_through_real_ingest(world, db_url, settings, mqtt_broker, unique_id):
    """Ingest stores (and acknowledges) while no stage decides; the next start decides it."""
    clock = WallClock()
    _stage(db_url, settings, clock).stop()
    ingest = IngestService(settings, db_url, mqtt_broker.url, registry=CollectorRegistry())
    ingest.start()
    dev = Publisher(mqtt_broker.host, mqtt_broker.port, f"t-dev-{unique_id}")
    try:
        deadline = time.monotonic() + 20
        while not ingest.consumer.connected.is_set() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        now = sim.now_ms()
        for seq, (lon, lat) in enumerate([IN, OUT, OUT]):
            dev.send(sim.topic("DEV1", "fix"), sim.encode(
                sim.fix(seq=seq, ts=now + seq, lat=lat, lon=lon)))
        deadline = time.monotonic() + 20
        while ingest.totals["fixes"] < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        dev.close()
        ingest.stop()
    assert _count(world, "SELECT count(*) FROM alerts") == 0
    _stage(db_url, settings, clock).stop()
    assert [r[0] for r in world.execute("SELECT type FROM alerts")] == ["zone_exit"]


def test_whole_pipeline_restart_fires_nothing_twice(world, db_url, settings, mqtt_broker,
                                                     unique_id):
    from tests.pipeline.conftest import Running

    r = Running(world, db_url, mqtt_broker, settings, unique_id, WallClock())
    try:
        r.fix(*IN)
        r.fix(*OUT)
        r.fix(*OUT)
        r.alert("zone_exit")
        r.settle()
    finally:
        r.close()
    before = _count(world, "SELECT count(*) FROM alert_history")
    r2 = Running(world, db_url, mqtt_broker, settings, unique_id + "b", WallClock())
    try:
        r2.seq, r2.sent = 10, 3
        r2.fix(*OUT)  # still out: the same condition, no new alert
        r2.settle()
        assert _count(world, "SELECT count(*) FROM alert_history") == before
        r2.fix(*IN)
        r2.fix(*IN)
        _, ended = r2.alert("zone_exit", active=False)
    finally:
        r2.close()
    assert _count(world, "SELECT count(*) FROM alerts") == 1


def test_registry_reload_when_version_changes(world, db_url, settings):
    clock = WallClock()
    stage = _stage(db_url, settings, clock, scheduler=True, registry_poll_s=0.1)
    try:
        ban = offset(HOME[0], HOME[1], 0, 1000)
        world.execute("INSERT INTO zones (supervisee_id, id, kind, purpose, center_lon, "
                      "center_lat, radius_m) VALUES ('SV1', 'ban2', 'exclusion', 'ban', %s, %s, "
                      "200)", ban)
        version = world.execute("UPDATE registry_version SET version = version + 1 "
                                "RETURNING version").fetchone()[0]
        world.commit()
        deadline = time.monotonic() + 10
        while stage.registry_version != version and time.monotonic() < deadline:
            time.sleep(0.05)
        assert stage.wait_idle(10)
        stage.on_stored(_batch([ban, ban], clock() - 2000))
        assert stage.wait_idle(10)
        assert world.execute("SELECT type, zone_id FROM alerts").fetchall() == [
            ("zone_enter", "ban2")]
    finally:
        stage.stop()


def test_a_supervisee_registered_since_the_last_poll_has_their_first_fixes_decided(
        db, db_url, settings):
    clock = WallClock()
    stage = _stage(db_url, settings, clock)  # no scheduler: no registry poll will come
    try:
        seed_registry(db)  # SV1, DEV1 and their zones arrive after the stage loaded the registry
        add_zones(db)
        stage.on_stored(_batch([IN, OUT, OUT], clock() - 10_000))
        assert stage.wait_idle(10)
        assert db.execute("SELECT type, zone_id FROM alerts").fetchall() == [("zone_exit", "home")]
    finally:
        stage.stop()


def test_tick_someone_already_out_when_the_curfew_starts(world, db_url, settings):
    clock = WallClock()
    tz = ZoneInfo("Asia/Ho_Chi_Minh")
    from datetime import datetime

    start = (datetime.now(tz) + timedelta(minutes=3)).replace(second=0, microsecond=0)
    window = {"days": [1, 2, 3, 4, 5, 6, 7], "start": start.strftime("%H:%M"),
              "end": (start + timedelta(hours=1)).strftime("%H:%M")}
    world.execute("INSERT INTO zones (supervisee_id, id, kind, purpose, center_lon, center_lat, "
                  "radius_m, schedule) VALUES ('SV1', 'night', 'inclusion', 'curfew', %s, %s, "
                  "200, %s)", (HOME[0], HOME[1], orjson.dumps([window]).decode()))
    world.commit()
    stage = _stage(db_url, settings, clock)
    try:
        away = offset(HOME[0], HOME[1], 1000, 0)  # in the commune, not at home
        stage.on_stored(_batch([away, away], clock() - 5000))
        assert stage.wait_idle(10)
        assert world.execute("SELECT count(*) FROM alerts").fetchone()[0] == 0
        world.commit()
        opens = int(start.timestamp() * 1000)
        stage.tick(opens + 1000)  # the window opened: the last fix counts (once) at once
        stage.tick(opens + 2000)
        assert stage.wait_idle(10)
        assert world.execute("SELECT count(*) FROM alerts").fetchone()[0] == 0
        world.commit()
        stage.on_stored(_batch([away], opens + 30_000))  # one more fix away confirms it
        assert stage.wait_idle(10)
        assert [r[0] for r in world.execute("SELECT type FROM alerts")] == ["curfew"]
    finally:
        stage.stop()


def test_heartbeats_through_the_stage_keep_marks(world, db_url, settings):
    clock = WallClock()
    stage = _stage(db_url, settings, clock)
    try:
        now = clock()
        stage.on_stored(_batch([], now, heartbeats=[Heartbeat("DEV1", 1, now, 15.0)]))
        stage.on_stored(_batch([], now, heartbeats=[Heartbeat("DEV1", 1, now, 15.0)]))
        assert stage.wait_idle(10)
        [(aid,)] = world.execute("SELECT id FROM alerts WHERE type = 'battery_low'").fetchall()
        assert history(world, aid) == [("system", "opened")]
    finally:
        stage.stop()


def test_send_command_publishes_and_records_it(world, mqtt_broker, unique_id):
    got, ready = [], threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"t-DEV1-{unique_id}")
    c.on_connect = lambda cl, u, f, rc, p: cl.subscribe(sim.topic("DEV1", "cmd"), qos=1)
    c.on_subscribe = lambda *a: ready.set()
    c.on_message = lambda cl, u, m: got.append((m.topic, orjson.loads(m.payload)))
    c.connect(mqtt_broker.host, mqtt_broker.port)
    c.loop_start()
    channel = MqttChannel(mqtt_broker.host, mqtt_broker.port, f"t-cmd-{unique_id}")
    try:
        assert ready.wait(10)
        cmd_id = send_command(channel, "DEV1", "set_interval", fix_s=30, conn=world)
        world.commit()
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline:
            time.sleep(0.02)
        assert got == [("em/v1/dev/DEV1/cmd", {"id": cmd_id, "type": "set_interval", "fix_s": 30})]
        # the device's answer is matched by ingest (tests/ingest): here, the command is recorded
        assert world.execute("SELECT device_id, type, answered_at FROM device_commands "
                             "WHERE id = %s", (cmd_id,)).fetchone() == ("DEV1", "set_interval", None)
        with pytest.raises(ValueError, match="fix_s"):
            send_command(channel, "DEV1", "set_interval", fix_s=0)
        with pytest.raises(ValueError, match="command type"):
            send_command(channel, "DEV1", "self_destruct")
    finally:
        channel.close()
        c.disconnect()
        c.loop_stop()


def test_pipeline_composes_with_settings(db_url, mqtt_broker, unique_id):
    s = Settings(_env_file=None, mqtt_client_id=f"t-compose-{unique_id}")
    p = AlertPipeline(s, db_url, mqtt_broker.url, registry=CollectorRegistry(), scheduler=True)
    p.start()
    try:
        assert p.stage.wait_idle(20)
    finally:
        p.stop()
