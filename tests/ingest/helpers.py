"""Helpers for the ingest tests: register devices, publish with QoS 1 and track the broker's
acknowledgements, wait for rows."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from types import SimpleNamespace
from typing import Any

import paho.mqtt.client as mqtt
import psycopg

from config import Settings
from protocol.publisher import Publisher as QoS1Publisher


def register_devices(conn: psycopg.Connection, device_ids: Iterable[str],
                     supervisee_id: str = "sv-ingest", unit: str = "U-INGEST") -> None:
    """Insert a unit, a supervisee and the devices (assigned to it) directly; bump the
    registry version as an importer would."""
    conn.execute("INSERT INTO units (code, name) VALUES (%s, 'ingest test unit') "
                 "ON CONFLICT DO NOTHING", (unit,))
    conn.execute("INSERT INTO supervisees (id, name, sentence_type, sentence_start, sentence_end, "
                 "unit) VALUES (%s, 'test', 'an_treo', '2025-01-01', '2027-01-01', %s) "
                 "ON CONFLICT DO NOTHING", (supervisee_id, unit))
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO devices (id, supervisee_id) VALUES (%s, %s) "
                        "ON CONFLICT DO NOTHING", [(d, supervisee_id) for d in device_ids])
    conn.execute("UPDATE registry_version SET version = version + 1")
    conn.commit()


def ingest_settings(client_id: str, **overrides: Any) -> SimpleNamespace:
    """The ingest keys of `Settings` (defaults), with a test's own client id and overrides."""
    base = Settings(_env_file=None)  # type: ignore[call-arg]
    values = {k: getattr(base, k) for k in (
        "mqtt_username", "mqtt_password", "ingest_queue_max", "ingest_batch_max",
        "ingest_batch_wait_ms", "max_payload_bytes", "max_future_ms", "max_fix_age_days",
        "max_batch_fixes", "max_accuracy_m", "workers", "worker_index", "amqp_prefetch")}
    values.update(mqtt_client_id=client_id, **overrides)
    return SimpleNamespace(**values)


class Publisher:
    """The shared QoS 1 publisher (``protocol.publisher``) with the message ids the broker
    acknowledged (``acked``) and what each tracked publish was (``sent``)."""

    def __init__(self, host: str, port: int, client_id: str, max_inflight: int = 1000,
                 window: int = 20_000, username: str | None = None,
                 password: str | None = None) -> None:
        self.sent: dict[int, Any] = {}  # mid -> what the test published (publish_tracked)
        # paho's message ids are 16-bit: keep well under 65,535 unacknowledged
        self.mqtt = QoS1Publisher.to(host, port, client_id, username, password,
                                     max_inflight=max_inflight, window=window, track_acked=True)
        self.client = self.mqtt.client
        self.acked: set[int] = self.mqtt.acked  # type: ignore[assignment]

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> int:
        """Publish; return the message id (see `acked`)."""
        return self.mqtt.publish(topic, payload, qos).mid

    def publish_tracked(self, topic: str, payload: bytes, key: Any) -> int:
        """Publish QoS 1 and remember `key` under the message id (`sent`)."""
        mid = self.publish(topic, payload)
        self.sent[mid] = key
        return mid

    def wait_acked(self, mids: Iterable[int], timeout_s: float = 30.0) -> bool:
        return self.mqtt.wait_acked(mids, timeout_s)

    def close(self) -> None:
        self.mqtt.close()


def wait_for(condition: Callable[[], bool], timeout_s: float = 30.0, every_s: float = 0.05) -> bool:
    """Poll until `condition()` holds; False after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(every_s)
    return condition()


def count(conn: psycopg.Connection, sql: str, *params: Any) -> int:
    row = conn.execute(sql, params).fetchone()
    conn.commit()
    return int(row[0]) if row else 0


def forget_session(host: str, port: int, client_id: str) -> None:
    """Remove a persistent session from the broker (so a test leaves no queue behind)."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=mqtt.MQTTv5)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 0
    try:
        client.connect(host, port, clean_start=True, properties=props)
        client.loop_start()
        wait_for(client.is_connected, 5)
        client.disconnect()
        client.loop_stop()
    except OSError:
        pass
