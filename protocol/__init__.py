"""The device protocol of contract §1, in one place: topics, the device-id rule, message kinds.

Everything that speaks to devices or about them (ingest, alert delivery, downlink commands,
broker credentials, simulators, the API, tests) takes its topics and its device-id rule from
here, so the contract is spelt once. It imports nothing of giamsat's.
"""

from protocol.topics import (
    ALERT_TOPIC_PREFIX,
    ALERT_TOPICS_ALL,
    DEVICE_ID_PATTERN,
    DEVICE_ID_RE,
    DEVICE_TOPIC_PREFIX,
    DEVICE_TOPICS_ALL,
    DOWNLINK_KINDS,
    OWNTRACKS_ALL,
    OWNTRACKS_FILTER,
    OWNTRACKS_PREFIX,
    UPLINK_FILTERS,
    UPLINK_KINDS,
    alert_topic,
    device_filter,
    device_topic,
    is_device_id,
    owntracks_device_id,
    owntracks_names,
    owntracks_topic,
    parse_device_topic,
    parse_uplink_topic,
)

__all__ = [
    "ALERT_TOPICS_ALL", "ALERT_TOPIC_PREFIX", "DEVICE_ID_PATTERN", "DEVICE_ID_RE",
    "DEVICE_TOPICS_ALL", "DEVICE_TOPIC_PREFIX", "DOWNLINK_KINDS", "OWNTRACKS_ALL",
    "OWNTRACKS_FILTER", "OWNTRACKS_PREFIX", "UPLINK_FILTERS", "UPLINK_KINDS", "alert_topic",
    "device_filter", "device_topic", "is_device_id", "owntracks_device_id", "owntracks_names",
    "owntracks_topic", "parse_device_topic", "parse_uplink_topic",
]
