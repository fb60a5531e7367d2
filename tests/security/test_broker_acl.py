"""Device security against a real Mosquitto (contract §1): a device publishes only under its own
``em/v1/dev/{device_id}/`` and reads only its own ``cmd`` topic, only the service reads devices,
and a client without valid credentials cannot connect.

With MQTT 3.1.1 the broker refuses a forbidden PUBLISH silently (it still sends PUBACK), so the
proof is what the service's subscription receives: a device publishes the forged message first
and its own message second on one connection, which the broker handles in order; when the own
message arrives, the forged one would already have arrived had it been let through.
"""

from __future__ import annotations

import time

import paho.mqtt.client as mqtt
import pytest

from embedded.brokerconfig import write_broker_config
from tests.security.conftest import SERVICE_PASSWORD, SERVICE_USER, register_devices

pytestmark = pytest.mark.services

NOT_AUTHORIZED = 135  # MQTT 5 reason code; paho reports a 3.1.1 refusal (5) as the same


def test_clients_without_valid_credentials_cannot_connect(secured, device_ids):
    a = device_ids[0]
    cases = {
        "no credentials": (None, None),
        "unknown user": ("intruder", "guess"),
        "device, wrong password": (a, "wrong"),
        "device, empty password": (a, ""),
        "device, another device's secret": (a, secured.devices[device_ids[1]]),
        "service user, wrong password": (SERVICE_USER, "guess"),
    }
    for i, (case, (user, password)) in enumerate(cases.items()):
        for protocol in (mqtt.MQTTv311, mqtt.MQTTv5):
            peer = secured.peer(user, password if password is not None else "",
                                client_id=f"intruder{i}", protocol=protocol)
            if user is None:
                peer.client.username_pw_set(None)  # type: ignore[arg-type]
            rc = peer.connect()
            assert rc.is_failure, f"{case} ({protocol}): connected"
            assert rc.value in (NOT_AUTHORIZED, 134), f"{case}: {rc}"  # 134 bad user/password
            assert peer.disconnected.wait(5), f"{case}: the broker kept the connection"


def test_device_publishing_as_another_is_refused(secured, device_ids):
    a, b, _ = device_ids
    service = secured.connected(SERVICE_USER)
    service.subscribe("em/v1/dev/+/#")
    service.subscribe("em/v1/alerts/#")
    device_a = secured.connected(a)
    forged = [(f"em/v1/dev/{b}/{kind}", b"forged") for kind in ("fix", "hb", "evt", "ack")]
    # nor may a device fake a command to itself or an alert to the officers
    forged += [(f"em/v1/dev/{a}/cmd", b"forged"), ("em/v1/alerts/CAX-00001", b"forged"),
               (f"em/v1/dev/{b}", b"forged"), (f"em/v1/dev/{a}/fix/{b}", b"forged")]
    for topic, payload in forged:
        device_a.publish(topic, payload)  # 3.1.1: PUBACK all the same
    device_a.publish(f"em/v1/dev/{a}/fix", b"own")
    seen = service.expect(f"em/v1/dev/{a}/fix", b"own") + service.drain()
    assert seen == [(f"em/v1/dev/{a}/fix", b"own")]


def test_mqtt5_device_is_told_not_authorized(secured, device_ids):
    a, b, _ = device_ids
    service = secured.connected(SERVICE_USER)
    service.subscribe("em/v1/dev/+/#")
    device_a = secured.connected(a, protocol=mqtt.MQTTv5)
    assert device_a.publish(f"em/v1/dev/{b}/fix", b"forged").value == NOT_AUTHORIZED
    assert not device_a.publish(f"em/v1/dev/{a}/fix", b"own").is_failure
    assert service.expect(f"em/v1/dev/{a}/fix", b"own") + service.drain() == [
        (f"em/v1/dev/{a}/fix", b"own")]


