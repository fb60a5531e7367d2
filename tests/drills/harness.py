"""What the drills share: a stack of their own (embedded PostgreSQL and Mosquitto on free ports
in a temp dir, so a drill may stop or kill them), the service's processes run as a user runs
them (`python -m giamsat worker` / `api`), a QoS 1 publisher that knows which of its publishes
the broker acknowledged, and the checks on what was stored.

Everything is loopback and bounded in count and time.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
from prometheus_client.parser import text_string_to_metric_families

from config.mqtt import PUBLISH_WINDOW
from embedded.services import EmbeddedMosquitto, EmbeddedPostgres, free_port
from registry.document import import_document
from schema import connect, migrate
from simulators import messages as sim
from simulators.loadtest import Link, mqtt_string

REPO = Path(__file__).resolve().parents[2]
DB_NAME = "giamsat"

Key = tuple[str, int, int]  # (device_id, seq, ts ms)


# --- waiting ------------------------------------------------------------------------------------


def wait_for(condition: Callable[[], object], timeout_s: float, what: str,
             every_s: float = 0.2) -> object:
    """Poll until `condition()` is truthy and return it; AssertionError after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(every_s)


# --- the registry -------------------------------------------------------------------------------


def registry_document(devices: int, prefix: str = "drill") -> dict:
    """A small registry: a province unit, a commune unit, `devices` supervisees each wearing
    one device `{prefix}-NNN`, each with a 3 km residence around the simulators' default
    position (where the drills' fixes are: nothing to alert on)."""
    today = date.today()
    sups = [{
        "id": f"sv-{prefix}-{i:03d}", "name": f"Drill {i}", "sentence_type": "an_treo",
        "sentence_start": (today - timedelta(days=365)).isoformat(),
        "sentence_end": (today + timedelta(days=730)).isoformat(), "unit": "CAX-DRILL",
        "zones": [{"id": "home", "kind": "inclusion", "purpose": "residence",
                   "center": [sim.DEFAULT_LON, sim.DEFAULT_LAT], "radius_m": 3000}],
    } for i in range(devices)]
    return {
        "units": [{"code": "PC10-DRILL", "name": "PC10 drill", "parent": None},
                  {"code": "CAX-DRILL", "name": "Commune drill", "parent": "PC10-DRILL"}],
        "supervisees": sups,
        "devices": [{"id": f"{prefix}-{i:03d}", "supervisee": s["id"]}
                    for i, s in enumerate(sups)],
        "permits": [],
    }


# --- processes ----------------------------------------------------------------------------------


class Proc:
    """A child process of the service with its output in a log file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name, self.argv, self.env, self.log = name, argv, env, log
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> Proc:
        with open(self.log, "ab") as out:
            out.write(f"\n===== start {self.starts + 1} of {self.name} =====\n".encode())
            out.flush()
            self.proc = subprocess.Popen(self.argv, env=self.env, stdout=out,
                                         stderr=subprocess.STDOUT, cwd=REPO)
        self.starts += 1
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill9(self) -> None:
        """SIGKILL, as a crash: no drain, nothing flushed."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def pause(self) -> None:
        """SIGSTOP: a consumer that takes nothing for a while (its socket stays open)."""
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM (a clean stop), SIGKILL after `timeout_s`; return the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""


