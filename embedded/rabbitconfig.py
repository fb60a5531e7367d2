"""RabbitMQ users, permissions and the service's queues from the device registry (the durable
broker's side of ``giamsat broker-config``; contract §1, issue 12).

RabbitMQ takes them as a *definitions* document (JSON): loaded at boot (``load_definitions``
in rabbitmq.conf, what the embedded broker does) and applied to a running node with
``rabbitmqctl import_definitions FILE``. What it grants, on the virtual host ``/``:

- a device (user = device id, tag ``giamsat-device``): publish, through the MQTT plugin, only
  ``em/v1/dev/{id}/{fix,hb,evt,ack}`` (and its OwnTracks topics), and subscribe only to
  ``em/v1/dev/{id}/cmd``. RabbitMQ's MQTT plugin publishes to ``amq.topic`` with ``/`` turned
  into ``.``; *topic permissions* check the routing key on publish and on subscribe. The
  patterns use ``{username}``, which RabbitMQ expands to the authenticated user, so a device
  can name no other device whatever client id it connects with. Its resource permissions
  cover only its own MQTT session queues (``mqtt-subscription-{id}qos0/1``), so a device that
  connects with another device's client id and a clean session cannot delete that device's
  queued commands (the queue delete is refused).
- the service (tag ``giamsat-service``): declares and reads its own ``giamsat.*`` exchange and
  quorum queues over AMQP, reads every device topic, publishes commands and alerts over MQTT.
- optionally the fleet simulator / load generator: publishes as any device (test setups only).

The document also declares the service's topology (``ingest.amqp``): the consistent-hash
exchange, the quorum queues and the bindings exist from the broker's first boot, before any
device can connect, so no PUBACKed message is ever routed to nowhere.

Passwords are stored as RabbitMQ's SHA-256 hashes (:func:`rabbitmq_hash`), never in clear.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ingest.amqp import BINDINGS, EXCHANGE, QUEUE_ARGUMENTS, SOURCE_EXCHANGE, queue_name
from protocol import (
    ALERT_TOPIC_PREFIX,
    DEVICE_TOPIC_PREFIX,
    OWNTRACKS_PREFIX,
    UPLINK_KINDS,
    owntracks_names,
    owntracks_topic,
)

VHOST = "/"
HASHING = "rabbit_password_hashing_sha256"
DEVICE_TAG = "giamsat-device"
SERVICE_TAG = "giamsat-service"
SIMULATOR_TAG = "giamsat-simulator"


def _key(topic: str) -> str:
    """A topic (prefix) as a regex over routing keys (RabbitMQ's MQTT plugin turns / into .;
    device ids and our prefixes hold no other regex metacharacter)."""
    return topic.replace("/", r"\.")


_DEV = _key(DEVICE_TOPIC_PREFIX)  # em\.v1\.dev
_ALERTS = _key(ALERT_TOPIC_PREFIX) + r"\..+"
_OWNTRACKS = _key(OWNTRACKS_PREFIX)
_UPLINK = f"({'|'.join(UPLINK_KINDS)})"


def rabbitmq_hash(password: str, salt: bytes | None = None) -> str:
    """RabbitMQ's password hash: base64(salt(4) + SHA-256(salt + UTF-8 password))."""
    salt = secrets.token_bytes(4) if salt is None else salt
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def verify_rabbitmq_hash(password: str, encoded: str) -> bool:
    """True when ``encoded`` is :func:`rabbitmq_hash` of ``password``."""
    try:
        raw = base64.b64decode(encoded, validate=True)
    except ValueError:
        return False
    return len(raw) == 36 and hmac.compare_digest(rabbitmq_hash(password, raw[:4]), encoded)


def _owntracks(device_id: str) -> list[str]:
    """OwnTracks routing-key bases ``owntracks.U.D`` naming this device (user-device split)."""
    return [_key(owntracks_topic(user, dev)) for user, dev in owntracks_names(device_id)]


def device_grants(device_id: str) -> tuple[dict[str, str], dict[str, str]]:
    """(resource permissions, topic permissions on amq.topic) of one device.

    Device ids match ``[A-Za-z0-9_-]`` (contract §1): nothing in them is special in a regex.
    """
    own_queues = r"mqtt-subscription-{id}qos[01]".replace("{id}", device_id)
    resources = {"configure": f"^{own_queues}$",
                 "write": f"^(amq\\.topic|{own_queues})$",
                 "read": f"^(amq\\.topic|{own_queues})$"}
    write = [f"{_DEV}\\.{{username}}\\.{_UPLINK}"]
    read = [f"{_DEV}\\.{{username}}\\.cmd"]
    for base in _owntracks(device_id):
        write.append(f"{base}(\\..+)?")
        read.append(f"{base}\\.cmd")
    topics = {"write": f"^({'|'.join(write)})$", "read": f"^({'|'.join(read)})$"}
    return resources, topics