def test_device_reads_only_its_own_commands(secured, device_ids):
    a, b, _ = device_ids
    service = secured.connected(SERVICE_USER)
    device_b = secured.connected(b)
    device_b.subscribe(f"em/v1/dev/{b}/cmd")
    device_a = secured.connected(a)
    for topic in (f"em/v1/dev/{b}/cmd", "em/v1/dev/+/cmd", "em/v1/dev/+/fix", "#",
                  "em/v1/alerts/#", "$SYS/#", f"em/v1/dev/{a}/cmd"):
        device_a.subscribe(topic)  # Mosquitto 2.0 grants these; what matters is delivery
    device_b.publish(f"em/v1/dev/{b}/fix", b"b's fix")
    service.publish("em/v1/alerts/CAX-00001", b"alert")
    service.publish(f"em/v1/dev/{b}/cmd", b"for b")
    service.publish(f"em/v1/dev/{a}/cmd", b"for a")
    seen = device_a.expect(f"em/v1/dev/{a}/cmd", b"for a") + device_a.drain()
    assert seen and {m for m in seen} == {(f"em/v1/dev/{a}/cmd", b"for a")}
    assert device_b.expect(f"em/v1/dev/{b}/cmd", b"for b")


def test_service_receives_every_devices_messages(secured, device_ids):
    service = secured.connected(SERVICE_USER)
    service.subscribe("em/v1/dev/+/#")
    service.subscribe("owntracks/#")
    sent = []
    for device_id in device_ids:
        peer = secured.connected(device_id)
        for kind in ("fix", "hb", "evt", "ack"):
            msg = (f"em/v1/dev/{device_id}/{kind}", f"{device_id} {kind}".encode())
            peer.publish(*msg)
            sent.append(msg)
    got = []
    deadline = time.monotonic() + 5
    while len(got) < len(sent) and time.monotonic() < deadline:
        got += service.drain(0.1)
    assert sorted(got) == sorted(sent)


def test_owntracks_client_publishes_only_as_its_own_device(secured, device_ids, unique_id):
    own = device_ids[2]  # f"ot{unique_id}-phone": OwnTracks user ot{unique_id}, device phone
    service = secured.connected(SERVICE_USER)
    service.subscribe("owntracks/#")
    phone = secured.connected(own)
    phone.publish(f"owntracks/{device_ids[0]}/phone", b"forged")
    phone.publish(f"owntracks/ot{unique_id}/other", b"forged")
    phone.publish(f"owntracks/ot{unique_id}/phone", b"own")
    phone.publish(f"owntracks/ot{unique_id}/phone/event", b"own event")
    seen = service.expect(f"owntracks/ot{unique_id}/phone/event", b"own event") + service.drain()
    assert seen == [(f"owntracks/ot{unique_id}/phone", b"own"),
                    (f"owntracks/ot{unique_id}/phone/event", b"own event")]


def _connects(broker, user: str, password: str, deadline_s: float = 5.0) -> bool:
    """Whether ``user`` can connect, polling until the broker has reloaded (SIGHUP is async)."""
    deadline = time.monotonic() + deadline_s
    while True:
        peer = broker.peer(user, password, client_id=f"probe-{time.monotonic_ns()}")
        ok = not peer.connect().is_failure
        peer.close()
        if ok or time.monotonic() > deadline:
            return ok
        time.sleep(0.1)


def test_reload_admits_new_devices_and_rotated_secrets(secured, db, device_ids, unique_id, tmp_path):
    new = f"sn{unique_id}"
    register_devices(db, new)
    a = device_ids[0]
    old_secret = secured.devices[a]
    files = write_broker_config(db, secured.files.password_file.parent, SERVICE_USER,
                                SERVICE_PASSWORD, rotate=[a], write_secrets=False)
    assert set(files.issued) == {new, a} and files.changed
    assert not _connects(secured, new, files.issued[new], deadline_s=0)  # not before the reload
    secured.mq.reload()
    assert _connects(secured, new, files.issued[new])
    assert _connects(secured, a, files.issued[a])
    assert not _connects(secured, a, old_secret, deadline_s=0)


