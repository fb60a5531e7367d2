"""Reading a broker URL (``GIAMSAT_MQTT_URL``, ``--mqtt-url``): one parser for every client."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

# QoS 1 messages a fast publisher (load test, benchmark, simulator) keeps unacknowledged. paho
# walks its whole table of outgoing messages on every PUBACK, so a publisher's cost grows with
# this window: one paho publisher here does ~31,000 msgs/s with 64 in flight, ~20,000/s with
# 1,000 and ~4,000/s with 10,000. 64 keeps a loopback pipe full.
PUBLISH_WINDOW = 64


@dataclass(frozen=True)
class MqttTarget:
    """Where to connect: host, port, optional credentials, TLS or not."""

    host: str
    port: int
    username: str | None = None
    password: str | None = None
    tls: bool = False


def parse_mqtt_url(url: str) -> MqttTarget:
    """`mqtt://[user[:pass]@]host[:port]` (1883) or `mqtts://...` (TLS, 8883) to a target;
    percent-escapes in the credentials are decoded."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
        raise ValueError(
            f"unsupported MQTT URL scheme {parts.scheme!r} in {url!r}: use mqtt:// or mqtts://"
        )
    tls = parts.scheme in ("mqtts", "ssl")
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    return MqttTarget(
        parts.hostname or "127.0.0.1", parts.port or (8883 if tls else 1883), user, password, tls
    )
