"""Fixtures for the pipeline tests: a registry with zones, and the whole in-process pipeline
(ingest + decide stage + deliverer) on the test's database and the suite's broker."""

from __future__ import annotations

import time

import pytest
from prometheus_client import CollectorRegistry

from config import Settings
from giamsat.pipeline import AlertPipeline
from simulators import messages as sim
from tests.alerts.helpers import AlertSubscriber, Publisher, seed_registry

HOME = (sim.DEFAULT_LON, sim.DEFAULT_LAT)


class WallClock:
    """The wall clock plus an offset that a test may move forward (never back)."""

    def __init__(self) -> None:
        self.offset_ms = 0

    def __call__(self) -> int:
        return time.time_ns() // 1_000_000 + self.offset_ms

    def advance(self, seconds: float) -> int:
        self.offset_ms += int(seconds * 1000)
        return self()


def add_zones(conn, sid: str = "SV1") -> None:
    """Residence: 3 km circle at HOME; a banned place 1.5 km east and a victim's home 1.5 km
    west (300 m circles, inside the residence)."""
    lon, lat = HOME
    from tests.alerts.helpers import offset

    east, west = offset(lon, lat, 1500, 0), offset(lon, lat, -1500, 0)
    rows = [("home", "inclusion", "residence", lon, lat, 3000.0),
            ("ban1", "exclusion", "ban", east[0], east[1], 300.0),
            ("victim", "exclusion", "protection", west[0], west[1], 300.0)]
    for zid, kind, purpose, zlon, zlat, r in rows:
        conn.execute("INSERT INTO zones (supervisee_id, id, kind, purpose, center_lon, "
                     "center_lat, radius_m) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                     (sid, zid, kind, purpose, zlon, zlat, r))
    conn.execute("UPDATE registry_version SET version = version + 1")
    conn.commit()


@pytest.fixture
def world(db):
    """SV1 wearing DEV1 with the zones of ``add_zones``."""
    seed_registry(db)
    add_zones(db)
    return db


@pytest.fixture
def settings(unique_id):
    return Settings(_env_file=None, mqtt_client_id=f"t-ingest-{unique_id}",
                    ingest_batch_wait_ms=5)


@pytest.fixture
def wall():
    return WallClock()


class Running:
    """A started pipeline, a device publisher and an alerts subscriber."""

    def __init__(self, db, db_url, broker, settings, unique_id, clock):
        self.db = db
        self.clock = clock
        login = {"username": getattr(broker, "mqtt_username", None),
                 "password": getattr(broker, "password", None)}
        self.sub = AlertSubscriber(broker.host, broker.port, f"t-sub-{unique_id}", **login)
        self.pipe = AlertPipeline(settings, db_url, broker.url, registry=CollectorRegistry(),
                                  clock_ms=clock, scheduler=False,
                                  amqp_url=getattr(broker, "amqp_url", None))
        self.pipe.start()
        self.dev = Publisher(broker.host, broker.port, f"t-dev-{unique_id}", **login)
        self.seq = 0
        self.sent = 0
        self.last_ts = 0
        self._wait_subscribed(unique_id)

    def _wait_subscribed(self, unique_id: str) -> None:
        """Publish to an unregistered device until ingest dead-letters it: it is subscribed."""
        probe = f"probe-{unique_id}"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            self._send(sim.topic(probe, "hb"), sim.encode(sim.heartbeat()))
            time.sleep(0.1)
            if self.db.execute("SELECT count(*) FROM dead_letters WHERE device_id = %s",
                               (probe,)).fetchone()[0]:
                return
        raise TimeoutError("ingest never subscribed")

    def fix(self, lon: float, lat: float, ts: int | None = None, acc: float = 10.0) -> None:
        self.seq += 1
        if ts is None:  # strictly increasing: fixes of the same ms would be late (§1)
            ts = max(sim.now_ms(), self.last_ts + 1)
        self.last_ts = max(self.last_ts, ts)
        payload = sim.fix(seq=self.seq, ts=ts, lat=lat, lon=lon, acc=acc)
        self._send(sim.topic("DEV1", "fix"), sim.encode(payload))
        # one at a time, as a device sends them seconds apart: fixes 1 ms apart may reach the
        # stage in two batches in either order, and a late fix decides nothing (contract §1)
        self.settle()

    def heartbeat(self, **kw) -> None:
        self.seq += 1
        self._send(sim.topic("DEV1", "hb"), sim.encode(sim.heartbeat(seq=self.seq, **kw)))

    def event(self, type_: str) -> None:
        self.seq += 1
        self._send(sim.topic("DEV1", "evt"), sim.encode(sim.event(type_, seq=self.seq)))

    def _send(self, topic: str, payload: bytes) -> None:
        self.dev.send(topic, payload)
        if "/DEV1/" in topic:
            self.sent += 1

    def stored(self) -> int:
        self.db.commit()
        return self.db.execute(
            "SELECT (SELECT count(*) FROM fixes WHERE device_id = 'DEV1') + "
            "(SELECT count(*) FROM heartbeats WHERE device_id = 'DEV1') + "
            "(SELECT count(*) FROM device_events WHERE device_id = 'DEV1')").fetchone()[0]

    def settle(self, timeout_s: float = 15.0) -> None:
        """Wait until ingest stored everything DEV1 sent and the stage decided it."""
        deadline = time.monotonic() + timeout_s
        while self.stored() < self.sent:
            if time.monotonic() > deadline:
                raise TimeoutError("ingest did not store everything sent")
            time.sleep(0.02)
        assert self.pipe.stage.wait_idle(timeout_s)

    def alert(self, type_: str, timeout_s: float = 15.0, **match):
        """The first message on the alerts topics for an alert of ``type_`` (and ``match``)."""
        def pred(t, m):
            return m["type"] == type_ and all(m.get(k) == v for k, v in match.items())
        return self.sub.wait_for(pred, timeout_s)

    def close(self) -> None:
        self.dev.close()
        self.pipe.stop()
        self.sub.close()


@pytest.fixture(params=["mosquitto", "rabbitmq"])
def any_broker(request):
    """The suite's Mosquitto (ingest subscribes over MQTT), or a vhost of the suite's RabbitMQ
    (devices publish MQTT to its plugin, ingest reads its quorum queue over AMQP)."""
    return request.getfixturevalue("mqtt_broker" if request.param == "mosquitto" else "rabbitmq")


@pytest.fixture
def running(world, db_url, any_broker, settings, unique_id, wall):
    r = Running(world, db_url, any_broker, settings, unique_id, wall)
    yield r
    r.close()
