"""The embedded services of ``giamsat up``: started where no URL is configured, restarted when
they die, and the embedded broker's logins kept in step with the device registry.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from config import Settings
from embedded.brokerconfig import EmbeddedBrokerAuth, embedded_broker_auth
from embedded.database import ensure_database, pg_dir, pg_port
from embedded.services import (
    EmbeddedMosquitto,
    EmbeddedPostgres,
    EmbeddedRabbitMQ,
    ServiceError,
    choose_port,
    explicit_setting,
    record_port,
)
from embedded.supervisor import Child
from schema import connect, migrate

log = logging.getLogger("giamsat.up")


def announce(service: str, port: int, default: int) -> None:
    """Say where an embedded service listens when it is not its default port."""
    if port != default:
        print(f"  {service} listens on 127.0.0.1:{port} ({default} is taken)", flush=True)


@dataclass
class Stack:
    """Everything ``giamsat up`` started, stopped in reverse order."""

    pg: EmbeddedPostgres | None = None
    mqtt: EmbeddedMosquitto | EmbeddedRabbitMQ | None = None
    broker_auth: EmbeddedBrokerAuth | None = None  # the embedded broker's logins and files
    children: list[Child] = field(default_factory=list)
    broker_restart_at: float = 0.0
    next_sync: float = 0.0  # monotonic s: when `tend` next syncs the broker's logins

    def stop(self) -> None:
        for child in reversed(self.children):
            child.stop()
        if self.mqtt is not None:
            self.mqtt.stop()
        if self.pg is not None:
            self.pg.stop()

    def check_broker(self) -> None:
        """Restart the embedded broker when it has died (a kill, a crash): devices and the
        worker reconnect by themselves. A durable broker restarts from what it stored."""
        broker = self.mqtt
        if broker is None or broker.proc is None or broker.proc.poll() is None:
            return
        if time.monotonic() < self.broker_restart_at:
            return
        log.warning("the embedded broker exited with code %s; restarting it",
                    broker.proc.returncode)
        self.broker_restart_at = time.monotonic() + 5
        try:
            broker.start()
            if isinstance(broker, EmbeddedRabbitMQ) and self.broker_auth is not None:
                apply_rabbitmq(broker, self.broker_auth)
        except ServiceError as exc:
            log.error("the embedded broker did not restart: %s", exc)

    def tend(self, db_url: str) -> None:
        """One round of ``giamsat up``'s loop: restart what died, and every 5 s bring the
        broker's logins in step with the registry."""
        self.check_broker()
        for child in self.children:
            child.check()
        if time.monotonic() >= self.next_sync:
            sync_broker(self, db_url)
            self.next_sync = time.monotonic() + 5


UP_PID = "up.pid"


def claim_data_dir(settings: Settings) -> Path:
    """Note that this ``giamsat up`` runs on the data directory; refuse when another still
    does (its embedded servers would be taken for leftovers of a killed start)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    path = settings.data_dir / UP_PID
    try:
        other = int(path.read_text().strip())
        cmdline = Path(f"/proc/{other}/cmdline").read_bytes()
    except (OSError, ValueError):
        other, cmdline = 0, b""
    if other and other != os.getpid() and b"giamsat" in cmdline and b"up" in cmdline:
        raise ServiceError(f"giamsat up (pid {other}) already runs with data directory "
                           f"{settings.data_dir.resolve()}: stop it first, or set another "
                           "GIAMSAT_DATA_DIR")
    path.write_text(f"{os.getpid()}\n")
    return path


@dataclass(frozen=True)
class Urls:
    """Where the service's parts connect: the database, the service's MQTT login (alerts,
    commands; ingest too without AMQP), the simulator's MQTT login, and the service's AMQP
    login when ingest reads the durable broker's quorum queues."""

    db: str
    mqtt: str
    simulator: str
    amqp: str | None = None


