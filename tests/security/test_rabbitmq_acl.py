"""Device security on the durable broker (RabbitMQ's MQTT listener), with the users and
permissions ``giamsat broker-config`` generates from the registry (embedded.rabbitconfig):
a device publishes only under its own ``em/v1/dev/{device_id}/``, reads only its own ``cmd``
topic, cannot wipe another device's queued commands, and a client without valid credentials
cannot connect. What a device manages to publish is read where the service reads it: the
service's quorum queue, over AMQP."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import quote

import pika
import pytest

from embedded import rabbitconfig
from embedded.brokerconfig import BrokerAuthFiles, write_broker_config
from embedded.services import EmbeddedRabbitMQ
from ingest.amqp import connection_parameters, queue_name
from schema import connect
from tests.conftest import cloned_database
from tests.security.conftest import SERVICE_PASSWORD, SERVICE_USER, register_devices
from tests.security.mqtt_peer import Peer

pytestmark = pytest.mark.services


@dataclass
class RabbitSecured:
    node: EmbeddedRabbitMQ
    files: BrokerAuthFiles
    devices: dict[str, str]
    peers: list[Peer] = field(default_factory=list)

    @property
    def amqp_url(self) -> str:
        return (f"amqp://{SERVICE_USER}:{quote(SERVICE_PASSWORD, safe='')}@127.0.0.1:"
                f"{self.node.amqp_port}/")

    def peer(self, user: str | None, password: str | None = None, client_id: str | None = None,
             clean: bool = True) -> Peer:
        if password is None and user in self.devices:
            password = self.devices[user]
        if password is None and user == SERVICE_USER:
            password = SERVICE_PASSWORD
        p = Peer(self.node.mqtt_port, user, password, client_id or user or "anon", clean=clean)
        self.peers.append(p)
        return p

    def connected(self, user: str, **kw) -> Peer:
        p = self.peer(user, **kw)
        rc = p.connect()
        assert not rc.is_failure, f"{user} could not connect: {rc}"
        return p

    def take_queue(self, settle_s: float = 0.5) -> list[tuple[str, bytes]]:
        """Everything in the service's queue (routing key, body), acked. (A quorum queue with
        a single active consumer serves no basic.get: consume until it is quiet.)"""
        out: list[tuple[str, bytes]] = []
        with pika.BlockingConnection(connection_parameters(self.amqp_url)) as conn:
            ch = conn.channel()
            ch.basic_consume(queue_name(0), lambda c, m, p, body: out.append(
                (m.routing_key, body)), auto_ack=True)
            seen = -1
            while seen != len(out):
                seen = len(out)
                conn.process_data_events(time_limit=settle_s)
        return out


@pytest.fixture(scope="module")
def secured_module(rabbitmq_node: EmbeddedRabbitMQ, pg_server: str, template_db: str,
                   tmp_path_factory) -> Iterator[RabbitSecured]:
    """The registry's users applied once for the module (applying takes seconds)."""
    uid = uuid.uuid4().hex[:8]
    ids = [f"ra{uid}", f"rb{uid}", f"ot{uid}-phone"]
    with cloned_database(pg_server, template_db) as url, connect(url) as db:
        register_devices(db, *ids)
        files = write_broker_config(db, tmp_path_factory.mktemp("broker"), SERVICE_USER,
                                    SERVICE_PASSWORD, write_secrets=False)
    assert files.definitions_file is not None
    # the session's node keeps its guest user for the other tests; `giamsat up` removes it
    rabbitconfig.apply(rabbitmq_node, files.definitions_file, remove_guest=False)
    yield RabbitSecured(rabbitmq_node, files, {d: files.issued[d] for d in ids})


@pytest.fixture
def secured(secured_module: RabbitSecured) -> Iterator[RabbitSecured]:
    secured_module.take_queue()  # what an earlier test left
    yield secured_module
    for p in secured_module.peers:
        p.close()
    secured_module.peers.clear()


def test_definitions_keep_only_hashes_and_the_service_queues(secured: RabbitSecured) -> None:
    text = secured.files.definitions_file.read_text()  # type: ignore[union-attr]
    for secret in [*secured.devices.values(), SERVICE_PASSWORD]:
        assert secret not in text
    doc = json.loads(text)
    assert [q["arguments"]["x-queue-type"] for q in doc["queues"]] == ["quorum"]
    users = {u["name"]: u for u in doc["users"]}
    for device, secret in secured.devices.items():
        assert rabbitconfig.verify_rabbitmq_hash(secret, users[device]["password_hash"])


def test_clients_without_valid_credentials_cannot_connect(secured: RabbitSecured) -> None:
    a, b = list(secured.devices)[:2]
    cases = {"unknown user": ("intruder", "guess"), "wrong password": (a, "wrong"),
             "another device's secret": (a, secured.devices[b]),
             "service, wrong password": (SERVICE_USER, "guess")}
    for i, (case, (user, password)) in enumerate(cases.items()):
        rc = secured.peer(user, password, client_id=f"intruder{i}").connect()
        assert rc.is_failure, f"{case}: connected"
    anonymous = secured.peer(None, None, client_id="anon")
    assert anonymous.connect().is_failure


