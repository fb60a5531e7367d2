"""The API's downlink (contract §1 commands): an MQTT publisher of its own, opened on first use.

The API publishes a command itself, QoS 1, and answers only once the broker has PUBACKed it;
when the broker is unreachable or does not acknowledge in time the request fails with 503 and a
message saying so (and nothing is recorded: the command row is in the request's transaction).
The login is the service's (``GIAMSAT_MQTT_URL``, or the embedded broker's service login),
which the broker's ACL lets write ``em/v1/dev/+/cmd``.
"""

from __future__ import annotations

import logging
import threading
import uuid
from typing import Any

import psycopg

from alerts.delivery.commands import (
    forget_command,
    new_command,
    publish_command,
    record_command,
)
from alerts.delivery.mqtt import MqttChannel
from api.errors import Problem

log = logging.getLogger("giamsat.api.downlink")

UNAVAILABLE = ("the MQTT broker is unavailable: the command was not sent, try again / "
               "không kết nối được máy chủ MQTT: lệnh chưa được gửi")


class Downlink:
    """One MQTT connection for the API's commands (clean session, its own client id)."""

    def __init__(self, mqtt_url: str | None, *, connect_timeout_s: float = 3.0,
                 puback_timeout_s: float = 5.0) -> None:
        self.mqtt_url = mqtt_url
        self.connect_timeout_s = connect_timeout_s
        self.puback_timeout_s = puback_timeout_s
        self._channel: MqttChannel | None = None
        self._lock = threading.Lock()

    def _connected_channel(self) -> MqttChannel:
        if not self.mqtt_url:
            raise Problem(503, "no MQTT broker is configured for commands (GIAMSAT_MQTT_URL) / "
                               "chưa cấu hình máy chủ MQTT")
        with self._lock:
            if self._channel is None:
                try:
                    self._channel = MqttChannel.from_url(
                        self.mqtt_url, f"giamsat-api-{uuid.uuid4().hex[:10]}",
                        connect_timeout_s=self.connect_timeout_s)
                except (OSError, ValueError) as exc:
                    log.warning("downlink: cannot reach the broker: %s", exc)
                    raise Problem(503, UNAVAILABLE) from exc
        if not self._channel.wait_connected(self.connect_timeout_s):
            raise Problem(503, UNAVAILABLE)
        return self._channel

    def send(self, conn: psycopg.Connection, device_id: str, type: str, *, sent_by: str,
             now_ms: int, **fields: Any) -> str:
        """Record the command and commit (the device may answer at once: ingest must see the
        command), publish it, PUBACK awaited; its id. 503 (``Problem``) when the broker is
        unavailable or does not acknowledge, the record removed again; 422 for a malformed
        command. ``conn`` is the request's connection: what it holds so far is committed."""
        try:
            payload = new_command(type, **fields)
        except ValueError as exc:
            raise Problem(422, str(exc)) from exc
        channel = self._connected_channel()
        record_command(conn, device_id, payload, sent_by=sent_by, now_ms=now_ms)
        conn.commit()
        try:
            publish_command(channel, device_id, payload, self.puback_timeout_s)
        except (TimeoutError, RuntimeError) as exc:
            forget_command(conn, payload["id"])
            conn.commit()
            log.warning("downlink: command to %s not acknowledged by the broker: %s",
                        device_id, exc)
            raise Problem(503, UNAVAILABLE) from exc
        return payload["id"]

    def close(self) -> None:
        with self._lock:
            if self._channel is not None:
                self._channel.close()
                self._channel = None