def start_services(settings: Settings, stack: Stack) -> Urls:
    """Resolve the URLs, starting embedded services where none is configured. The embedded
    broker admits only the logins and devices that ``embedded.brokerconfig`` writes from the
    registry (contract §1)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if settings.database_url:
        db_url = settings.database_url
    else:
        port = pg_port(settings)
        stack.pg = EmbeddedPostgres(pg_dir(settings), port, bindir=settings.pg_bindir)
        db_url = ensure_database(stack.pg.start())
        record_port(settings.data_dir, "postgres", port)
        announce("the embedded PostgreSQL", port, settings.embedded_pg_port)
    if settings.mqtt_url:
        return Urls(db_url, settings.mqtt_url, settings.mqtt_url, settings.amqp_url)
    auth = embedded_broker_auth(settings.data_dir, settings.mqtt_username, settings.mqtt_password)
    auth.shards = max(1, settings.workers)
    with connect(db_url) as conn:
        migrate(conn)  # device_credentials
        auth.sync(conn)
    stack.broker_auth = auth
    port = choose_port(settings.embedded_mqtt_port, "GIAMSAT_EMBEDDED_MQTT_PORT",
                       explicit_setting(settings, "embedded_mqtt_port"), "the embedded broker")
    service, sim = auth.service.url("127.0.0.1", port), auth.simulator.url("127.0.0.1", port)
    if settings.embedded_broker == "mosquitto":
        stack.mqtt = EmbeddedMosquitto(settings.data_dir / "mosquitto", port,
                                       auth_lines=auth.auth_lines())
        stack.mqtt.start()
        record_port(settings.data_dir, "mqtt", port)
        announce("the embedded MQTT broker", port, settings.embedded_mqtt_port)
        return Urls(db_url, service, sim)
    amqp_port = choose_port(settings.embedded_amqp_port, "GIAMSAT_EMBEDDED_AMQP_PORT",
                            explicit_setting(settings, "embedded_amqp_port"),
                            "the embedded broker's AMQP listener")
    assert auth.files is not None and auth.files.definitions_file is not None
    broker = EmbeddedRabbitMQ(settings.data_dir / "rabbitmq", port, amqp_port,
                              definitions=auth.files.definitions_file)
    stack.mqtt = broker
    broker.start()  # its definitions (users, the service's queues) load before it listens
    apply_rabbitmq(broker, auth)
    record_port(settings.data_dir, "mqtt", port)
    record_port(settings.data_dir, "amqp", broker.amqp_port)
    announce("the embedded MQTT broker", port, settings.embedded_mqtt_port)
    announce("the embedded broker's AMQP listener", broker.amqp_port, settings.embedded_amqp_port)
    return Urls(db_url, service, sim, auth.service.amqp_url("127.0.0.1", broker.amqp_port))


def apply_rabbitmq(broker: EmbeddedRabbitMQ, auth: EmbeddedBrokerAuth) -> None:
    from embedded import rabbitconfig

    assert auth.files is not None and auth.files.definitions_file is not None
    rabbitconfig.apply(broker, auth.files.definitions_file)


def sync_broker(stack: Stack, db_url: str) -> None:
    """After a registry change (demo import, `giamsat import`): rewrite the embedded broker's
    users and permissions and apply them (Mosquitto: SIGHUP; RabbitMQ: import)."""
    if stack.broker_auth is None or stack.mqtt is None:
        return
    try:
        with connect(db_url) as conn:
            if stack.broker_auth.sync(conn):
                if isinstance(stack.mqtt, EmbeddedRabbitMQ):
                    apply_rabbitmq(stack.mqtt, stack.broker_auth)
                else:
                    stack.mqtt.reload()
                log.info("broker credentials updated from the registry")
    except psycopg.Error as exc:  # the database may be restarting: try again next round
        log.warning("broker credentials not updated: %s", exc)
    except ServiceError as exc:  # the broker may be restarting
        log.warning("broker credentials not applied: %s", exc)
