"""Mosquitto password file and ACL from the device registry (``giamsat broker-config``).

Contract §1: a device connects with its ``device_id``, publishes only under its own
``em/v1/dev/{device_id}/`` and subscribes only to its own ``cmd`` topic; only the service reads
what devices publish. Mosquitto 2 enforces that with two files this module writes:

- a password file: one line per registered device (user = device id) plus the service user,
  each with Mosquitto's own PBKDF2-SHA512 hash (``$7$iterations$salt$hash``), computed here so
  no ``mosquitto_passwd`` is needed;
- an ACL: ``pattern`` lines that give every user exactly its own device topics (``%u`` is the
  authenticated username, so a device can name no other device), OwnTracks topics of each
  device, and the service user's read of every device and write of commands and alerts.
  Nothing else is granted to anyone; anonymous clients are refused (``allow_anonymous false``).

Device secrets, two ways:

- *issued* (production, the default): a random secret per device, made once when the device
  first appears in the registry; only its hash is stored (table ``device_credentials``) and the
  secret is handed to the operator once, in a 0600 CSV file or on standard output, to provision
  the device. ``--rotate DEVICE`` issues a new one (lost or compromised device).
- *derived* (``device_password_fn``): the secret is a function of the device id, e.g.
  HMAC(key, id) with :func:`derived_device_password`. The embedded broker of ``giamsat up``
  uses it for devices without an issued secret, so any local process holding the key in
  ``data_dir`` can connect as a registered device.

Besides the service user, an optional *simulator* user may publish as any device: the fleet
simulator and ``giamsat loadtest`` multiplex thousands of devices over a few connections. The
embedded broker has one; ``giamsat broker-config`` adds one only when asked.

Mosquitto re-reads both files on SIGHUP (``EmbeddedMosquitto.reload()``); rewriting them is
atomic (a temporary file renamed over the old one), so the broker never reads half a file.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import hmac
import io
import logging
import os
import re
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from protocol import (  # contract §1; the device-id rule also keeps %u free of + # /
    ALERT_TOPICS_ALL,
    DEVICE_ID_RE,
    DEVICE_TOPICS_ALL,
    DOWNLINK_KINDS,
    OWNTRACKS_ALL,
    UPLINK_KINDS,
    device_filter,
    owntracks_names,
    owntracks_topic,
)

if TYPE_CHECKING:
    import psycopg

    from config import Settings

log = logging.getLogger("embedded.brokerconfig")

SERVICE_USER_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
DEFAULT_SERVICE_USER = "giamsat"
DEFAULT_SIMULATOR_USER = "giamsat-sim"

# Mosquitto 2.x password hash: PBKDF2-HMAC-SHA512, 12-byte salt, 64-byte key, base64 (the
# `$7$` format of mosquitto_passwd; its default is 101 iterations). Device secrets are 192-bit
# random strings, so iterations add no strength to them and would only cost broker CPU on every
# connect (Mosquitto checks passwords on its single thread); the service password may be chosen
# by a person, so it gets more.
HASH_ID = "7"
SALT_BYTES = 12
DEVICE_ITERATIONS = 101
SERVICE_ITERATIONS = 20_000

DevicePasswordFn = Callable[[str], str]


@dataclass(frozen=True)
class Login:
    """An MQTT user name and password (the service's, or the fleet simulator's)."""

    user: str
    password: str = field(repr=False)

    def url(self, host: str, port: int) -> str:
        """``mqtt://user:password@host:port``, both parts percent-encoded."""
        from urllib.parse import quote

        return f"mqtt://{quote(self.user, safe='')}:{quote(self.password, safe='')}@{host}:{port}"

    def amqp_url(self, host: str, port: int) -> str:
        """``amqp://user:password@host:port/`` (the default virtual host ``/``)."""
        from urllib.parse import quote

        return f"amqp://{quote(self.user, safe='')}:{quote(self.password, safe='')}@{host}:{port}/"


class BrokerConfigError(ValueError):
    """The registry or the arguments cannot give a safe broker configuration."""


# --- hashes and secrets ---------------------------------------------------------------------