class Stack:
    """A drill's own PostgreSQL and Mosquitto (free ports, temp dir), a migrated database with a
    small registry, and the service processes. Use as a context manager."""

    def __init__(self, name: str, devices: int = 20) -> None:
        self.name = name
        self.devices = [f"drill-{i:03d}" for i in range(devices)]
        self._devices_n = devices
        self.base = Path(tempfile.mkdtemp(prefix=f"giamsat-drill-{name}-"))
        # PostgreSQL runs as user postgres when the suite runs as root: it must traverse this.
        self.base.chmod(0o755)
        self.pg = EmbeddedPostgres(self.base / "pg" / "data", free_port())
        self.mqtt = EmbeddedMosquitto(self.base / "mqtt", free_port())
        self.data_dir = self.base / "state"
        self.metrics_port = free_port()
        self.http_port = free_port()
        self.client_id = f"giamsat-drill-{name}"
        self.db_url = ""
        self.worker: Proc | None = None
        self.api: Proc | None = None

    # --- lifecycle --------------------------------------------------------------------------

    def __enter__(self) -> Stack:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close(keep=exc[0] is not None or bool(os.environ.get("GIAMSAT_DRILL_KEEP")))

    def start(self) -> None:
        (self.base / "pg").mkdir()
        self.pg.start()
        with psycopg.connect(self.pg.url, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{DB_NAME}"')
        self.db_url = self.pg.url.rsplit("/", 1)[0] + "/" + DB_NAME
        with connect(self.db_url) as conn:
            migrate(conn, timescale=False)
            import_document(conn, registry_document(self._devices_n))
        self.mqtt.start()
        self.data_dir.mkdir()

    def close(self, keep: bool = False) -> None:
        for p in (self.api, self.worker):
            if p is not None:
                with contextlib.suppress(Exception):
                    p.stop(20)
        with contextlib.suppress(Exception):
            self.mqtt.stop()
        with contextlib.suppress(Exception):
            self.pg.stop()
        if keep:
            print(f"[{self.name}] drill files kept in {self.base}")
        else:
            shutil.rmtree(self.base, ignore_errors=True)

    # --- the service ------------------------------------------------------------------------

    @property
    def mqtt_url(self) -> str:
        return f"mqtt://127.0.0.1:{self.mqtt.port}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GIAMSAT_")}
        env.update(GIAMSAT_DATA_DIR=str(self.data_dir), GIAMSAT_DATABASE_URL=self.db_url,
                   GIAMSAT_MQTT_URL=self.mqtt_url, GIAMSAT_HTTP=f"127.0.0.1:{self.http_port}",
                   GIAMSAT_WORKER_METRICS_PORT=str(self.metrics_port),
                   GIAMSAT_MQTT_CLIENT_ID=self.client_id,
                   GIAMSAT_SECRET_KEY="drill-" + "k" * 40, PYTHONUNBUFFERED="1")
        return env

    def start_worker(self, timeout_s: float = 60.0) -> Proc:
        """Start (or restart) `python -m giamsat worker`; return once it reports healthy."""
        if self.worker is None:
            self.worker = Proc("worker", [sys.executable, "-m", "giamsat", "worker"], self.env(),
                               self.base / "worker.log")
        self.worker.start()
        self.wait_worker_healthy(timeout_s)
        return self.worker

    def start_api(self, timeout_s: float = 60.0) -> Proc:
        self.api = Proc("api", [sys.executable, "-m", "giamsat", "api"], self.env(),
                        self.base / "api.log").start()
        wait_for(lambda: self.readyz() == 200, timeout_s, "the API's /readyz to say ready")
        return self.api

    def worker_health(self) -> dict:
        try:
            return json.loads((self.data_dir / "worker-health.json").read_text())
        except (OSError, ValueError):
            return {}

    def wait_worker_healthy(self, timeout_s: float) -> None:
        started = time.time()

        def healthy() -> bool:
            assert self.worker is not None and self.worker.alive, \
                "worker exited:\n" + self.worker_tail()
            h = self.worker_health()
            return bool(h.get("healthy")) and float(h.get("at", 0)) > started

        wait_for(healthy, timeout_s, "the worker to report healthy")

    def log_summary(self) -> str:
        """Tracebacks, errors and warnings in the service's logs (printed with the figures)."""
        out = []
        for p in (self.worker, self.api):
            if p is not None:
                text = p.output()
                out.append(f"{p.name} log: {text.count('Traceback')} tracebacks, "
                           f"{text.count(' ERROR ')} errors, {text.count(' WARNING ')} warnings")
        return "; ".join(out)

    def worker_tail(self, chars: int = 4000) -> str:
        return self.worker.output()[-chars:] if self.worker else ""

    def readyz(self) -> int | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/readyz",
                                        timeout=10) as resp:
                return resp.status
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            return None

    def worker_metric(self, name: str, **labels: str) -> float:
        """One sample of the worker's metrics (0 when absent)."""
        return self.worker_metrics().get(name, {}).get(tuple(sorted(labels.items())), 0.0)

    def worker_metrics(self) -> dict[str, dict[tuple, float]]:
        """The worker's metrics endpoint: {sample name: {sorted label items: value}}."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics",
                                    timeout=5) as resp:
            text = resp.read().decode()
        out: dict[str, dict[tuple, float]] = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
        return out

    # --- the database -----------------------------------------------------------------------

    def query(self, sql: str, *params: object) -> list[tuple]:
        with psycopg.connect(self.db_url, connect_timeout=5) as conn:
            return conn.execute(sql, params).fetchall()

    def stored_fixes(self) -> Counter[Key]:
        """How many rows each (device_id, seq, ts) has in `fixes`."""
        rows = self.query("SELECT device_id, seq, (extract(epoch FROM ts) * 1000)::int8, count(*) "
                          "FROM fixes GROUP BY 1, 2, 3")
        return Counter({(d, s, t): n for d, s, t, n in rows})


# --- MQTT: the broker's acknowledgements --------------------------------------------------------


def broker_acked(info: mqtt.MQTTMessageInfo) -> bool:
    """True once the broker's PUBACK for this publish came. paho's `is_published()` raises for a
    publish made while disconnected (rc NO_CONN) although paho keeps it and sends it after
    reconnecting; its PUBACK still sets the flag read here (paho-mqtt 2.x)."""
    return bool(info._published)


@dataclass
class Sent:
    """What one publisher sent: a key per message and paho's info for it (acknowledged once
    the broker's PUBACK came)."""

    keys: list[object] = field(default_factory=list)
    infos: list[mqtt.MQTTMessageInfo] = field(default_factory=list)

    def acked(self) -> list[object]:
        return [k for k, i in zip(self.keys, self.infos, strict=True) if broker_acked(i)]

    def unacked(self) -> list[object]:
        return [k for k, i in zip(self.keys, self.infos, strict=True) if not broker_acked(i)]


