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
import fcntl
import json
import os
import shutil
import signal
import tempfile
import threading
import time
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
RUN_DIR = pytest.StashKey[Path]()


# --- scheduling in parallel workers -------------------------------------------------------------

# Test files whose tests are scheduled one by one: function-scoped fixtures only, each test long.
ONE_BY_ONE = ("tests/drills/", "tests/giamsat/test_up.py", "tests/api/test_dashboard_browser.py",
              "tests/api/test_case_screens_browser.py", "tests/api/test_casework_browser.py")

# Rough seconds of the longest units (measured on the 2-core machine), to hand them out first;
# the order is all that matters. A unit not named counts a fifth of a second per test (about
# what the short files take; a slower file left out of this table ends the run alone).
SCHEDULE_HINT_S = {
    "tests/drills/test_drills.py::test_postgres_stopped_for_60_s_and_started_again": 90,
    "tests/drills/test_drills.py::test_100_000_fuzzed_payloads_are_each_dead_lettered": 60,
    "tests/drills/test_cluster.py": 55,
    # ~70 s, but not in the first wave: its `up` finds the default ports taken and picks free
    # ones some seconds before its broker binds them, while the first wave's services start
    "tests/giamsat/test_up.py::test_up_demo_runs_ctrl_c_stops_it_cleanly_and_kill_9": 24,
    "tests/pipeline/test_pipeline.py": 8,
    "tests/ingest/test_amqp.py": 35,
    "tests/geofence/test_machine.py": 35,
    "tests/api/test_dashboard_browser.py::test_an_officer_at_work_stays_signed_in": 30,
    "tests/ingest/test_decode_columnar.py": 25,
    "tests/api/test_case_screens_browser.py::test_an_officer_runs_a_case": 25,
    "tests/api/test_case_screens_browser.py::test_a_province_officer_manages_webhooks": 25,
    # the load test must keep up with its rate: it goes after the first wave of drills
    "tests/drills/test_loadtest.py": 6,
    "tests/giamsat/test_services.py": 22,
    "tests/security/test_rabbitmq_acl.py": 22,
    "tests/api/test_dashboard_browser.py": 20,
    "tests/api/test_case_screens_browser.py": 18,
    "tests/api/test_casework_browser.py": 15,
    "tests/drills/test_continuity.py": 15,
    "tests/drills/test_drills.py": 15,
    "tests/api/test_schemathesis.py": 35,
    # the middle: measured so that short files, not these, make the end of the run
    "tests/security/test_broker_acl.py": 22,
    "tests/api/test_case_screens.py": 16,
    "tests/ingest/test_service.py": 15,
    "tests/registry/test_document.py": 12,
    "tests/giamsat/test_officercmd.py": 9,
    "tests/simulators/test_runner.py": 8,
    "tests/alerts/test_delivery.py": 8,
    "tests/pipeline/test_continuity.py": 8,
    "tests/api/test_ops.py": 7,
    "tests/ingest/test_crash.py": 7,
    "tests/ingest/test_store.py": 7,
    "tests/api/test_input_bounds.py": 6,
    "tests/alerts/test_rules.py": 6,
    "tests/pipeline/test_replay.py": 6,
    "tests/api/test_auth.py": 6,
    "tests/pipeline/test_stage.py": 5,
    "tests/geofence/test_time.py": 5,
    "tests/api/test_access.py": 5,
    "tests/simulators/test_fleet.py": 5,
    "tests/drills/test_fuzz_corpus.py": 4.5,
    "tests/deploy/test_mosquitto_conf.py": 4.3,
    "tests/ingest/test_decode.py": 3.5,
}


# Test files scheduled a test function (all its parameters) at a time: long files whose module
# fixtures are cheap next to their tests.
BY_FUNCTION = ("tests/api/test_schemathesis.py", "tests/pipeline/test_pipeline.py")


def _unit(nodeid: str) -> str:
    """The scheduling unit of a test: the test itself in ONE_BY_ONE files, its function in
    BY_FUNCTION files, else its file."""
    path = nodeid.split("::", 1)[0]
    if path.startswith(ONE_BY_ONE):
        return nodeid
    return nodeid.split("[", 1)[0] if path.startswith(BY_FUNCTION) else path


def _hint_s(unit: str, tests: int) -> float:
    named = [s for key, s in SCHEDULE_HINT_S.items() if unit.startswith(key)]
    return max(named) if named else 0.2 * tests