def mosquitto_hash(password: str, iterations: int = DEVICE_ITERATIONS,
                   salt: bytes | None = None) -> str:
    """The Mosquitto 2 password-file hash of ``password``: ``$7$iter$b64salt$b64hash``."""
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    key = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations)
    return f"${HASH_ID}${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(key).decode()}"


def verify_mosquitto_hash(password: str, encoded: str) -> bool:
    """True when ``encoded`` (a ``$7$`` hash) is the hash of ``password``."""
    parts = encoded.split("$")
    if len(parts) != 5 or parts[1] != HASH_ID or not parts[2].isdigit():
        return False
    try:
        salt, want = base64.b64decode(parts[3]), base64.b64decode(parts[4])
    except ValueError:
        return False
    got = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, int(parts[2]))
    return hmac.compare_digest(got, want)


def new_device_secret() -> str:
    """A random device secret: 24 bytes (192 bits), URL-safe base64, 32 characters."""
    return secrets.token_urlsafe(24)


def derived_device_password(key: bytes) -> DevicePasswordFn:
    """``device_id -> secret`` as base64url(HMAC-SHA256(key, device_id)), 43 characters.

    Whoever holds ``key`` can connect as every device: use it for the embedded, single-host
    broker (simulator, load test), not for a fleet in the field.
    """
    def password(device_id: str) -> str:
        mac = hmac.new(key, b"giamsat-mqtt-device\0" + device_id.encode(), hashlib.sha256)
        return base64.urlsafe_b64encode(mac.digest()).decode().rstrip("=")

    return password