def mqtt_client(host: str, port: int, client_id: str,
                login: tuple[str, str] | None = None) -> mqtt.Client:
    """A device-side paho client: QoS 1, many in flight, unbounded queue (kept while the
    broker is away, sent after paho reconnects by itself). `login` is set before the first
    connect."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=mqtt.MQTTv311, clean_session=True)
    if login is not None:
        client.username_pw_set(*login)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.reconnect_delay_set(0.2, 1)
    client.connect_async(host, port, keepalive=30)
    client.loop_start()
    return client


def wait_connected(client: mqtt.Client, timeout_s: float = 15.0) -> None:
    wait_for(client.is_connected, timeout_s, "the publisher to connect", every_s=0.05)


class Publisher(threading.Thread):
    """Publishes `messages` (topic, payload, key) at a steady `rate` per second, QoS 1, from its
    own thread, and records which publishes the broker acknowledged (`sent`)."""

    def __init__(self, host: str, port: int, client_id: str,
                 messages: Sequence[tuple[str, bytes, object]], rate: float,
                 login: tuple[str, str] | None = None) -> None:
        super().__init__(name=f"publisher-{client_id}", daemon=True)
        self.client = mqtt_client(host, port, client_id, login)
        self.messages = messages
        self.rate = rate
        self.sent = Sent()
        self.started_at = 0.0
        self.finished_at = 0.0
        self._halt = threading.Event()

    def run(self) -> None:
        wait_connected(self.client)
        self.started_at = t0 = time.monotonic()
        n = len(self.messages)
        i = 0
        while i < n and not self._halt.is_set():
            due = min(n, int((time.monotonic() - t0) * self.rate) + 1)
            while i < due:
                topic, payload, key = self.messages[i]
                info = self.client.publish(topic, payload, qos=1)
                self.sent.keys.append(key)
                self.sent.infos.append(info)
                i += 1
            time.sleep(0.005)
        self.finished_at = time.monotonic()

    @property
    def published(self) -> int:
        return len(self.sent.keys)

    def wait_all_acked(self, timeout_s: float) -> bool:
        """Wait for the broker's PUBACK of every publish; False if some never came."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(map(broker_acked, self.sent.infos)):
                return True
            time.sleep(0.1)
        return False

    def halt(self) -> None:
        self._halt.set()

    def close(self) -> None:
        self._halt.set()
        with contextlib.suppress(Exception):
            self.client.disconnect()
        self.client.loop_stop()


