"""The composition root: ``giamsat up`` starts (or finds) the services, prepares the database,
and runs the pipeline (``giamsat worker``), the API and, with ``--demo``, a simulated fleet as
child processes, restarting a child that dies and stopping everything on Ctrl-C / SIGTERM /
SIGHUP: the simulator first, then the API, then the worker (which stores what it was given),
then the embedded services.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from config import Settings
from embedded.brokerconfig import EmbeddedBrokerAuth, embedded_broker_auth
from embedded.services import (
    EmbeddedMosquitto,
    EmbeddedPostgres,
    EmbeddedRabbitMQ,
    ServiceError,
    choose_port,
    explicit_setting,
    pg_data_dir,
    port_is_free,
    record_port,
)
from giamsat.supervisor import SUPERVISOR_ENV
from schema import connect, migrate

log = logging.getLogger("giamsat.up")
DB_NAME = "giamsat"


def _pg_dir(settings: Settings) -> Path:
    return pg_data_dir(settings.data_dir, explicit="data_dir" in settings.model_fields_set)


def _pg_port(settings: Settings) -> int:
    return choose_port(settings.embedded_pg_port, "GIAMSAT_EMBEDDED_PG_PORT",
                       explicit_setting(settings, "embedded_pg_port"), "the embedded PostgreSQL")


def _announce(service: str, port: int, default: int) -> None:
    """Say where an embedded service listens when it is not its default port."""
    if port != default:
        print(f"  {service} listens on 127.0.0.1:{port} ({default} is taken)", flush=True)


def _ensure_database(server_url: str) -> str:
    """Create the ``giamsat`` database in an embedded cluster; return its URL."""
    with psycopg.connect(server_url, autocommit=True) as admin:
        if admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB_NAME,)).fetchone() \
                is None:
            admin.execute(f'CREATE DATABASE "{DB_NAME}"')
    return server_url.rsplit("/", 1)[0] + "/" + DB_NAME


def _embedded_pg_running(pg_dir: Path) -> int | None:
    """The port of our own embedded PostgreSQL when one (from a running ``giamsat up``) serves
    ``pg_dir``: its ``postmaster.pid`` names the port (line 4), which must be in use."""
    try:
        lines = (pg_dir / "postmaster.pid").read_text().splitlines()
    except OSError:
        return None
    if len(lines) <= 3 or not lines[3].strip().isdigit():
        return None
    port = int(lines[3])
    return None if port_is_free(port) else port


@contextlib.contextmanager
def database_url(settings: Settings) -> Iterator[str]:
    """The configured database, or the embedded one (started for the duration if needed)."""
    if settings.database_url:
        yield settings.database_url
        return
    pg_dir = _pg_dir(settings)
    running = _embedded_pg_running(pg_dir)
    if running is not None:
        yield _ensure_database(EmbeddedPostgres(pg_dir, running).url)
        return
    pg = EmbeddedPostgres(pg_dir, _pg_port(settings), bindir=settings.pg_bindir)
    pg.start()
    try:
        yield _ensure_database(pg.url)
    finally:
        pg.stop()


@contextlib.contextmanager
def open_database(settings: Settings) -> Iterator[psycopg.Connection]:
    """A migrated connection to the service's database (for one-shot commands)."""
    with database_url(settings) as url, connect(url) as conn:
        migrate(conn)
        yield conn


def secret_key(settings: Settings) -> str:
    """The API token signing key: from settings, else generated once into data_dir."""
    if settings.secret_key:
        return settings.secret_key
    path = settings.data_dir / "secret_key"
    if not path.exists():
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


