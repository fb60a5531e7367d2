"""The composition root: ``giamsat up`` starts (or finds) the services, prepares the database,
and runs the pipeline (``giamsat worker``), the API and, with ``--demo``, a simulated fleet as
child processes, restarting a child that dies and stopping everything on Ctrl-C / SIGTERM /
SIGHUP: the simulator first, then the API, then the worker (which stores what it was given),
then the embedded services (``embedded.stack``).
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

from config import Settings
from embedded.database import database_url
from embedded.services import ServiceError
from embedded.stack import Stack, Urls, claim_data_dir, start_services, sync_broker
from embedded.supervisor import Child
from schema import connect, migrate

log = logging.getLogger("giamsat.up")


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

    from api.officers import create_demo_officers
    from registry.document import import_document
    from simulators.demo import build_demo_document, missing_part

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
        claim = claim_data_dir(settings)
        urls = start_services(settings, stack)
        db_url = urls.db
        demo_file = _prepare_database(settings, db_url, demo)
        sync_broker(stack, db_url)  # the demo registry's devices
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
        stack.next_sync = time.monotonic() + 5
        while not stopping:
            stack.tend(db_url)
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
    from embedded.brokerconfig import service_mqtt_url
    from giamsat.observe import HEALTH_FILE, WorkerMetrics, worker_readiness

    registry = CollectorRegistry()
    registry.register(WorkerMetrics(f"http://127.0.0.1:{settings.worker_metrics_port}/metrics"))
    with database_url(settings) as url:
        run(settings, url, secret_key(settings), registry=registry,
            readiness=worker_readiness(settings.data_dir / HEALTH_FILE),
            mqtt_url=service_mqtt_url(settings))
    return 0
