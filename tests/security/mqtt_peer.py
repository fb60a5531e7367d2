"""A small synchronous MQTT test client over paho-mqtt 2: connect, subscribe, publish, and
record what arrives, each step waiting for the broker's answer (CONNACK, SUBACK, PUBACK)."""

from __future__ import annotations

import queue
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

TIMEOUT_S = 5.0


class Peer:
    """One MQTT client on its own network thread."""

    def __init__(self, port: int, username: str | None, password: str | None,
                 client_id: str, protocol: int = mqtt.MQTTv311, clean: bool = True) -> None:
        kwargs = {"clean_session": clean} if protocol != mqtt.MQTTv5 else {}
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=protocol, **kwargs)
        if username is not None:
            self.client.username_pw_set(username, password)
        self.port = port
        self.received: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.connack: ReasonCode | None = None
        self.disconnected = threading.Event()
        self._connected = threading.Event()
        self._acks: dict[int, object] = {}
        self._ack_cv = threading.Condition()
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda c, u, f, rc, p: self.disconnected.set()
        self.client.on_message = lambda c, u, m: self.received.put((m.topic, m.payload))
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self._ack(mid, rcs)
        self.client.on_publish = lambda c, u, mid, rc, p: self._ack(mid, rc)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connack = reason_code
        self._connected.set()

    def _ack(self, mid: int, value: object) -> None:
        with self._ack_cv:
            self._acks[mid] = value
            self._ack_cv.notify_all()

    def _wait_ack(self, mid: int) -> object:
        with self._ack_cv:
            if not self._ack_cv.wait_for(lambda: mid in self._acks, TIMEOUT_S):
                raise TimeoutError(f"no acknowledgement of message {mid}")
            return self._acks.pop(mid)

    def connect(self) -> ReasonCode:
        """Connect and return the CONNACK reason code (success or the refusal)."""
        self.client.connect("127.0.0.1", self.port, keepalive=30)
        self.client.loop_start()
        if not self._connected.wait(TIMEOUT_S):
            raise TimeoutError("no CONNACK")
        assert self.connack is not None
        return self.connack

    def subscribe(self, topic: str, qos: int = 1) -> list[ReasonCode]:
        """Subscribe and return the SUBACK's granted QoS / reason codes."""
        _, mid = self.client.subscribe(topic, qos)
        return list(self._wait_ack(mid))  # type: ignore[call-overload]

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> ReasonCode | None:
        """Publish and, for QoS 1, wait for PUBACK; return its reason code (MQTT 5)."""
        info = self.client.publish(topic, payload, qos)
        if qos == 0:
            return None
        return self._wait_ack(info.mid)  # type: ignore[return-value]

    def expect(self, topic: str, payload: bytes, timeout_s: float = TIMEOUT_S) -> list[tuple[str, bytes]]:
        """Wait until (topic, payload) arrives; return everything received up to it."""
        seen = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                msg = self.received.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            seen.append(msg)
            if msg == (topic, payload):
                return seen
        raise AssertionError(f"{topic} {payload!r} did not arrive; got {seen}")

    def drain(self, settle_s: float = 0.5) -> list[tuple[str, bytes]]:
        """Everything that arrives within ``settle_s`` from now."""
        time.sleep(settle_s)
        out = []
        while not self.received.empty():
            out.append(self.received.get_nowait())
        return out

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