def load_or_create_secret(path: Path) -> str:
    """The secret in ``path``, created (random, mode 0600) on first use."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(path, secrets.token_urlsafe(32) + "\n")
    return path.read_text().strip()


# --- the files ------------------------------------------------------------------------------

@dataclass
class BrokerAuthFiles:
    """What :func:`write_broker_config` wrote."""

    password_file: Path
    acl_file: Path
    device_passwords_path: Path | None = None  # CSV of newly issued secrets, if any was written
    issued: dict[str, str] = field(default_factory=dict, repr=False)  # device id -> new secret
    devices: int = 0
    changed: bool = False  # a file differs from before: the broker must reload (SIGHUP)
    definitions_file: Path | None = None  # RabbitMQ definitions (embedded.rabbitconfig)

    def auth_lines(self, service_port: int | None = None) -> str:
        """Mosquitto config lines that switch authentication on (``EmbeddedMosquitto``)."""
        return auth_lines(self.password_file, self.acl_file, service_port)


def auth_lines(password_file: Path, acl_file: Path, service_port: int | None = None) -> str:
    """``allow_anonymous false`` plus the password file and ACL, as mosquitto.conf lines.

    They follow the broker's (device) ``listener`` line. With ``service_port``, that listener
    also gets ``use_username_as_clientid true`` and a second loopback listener on
    ``service_port`` is opened for the service: a device can then no longer connect with
    another device's client id, which would disconnect that device and discard the commands
    queued in its persistent session (seen with Mosquitto 2.0.11). The service keeps a
    listener of its own because it runs several MQTT clients under one user, which
    ``use_username_as_clientid`` would make take each other over.
    """
    lines = ["allow_anonymous false",
             f"password_file {Path(password_file).resolve()}",
             f"acl_file {Path(acl_file).resolve()}"]
    if service_port is not None:
        lines += ["use_username_as_clientid true", f"listener {service_port} 127.0.0.1"]
    return "\n".join(lines)


def _owntracks_topics(device_id: str) -> list[str]:
    """OwnTracks bases ``owntracks/{user}/{device}`` that name this device (contract §1)."""
    return [owntracks_topic(user, dev) for user, dev in owntracks_names(device_id)]


_CMD = DOWNLINK_KINDS[0]
_ACL_HEAD = (
    "# giamsat broker ACL, written by `giamsat broker-config` from the device registry.",
    "# Do not edit: it is rewritten on every run. Contract §1.",
    "# No topic lines before the first `user` line: anonymous clients get nothing.",
    "",
    "# Every device (user = device id): publish its own messages, read its own commands.",
    *(f"pattern write {device_filter(kind, '%u')}" for kind in UPLINK_KINDS),
    f"pattern read {device_filter(_CMD, '%u')}",
)
_ACL_SERVICE = (
    "# The service: reads every device and OwnTracks client, sends commands, publishes and",
    "# reads alerts (the load test measures fix-to-alert latency), reads broker statistics.",
    f"topic read {DEVICE_TOPICS_ALL}",
    f"topic read {OWNTRACKS_ALL}",
    f"topic write {device_filter(_CMD)}",
    f"topic readwrite {ALERT_TOPICS_ALL}",
    "topic read $SYS/#",
)
_ACL_SIMULATOR = (
    "# The fleet simulator / load generator (test setups only): publishes as any device,",
    "# reads their commands and the alerts it provokes.",
    *(f"topic write {device_filter(kind)}" for kind in UPLINK_KINDS),
    f"topic read {device_filter(_CMD)}",
    f"topic write {OWNTRACKS_ALL}",
    f"topic read {ALERT_TOPICS_ALL}",
)


def acl_text(service_user: str, device_ids: Iterable[str],
             simulator_user: str | None = None) -> str:
    """The Mosquitto ACL: each device its own topics, the service what it needs, nobody else.

    ``pattern`` lines apply to every authenticated user, the service user included; with
    ``%u`` they can only ever name the connecting user's own topics. A device id can never be a
    wildcard (``DEVICE_ID_RE``) and never equal the service or simulator user (checked by the
    caller). ``simulator_user``, when given, may publish as any device: a load generator that
    multiplexes a whole fleet over a few connections (``giamsat loadtest``, ``simulate``).
    """
    lines = [*_ACL_HEAD, ""]
    for device_id in device_ids:
        bases = _owntracks_topics(device_id)
        if bases:
            lines.append(f"user {device_id}")
            for base in bases:
                lines += [f"topic write {base}/#", f"topic read {base}/cmd"]
    lines += ["", f"user {service_user}", *_ACL_SERVICE]
    if simulator_user is not None:
        lines += ["", f"user {simulator_user}", *_ACL_SIMULATOR]
    return "\n".join(lines) + "\n"


def _password_lines(entries: Sequence[tuple[str, str | None, int, str | None]],
                    previous: Mapping[str, str]) -> str:
    """Password-file text; entries are (user, password or None if hashed, iterations, hash).

    A user whose previous hash still matches the password keeps it, so an unchanged registry
    gives an unchanged file (no needless broker reload).
    """
    out = []
    for user, password, iterations, stored in entries:
        if stored is not None:
            encoded = stored
        elif user in previous and verify_mosquitto_hash(password or "", previous[user]):
            encoded = previous[user]
        else:
            encoded = mosquitto_hash(password or "", iterations)
        out.append(f"{user}:{encoded}")
    return "\n".join(out) + "\n"


def _read_password_file(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    pairs = (line.split(":", 1) for line in path.read_text().splitlines() if ":" in line)
    return {user: encoded for user, encoded in pairs}


def _atomic_write(path: Path, text: str, owner: tuple[int, int] | None = None) -> bool:
    """Write ``text`` to ``path`` (mode 0600) by rename; return True if the content changed."""
    if path.exists() and path.read_text() == text:
        if owner is not None:
            os.chown(path, *owner)
        return False
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        if owner is not None:
            os.chown(tmp, *owner)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return True


# --- the registry ---------------------------------------------------------------------------

def _device_rows(conn: psycopg.Connection) -> list[tuple[str, str | None]]:
    """(device id, stored hash or None) for every registered device, by id."""
    return conn.execute(
        "SELECT d.id, c.password_hash FROM devices d "
        "LEFT JOIN device_credentials c ON c.device_id = d.id ORDER BY d.id").fetchall()


def _check_ids(rows: Sequence[tuple[str, str | None]], logins: Sequence[Login]) -> None:
    users = [login.user for login in logins]
    for user in users:
        if not SERVICE_USER_RE.match(user):
            raise BrokerConfigError(f"service user {user!r} must match {SERVICE_USER_RE.pattern}")
    if len(set(users)) != len(users):
        raise BrokerConfigError("the service and simulator users must differ")
    for device_id, _ in rows:
        if not DEVICE_ID_RE.fullmatch(device_id):
            raise BrokerConfigError(f"device id {device_id!r} is not a valid MQTT user name")
        if device_id in users:
            # the device would get the service's rights: refuse rather than guess
            raise BrokerConfigError(
                f"device id {device_id!r} equals the service user {device_id!r}: choose another "
                "--service-user")


def _issue(conn: psycopg.Connection, device_ids: Sequence[str]) -> dict[str, str]:
    """Store new secrets' hashes for these devices; return the secrets this call issued.

    ON CONFLICT DO NOTHING: a concurrent run that issued first wins, and its secret stays.
    """
    if not device_ids:
        return {}
    from embedded.rabbitconfig import rabbitmq_hash

    fresh = {d: new_device_secret() for d in device_ids}
    hashes = [mosquitto_hash(fresh[d], DEVICE_ITERATIONS) for d in device_ids]
    rabbit = [rabbitmq_hash(fresh[d]) for d in device_ids]
    rows = conn.execute(
        "INSERT INTO device_credentials (device_id, password_hash, rabbitmq_hash) "
        "SELECT * FROM unnest(%s::text[], %s::text[], %s::text[]) "
        "ON CONFLICT (device_id) DO NOTHING RETURNING device_id",
        (list(device_ids), hashes, rabbit)).fetchall()
    return {r[0]: fresh[r[0]] for r in rows}


def _rotate(conn: psycopg.Connection, device_ids: Sequence[str]) -> None:
    if not device_ids:
        return
    known = {r[0] for r in conn.execute(
        "SELECT id FROM devices WHERE id = ANY(%s)", (list(device_ids),))}
    missing = sorted(set(device_ids) - known)
    if missing:
        raise BrokerConfigError(f"cannot rotate unregistered device(s): {', '.join(missing)}")
    conn.execute("DELETE FROM device_credentials WHERE device_id = ANY(%s)", (list(device_ids),))


def secrets_csv(issued: Mapping[str, str]) -> str:
    """``device_id,username,password`` lines (username = device id), with a header."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["device_id", "mqtt_username", "mqtt_password"])
    for device_id in sorted(issued):
        w.writerow([device_id, device_id, issued[device_id]])
    return buf.getvalue()


