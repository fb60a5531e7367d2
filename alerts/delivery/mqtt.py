"""MQTT channel: QoS 1 publishes to ``em/v1/alerts/{unit}``; an attempt succeeds when the
broker's PUBACK arrives (paho marks the message published only then)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

import paho.mqtt.client as mqtt

from alerts.delivery.base import Outcome, Outgoing
from config.mqtt import parse_mqtt_url

log = logging.getLogger("giamsat.alerts.mqtt")


class MqttChannel:
    """A paho client of its own (clean session: a publisher keeps no subscriptions), connected
    in the background and reconnecting by itself; while it is down, attempts fail and the
    deliverer retries them."""

    name = "mqtt"
    batched = True

    def __init__(self, host: str, port: int, client_id: str, username: str | None = None,
                 password: str | None = None, puback_timeout_s: float = 10.0,
                 connect_timeout_s: float = 10.0) -> None:
        self.puback_timeout_s = puback_timeout_s
        self._connected = threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                        protocol=mqtt.MQTTv311, clean_session=True)
        if username:
            c.username_pw_set(username, password)
        c.max_inflight_messages_set(1000)
        c.reconnect_delay_set(0.2, 5)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.connect_async(host, port, keepalive=30)
        c.loop_start()
        self.client = c
        if not self._connected.wait(connect_timeout_s):
            log.warning("alerts MQTT channel not connected to %s:%d yet", host, port)

    @classmethod
    def from_url(cls, url: str, client_id: str, **kwargs) -> MqttChannel:
        """From ``mqtt://user:pass@host:port``."""
        t = parse_mqtt_url(url)
        return cls(t.host, t.port, client_id, username=t.username, password=t.password, **kwargs)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if not reason_code.is_failure:
            self._connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self._connected.clear()

    def wait_connected(self, timeout_s: float) -> bool:
        """True once connected to the broker (waits up to ``timeout_s``)."""
        return self._connected.wait(timeout_s)

    def send(self, items: Sequence[Outgoing]) -> list[Outcome]:
        if not self._connected.is_set():
            return [Outcome(False, error="not connected to the broker") for _ in items]
        t0 = time.monotonic()
        infos = [self.client.publish(i.target, i.body, qos=1) for i in items]
        deadline = t0 + self.puback_timeout_s
        out = []
        for info in infos:
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                out.append(Outcome(False, error=f"publish failed: {mqtt.error_string(info.rc)}"))
                continue
            try:
                info.wait_for_publish(max(0.0, deadline - time.monotonic()))
            except (RuntimeError, ValueError) as exc:
                out.append(Outcome(False, error=f"publish failed: {exc}"))
                continue
            ms = (time.monotonic() - t0) * 1000
            out.append(Outcome(True, duration_ms=ms) if info.is_published()
                       else Outcome(False, error="no PUBACK in time", duration_ms=ms))
        return out

    def publish(self, topic: str, body: bytes, qos: int = 1) -> mqtt.MQTTMessageInfo:
        """A plain publish on this channel's connection (e.g. downlink commands)."""
        return self.client.publish(topic, body, qos=qos)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