SERVICE_RESOURCES = {
    "configure": r"^(giamsat\..*|mqtt-subscription-.*)$",
    "write": r"^(giamsat\..*|amq\.topic|mqtt-subscription-.*)$",
    "read": r"^(giamsat\..*|amq\.topic|mqtt-subscription-.*)$",
}
SERVICE_TOPICS = {"write": rf"^({_DEV}\.[^.]+\.cmd|{_ALERTS})$", "read": ".*"}
SIMULATOR_RESOURCES = {
    "configure": r"^mqtt-subscription-.*$",
    "write": r"^(amq\.topic|mqtt-subscription-.*)$",
    "read": r"^(amq\.topic|mqtt-subscription-.*)$",
}
SIMULATOR_TOPICS = {"write": rf"^({_DEV}\.[^.]+\.{_UPLINK}|{_OWNTRACKS}\..+)$",
                    "read": rf"^({_DEV}\.[^.]+\.cmd|{_ALERTS})$"}


def topology(shards: int) -> dict[str, list[dict[str, Any]]]:
    """The service's exchange, quorum queues and bindings (as ``ingest.amqp.declare_topology``)."""
    queues = [{"name": queue_name(s), "vhost": VHOST, "durable": True, "auto_delete": False,
               "arguments": dict(QUEUE_ARGUMENTS)} for s in range(max(1, shards))]
    bindings = [{"source": EXCHANGE, "vhost": VHOST, "destination": q["name"],
                 "destination_type": "queue", "routing_key": "1", "arguments": {}}
                for q in queues]
    if len(queues) == 1:  # one shard: the queue is bound to the MQTT exchange directly
        bindings += [{"source": SOURCE_EXCHANGE, "vhost": VHOST, "destination": queue_name(0),
                      "destination_type": "queue", "routing_key": key, "arguments": {}}
                     for key in BINDINGS]
    else:
        bindings += [{"source": SOURCE_EXCHANGE, "vhost": VHOST, "destination": EXCHANGE,
                      "destination_type": "exchange", "routing_key": key, "arguments": {}}
                     for key in BINDINGS]
    exchanges = [{"name": EXCHANGE, "vhost": VHOST, "type": "x-consistent-hash",
                  "durable": True, "auto_delete": False, "internal": False, "arguments": {}}]
    return {"exchanges": exchanges, "queues": queues, "bindings": bindings}


def definitions(users: Sequence[tuple[str, str, str]], shards: int = 1) -> dict[str, Any]:
    """The definitions document. ``users``: (name, role, RabbitMQ password hash), role one of
    ``service``, ``simulator``, ``device``."""
    doc: dict[str, Any] = {"vhosts": [{"name": VHOST}], "users": [], "permissions": [],
                           "topic_permissions": [], **topology(shards)}
    for name, role, pw_hash in users:
        if role == "device":
            resources, topics = device_grants(name)
            tag = DEVICE_TAG
        elif role == "service":
            resources, topics, tag = SERVICE_RESOURCES, SERVICE_TOPICS, SERVICE_TAG
        else:
            resources, topics, tag = SIMULATOR_RESOURCES, SIMULATOR_TOPICS, SIMULATOR_TAG
        doc["users"].append({"name": name, "password_hash": pw_hash,
                             "hashing_algorithm": HASHING, "tags": [tag]})
        doc["permissions"].append({"user": name, "vhost": VHOST, **resources})
        doc["topic_permissions"].append({"user": name, "vhost": VHOST,
                                         "exchange": SOURCE_EXCHANGE, **topics})
    return doc


def previous_hashes(path: Path) -> dict[str, str]:
    """User -> password hash in an earlier definitions file (to keep unchanged hashes)."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {u["name"]: u["password_hash"] for u in doc.get("users", [])
            if isinstance(u, dict) and "name" in u and "password_hash" in u}


def hash_for(user: str, password: str, previous: Mapping[str, str]) -> str:
    """The previous hash when it still matches ``password`` (an unchanged registry gives an
    unchanged file), else a new one."""
    old = previous.get(user)
    if old is not None and verify_rabbitmq_hash(password, old):
        return old
    return rabbitmq_hash(password)


def render(doc: Mapping[str, Any]) -> str:
    """Stable JSON text of a definitions document."""
    return json.dumps(doc, indent=1, sort_keys=True) + "\n"


def apply(node: Any, path: Path, remove_guest: bool = True) -> None:
    """Apply a definitions file to a running node (``EmbeddedRabbitMQ``): import it, then
    delete the device users it no longer lists (a device removed from the registry) and
    RabbitMQ's default ``guest`` user (full rights, a well-known password)."""
    node.ctl("import_definitions", str(Path(path).resolve()))
    wanted = {u["name"] for u in json.loads(Path(path).read_text())["users"]}
    listed = json.loads(node.ctl("list_users", "--formatter", "json", "-q") or "[]")
    for user in listed:
        stale = DEVICE_TAG in (user.get("tags") or []) and user["user"] not in wanted
        if stale or (remove_guest and user["user"] == "guest" and "guest" not in wanted):
            node.ctl("delete_user", user["user"])