def write_broker_config(conn: psycopg.Connection, out_dir: Path, service_user: str,
                        service_password: str,
                        device_password_fn: DevicePasswordFn | None = None, *,
                        secrets_dir: Path | None = None, write_secrets: bool = True,
                        rotate: Sequence[str] = (),
                        owner: tuple[int, int] | None = None,
                        simulator: Login | None = None, shards: int = 1) -> BrokerAuthFiles:
    """Write ``out_dir/passwd`` and ``out_dir/acl`` (Mosquitto) and ``out_dir/definitions.json``
    (RabbitMQ users, permissions and the service's ``shards`` quorum queues,
    ``embedded.rabbitconfig``) from the ``devices`` table.

    Each device's password is its issued secret when it has one; otherwise
    ``device_password_fn(id)`` when given; otherwise a secret is issued now: its hash is stored
    and the secret returned in ``issued`` and, with ``write_secrets``, written to a 0600 CSV in
    ``secrets_dir`` (default ``out_dir``) before the transaction commits, so a secret is never
    stored without having been handed over. ``rotate`` names devices to issue new secrets to.
    ``owner`` (uid, gid) gives the files to the broker's account. ``simulator`` adds a user
    that may publish as any device (load tests only, see :func:`acl_text`). Commits ``conn``.
    """
    logins = [Login(service_user, service_password)] + ([simulator] if simulator else [])
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _check_ids([], logins)
    try:
        # one transaction even on an autocommit connection: a stored hash implies its secret
        # was handed over (the CSV is written before the commit)
        with conn.transaction():
            _rotate(conn, rotate)
            rows = _device_rows(conn)
            _check_ids(rows, logins)
            unhashed = [d for d, h in rows if h is None]
            issued = _issue(conn, unhashed if device_password_fn is None else
                            [d for d in unhashed if d in set(rotate)])
            secrets_path = None
            if issued and write_secrets:
                secrets_path = _write_secrets(Path(secrets_dir or out_dir), issued)
        rows = _device_rows(conn)
        rabbit: dict[str, str] = dict(conn.execute(
            "SELECT device_id, rabbitmq_hash FROM device_credentials "
            "WHERE rabbitmq_hash IS NOT NULL").fetchall())
        if not conn.autocommit:
            conn.commit()
    except BaseException:
        conn.rollback()
        raise
    files = _write_files(out_dir, logins, device_password_fn, rows, issued, secrets_path, owner)
    files.definitions_file = out_dir / "definitions.json"
    if _write_definitions(files.definitions_file, logins, device_password_fn, rows, rabbit,
                          shards, owner):
        files.changed = True
    return files