@dataclass
class Child:
    """A supervised child process, restarted with backoff when it dies."""

    name: str
    argv: list[str]
    env: dict[str, str]
    proc: subprocess.Popen | None = None
    restarts: int = 0
    started_at: float = 0.0
    restart_at: float | None = None

    def start(self) -> None:
        # Its own process group: a terminal's Ctrl-C reaches ``up`` alone, which then stops the
        # children in order (the simulator before the worker, so that the worker stores what
        # the simulator published). It dies with ``up``, even when ``up`` is killed -9
        # (giamsat.supervisor).
        env = {**self.env, SUPERVISOR_ENV: str(os.getpid())}
        self.proc = subprocess.Popen(self.argv, env=env, process_group=0)
        self.started_at = time.monotonic()
        log.info("started %s (pid %d)", self.name, self.proc.pid)

    def check(self) -> None:
        """Restart the child when it has died, after a backoff that never blocks the caller."""
        if self.proc is None or self.proc.poll() is None:
            return
        now = time.monotonic()
        if self.restart_at is None:
            if now - self.started_at > 60:
                self.restarts = 0  # it ran a while: a fresh failure, not a crash loop
            delay = min(30.0, 2.0 ** self.restarts)
            self.restarts += 1
            self.restart_at = now + delay
            log.warning("%s exited with code %s; restarting in %.0f s", self.name,
                        self.proc.returncode, delay)
        elif now >= self.restart_at:
            self.restart_at = None
            self.start()

    def stop(self, timeout_s: float = 20.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in %.0f s; killing it", self.name, timeout_s)
            self.proc.kill()
            self.proc.wait(5)


@dataclass
class Stack:
    """Everything ``giamsat up`` started, stopped in reverse order."""

    pg: EmbeddedPostgres | None = None
    mqtt: EmbeddedMosquitto | EmbeddedRabbitMQ | None = None
    broker_auth: EmbeddedBrokerAuth | None = None  # the embedded broker's logins and files
    children: list[Child] = field(default_factory=list)
    broker_restart_at: float = 0.0

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
                _apply_rabbitmq(broker, self.broker_auth)
        except ServiceError as exc:
            log.error("the embedded broker did not restart: %s", exc)

UP_PID = "up.pid"


def _claim_data_dir(settings: Settings) -> Path:
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


def _start_services(settings: Settings, stack: Stack) -> Urls:
    """Resolve the URLs, starting embedded services where none is configured. The embedded
    broker admits only the logins and devices that ``embedded.brokerconfig`` writes from the
    registry (contract §1)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if settings.database_url:
        db_url = settings.database_url
    else:
        port = _pg_port(settings)
        stack.pg = EmbeddedPostgres(_pg_dir(settings), port, bindir=settings.pg_bindir)
        db_url = _ensure_database(stack.pg.start())
        record_port(settings.data_dir, "postgres", port)
        _announce("the embedded PostgreSQL", port, settings.embedded_pg_port)
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
        _announce("the embedded MQTT broker", port, settings.embedded_mqtt_port)
        return Urls(db_url, service, sim)
    amqp_port = choose_port(settings.embedded_amqp_port, "GIAMSAT_EMBEDDED_AMQP_PORT",
                            explicit_setting(settings, "embedded_amqp_port"),
                            "the embedded broker's AMQP listener")
    assert auth.files is not None and auth.files.definitions_file is not None
    broker = EmbeddedRabbitMQ(settings.data_dir / "rabbitmq", port, amqp_port,
                              definitions=auth.files.definitions_file)
    stack.mqtt = broker
    broker.start()  # its definitions (users, the service's queues) load before it listens
    _apply_rabbitmq(broker, auth)
    record_port(settings.data_dir, "mqtt", port)
    record_port(settings.data_dir, "amqp", broker.amqp_port)
    _announce("the embedded MQTT broker", port, settings.embedded_mqtt_port)
    _announce("the embedded broker's AMQP listener", broker.amqp_port, settings.embedded_amqp_port)
    return Urls(db_url, service, sim, auth.service.amqp_url("127.0.0.1", broker.amqp_port))


def _apply_rabbitmq(broker: EmbeddedRabbitMQ, auth: EmbeddedBrokerAuth) -> None:
    from embedded import rabbitconfig

    assert auth.files is not None and auth.files.definitions_file is not None
    rabbitconfig.apply(broker, auth.files.definitions_file)


def _sync_broker(stack: Stack, db_url: str) -> None:
    """After a registry change (demo import, `giamsat import`): rewrite the embedded broker's
    users and permissions and apply them (Mosquitto: SIGHUP; RabbitMQ: import)."""
    if stack.broker_auth is None or stack.mqtt is None:
        return
    try:
        with connect(db_url) as conn:
            if stack.broker_auth.sync(conn):
                if isinstance(stack.mqtt, EmbeddedRabbitMQ):
                    _apply_rabbitmq(stack.mqtt, stack.broker_auth)
                else:
                    stack.mqtt.reload()
                log.info("broker credentials updated from the registry")
    except psycopg.Error as exc:  # the database may be restarting: try again next round
        log.warning("broker credentials not updated: %s", exc)
    except ServiceError as exc:  # the broker may be restarting
        log.warning("broker credentials not applied: %s", exc)


def _child_env(settings: Settings, urls: Urls) -> dict[str, str]:
    env = dict(os.environ)
    env.update(GIAMSAT_DATABASE_URL=urls.db, GIAMSAT_MQTT_URL=urls.mqtt,
               GIAMSAT_SECRET_KEY=secret_key(settings),
               GIAMSAT_DATA_DIR=str(settings.data_dir.resolve()))
    if urls.amqp:
        env["GIAMSAT_AMQP_URL"] = urls.amqp
    return env


def _prepare_database(settings: Settings, db_url: str, demo: bool) -> Path | None:
    """Migrate, create the admin, and with --demo import the demo registry; return its file."""
    from api.officers import ensure_admin

    with connect(db_url) as conn:
        applied = migrate(conn)
        if applied:
            log.info("applied migrations: %s", ", ".join(applied))
        password = ensure_admin(conn, settings.admin_password)
        if password:
            print(f"\n  admin user created: admin / {password}\n", flush=True)
        if not demo:
            return None
        return _load_demo(conn, settings)


def _load_demo(conn: psycopg.Connection, settings: Settings) -> Path:
    import orjson

    from giamsat.demo import create_demo_officers, missing_part
    from registry.document import import_document
    from simulators.demo import build_demo_document

    doc = build_demo_document()
    summary = import_document(conn, missing_part(conn, doc))  # what users changed stays
    log.info("demo registry: %s", summary)
    path = settings.data_dir / "demo-registry.json"
    path.write_bytes(orjson.dumps(doc))
    officers = create_demo_officers(conn, doc, settings.data_dir)
    print("\n  Demo officers (username / password, unit):", flush=True)
    for user, password, unit in officers:
        print(f"    {user:<14} {password:<18} {unit}", flush=True)
    return path


def _children(settings: Settings, env: dict[str, str], demo_file: Path | None,
              simulate: bool, devices: int | None, sim_url: str) -> list[Child]:
    exe = [sys.executable, "-m", "giamsat"]
    kids = [Child("worker", [*exe, "worker"], env), Child("api", [*exe, "api"], env)]
    if demo_file is not None and simulate:
        sim = [*exe, "simulate", "--registry", str(demo_file), "--duration", "86400",
               "--mqtt-url", sim_url, "--scenario", "away,exit,enter_ban",
               "--quiet"]
        if devices:
            import orjson

            registered = len(orjson.loads(demo_file.read_bytes())["devices"])
            if devices > registered:
                # unregistered devices would only be dead-lettered
                log.warning("--devices %d: the demo registry has %d devices; simulating those",
                            devices, registered)
            sim += ["--devices", str(min(devices, registered))]
        kids.append(Child("simulator", sim, env))
    return kids


def _forget_worker_health(settings: Settings) -> None:
    from giamsat.observe import HEALTH_FILE

    (settings.data_dir / HEALTH_FILE).unlink(missing_ok=True)


def _wait_for_worker(settings: Settings, stopping: Callable[[], bool], started: list[Child],
                     timeout_s: float = 60.0) -> None:
    """Wait until the worker reports ready (the API's /readyz check): connected, with its
    broker session and subscription in place. On a first start there is no session yet, and a
    broker drops what is published before anyone subscribes, so the simulated fleet waits."""
    from giamsat.observe import HEALTH_FILE, worker_readiness

    not_ready = worker_readiness(settings.data_dir / HEALTH_FILE)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not stopping():
        if not_ready() is None:
            return
        for child in started:
            child.check()  # one that crashed while we wait is restarted as usual
        time.sleep(0.2)
    if not stopping():
        log.warning("the worker has not reported ready in %.0f s; starting the simulator anyway",
                    timeout_s)


def run_up(settings: Settings, demo: bool = False, simulate: bool = True,
           devices: int | None = None) -> int:
    """``giamsat up``: run until Ctrl-C or SIGTERM."""
    stack = Stack()
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):  # HUP: its terminal closed
        signal.signal(signum, on_signal)
    claim: Path | None = None
    try:
        claim = _claim_data_dir(settings)
        urls = _start_services(settings, stack)
        db_url = urls.db
        demo_file = _prepare_database(settings, db_url, demo)
        _sync_broker(stack, db_url)  # the demo registry's devices
        env = _child_env(settings, urls)
        stack.children = _children(settings, env, demo_file, simulate, devices, urls.simulator)
        _forget_worker_health(settings)  # a report of the last run must not count as ready
        for i, child in enumerate(stack.children):
            if child.name == "simulator":
                _wait_for_worker(settings, lambda: stopping, stack.children[:i])
                if stopping:
                    break
            child.start()
        host, port = settings.http_host_port()
        print(f"\n  giamsat is up: dashboard http://{host}:{port}/  (Ctrl-C to stop)\n",
              flush=True)
        next_sync = time.monotonic() + 5
        while not stopping:
            stack.check_broker()
            for child in stack.children:
                child.check()
            if time.monotonic() >= next_sync:
                _sync_broker(stack, db_url)
                next_sync = time.monotonic() + 5
            time.sleep(0.5)
        log.info("stopping")
        return 0
    except ServiceError as exc:
        print(f"giamsat up: {exc}", file=sys.stderr)
        return 2
    finally:
        stack.stop()
        if claim is not None:
            claim.unlink(missing_ok=True)


def run_api(settings: Settings) -> int:
    """``giamsat api``: the HTTP API and dashboard in this process."""
    from prometheus_client import CollectorRegistry

    from api.serve import run
    from giamsat.observe import HEALTH_FILE, WorkerMetrics, worker_readiness
    from giamsat.worker import service_mqtt_url

    registry = CollectorRegistry()
    registry.register(WorkerMetrics(f"http://127.0.0.1:{settings.worker_metrics_port}/metrics"))
    with database_url(settings) as url:
        run(settings, url, secret_key(settings), registry=registry,
            readiness=worker_readiness(settings.data_dir / HEALTH_FILE),
            mqtt_url=service_mqtt_url(settings))
    return 0
