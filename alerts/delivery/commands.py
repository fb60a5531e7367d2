"""Downlink commands to devices (contract §1): ``em/v1/dev/{device_id}/cmd``, QoS 1.

The device answers on ``em/v1/dev/{device_id}/ack``; ingest matches the answer to the command
recorded here (``device_commands``).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import orjson
import psycopg

from alerts.delivery.deliverer import wall_ms
from alerts.delivery.mqtt import MqttChannel
from alerts.model import ms_to_dt
from protocol import device_topic

COMMAND_TYPES = ("locate", "set_interval", "notify_wearer")
MAX_WEARER_TEXT = 160  # characters shown on the device


def command_topic(device_id: str) -> str:
    """``em/v1/dev/{device_id}/cmd``."""
    return device_topic(device_id, "cmd")


def new_command(type: str, **fields: Any) -> dict[str, Any]:
    """A command's payload with a fresh id (``ValueError`` for a malformed one)."""
    return {"id": uuid.uuid4().hex, "type": type, **_command_fields(type, fields)}


def record_command(conn: psycopg.Connection, device_id: str, payload: Mapping[str, Any], *,
                   sent_by: str = "system", now_ms: int | None = None) -> None:
    """Store the command so ingest can match the device's answer to it. Commit it *before*
    publishing: a device may answer within milliseconds, and an answer naming a command ingest
    cannot see is dead-lettered."""
    conn.execute("INSERT INTO device_commands (id, device_id, type, payload, sent_at, sent_by) "
                 "VALUES (%s, %s, %s, %s, %s, %s)",
                 (payload["id"], device_id, payload["type"], orjson.dumps(payload).decode(),
                  ms_to_dt(wall_ms() if now_ms is None else now_ms), sent_by))


def forget_command(conn: psycopg.Connection, command_id: str) -> None:
    """Remove a recorded command that could not be published (no answer can come)."""
    conn.execute("DELETE FROM device_commands WHERE id = %s AND answered_at IS NULL",
                 (command_id,))


def publish_command(channel: MqttChannel, device_id: str, payload: Mapping[str, Any],
                    wait_s: float | None = 5.0) -> None:
    """Publish (QoS 1); with ``wait_s``, wait for the PUBACK and raise ``TimeoutError`` without
    one (``RuntimeError`` from paho when not connected)."""
    topic, body = command_topic(device_id), orjson.dumps(payload)
    if wait_s is None:
        channel.publish(topic, body)
    else:
        channel.publisher.publish_and_wait(topic, body, wait_s)


def send_command(channel: MqttChannel, device_id: str, type: str, *,
                 conn: psycopg.Connection | None = None, sent_by: str = "system",
                 now_ms: int | None = None, wait_s: float | None = 5.0, **fields: Any) -> str:
    """Publish a downlink command (QoS 1) to ``em/v1/dev/{device_id}/cmd``; return its id.

    ``channel``: the ``MqttChannel`` to publish on. ``set_interval`` needs ``fix_s`` (int s >
    0), ``notify_wearer`` a short ``text``. With ``conn`` the command is recorded in
    ``device_commands`` so ingest can match the device's ``ack`` to it; the caller commits, and
    a device answering before that commit has its answer dead-lettered: callers that expect
    quick answers use ``record_command`` (and commit) then ``publish_command``, as the API and
    the fix-rate job do. With ``wait_s`` it waits for the broker's PUBACK and raises
    ``TimeoutError`` without one.
    """
    payload = new_command(type, **fields)
    if conn is not None:
        record_command(conn, device_id, payload, sent_by=sent_by, now_ms=now_ms)
    publish_command(channel, device_id, payload, wait_s)
    return payload["id"]


def _command_fields(type: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    if type not in COMMAND_TYPES:
        raise ValueError(f"command type must be one of {', '.join(COMMAND_TYPES)}, not {type!r}")
    if type == "set_interval":
        fix_s = fields.get("fix_s")
        if not isinstance(fix_s, int) or isinstance(fix_s, bool) or fix_s <= 0:
            raise ValueError("set_interval needs fix_s, a positive integer (seconds)")
    if type == "notify_wearer":
        text = fields.get("text")
        if not isinstance(text, str) or not text or len(text) > MAX_WEARER_TEXT:
            raise ValueError(f"notify_wearer needs a text of 1 to {MAX_WEARER_TEXT} characters")
    return dict(fields)