def pytest_collection_modifyitems(config, items) -> None:
    """Longest units first (see the module docstring); the same order in every worker."""
    counts: dict[str, int] = {}
    for item in items:
        counts[_unit(item.nodeid)] = counts.get(_unit(item.nodeid), 0) + 1
    first_seen = {u: i for i, u in enumerate(dict.fromkeys(_unit(it.nodeid) for it in items))}
    items.sort(key=lambda it: (-_hint_s(_unit(it.nodeid), counts[_unit(it.nodeid)]),
                               first_seen[_unit(it.nodeid)]))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """With ``--dist loadfile``: units as above, handed out in the collection's order."""
    if config.getoption("dist", None) != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class LongestFirst(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _unit(nodeid)

    config.option.loadscopereorder = False
    return LongestFirst(config, log)


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


class EarlyNode:
    """The session's RabbitMQ node, booting in a thread of its own from the end of collection
    when a collected test will use it: its boot (about ten seconds, mostly waiting) overlaps
    the first tests instead of holding up the first test that needs it.

    Under xdist the node is shared by all the workers (each test has a virtual host of its own,
    so they do not meet): booting one costs about eight seconds of CPU, which four workers
    would each spend. The first worker to need it boots it under a lock in the run's directory
    and describes it there; the others wait on the lock and read the description; the
    controller stops it once every worker is done (``pytest_unconfigure``)."""

    def __init__(self, run_dir: Path | None = None) -> None:
        self.run_dir = run_dir
        self.base = Path(tempfile.mkdtemp(prefix="giamsat-test-rabbitmq-")) if run_dir is None \
            else run_dir / "rabbitmq"
        self.node: EmbeddedRabbitMQ | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._boot, name="rabbitmq-boot", daemon=True)
        self.thread.start()

    def _boot(self) -> None:
        try:
            if self.run_dir is None:
                self.node = _new_node(self.base)
                self.node.start()
            else:
                self.node = _shared_node(self.run_dir, self.base)
        except BaseException as exc:  # noqa: BLE001 - raised in the fixture that needs it
            self.error = exc

    def booted(self) -> EmbeddedRabbitMQ:
        self.thread.join()
        if self.error is not None:
            raise self.error
        assert self.node is not None
        return self.node

    def stop(self) -> None:
        self.thread.join()
        if self.run_dir is None and self.node is not None:  # a shared node is the controller's
            self.node.stop()
            shutil.rmtree(self.base, ignore_errors=True)


def _new_node(base: Path) -> EmbeddedRabbitMQ:
    return EmbeddedRabbitMQ(base, free_port(), free_port(), dist_port=free_port())


def _shared_node(run_dir: Path, base: Path) -> EmbeddedRabbitMQ:
    """The run's shared node: booted here if no worker has yet (under the run's lock)."""
    described = run_dir / "rabbitmq.json"
    with open(run_dir / "rabbitmq.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if described.exists():
            d = json.loads(described.read_text())
            return EmbeddedRabbitMQ(base, d["mqtt_port"], d["amqp_port"], dist_port=d["dist_port"])
        node = _new_node(base)
        node.start()
        assert node.proc is not None
        described.write_text(json.dumps({"mqtt_port": node.mqtt_port, "amqp_port": node.amqp_port,
                                         "dist_port": node.dist_port, "pgid": node.proc.pid}))
        return node


def _stop_shared_node(run_dir: Path) -> None:
    """Kill the run's shared node (if a worker booted one; its data goes with the run's
    directory, so there is nothing to stop cleanly) and wait until it is gone: the worker
    that started it may have exited, so it is found by its process group."""
    described = run_dir / "rabbitmq.json"
    if described.exists():
        pgid = json.loads(described.read_text())["pgid"]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while _group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.1)
    shutil.rmtree(run_dir, ignore_errors=True)


def _group_alive(pgid: int) -> bool:
    """True while a process of group ``pgid`` runs (zombies left to an init that does not reap
    them do not count)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                return True
    return False


_early_node: list[EarlyNode] = []


def pytest_configure(config) -> None:
    """The xdist controller makes the directory its workers share (see ``EarlyNode``)."""
    if not hasattr(config, "workerinput") and getattr(config.option, "numprocesses", None):
        run_dir = Path(tempfile.mkdtemp(prefix="giamsat-test-run-"))
        run_dir.chmod(0o755)
        config.stash[RUN_DIR] = run_dir


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:
    """xdist: tell each worker the run's directory."""
    run_dir = node.config.stash.get(RUN_DIR, None)
    if run_dir is not None:
        node.workerinput["giamsat_run_dir"] = str(run_dir)