class PacketPublisher(threading.Thread):
    """A `Publisher` for drills without broker faults: it writes QoS 1 PUBLISH packets itself
    (the load generator's `Link`: ~16 us of CPU a message where paho takes ~75 us; 100,000
    messages cost the fuzz drill seconds) and counts the PUBACKs, at a steady `rate`, with at
    most PUBLISH_WINDOW unacknowledged. It does not reconnect: a dropped connection ends it
    (`error`), and the messages not acknowledged show as such."""

    def __init__(self, host: str, port: int, client_id: str,
                 messages: Sequence[tuple[str, bytes, object]], rate: float) -> None:
        super().__init__(name=f"packet-publisher-{client_id}", daemon=True)
        self.url = f"mqtt://{host}:{port}"
        self.client_id = client_id
        self.messages = messages
        self.rate = rate
        self.published = 0
        self.acked = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            link = Link(self.url, self.client_id)
        except (ConnectionError, OSError) as exc:
            self.error = exc
            return
        try:
            t0 = time.monotonic()
            n = len(self.messages)
            while link.sent < n:
                due = min(n, int((time.monotonic() - t0) * self.rate) + 1)
                while link.sent < due and link.sent - link.acked < PUBLISH_WINDOW:
                    topic, payload, _ = self.messages[link.sent]
                    link.publish(mqtt_string(topic), payload)
                link.flush()
                self.published = link.sent
                link.read(wait=0.005)
                self.acked = link.acked
            deadline = time.monotonic() + 60
            while link.acked < link.sent and time.monotonic() < deadline:
                link.read(wait=0.05)
                self.acked = link.acked
        except (ConnectionError, OSError) as exc:
            self.error = exc
        finally:
            link.close()

    def wait_all_acked(self, timeout_s: float) -> bool:
        """Wait until every message is published and acknowledged; False if some never were."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.acked == len(self.messages):
                return True
            if self.error is not None or not self.is_alive():
                return self.acked == len(self.messages)
            time.sleep(0.1)
        return False


def fix_stream(devices: Sequence[str], total: int, rate: float,
               start_ms: int | None = None) -> list[tuple[str, bytes, Key]]:
    """`total` single-fix messages, round robin over `devices` (seq counting up per device), at
    the default position; `ts` spaced as if sent at `rate` per second from `start_ms` (now),
    so never in the future when sent on time."""
    start_ms = sim.now_ms() - 1000 if start_ms is None else start_ms
    out = []
    n = len(devices)
    for i in range(total):
        dev, seq = devices[i % n], i // n
        ts = start_ms + int(i * 1000 / rate)
        payload = sim.encode(sim.fix(seq=seq, ts=ts, acc=8.0))
        out.append((sim.topic(dev, "fix"), payload, (dev, seq, ts)))
    return out


# --- checks -------------------------------------------------------------------------------------


@dataclass
class Ledger:
    """Published vs acknowledged vs stored fixes: the figures each drill prints and asserts."""

    published: int
    acked: int
    stored_rows: int
    stored_keys: int
    missing_acked: int         # acknowledged by the broker, not stored: lost
    duplicate_rows: int        # rows beyond the first for a key
    stored_unacked: int        # stored although the broker had not acknowledged the publish
    unknown_rows: int          # stored rows that nobody published

    def line(self) -> str:
        return ", ".join(f"{k} {v}" for k, v in self.__dict__.items())


def ledger(stack: Stack, sent: Sent) -> Ledger:
    stored = stack.stored_fixes()
    acked = set(sent.acked())
    published = set(sent.keys)
    return Ledger(
        published=len(sent.keys), acked=len(acked), stored_rows=sum(stored.values()),
        stored_keys=len(stored), missing_acked=len(acked - stored.keys()),
        duplicate_rows=sum(n - 1 for n in stored.values() if n > 1),
        stored_unacked=len((stored.keys() & published) - acked),
        unknown_rows=len(stored.keys() - published))


def wait_drained(stack: Stack, sent: Sent, timeout_s: float) -> float:
    """Wait until every acknowledged fix is stored; return how long it took."""
    t0 = time.monotonic()
    acked = set(sent.acked())

    def drained() -> bool:
        return acked <= stack.stored_fixes().keys()

    with contextlib.suppress(AssertionError):
        wait_for(drained, timeout_s, "every acknowledged fix to be stored", every_s=0.5)
    return time.monotonic() - t0


def assert_exactly_once(led: Ledger) -> None:
    assert led.acked > 0
    assert led.missing_acked == 0, f"{led.missing_acked} acknowledged fixes lost: {led.line()}"
    assert led.duplicate_rows == 0, f"{led.duplicate_rows} duplicate rows: {led.line()}"
    assert led.unknown_rows == 0, f"rows nobody published: {led.line()}"
    assert led.stored_keys == led.acked + led.stored_unacked, led.line()


def worker_connections(pid: int, port: int) -> set[tuple[int, int]]:
    """The worker's established TCP connections to 127.0.0.1:`port`, as (local port, inode):
    the same set before and after means no reconnect happened."""
    inodes = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(int(target[8:-1]))
    out = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        parts = line.split()
        local, remote, state, inode = parts[1], parts[2], parts[3], int(parts[9])
        if state == "01" and inode in inodes and int(remote.split(":")[1], 16) == port:
            out.add((int(local.split(":")[1], 16), inode))
    return out


@contextlib.contextmanager
def report_on_failure(stack: Stack) -> Iterator[None]:
    """On a failing assertion, show the end of the worker's log."""
    try:
        yield
    except BaseException:
        print(f"[{stack.name}] worker log (end):\n{stack.worker_tail()}")
        if stack.api is not None:
            print(f"[{stack.name}] api log (end):\n{stack.api.output()[-2000:]}")
        raise