def test_device_cannot_take_over_another_devices_session(secured_two_listeners, device_ids):
    """With the device listener's ``use_username_as_clientid``, a device connecting with another's
    client id gets its own username as client id instead: the victim stays connected and keeps
    the commands queued in its persistent session."""
    broker = secured_two_listeners
    a, b, _ = device_ids
    victim = broker.connected(a, clean=False)
    victim.subscribe(f"em/v1/dev/{a}/cmd")
    victim.close()
    service = broker.connected(SERVICE_USER)  # on the service listener
    service.publish(f"em/v1/dev/{a}/cmd", b"queued for a")
    intruder = broker.connected(b, client_id=a, clean=False)
    assert intruder.drain(0.3) == []
    victim = broker.connected(a, clean=False)
    assert victim.expect(f"em/v1/dev/{a}/cmd", b"queued for a")
    assert not intruder.disconnected.is_set()  # two different client ids: no takeover either way
    # the service runs several clients under one user on its own listener
    other_service = broker.connected(SERVICE_USER)
    assert not service.disconnected.wait(0.3) and not other_service.disconnected.is_set()


def test_embedded_broker_auth_lets_the_simulated_fleet_in(db, tmp_path, unique_id):
    """``giamsat up``'s own broker: the service, the fleet simulator and any process sharing
    ``data_dir`` (load test) find their logins and derive device secrets; a registry change that
    adds a device asks for a reload, an unchanged registry does not."""
    from embedded.brokerconfig import embedded_broker_auth
    from embedded.services import EmbeddedMosquitto, free_port
    from tests.security.mqtt_peer import Peer

    d, late = f"em{unique_id}", f"el{unique_id}"
    register_devices(db, d)
    auth = embedded_broker_auth(tmp_path / "data")
    assert auth.sync(db)
    mq = EmbeddedMosquitto(tmp_path / "mqtt", free_port(), auth_lines=auth.auth_lines())
    mq.start()
    peers: list[Peer] = []

    def peer(user: str, password: str, client_id: str) -> Peer:
        p = Peer(mq.port, user, password, client_id)
        peers.append(p)
        assert not p.connect().is_failure, user
        return p

    try:
        other = embedded_broker_auth(tmp_path / "data")  # e.g. `giamsat loadtest`
        assert other.service == auth.service and other.simulator == auth.simulator
        assert auth.service.password != auth.simulator.password
        service = peer(other.service.user, other.service.password, "svc")
        service.subscribe("em/v1/dev/+/#")
        device = peer(d, other.device_password(d), d)
        device.publish(f"em/v1/dev/{d}/fix", b"fix")
        assert service.expect(f"em/v1/dev/{d}/fix", b"fix")
        # the load generator publishes as any device, reads commands and alerts, not fixes
        sim = peer(other.simulator.user, other.simulator.password, "sim")
        sim.subscribe("em/v1/dev/+/fix")
        sim.subscribe("em/v1/dev/+/cmd")
        sim.publish(f"em/v1/dev/{late}/hb", b"as late")
        assert service.expect(f"em/v1/dev/{late}/hb", b"as late")
        device.publish(f"em/v1/dev/{d}/fix", b"fix 2")
        service.publish(f"em/v1/dev/{d}/cmd", b"cmd")
        assert sim.expect(f"em/v1/dev/{d}/cmd", b"cmd") + sim.drain(0.3) == [
            (f"em/v1/dev/{d}/cmd", b"cmd")]

        assert not auth.sync(db) and not auth.refresh(db)  # nothing changed: no reload
        register_devices(db, late)  # (without bumping registry_version, as the load test does)
        assert auth.sync(db)
        mq.reload()
        deadline = time.monotonic() + 5
        while True:
            probe = Peer(mq.port, late, other.device_password(late), late)
            peers.append(probe)
            if not probe.connect().is_failure or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert not probe.connack.is_failure  # type: ignore[union-attr]
    finally:
        for p in peers:
            p.close()
        mq.stop()