def pytest_unconfigure(config) -> None:
    run_dir = config.stash.get(RUN_DIR, None)
    if run_dir is not None:
        _stop_shared_node(run_dir)


def pytest_collection_finish(session) -> None:
    if session.config.option.collectonly:
        return
    if any("rabbitmq_node" in getattr(item, "fixturenames", ()) for item in session.items):
        shared = getattr(session.config, "workerinput", {}).get("giamsat_run_dir")
        _early_node.append(EarlyNode(Path(shared) if shared else None))


def pytest_sessionfinish(session) -> None:
    while _early_node:  # booted, and no test asked for it
        _early_node.pop().stop()


@pytest.fixture(scope="session")
def rabbitmq_node(request) -> Iterator[EmbeddedRabbitMQ]:
    """One RabbitMQ node (MQTT plugin, quorum queues) for the session, user guest/guest."""
    if not _early_node:
        shared = getattr(request.config, "workerinput", {}).get("giamsat_run_dir")
        _early_node.append(EarlyNode(Path(shared) if shared else None))
    early = _early_node.pop()
    try:
        yield early.booted()
    finally:
        early.stop()


class VhostPool:
    """Fresh virtual hosts on a node, made and deleted a batch at a time: each `rabbitmqctl`
    run boots an Erlang VM (about a second of CPU), so one run makes the next batch and
    deletes the hosts given out since the last one."""

    BATCH = 8

    def __init__(self, node: EmbeddedRabbitMQ) -> None:
        self.node = node
        self.fresh: list[str] = []
        self.used: list[str] = []
        self.lock = threading.Lock()

    def take(self) -> str:
        with self.lock:
            if not self.fresh:
                made = [f"t-{uuid.uuid4().hex[:10]}" for _ in range(self.BATCH)]
                self._eval(made, self.used)
                self.fresh, self.used = made, []
            name = self.fresh.pop()
            self.used.append(name)
            return name

    def _eval(self, add: list[str], delete: list[str]) -> None:
        def names(vhosts: list[str]) -> str:
            return "[" + ",".join(f'<<"{v}">>' for v in vhosts) + "]"

        who = '<<"giamsat-tests">>'
        self.node.ctl("eval", (
            f"[rabbit_vhost:delete(V, {who}) || V <- {names(delete)}], "
            f"[begin ok = rabbit_vhost:add(V, {who}), "
            f'ok = rabbit_auth_backend_internal:set_permissions(<<"guest">>, V, <<".*">>, '
            f'<<".*">>, <<".*">>, {who}) end || V <- {names(add)}], ok.'))


@pytest.fixture(scope="session")
def rabbitmq_vhosts(rabbitmq_node: EmbeddedRabbitMQ) -> VhostPool:
    return VhostPool(rabbitmq_node)


@pytest.fixture
def rabbitmq(rabbitmq_node: EmbeddedRabbitMQ, rabbitmq_vhosts: VhostPool) -> RabbitVhost:
    """A fresh virtual host of this test's own on the session's RabbitMQ (guest may do
    anything in it; deleted with the next batch, see VhostPool)."""
    return RabbitVhost(rabbitmq_node, rabbitmq_vhosts.take())


@pytest.fixture(scope="session", autouse=True)
def quick_password_hashes() -> Iterator[None]:
    """argon2id at its cheapest in the test process (an injected cost, like an injected clock):
    the service's profile (RFC 9106 low memory, ~50 ms a hash on a quiet core) costs whole
    minutes of the suite's CPU in sign-ins and seeded officers. Hashes stay argon2id and are
    verified by their own parameters; the service's processes the tests start keep the real
    profile."""
    from argon2 import PasswordHasher, Type

    import api.officers

    real = api.officers._HASHER
    assert (real.time_cost, real.memory_cost, real.type) == (3, 65536, Type.ID), \
        "the service's password hashing changed: check this fixture's premise"
    api.officers._HASHER = PasswordHasher(time_cost=1, memory_cost=256, parallelism=1)
    api.officers._dummy_hash.cache_clear()
    yield
    api.officers._HASHER = real
    api.officers._dummy_hash.cache_clear()


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