def _try_publish(secured: RabbitSecured, device: str, topic: str) -> bool:
    """Publish as ``device``; True when PUBACKed. RabbitMQ refuses a forbidden publish by
    closing the connection."""
    p = secured.connected(device, client_id=device)
    info = p.client.publish(topic, b"forged", qos=1)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not (p.disconnected.is_set() or info.is_published()):
        time.sleep(0.02)
    acked = info.is_published()
    p.close()
    return acked


def test_a_device_cannot_publish_as_another(secured: RabbitSecured) -> None:
    a, b, phone = secured.devices
    forged = [f"em/v1/dev/{b}/{kind}" for kind in ("fix", "hb", "evt", "ack")]
    forged += [f"em/v1/dev/{a}/cmd", "em/v1/alerts/CAX-00001", f"em/v1/dev/{b}",
               f"em/v1/dev/{a}/fix/{b}", f"owntracks/ot{b[2:]}/phone"]
    refused = [t for t in forged if not _try_publish(secured, a, t)]
    assert refused == forged  # not even PUBACKed: the connection is closed instead
    own = secured.connected(a, client_id=a)
    own.publish(f"em/v1/dev/{a}/fix", b"own")
    user, dev = phone.split("-", 1)
    ot = secured.connected(phone, client_id=phone)
    ot.publish(f"owntracks/{user}/{dev}", b"own-ot")
    got = secured.take_queue()
    assert sorted(got) == sorted([(f"em.v1.dev.{a}.fix", b"own"),
                                  (f"owntracks.{user}.{dev}", b"own-ot")])


def _try_subscribe(secured: RabbitSecured, device: str, topic: str) -> bool:
    """Subscribe as ``device`` (its own client id); True when granted. RabbitMQ refuses a
    forbidden subscription with a failure code or by closing the connection."""
    p = secured.connected(device, client_id=device)
    result, mid = p.client.subscribe(topic, 1)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not p.disconnected.is_set():
        with p._ack_cv:
            if mid in p._acks:
                granted = list(p._acks.pop(mid))  # type: ignore[call-overload]
                p.close()
                return not any(g.is_failure for g in granted)
        time.sleep(0.02)
    p.close()
    return False


def test_a_device_reads_only_its_own_commands(secured: RabbitSecured) -> None:
    a, b, _ = secured.devices
    for topic in (f"em/v1/dev/{b}/cmd", "em/v1/dev/+/cmd", "em/v1/#", "#", "em/v1/alerts/#",
                  f"em/v1/dev/{b}/fix"):
        assert not _try_subscribe(secured, a, topic), topic
    # its own commands only with its own client id (its own session queue)
    spy = secured.connected(a, client_id=f"{a}-spy")
    spy.client.subscribe(f"em/v1/dev/{a}/cmd", 1)
    assert spy.disconnected.wait(5)
    device_a = secured.connected(a, client_id=a)
    assert not device_a.subscribe(f"em/v1/dev/{a}/cmd")[0].is_failure
    device_b = secured.connected(b, client_id=b)
    assert not device_b.subscribe(f"em/v1/dev/{b}/cmd")[0].is_failure
    service = secured.connected(SERVICE_USER, client_id="svc-cmd")
    service.publish(f"em/v1/dev/{b}/cmd", b'{"id":"c1","type":"locate"}')
    service.publish(f"em/v1/dev/{a}/cmd", b'{"id":"c2","type":"locate"}')
    device_b.expect(f"em/v1/dev/{b}/cmd", b'{"id":"c1","type":"locate"}')
    assert device_a.expect(f"em/v1/dev/{a}/cmd", b'{"id":"c2","type":"locate"}') == \
        [(f"em/v1/dev/{a}/cmd", b'{"id":"c2","type":"locate"}')]  # never b's command


def test_a_device_cannot_wipe_another_devices_queued_commands(secured: RabbitSecured) -> None:
    a, b, _ = secured.devices
    device_b = secured.connected(b, client_id=b, clean=False)  # a persistent session
    assert not device_b.subscribe(f"em/v1/dev/{b}/cmd")[0].is_failure
    device_b.close()
    service = secured.connected(SERVICE_USER, client_id="svc-wipe")
    service.publish(f"em/v1/dev/{b}/cmd", b'{"id":"c3","type":"locate"}')
    # a takes b's client id with a clean session: RabbitMQ would delete b's session queue
    intruder = secured.peer(a, client_id=b, clean=True)
    try:
        intruder.connect()
    except TimeoutError:
        pass
    intruder.close()
    back = secured.connected(b, client_id=b, clean=False)
    back.client.subscribe(f"em/v1/dev/{b}/cmd", 1)
    back.expect(f"em/v1/dev/{b}/cmd", b'{"id":"c3","type":"locate"}')