def _write_definitions(path: Path, logins: Sequence[Login],
                       device_password_fn: DevicePasswordFn | None,
                       rows: Sequence[tuple[str, str | None]], rabbit: Mapping[str, str],
                       shards: int, owner: tuple[int, int] | None) -> bool:
    """The RabbitMQ definitions (``embedded.rabbitconfig``) beside the Mosquitto files; True
    when the file changed."""
    from embedded.rabbitconfig import definitions, hash_for, previous_hashes, render

    previous = previous_hashes(path)
    users = [(login.user, "service" if i == 0 else "simulator",
              hash_for(login.user, login.password, previous)) for i, login in enumerate(logins)]
    for device_id, stored in rows:
        if device_id in rabbit:
            users.append((device_id, "device", rabbit[device_id]))
        elif stored is None and device_password_fn is not None:
            users.append((device_id, "device",
                          hash_for(device_id, device_password_fn(device_id), previous)))
        elif stored is not None:
            log.warning("device %s has a secret issued before RabbitMQ hashes were kept: rotate "
                        "it (--rotate) to let it log in to RabbitMQ", device_id)
    return _atomic_write(path, render(definitions(users, shards)), owner)


def _write_secrets(secrets_dir: Path, issued: Mapping[str, str]) -> Path:
    secrets_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    path = secrets_dir / f"device-secrets-{stamp}.csv"
    _atomic_write(path, secrets_csv(issued))
    log.info("issued MQTT secrets to %d device(s): %s", len(issued), path)
    return path


def _write_files(out_dir: Path, logins: Sequence[Login],
                 device_password_fn: DevicePasswordFn | None,
                 rows: Sequence[tuple[str, str | None]], issued: dict[str, str],
                 secrets_path: Path | None, owner: tuple[int, int] | None) -> BrokerAuthFiles:
    password_file, acl_file = out_dir / "passwd", out_dir / "acl"
    entries: list[tuple[str, str | None, int, str | None]] = [
        (login.user, login.password, SERVICE_ITERATIONS, None) for login in logins]
    for device_id, stored in rows:
        if stored is None and device_password_fn is None:
            # registered after this run issued secrets: the next run issues its secret
            log.warning("device %s has no MQTT secret yet; run broker-config again", device_id)
            continue
        password = device_password_fn(device_id) if stored is None else None  # type: ignore[misc]
        entries.append((device_id, password, DEVICE_ITERATIONS, stored))
    text = _password_lines(entries, _read_password_file(password_file))
    changed = _atomic_write(password_file, text, owner)
    devices = [e[0] for e in entries[len(logins):]]
    acl = acl_text(logins[0].user, devices, logins[1].user if len(logins) > 1 else None)
    changed = _atomic_write(acl_file, acl, owner) or changed
    log.info("broker auth for %d device(s) in %s%s", len(devices), out_dir,
             " (changed)" if changed else "")
    return BrokerAuthFiles(password_file, acl_file, secrets_path, issued, len(devices), changed)


# --- the embedded broker (giamsat up) -------------------------------------------------------

_FINGERPRINT_SQL = (
    "SELECT (SELECT version FROM registry_version), count(*), max(registered_at), "
    "(SELECT count(*) FROM device_credentials), (SELECT max(issued_at) FROM device_credentials) "
    "FROM devices")


