"""Topics and device ids (contract §1, §3).

- a device publishes on ``em/v1/dev/{device_id}/{fix|hb|evt|ack}`` and reads only
  ``em/v1/dev/{device_id}/cmd``;
- alert changes go to ``em/v1/alerts/{unit_code}``;
- a device id is ``[A-Za-z0-9_-]{1,64}`` (which also keeps MQTT wildcards and separators out of
  topics and ACL patterns).
"""

from __future__ import annotations

import re

DEVICE_ID_PATTERN = r"[A-Za-z0-9_-]{1,64}"
DEVICE_ID_RE = re.compile(DEVICE_ID_PATTERN)
DEVICE_TOPIC_PREFIX = "em/v1/dev"
ALERT_TOPIC_PREFIX = "em/v1/alerts"
UPLINK_KINDS = ("fix", "hb", "evt", "ack")  # what a device publishes
DOWNLINK_KINDS = ("cmd",)  # what a device reads


def is_device_id(value: str) -> bool:
    """True when ``value`` is a valid device id."""
    return DEVICE_ID_RE.fullmatch(value) is not None


def device_topic(device_id: str, kind: str) -> str:
    """``em/v1/dev/{device_id}/{kind}``; ValueError for an unknown kind or a bad device id."""
    if kind not in UPLINK_KINDS + DOWNLINK_KINDS:
        raise ValueError(f"unknown topic kind {kind!r}, expected one of "
                         f"{UPLINK_KINDS + DOWNLINK_KINDS}")
    if not is_device_id(device_id):
        raise ValueError(f"invalid device id {device_id!r}")
    return f"{DEVICE_TOPIC_PREFIX}/{device_id}/{kind}"


def parse_device_topic(topic: str) -> tuple[str, str] | None:
    """``(device_id, kind)`` of a device uplink topic, or None when it is not one."""
    parts = topic.split("/")
    if (len(parts) == 5 and "/".join(parts[:3]) == DEVICE_TOPIC_PREFIX
            and parts[4] in UPLINK_KINDS and is_device_id(parts[3])):
        return parts[3], parts[4]
    return None


def alert_topic(unit: str) -> str:
    """The topic a unit's alert changes are published on: ``em/v1/alerts/{unit}``."""
    return f"{ALERT_TOPIC_PREFIX}/{unit}"
