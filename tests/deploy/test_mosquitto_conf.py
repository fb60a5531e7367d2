"""deploy/mosquitto/mosquitto.conf in a real Mosquitto (the installed 2.0.x), with its paths and
ports moved to this test's own: it loads, refuses anonymous clients, keeps device sessions from
being taken over, and keeps more queued messages than Mosquitto's default limit (1000) across a
broker restart."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from embedded.brokerconfig import write_broker_config
from embedded.services import find_mosquitto, free_port, wait_for_port
from tests.security.conftest import SERVICE_PASSWORD, SERVICE_USER, register_devices
from tests.security.mqtt_peer import Peer

pytestmark = pytest.mark.services

CONF = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto" / "mosquitto.conf"


class DeployBroker:
    """The deploy config on loopback ports, started and stopped like the container would be."""

    def __init__(self, tmp: Path) -> None:
        self.tmp, self.device_port, self.service_port = tmp, free_port(), free_port()
        (tmp / "data").mkdir()
        text = CONF.read_text()
        for old, new in (("listener 1883\n", f"listener {self.device_port} 127.0.0.1\n"),
                         ("listener 1884\n", f"listener {self.service_port} 127.0.0.1\n"),
                         ("/mosquitto/auth/", f"{tmp}/auth/"),
                         ("/mosquitto/data/", f"{tmp}/data/")):
            assert old in text, old
            text = text.replace(old, new)
        if os.geteuid() == 0:
            text += "user root\n"  # the files are root's 0600; the image runs as mosquitto
        self.conf = tmp / "mosquitto.conf"
        self.conf.write_text(text)
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        log = open(self.tmp / "mosquitto.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen([find_mosquitto(), "-c", str(self.conf)], stdout=log,
                                     stderr=log, start_new_session=True)
        log.close()
        wait_for_port(self.device_port, 10, self.proc)
        wait_for_port(self.service_port, 10, self.proc)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # a clean stop writes the store
            self.proc.wait(15)
        self.proc = None


@pytest.fixture
def deploy_broker(db, tmp_path, unique_id) -> Iterator[tuple[DeployBroker, dict[str, str]]]:
    devices = [f"pa{unique_id}", f"pb{unique_id}"]
    register_devices(db, *devices)
    files = write_broker_config(db, tmp_path / "auth", SERVICE_USER, SERVICE_PASSWORD,
                                write_secrets=False)
    broker = DeployBroker(tmp_path)
    broker.start()
    yield broker, files.issued
    broker.stop()


def _peer(port: int, user: str | None, password: str | None, client_id: str, peers: list,
          **kw) -> Peer:
    p = Peer(port, user, password, client_id, **kw)
    peers.append(p)
    return p


def test_config_loads_and_refuses_anonymous(deploy_broker):
    broker, _ = deploy_broker
    peers: list[Peer] = []
    try:
        for port in (broker.device_port, broker.service_port):
            assert _peer(port, None, None, f"anon{port}", peers).connect().is_failure
        log = (broker.tmp / "mosquitto.log").read_text()
        assert "Error" not in log, log
    finally:
        for p in peers:
            p.close()


def test_device_listener_keeps_sessions_from_takeover(deploy_broker):
    broker, secrets = deploy_broker
    a, b = sorted(secrets)
    peers: list[Peer] = []
    try:
        victim = _peer(broker.device_port, a, secrets[a], a, peers, clean=False)
        assert not victim.connect().is_failure
        intruder = _peer(broker.device_port, b, secrets[b], a, peers, clean=False)
        assert not intruder.connect().is_failure
        assert not victim.disconnected.wait(0.5), "the intruder took over the victim's session"
    finally:
        for p in peers:
            p.close()


def test_queued_messages_beyond_the_default_limit_survive_a_restart(deploy_broker):
    broker, secrets = deploy_broker
    a = sorted(secrets)[0]
    n = 1500  # Mosquitto's default max_queued_messages is 1000
    peers: list[Peer] = []
    try:
        service = _peer(broker.service_port, SERVICE_USER, SERVICE_PASSWORD, "giamsat-ingest",
                        peers, clean=False)
        assert not service.connect().is_failure
        service.subscribe("em/v1/dev/+/fix")
        service.close()  # the service is down; its session stays
        device = _peer(broker.device_port, a, secrets[a], a, peers)
        assert not device.connect().is_failure
        infos = [device.client.publish(f"em/v1/dev/{a}/fix", str(i).encode(), qos=1)
                 for i in range(n)]
        for info in infos:
            info.wait_for_publish(10)  # PUBACK: the broker has accepted it
        device.close()
        broker.stop()
        broker.start()
        service = _peer(broker.service_port, SERVICE_USER, SERVICE_PASSWORD, "giamsat-ingest",
                        peers, clean=False)
        assert not service.connect().is_failure
        got: list[bytes] = []
        deadline = time.monotonic() + 20
        while len(got) < n and time.monotonic() < deadline:
            got += [payload for _, payload in service.drain(0.2)]
        assert sorted(int(p) for p in got) == list(range(n))
    finally:
        for p in peers:
            p.close()
