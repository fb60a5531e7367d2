"""Shared fixtures: a real PostgreSQL and a real Mosquitto, started by the suite itself.

Set ``GIAMSAT_TEST_DATABASE_URL`` (a server URL; each test gets its own database on it) or
``GIAMSAT_TEST_MQTT_URL`` to use running servers instead. Each test that asks for ``db_url``
gets a fresh database cloned from a migrated template.

The TimescaleDB path (``timescale_server``) needs a server with the extension: set
``GIAMSAT_TEST_PG_BINDIR`` to the ``bin`` directory of a PostgreSQL tree that has it (a private
build: ``deploy/timescaledb/build-private.sh``) and the suite runs one from there, or
``GIAMSAT_TEST_TIMESCALE_URL`` to a running one; without either those tests skip, saying so.
``GIAMSAT_TEST_PG_BINDIR_ROW_LOSING`` may name a tree with a TimescaleDB release known to lose
rows (e.g. 2.17.2), to check that giamsat refuses it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from embedded.services import (
    EmbeddedMosquitto,
    EmbeddedPostgres,
    EmbeddedRabbitMQ,
    free_port,
    has_timescale_library,
)
from schema import connect, migrate

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data" / "vn"


def with_database(url: str, dbname: str) -> str:
    """The same server URL pointing at another database."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + dbname, parts.query, parts.fragment))


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory) -> Iterator[str]:
    """URL of a PostgreSQL server's maintenance database."""
    url = os.environ.get("GIAMSAT_TEST_DATABASE_URL")
    if url:
        yield url
        return
    # PostgreSQL runs as an unprivileged account when the suite runs as root: its directory
    # must be traversable, which pytest's 0700 tmp dirs are not.
    base = Path(tempfile.mkdtemp(prefix="giamsat-test-pg-"))
    base.chmod(0o755)
    pg = EmbeddedPostgres(base / "data", free_port())
    yield pg.start()
    pg.stop()
    shutil.rmtree(base, ignore_errors=True)


def _private_postgres(bindir: str) -> Iterator[str]:
    """A PostgreSQL server run from ``bindir`` (preloading TimescaleDB), on a free port."""
    base = Path(tempfile.mkdtemp(prefix="giamsat-test-ts-"))
    base.chmod(0o755)
    pg = EmbeddedPostgres(base / "data", free_port(), bindir=Path(bindir))
    try:
        yield pg.start()
    finally:
        pg.stop()
        shutil.rmtree(base, ignore_errors=True)


def _timescale_bindir(variable: str) -> str:
    bindir = os.environ.get(variable)
    if not bindir:
        pytest.skip(f"TimescaleDB path not tested: set {variable} to the bin directory of a "
                    "PostgreSQL tree with TimescaleDB (deploy/timescaledb/build-private.sh)")
    if not has_timescale_library(Path(bindir)):
        pytest.skip(f"{variable}={bindir}: no timescaledb library in that PostgreSQL tree")
    return bindir


@pytest.fixture(scope="session")
def timescale_server() -> Iterator[str]:
    """URL of the maintenance database of a PostgreSQL server with TimescaleDB (skips when
    none is configured: see the module docstring)."""
    url = os.environ.get("GIAMSAT_TEST_TIMESCALE_URL")
    if url:
        yield url
        return
    yield from _private_postgres(_timescale_bindir("GIAMSAT_TEST_PG_BINDIR"))


@pytest.fixture(scope="session")
def row_losing_timescale_server() -> Iterator[str]:
    """A server whose TimescaleDB release is known to lose rows (GIAMSAT_TEST_PG_BINDIR_ROW_LOSING)."""
    yield from _private_postgres(_timescale_bindir("GIAMSAT_TEST_PG_BINDIR_ROW_LOSING"))


@dataclass
class Broker:
    url: str
    host: str
    port: int


