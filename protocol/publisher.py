"""The one QoS 1 publisher: for whatever publishes to the broker and must know the broker has
the message (alert delivery, downlink commands, the tests' devices).

paho marks a QoS 1 message published only when the broker's PUBACK arrives. A `Publisher` is
one paho client with a clean session (a publisher keeps no subscriptions), connected in the
background and reconnecting by itself; while it is down, publishes wait in paho's queue (or
`publish_all` reports them failed, for a caller that retries). Imports nothing of giamsat's but
the broker URL parser.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

import paho.mqtt.client as mqtt

from config.mqtt import MqttTarget, parse_mqtt_url

log = logging.getLogger("giamsat.mqtt")


class Publisher:
    """A QoS 1 publisher on its own connection.

    ``max_inflight``: unacknowledged messages paho keeps on the wire (more wait in its queue,
    which is unbounded). ``window``: with a number, ``publish`` blocks while that many are
    unacknowledged (paho's message ids are 16-bit: a fast publisher keeps well under 65,535).
    ``track_acked``: keep the ids the broker acknowledged in ``acked`` (tests; it grows).
    ``connect_timeout_s``: wait that long for the first connection (a warning if it is not up).
    """

    def __init__(self, target: MqttTarget, client_id: str, *, max_inflight: int = 1000,
                 window: int | None = None, track_acked: bool = False,
                 connect_timeout_s: float = 10.0, reconnect_max_s: int = 5) -> None:
        self.target = target
        self.acked: set[int] | None = set() if track_acked else None
        self._acked_lock = threading.Lock()
        self._window = threading.Semaphore(window) if window else None
        self._connected = threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                        protocol=mqtt.MQTTv311, clean_session=True)
        if target.username:
            c.username_pw_set(target.username, target.password)
        if target.tls:
            c.tls_set()  # the system's CA certificates
        c.max_inflight_messages_set(max_inflight)
        c.max_queued_messages_set(0)
        c.reconnect_delay_set(0.2, reconnect_max_s)  # type: ignore[arg-type]  # paho takes s as float
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        c.connect_async(target.host, target.port, keepalive=30)
        c.loop_start()
        self.client = c
        if not self._connected.wait(connect_timeout_s):
            log.warning("MQTT publisher %s not connected to %s:%d yet", client_id, target.host,
                        target.port)

    @classmethod
    def from_url(cls, url: str, client_id: str, **kwargs: Any) -> Publisher:
        """From ``mqtt://user:pass@host:port`` (``mqtts://`` for TLS)."""
        return cls(parse_mqtt_url(url), client_id, **kwargs)

    @classmethod
    def to(cls, host: str, port: int, client_id: str, username: str | None = None,
           password: str | None = None, **kwargs: Any) -> Publisher:
        """To ``host:port`` with an optional login."""
        return cls(MqttTarget(host, port, username, password), client_id, **kwargs)

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: Any, reason: Any,
                    properties: Any) -> None:
        if reason.is_failure:
            log.warning("MQTT publisher refused by %s:%d: %s", self.target.host,
                        self.target.port, reason)
            return
        self._connected.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: object, flags: Any, reason: Any,
                       properties: Any) -> None:
        self._connected.clear()

    def _on_publish(self, client: mqtt.Client, userdata: object, mid: int, reason: Any,
                    properties: Any) -> None:
        if self.acked is not None:
            with self._acked_lock:
                self.acked.add(mid)
        if self._window is not None:
            self._window.release()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout_s: float) -> bool:
        """True once connected to the broker (waits up to ``timeout_s``)."""
        return self._connected.wait(timeout_s)

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> mqtt.MQTTMessageInfo:
        """Queue one message; paho's info says when the broker has it (``is_published``)."""
        if qos and self._window is not None:
            self._window.acquire(timeout=60)
        return self.client.publish(topic, payload, qos=qos)

    def publish_and_wait(self, topic: str, payload: bytes, timeout_s: float = 10.0) -> None:
        """Publish and wait for the PUBACK: ``TimeoutError`` without one in ``timeout_s``
        (``RuntimeError`` from paho when it cannot queue the message)."""
        info = self.publish(topic, payload)
        info.wait_for_publish(timeout_s)
        if not info.is_published():
            raise TimeoutError(f"{topic}: no PUBACK in {timeout_s} s")

    def publish_all(self, messages: Sequence[tuple[str, bytes]], timeout_s: float
                    ) -> list[tuple[str | None, float]]:
        """Publish every message, then wait for their PUBACKs within one ``timeout_s``; per
        message ``(None, ms)`` once acknowledged, else ``(error, ms)``. Nothing is queued while
        disconnected: a caller that retries does so itself."""
        if not self.connected:
            return [("not connected to the broker", 0.0)] * len(messages)
        t0 = time.monotonic()
        infos = [self.publish(topic, body) for topic, body in messages]
        deadline = t0 + timeout_s
        return [self._outcome(info, t0, deadline) for info in infos]

    @staticmethod
    def _outcome(info: mqtt.MQTTMessageInfo, t0: float, deadline: float
                 ) -> tuple[str | None, float]:
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            return f"publish failed: {mqtt.error_string(info.rc)}", 0.0
        try:
            info.wait_for_publish(max(0.0, deadline - time.monotonic()))
        except (RuntimeError, ValueError) as exc:
            return f"publish failed: {exc}", 0.0
        ms = (time.monotonic() - t0) * 1000
        return (None, ms) if info.is_published() else ("no PUBACK in time", ms)

    def wait_acked(self, mids: Iterable[int], timeout_s: float = 30.0) -> bool:
        """With ``track_acked``: True once the broker acknowledged every one of ``mids``."""
        assert self.acked is not None, "a Publisher(track_acked=True) records acknowledgements"
        want = set(mids)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._acked_lock:
                if want <= self.acked:
                    return True
            time.sleep(0.05)
        with self._acked_lock:
            return want <= self.acked

    def close(self) -> None:
        """Disconnect (what is still unacknowledged is dropped) and stop paho's thread."""
        self.client.disconnect()
        self.client.loop_stop()
