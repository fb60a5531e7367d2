"""A real Mosquitto, started per test with the password file and ACL that
``embedded.brokerconfig`` writes from this test's own registry (a fresh PostgreSQL database)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

from embedded.brokerconfig import BrokerAuthFiles, write_broker_config
from embedded.services import EmbeddedMosquitto, free_port
from tests.security.mqtt_peer import Peer

SERVICE_USER = "giamsat"
SERVICE_PASSWORD = "correct horse battery staple"


def register_devices(conn: psycopg.Connection, *device_ids: str) -> None:
    """Add devices to the registry (no supervisee needed for the broker's view)."""
    conn.execute("INSERT INTO devices (id) SELECT unnest(%s::text[])", (list(device_ids),))
    conn.commit()


@dataclass
class SecuredBroker:
    """The broker, who may log in to it, and the peers a test opened (closed at the end)."""

    mq: EmbeddedMosquitto
    files: BrokerAuthFiles
    devices: dict[str, str]  # device id -> its issued secret
    service_port: int | None = None
    peers: list[Peer] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.mq.port

    def peer(self, username: str | None, password: str | None = None,
             client_id: str | None = None, port: int | None = None, **kw) -> Peer:
        """A not yet connected client; a device's password defaults to its secret."""
        if password is None and username in self.devices:
            password = self.devices[username]
        p = Peer(port or self.port, username, password, client_id or username or "anon", **kw)
        self.peers.append(p)
        return p

    def connected(self, username: str, **kw) -> Peer:
        """A client connected as ``username`` (a device, or the service user)."""
        if username == SERVICE_USER:
            kw.setdefault("password", SERVICE_PASSWORD)
            kw.setdefault("port", self.service_port)
            kw.setdefault("client_id", f"svc-{len(self.peers)}")
        p = self.peer(username, **kw)
        rc = p.connect()
        assert not rc.is_failure, f"{username} could not connect: {rc}"
        return p


def start_secured(conn: psycopg.Connection, tmp_path: Path, device_ids: list[str],
                  service_listener: bool = False) -> SecuredBroker:
    register_devices(conn, *device_ids)
    files = write_broker_config(conn, tmp_path / "broker", SERVICE_USER, SERVICE_PASSWORD,
                                write_secrets=False)
    service_port = free_port() if service_listener else None
    mq = EmbeddedMosquitto(tmp_path / "mqtt", free_port(),
                           auth_lines=files.auth_lines(service_port))
    mq.start()
    return SecuredBroker(mq, files, dict(files.issued), service_port)


@pytest.fixture
def device_ids(unique_id: str) -> list[str]:
    """Two ordinary devices and one whose id an OwnTracks client maps to (user-device)."""
    return [f"sa{unique_id}", f"sb{unique_id}", f"ot{unique_id}-phone"]


@pytest.fixture
def secured(db: psycopg.Connection, tmp_path: Path, device_ids: list[str]
            ) -> Iterator[SecuredBroker]:
    """A broker with authentication and ACL from the registry, one listener (the default)."""
    broker = start_secured(db, tmp_path, device_ids)
    yield broker
    _teardown(broker)


@pytest.fixture
def secured_two_listeners(db: psycopg.Connection, tmp_path: Path, device_ids: list[str]
                          ) -> Iterator[SecuredBroker]:
    """The same with a device listener (client id = username) and a service listener."""
    broker = start_secured(db, tmp_path, device_ids, service_listener=True)
    yield broker
    _teardown(broker)


def _teardown(broker: SecuredBroker) -> None:
    for p in broker.peers:
        p.close()
    broker.mq.stop()