@pytest.fixture(scope="session")
def mqtt_broker(tmp_path_factory) -> Iterator[Broker]:
    """A Mosquitto broker configured as the embedded one (never drops queued messages)."""
    url = os.environ.get("GIAMSAT_TEST_MQTT_URL")
    if url:
        parts = urlsplit(url)
        yield Broker(url, parts.hostname or "127.0.0.1", parts.port or 1883)
        return
    mq = EmbeddedMosquitto(tmp_path_factory.mktemp("mqtt"), free_port())
    yield Broker(mq.start(), "127.0.0.1", mq.port)
    mq.stop()


@dataclass
class RabbitVhost:
    """One test's virtual host on the session's RabbitMQ: its own queues and exchanges. MQTT
    clients reach it with the user name ``vhost:user`` (the MQTT plugin's convention)."""

    node: EmbeddedRabbitMQ
    name: str
    user: str = "guest"
    password: str = "guest"
    host: str = "127.0.0.1"

    @property
    def port(self) -> int:
        return self.node.mqtt_port

    @property
    def mqtt_username(self) -> str:
        return f"{self.name}:{self.user}"

    @property
    def url(self) -> str:
        """The MQTT URL of this vhost (alerts, commands, publishers)."""
        return f"mqtt://{self.name}%3A{self.user}:{self.password}@{self.host}:{self.port}"

    @property
    def amqp_url(self) -> str:
        return f"amqp://{self.user}:{self.password}@{self.host}:{self.node.amqp_port}/{self.name}"


@pytest.fixture(scope="session")
def rabbitmq_node(tmp_path_factory) -> Iterator[EmbeddedRabbitMQ]:
    """One RabbitMQ node (MQTT plugin, quorum queues) for the session, user guest/guest."""
    node = EmbeddedRabbitMQ(tmp_path_factory.mktemp("rabbitmq"), free_port(), free_port(),
                            dist_port=free_port())
    node.start()
    yield node
    node.stop()


@pytest.fixture
def rabbitmq(rabbitmq_node: EmbeddedRabbitMQ, unique_id: str) -> Iterator[RabbitVhost]:
    """A fresh virtual host of this test's own on the session's RabbitMQ (deleted after)."""
    name = f"t-{unique_id}"
    rabbitmq_node.ctl("add_vhost", name)
    rabbitmq_node.ctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    yield RabbitVhost(rabbitmq_node, name)
    rabbitmq_node.ctl("delete_vhost", name)


@pytest.fixture(scope="session")
def template_db(pg_server: str) -> Iterator[str]:
    """Name of a database with every migration applied, cloned for each test."""
    name = f"giamsat_tmpl_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    with connect(with_database(pg_server, name)) as conn:
        migrate(conn, timescale=False)
    yield name
    with psycopg.connect(pg_server, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def scratch_database(server: str, prefix: str, template: str | None = None) -> Iterator[str]:
    """A database of its own on ``server`` (empty, or a copy of ``template``), dropped
    afterwards; yields its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    clone = f' TEMPLATE "{template}"' if template else ""
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"{clone}')
    try:
        yield with_database(server, name)
    finally:
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def cloned_database(pg_server: str, template_db: str, prefix: str = "giamsat_t"
                    ) -> contextlib.AbstractContextManager[str]:
    """A fresh database cloned from the migrated template, dropped afterwards; yields its URL."""
    return scratch_database(pg_server, prefix, template_db)


@pytest.fixture
def db_url(pg_server: str, template_db: str) -> Iterator[str]:
    """URL of a fresh, migrated database of this test's own."""
    with cloned_database(pg_server, template_db) as url:
        yield url


@pytest.fixture
def db(db_url: str) -> Iterator[psycopg.Connection]:
    """A connection to this test's fresh database."""
    with connect(db_url) as conn:
        yield conn


@pytest.fixture
def unique_id() -> str:
    """A short id unique to this test, for device ids and client ids on a shared broker."""
    return uuid.uuid4().hex[:8]
