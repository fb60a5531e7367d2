"""Topics and device ids (contract §1, §3).

- a device publishes on ``em/v1/dev/{device_id}/{fix|hb|evt|ack}`` and reads only
  ``em/v1/dev/{device_id}/cmd``; an OwnTracks client publishes on ``owntracks/{user}/{device}``,
  which names device ``{user}-{device}``;
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
OWNTRACKS_PREFIX = "owntracks"
UPLINK_KINDS = ("fix", "hb", "evt", "ack")  # what a device publishes
DOWNLINK_KINDS = ("cmd",)  # what a device reads
_DEVICE_PREFIX_PARTS = DEVICE_TOPIC_PREFIX.split("/")

# Subscription filters: every device topic, the uplink ones, OwnTracks', every alert topic.
DEVICE_TOPICS_ALL = f"{DEVICE_TOPIC_PREFIX}/+/#"
OWNTRACKS_FILTER = f"{OWNTRACKS_PREFIX}/+/+"
OWNTRACKS_ALL = f"{OWNTRACKS_PREFIX}/#"
ALERT_TOPICS_ALL = f"{ALERT_TOPIC_PREFIX}/#"


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


def device_filter(kind: str, device: str = "+") -> str:
    """A subscription filter or broker ACL pattern for one kind of device topic:
    ``em/v1/dev/+/{kind}``, or with ``device="%u"`` Mosquitto's "the connected user's own"."""
    return f"{DEVICE_TOPIC_PREFIX}/{device}/{kind}"


UPLINK_FILTERS = (*(device_filter(kind) for kind in UPLINK_KINDS), OWNTRACKS_FILTER)


def parse_device_topic(topic: str) -> tuple[str, str] | None:
    """``(device_id, kind)`` of a device uplink topic, or None when it is not one."""
    parts = topic.split("/")
    if (len(parts) == 5 and parts[:3] == _DEVICE_PREFIX_PARTS
            and parts[4] in UPLINK_KINDS and is_device_id(parts[3])):
        return parts[3], parts[4]
    return None


def parse_uplink_topic(topic: str) -> tuple[str, str] | str:
    """``(kind, device_id)`` of a topic a device publishes on (kind ``fix|hb|evt|ack``, or
    ``owntracks`` for an OwnTracks topic), or why it is not one (a str, for a rejection)."""
    parts = topic.split("/")
    if len(parts) == 5 and parts[:3] == _DEVICE_PREFIX_PARTS and parts[4] in UPLINK_KINDS:
        device_id = parts[3]
    elif len(parts) == 3 and parts[0] == OWNTRACKS_PREFIX and parts[1] and parts[2]:
        device_id = owntracks_device_id(parts[1], parts[2])
        if is_device_id(device_id):
            return "owntracks", device_id
        return f"OwnTracks device id {_shown(device_id)} is not {DEVICE_ID_PATTERN}"
    else:
        return (f"topic {_shown(topic)} is not {DEVICE_TOPIC_PREFIX}/{{device_id}}/"
                + "|".join(UPLINK_KINDS))
    if not is_device_id(device_id):
        return f"device id {_shown(device_id)} is not {DEVICE_ID_PATTERN}"
    return parts[4], device_id


def _shown(text: str) -> str:
    """``repr`` cut to 40 characters, for a rejection's detail."""
    text = repr(text)
    return text if len(text) <= 40 else text[:37] + "..."


def owntracks_topic(user: str, device: str) -> str:
    """The OwnTracks topic ``owntracks/{user}/{device}``."""
    return f"{OWNTRACKS_PREFIX}/{user}/{device}"


def owntracks_device_id(user: str, device: str) -> str:
    """The registered device id an OwnTracks client's topic names: ``{user}-{device}``."""
    return f"{user}-{device}"


def owntracks_names(device_id: str) -> list[tuple[str, str]]:
    """Every OwnTracks ``(user, device)`` that names ``device_id``: an id with several hyphens
    has several such splits, and each of them names this device and no other."""
    return [(device_id[:i], device_id[i + 1:]) for i, ch in enumerate(device_id)
            if ch == "-" and 0 < i < len(device_id) - 1]


def alert_topic(unit: str) -> str:
    """The topic a unit's alert changes are published on: ``em/v1/alerts/{unit}``."""
    return f"{ALERT_TOPIC_PREFIX}/{unit}"
