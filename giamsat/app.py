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
from giamsat.brokerconfig import EmbeddedBrokerAuth, embedded_broker_auth
from giamsat.services import EmbeddedMosquitto, EmbeddedPostgres, ServiceError, port_is_free
from giamsat.supervisor import SUPERVISOR_ENV
from schema import connect, migrate

log = logging.getLogger("giamsat.up")
DB_NAME = "giamsat"


def _pg_dir(settings: Settings) -> Path:
    return settings.data_dir / "postgres"


def _ensure_database(server_url: str) -> str:
    """Create the ``giamsat`` database in an embedded cluster; return its URL."""
    with psycopg.connect(server_url, autocommit=True) as admin:
        if admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB_NAME,)).fetchone() \
                is None:
            admin.execute(f'CREATE DATABASE "{DB_NAME}"')
    return server_url.rsplit("/", 1)[0] + "/" + DB_NAME


def _embedded_pg_running(settings: Settings) -> bool:
    """True when our own embedded PostgreSQL (from a running ``giamsat up``) holds the port."""
    pid_file = _pg_dir(settings) / "postmaster.pid"
    if port_is_free(settings.embedded_pg_port) or not pid_file.exists():
        return False
    lines = pid_file.read_text().splitlines()
    return len(lines) > 3 and lines[3].strip() == str(settings.embedded_pg_port)


@contextlib.contextmanager
def database_url(settings: Settings) -> Iterator[str]:
    """The configured database, or the embedded one (started for the duration if needed)."""
    if settings.database_url:
        yield settings.database_url
        return
    pg = EmbeddedPostgres(_pg_dir(settings), settings.embedded_pg_port)
    if _embedded_pg_running(settings):
        yield _ensure_database(pg.url)
        return
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
    mqtt: EmbeddedMosquitto | None = None
    broker_auth: EmbeddedBrokerAuth | None = None  # the embedded broker's logins and files
    children: list[Child] = field(default_factory=list)

    def stop(self) -> None:
        for child in reversed(self.children):
            child.stop()
        if self.mqtt is not None:
            self.mqtt.stop()
        if self.pg is not None:
            self.pg.stop()


def _start_services(settings: Settings, stack: Stack) -> tuple[str, str, str]:
    """Resolve (database URL, service MQTT URL, simulator MQTT URL), starting embedded services
    where none is configured. The embedded broker admits only the logins and devices that
    ``giamsat.brokerconfig`` writes from the registry (contract §1)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if settings.database_url:
        db_url = settings.database_url
    else:
        stack.pg = EmbeddedPostgres(_pg_dir(settings), settings.embedded_pg_port)
        db_url = _ensure_database(stack.pg.start())
    if settings.mqtt_url:
        return db_url, settings.mqtt_url, settings.mqtt_url
    auth = embedded_broker_auth(settings.data_dir, settings.mqtt_username, settings.mqtt_password)
    with connect(db_url) as conn:
        migrate(conn)  # device_credentials
        auth.sync(conn)
    stack.broker_auth = auth
    stack.mqtt = EmbeddedMosquitto(settings.data_dir / "mosquitto", settings.embedded_mqtt_port,
                                   auth_lines=auth.auth_lines())
    stack.mqtt.start()
    port = settings.embedded_mqtt_port
    return db_url, auth.service.url("127.0.0.1", port), auth.simulator.url("127.0.0.1", port)


def _sync_broker(stack: Stack, db_url: str) -> None:
    """After a registry change (demo import, `giamsat import`): rewrite the embedded broker's
    password file and ACL and make it re-read them (SIGHUP)."""
    if stack.broker_auth is None or stack.mqtt is None:
        return
    try:
        with connect(db_url) as conn:
            if stack.broker_auth.sync(conn):
                stack.mqtt.reload()
                log.info("broker credentials updated from the registry")
    except psycopg.Error as exc:  # the database may be restarting: try again next round
        log.warning("broker credentials not updated: %s", exc)


def _child_env(settings: Settings, db_url: str, mqtt_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(GIAMSAT_DATABASE_URL=db_url, GIAMSAT_MQTT_URL=mqtt_url,
               GIAMSAT_SECRET_KEY=secret_key(settings),
               GIAMSAT_DATA_DIR=str(settings.data_dir.resolve()))
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

    from giamsat.demo import create_demo_officers
    from giamsat.importer import import_document
    from simulators.demo import build_demo_document

    doc = build_demo_document()
    summary = import_document(conn, doc)
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
               "--mqtt-url", sim_url, "--scenario", "normal,exit,enter_ban",
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
    try:
        db_url, mqtt_url, sim_url = _start_services(settings, stack)
        demo_file = _prepare_database(settings, db_url, demo)
        _sync_broker(stack, db_url)  # the demo registry's devices
        env = _child_env(settings, db_url, mqtt_url)
        stack.children = _children(settings, env, demo_file, simulate, devices, sim_url)
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
