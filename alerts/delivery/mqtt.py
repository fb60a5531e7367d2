"""MQTT channel: QoS 1 publishes to ``em/v1/alerts/{unit}``; an attempt succeeds when the
broker's PUBACK arrives (the one QoS 1 publisher, ``protocol.publisher``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import paho.mqtt.client as mqtt

from alerts.delivery.base import Outcome, Outgoing
from config.mqtt import MqttTarget, parse_mqtt_url
from protocol.publisher import Publisher


class MqttChannel:
    """A publisher connection of its own, connected in the background and reconnecting by
    itself; while it is down, attempts fail and the deliverer retries them."""

    name = "mqtt"
    batched = True

    def __init__(self, host: str, port: int, client_id: str, username: str | None = None,
                 password: str | None = None, puback_timeout_s: float = 10.0,
                 connect_timeout_s: float = 10.0, tls: bool = False) -> None:
        self.puback_timeout_s = puback_timeout_s
        self.publisher = Publisher(MqttTarget(host, port, username, password, tls), client_id,
                                   connect_timeout_s=connect_timeout_s)

    @classmethod
    def from_url(cls, url: str, client_id: str, **kwargs: Any) -> MqttChannel:
        """From ``mqtt://user:pass@host:port``."""
        t = parse_mqtt_url(url)
        return cls(t.host, t.port, client_id, username=t.username, password=t.password,
                   tls=t.tls, **kwargs)

    def wait_connected(self, timeout_s: float) -> bool:
        """True once connected to the broker (waits up to ``timeout_s``)."""
        return self.publisher.wait_connected(timeout_s)

    def send(self, items: Sequence[Outgoing]) -> list[Outcome]:
        results = self.publisher.publish_all([(i.target, i.body) for i in items],
                                             self.puback_timeout_s)
        return [Outcome(error is None, error=error, duration_ms=ms) for error, ms in results]

    def publish(self, topic: str, body: bytes, qos: int = 1) -> mqtt.MQTTMessageInfo:
        """A plain publish on this channel's connection (e.g. downlink commands)."""
        return self.publisher.publish(topic, body, qos)

    def close(self) -> None:
        self.publisher.close()
