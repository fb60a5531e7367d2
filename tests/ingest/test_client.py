"""The MQTT side alone (no database): the lean inbound path of `IngestClient` against paho's own,
MQTT 5 properties, payloads larger than the read buffer, and batched acknowledgements."""

from __future__ import annotations

import queue
import socket
from collections.abc import Iterator

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ingest.client import _skip_properties
from ingest.consumer import Consumer
from ingest.records import Received
from tests.ingest.helpers import Publisher, forget_session, wait_for

pytestmark = pytest.mark.services


@pytest.fixture
def consumer_id(mqtt_broker, unique_id: str) -> Iterator[str]:
    client_id = f"client-test-{unique_id}"
    yield client_id
    forget_session(mqtt_broker.host, mqtt_broker.port, client_id)


def start(mqtt_broker, client_id: str, fast: bool = True) -> Consumer:
    consumer = Consumer(mqtt_broker.url, client_id, queue_max=10_000)
    if not fast:
        consumer.client.fast_message = None  # paho's own path and on_message
    consumer.start()
    assert wait_for(consumer.connected.is_set, 10)
    return consumer


def drain(consumer: Consumer, n: int, timeout_s: float = 10.0) -> list[Received]:
    items = []
    for _ in range(n):
        items.append(consumer.queue.get(timeout=timeout_s))
    return items


def publish_v5(mqtt_broker, topic: str, payload: bytes) -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect(mqtt_broker.host, mqtt_broker.port)
    client.loop_start()
    props = Properties(PacketTypes.PUBLISH)
    props.UserProperty = [("fw", "2.3.1"), ("trace", "x" * 300)]
    props.MessageExpiryInterval = 3600
    props.ContentType = "application/json"
    client.publish(topic, payload, qos=1, properties=props).wait_for_publish(10)
    client.disconnect()
    client.loop_stop()


@pytest.mark.parametrize("fast", [True, False], ids=["lean path", "paho path"])
def test_both_inbound_paths_enqueue_the_same_items(mqtt_broker, consumer_id, unique_id,
                                                   fast) -> None:
    consumer = start(mqtt_broker, consumer_id, fast)
    pub = Publisher(mqtt_broker.host, mqtt_broker.port, f"cpub-{unique_id}")
    sent = [(f"em/v1/dev/c{unique_id}-{i % 3}/fix", b'{"seq": %d}' % i) for i in range(300)]
    sent.append((f"em/v1/dev/c{unique_id}-0/hb", b"qos0"))
    for topic, payload in sent[:-1]:
        pub.publish(topic, payload)
    pub.publish(*sent[-1], qos=0)
    items = drain(consumer, len(sent))
    assert sorted((it.topic, it.payload) for it in items) == sorted(sent)
    assert {(it.topic, it.qos) for it in items if it.topic.endswith("/hb")} == {(sent[-1][0], 0)}
    assert all(it.ack_id > 0 for it in items if it.qos == 1)
    consumer.ack(items)
    pub.close()
    consumer.disconnect()


def test_mqtt5_properties_and_payloads_larger_than_the_read_buffer(mqtt_broker, consumer_id,
                                                                   unique_id) -> None:
    consumer = start(mqtt_broker, consumer_id)
    big = b'{"pad": "' + b"y" * 600_000 + b'"}'
    publish_v5(mqtt_broker, f"em/v1/dev/c{unique_id}/fix", big)
    publish_v5(mqtt_broker, f"em/v1/dev/c{unique_id}/evt", b"{}")
    items = drain(consumer, 2)
    assert [(it.topic, it.payload) for it in items] == [(f"em/v1/dev/c{unique_id}/fix", big),
                                              (f"em/v1/dev/c{unique_id}/evt", b"{}")]
    consumer.ack(items)
    consumer.disconnect()


def test_unacknowledged_messages_come_back_and_acknowledged_ones_do_not(
        mqtt_broker, consumer_id, unique_id) -> None:
    pub = Publisher(mqtt_broker.host, mqtt_broker.port, f"cpub-{unique_id}")
    consumer = start(mqtt_broker, consumer_id)
    mids = [pub.publish(f"em/v1/dev/c{unique_id}/fix", b"%d" % i) for i in range(100)]
    assert pub.wait_acked(mids)
    items = drain(consumer, 100)
    assert consumer.ack(items[:60]) == 60  # the other 40 are "not yet committed"
    assert wait_for(lambda: not consumer.client.want_write(), 5)
    consumer.connected.clear()
    consumer.client._sock.shutdown(socket.SHUT_RDWR)  # the connection drops; paho reconnects
    assert wait_for(consumer.connected.is_set, 15)
    redelivered = drain(consumer, 40)  # the persistent session redelivers the 40
    assert (sorted(it.payload for it in redelivered)
            == sorted(it.payload for it in items[60:]))
    assert consumer.ack(items[60:]) == 0  # items of the old connection are never acknowledged
    assert consumer.ack(redelivered) == 40
    consumer.disconnect()
    again = start(mqtt_broker, consumer_id)
    with pytest.raises(queue.Empty):
        again.queue.get(timeout=0.5)
    again.disconnect()
    pub.close()


def test_skip_properties() -> None:
    packet = bytearray(b"\x00" * 3 + b"\x05" + b"abcde" + b"payload")
    assert packet[_skip_properties(packet, 3):] == b"payload"
    long_props = bytearray(b"\x80\x01" + b"p" * 128 + b"rest")  # a two-byte length: 128
    assert long_props[_skip_properties(long_props, 0):] == b"rest"