@dataclass
class EmbeddedBrokerAuth:
    """Authentication of ``giamsat up``'s own broker: files, logins, device secrets."""

    out_dir: Path
    service: Login
    simulator: Login
    device_password: DevicePasswordFn = field(repr=False)
    files: BrokerAuthFiles | None = None
    fingerprint: tuple | None = None  # of the registry, as of the last sync()
    shards: int = 1  # the service's quorum queues (RabbitMQ definitions)

    def refresh(self, conn: psycopg.Connection) -> bool:
        """Rewrite the files from the registry; True when the broker must reload (SIGHUP)."""
        self.files = write_broker_config(conn, self.out_dir, self.service.user,
                                         self.service.password, self.device_password,
                                         simulator=self.simulator, shards=self.shards)
        return self.files.changed

    def sync(self, conn: psycopg.Connection) -> bool:
        """:meth:`refresh` only when the registry's fingerprint moved since the last call, so
        it is cheap to poll (a rewrite checks one hash per device); True when the broker must
        reload. The fingerprint also sees devices added without bumping ``registry_version``
        and credentials issued or rotated by ``giamsat broker-config``."""
        fingerprint = conn.execute(_FINGERPRINT_SQL).fetchone()
        if fingerprint is not None and fingerprint == self.fingerprint:
            return False
        changed = self.refresh(conn)
        self.fingerprint = fingerprint
        return changed

    def auth_lines(self, service_port: int | None = None) -> str:
        """Lines for ``EmbeddedMosquitto(auth_lines=...)``; see :func:`auth_lines`."""
        return auth_lines(self.out_dir / "passwd", self.out_dir / "acl", service_port)


def embedded_broker_auth(data_dir: Path, service_user: str | None = None,
                         service_password: str | None = None) -> EmbeddedBrokerAuth:
    """The embedded broker's credentials in ``data_dir/broker`` (created once, mode 0600).

    The service logs in as ``service_user`` (default ``giamsat``) with ``service_password`` or
    a random one kept in ``service.secret``; the fleet simulator and load test as
    ``giamsat-sim`` with ``simulator.secret``; a device without an issued secret with
    HMAC(``device.key``, id). Any process with the same ``data_dir`` finds them here.
    """
    out = Path(data_dir) / "broker"
    service = Login(service_user or DEFAULT_SERVICE_USER,
                    service_password or load_or_create_secret(out / "service.secret"))
    simulator = Login(DEFAULT_SIMULATOR_USER, load_or_create_secret(out / "simulator.secret"))
    key = load_or_create_secret(out / "device.key").encode()
    return EmbeddedBrokerAuth(out, service, simulator, derived_device_password(key))


def embedded_login_url(settings: Settings, role: str) -> str:
    """The embedded broker's URL with the ``service`` or ``simulator`` login, for a process
    started without ``GIAMSAT_MQTT_URL`` (the same data_dir finds the same secrets, and the
    port ``giamsat up`` chose)."""
    from embedded.services import embedded_port

    auth = embedded_broker_auth(settings.data_dir, settings.mqtt_username, settings.mqtt_password)
    login = auth.service if role == "service" else auth.simulator
    return login.url("127.0.0.1", embedded_port(settings, "mqtt", "embedded_mqtt_port"))


def embedded_amqp_url(settings: Settings) -> str | None:
    """The service's AMQP URL of the embedded RabbitMQ (None for an embedded Mosquitto), for a
    process started without ``GIAMSAT_MQTT_URL``."""
    if settings.embedded_broker != "rabbitmq":
        return None
    auth = embedded_broker_auth(settings.data_dir, settings.mqtt_username, settings.mqtt_password)
    return auth.service.amqp_url("127.0.0.1", settings.embedded_amqp_port)


def service_mqtt_url(settings: Settings) -> str:
    """The service's broker URL: ``GIAMSAT_MQTT_URL``, else the embedded broker's service login
    (the worker ingests with it, the API publishes commands with it)."""
    if settings.mqtt_url:
        return settings.mqtt_url
    return embedded_login_url(settings, "service")


def service_amqp_url(settings: Settings) -> str | None:
    """AMQP ingest: the configured RabbitMQ, or the embedded one when no broker is configured."""
    if settings.amqp_url or settings.mqtt_url:
        return settings.amqp_url
    return embedded_amqp_url(settings)
